"""Argument checks every subcommand runs before it loads a model: numbers in range, a device that exists here,
output paths that can be written and never replace an input. Each failure is one `InputError` naming the flag
(exit code 2, issue #15); nothing here imports torch unless a device other than cpu is asked for."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from kdviz.errors import InputError, UnknownNameError

Rule = tuple[Callable[[float], bool], str]  # (test, what the value must be)


def _at_least(low: int) -> Rule:
    return (lambda v: v >= low), f"at least {low}"


def _between(low: float, high: float) -> Rule:
    return (lambda v: low <= v <= high), f"between {low} and {high}"


_POSITIVE: Rule = ((lambda v: v > 0), "more than 0")

# Every subcommand's flag of one of these names (argparse dest) obeys the rule. Training's own fields are checked by
# TrainConfig (the CLI, config.yaml and the app share them); this adds what TrainConfig leaves open.
RANGES: dict[str, Rule] = {
    "limit": _at_least(1),
    "top_k": _at_least(1),
    "batch_size": _at_least(1),
    "steps": _at_least(1),  # integrated-gradients steps
    "threads": _at_least(1),  # torch's CPU threads (kdviz.cli.common.add_threads_arg)
    "max_new_tokens": _between(1, 256),  # a generated target stays under the target length bound
    "sample": _at_least(0),
    "port": _between(1, 65535),
    "mass": ((lambda v: 0 < v <= 1), "more than 0 and at most 1"),
    "max_steps": _at_least(1),
    "warmup_steps": _at_least(0),
    "eval_size": _at_least(1),
    "eval_every": _at_least(0),
    "save_every": _at_least(0),
    "n_samples": _at_least(0),
    "lora_r": _at_least(1),
    "lora_alpha": _at_least(1),
    "weight_decay": _at_least(0),
    "lr": _POSITIVE,
    "temperature": _POSITIVE,
    "alpha": _between(0, 1),
}
FOLDER_FLAGS = ("workspace", "cache_dir")  # dests that name a folder kdviz creates or reads
DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def flag(dest: str) -> str:
    """Returns the command-line flag of an argparse dest ("top_k" -> "--top-k")."""
    return "--" + dest.replace("_", "-")


def check_args(args: argparse.Namespace) -> None:
    """Checks the arguments every subcommand shares by name: numbers (finite, in `RANGES`), `--device`, and the
    folders of `FOLDER_FLAGS`. Runs before the subcommand does anything.

    Raises:
        InputError: the first bad value; the message names its flag.  UnknownNameError: an unknown device.
    """
    for dest, value in vars(args).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{flag(dest)} must be a finite number, not {value}")
        rule = RANGES.get(dest)
        if rule is not None and not rule[0](value):
            raise InputError(f"{flag(dest)} must be {rule[1]}, not {value}")
    if getattr(args, "device", None) is not None:
        check_device("--device", args.device)
    if getattr(args, "dtype", None) or getattr(args, "device_map", None) or getattr(args, "load_in_4bit", False):
        check_load_flags(args)
    for dest in FOLDER_FLAGS:
        if getattr(args, dest, None):
            folder(flag(dest), getattr(args, dest))


def available_devices() -> list[str]:
    """Returns the devices this machine has: cpu, then cuda and cuda:N for each GPU, then mps."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_device(option: str, device: str) -> None:
    """Refuses a device kdviz does not know, or one this machine lacks (a CUDA run on a CPU machine would
    otherwise fail in torch, or quietly run on the CPU).

    Raises:
        UnknownNameError: not auto, cpu, cuda, cuda:N or mps.  InputError: not available here (the message lists
            what is).
    """
    if not _DEVICE.fullmatch(device):
        raise UnknownNameError(f"{option} value", device, DEVICE_FORMS)
    if device in ("auto", "cpu"):
        return
    available = available_devices()
    if device not in available:
        raise InputError(f"{option} {device}: not available on this machine; available: auto, {', '.join(available)}")


def check_load_flags(args: argparse.Namespace) -> None:
    """Refuses --dtype, --device-map and --load-in-4bit choices that this machine or the model cannot honour
    (`kdviz.lm.models.check_load_options`), before the model loads.

    Raises:
        InputError: the message names the flag and, where one exists, the way out.
    """
    from kdviz.lm.models import check_load_options

    from .common import model_spec

    dest = getattr(args, "model_flag", None)  # set by add_model_args: the flag that names the model
    if dest is None:
        return
    if not getattr(args, dest):  # `kdviz quality` reads its teacher from the build later; the machine's limits stand
        args = argparse.Namespace(**{**vars(args), dest: "the build's teacher"})
    check_load_options(model_spec(args, dest))


def _writable_ancestor(option: str, shown: str, path: Path) -> None:
    """Refuses a path whose nearest existing ancestor is a file, or a folder kdviz may not write in."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != path and not ancestor.is_dir():
        raise InputError(f"{option} {shown}: {ancestor} is a file, so no folder can be made under it")
    if not os.access(ancestor if ancestor.is_dir() else ancestor.parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {shown}: cannot write in {ancestor} (permission denied)")


def _inputs(inputs: Iterable[str | Path | None]) -> list[tuple[str, Path]]:
    """Returns (as given, resolved) for each input that is an existing path (hub ids and "hf:" sources are not)."""
    found = []
    for given in inputs:
        if given is None or str(given).startswith("hf:"):
            continue
        path = Path(given).expanduser()
        if path.exists():
            found.append((str(given), path.resolve()))
    return found


def _never_an_input(option: str, shown: str, out: Path, inputs, writes: Iterable[str] = ()) -> None:
    out = out.resolve()
    written = [out / name for name in writes]
    for given, path in _inputs(inputs):
        if out == path:
            raise InputError(f"{option} {shown} is the input {given}; writing it would destroy the input")
        if path in out.parents:
            raise InputError(f"{option} {shown} lies inside the input {given}; choose a path outside it")
        if any(w == path or w in path.parents for w in written):
            raise InputError(f"{option} {shown}: writing there would replace the input {given}")


def output_file(option: str, path: str | Path | None, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuses an output file that is a folder, cannot be created, or is (or lies inside) one of `inputs`.

    Raises:
        InputError: the message names the flag.
    """
    if path is None:
        return
    out = Path(path).expanduser()
    if out.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    _writable_ancestor(option, str(path), out)
    _never_an_input(option, str(path), out, inputs)


def output_folder(
    option: str,
    path: str | Path | None,
    inputs: Iterable[str | Path | None] = (),
    writes: Iterable[str] = (),
    whole: bool = False,
) -> None:
    """Refuses an output folder that is a file, cannot be created, is (or lies inside) one of `inputs`, or would
    replace an input by writing one of the files `writes` names into it.

    Args:
        whole: the command owns the whole folder (a training run removes it when its start fails), so an existing
            folder must be empty; one that holds a run is left to the command's own message.

    Raises:
        InputError: the message names the flag.
    """
    if path is None:
        return
    folder(option, path)
    out = Path(path).expanduser()
    if whole and out.is_dir() and any(out.iterdir()):
        from kdviz.distill.runs import holds_run

        if not holds_run(out):
            raise InputError(f"{option} {path} holds other files; give a new or empty folder for the run")
    _never_an_input(option, str(path), out, inputs, writes)


def folder(option: str, path: str | Path) -> None:
    """Refuses a folder path that names a file, lies under a file, or cannot be created.

    Raises:
        InputError: the message names the flag.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {path} is a file; give a folder")
    _writable_ancestor(option, str(path), out)
