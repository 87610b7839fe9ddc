"""What every `kdviz` subcommand shares: the one-line argument errors, model flags, the Ctrl-C policy, progress bars."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator


def fail(message: str) -> int:
    """Prints `error: message` on stderr and returns exit code 2 (bad input)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


class DefaultsFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help says it already or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
        return text if quiet or "default" in text else f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line on stderr, exit 2 (argparse would print the whole usage)
        raise SystemExit(fail(f"{self.prog}: {message} (see --help)"))


def add_model_args(p: argparse.ArgumentParser, flag: str, default: str) -> None:
    """Adds the model spec flag (`--model`, `--teacher`) and the loading options that go with it."""
    p.add_argument(
        flag, default=default, metavar="SPEC", help=f"hub id, local path, .gguf, tiny, embedded-* (default {default})"
    )
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ... (default auto)")
    p.add_argument("--no-chat", action="store_true", help="do not apply the model's chat template")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (unsafe)")
    p.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], help="the weights' precision; fp16 needs a GPU (default: bf16 on "
        "a GPU, fp32 on the CPU)",
    )  # fmt: skip
    p.add_argument(
        "--device-map", choices=["auto"], help="auto: spread a model too big for one device over the GPUs, then the "
        "CPU (accelerate; one process only)",
    )  # fmt: skip
    p.add_argument(
        "--load-in-4bit", action="store_true", help="4-bit weights (bitsandbytes, a CUDA GPU only): a quarter of the "
        "bf16 memory, for teachers that do not fit",
    )  # fmt: skip
    p.set_defaults(model_flag=flag.lstrip("-").replace("-", "_"))  # which flag names the model (checks.check_args)
    add_threads_arg(p)


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """Adds `--threads N`: torch's CPU threads for the command's model work (`torch_threads` applies it)."""
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads torch uses for the model work (default: torch's own, one per core). kdviz sets "
        "OMP_WAIT_POLICY=PASSIVE unless it is set, so waiting threads sleep instead of spinning: on a machine busy "
        "with other work, torch's default threads were 5-7x slower than one thread when spinning, 1.2-3x faster "
        "when sleeping. Give N to leave cores to other work",
    )


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the block with torch on `n` CPU threads (None: torch's own number, and torch is not imported), then
    restores the number it had, so an in-process caller (a test, a notebook) keeps its own."""
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def add_predict_arg(p: argparse.ArgumentParser) -> None:
    """Adds `--predict MODE`: how the model predicts a choice (default: the model's own default mode)."""
    from kdviz.lm.prompts import predict_help
    from kdviz.records import PREDICT_MODES

    p.add_argument("--predict", choices=PREDICT_MODES, help=f"how choices are predicted: {predict_help('; ')}")


def model_spec(args: argparse.Namespace, name: str):
    """Returns the ModelSpec the flags of `add_model_args` describe (`name`: the spec flag's attribute)."""
    from kdviz.config import DTYPE_FLAGS, ModelSpec

    return ModelSpec(
        getattr(args, name),
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        chat=False if args.no_chat else None,
        dtype=DTYPE_FLAGS.get(args.dtype, "auto"),
        device_map=args.device_map,
        load_in_4bit=args.load_in_4bit,
    )


@contextlib.contextmanager
def stop_on_ctrl_c(what: str) -> Iterator[Callable[[], bool]]:
    """Yields a `should_stop` for long work: the first Ctrl-C asks it to stop after `what` (keeping what finished),
    a second one aborts at once (KeyboardInterrupt)."""
    requested = False

    def on_interrupt(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        print(f"stopping after {what} (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def progress_bar(total: int, desc: str) -> Iterator[Callable[[int, int], None]]:
    """Yields an `on_progress(done, total)` callback drawing a tqdm bar (fraction, rate, ETA) on stderr."""
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="ex", file=sys.stderr) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield update
