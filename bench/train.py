"""Benchmark kdviz's training loop against a plain Hugging Face `Trainer` on the same student, data and steps.

Both sides fine-tune a fresh fp32 copy of the same student (`kdviz.lm.models.load_trainable`) on the same batches,
in the same order, for the same number of optimizer steps:

  kdviz    `kdviz.distill.loop.finetune(TrainConfig(method="standard", ...))`: prompt and gold answer tokenised once,
           padded per batch (`kdviz.forward.make_batch`), logits at the target positions only
           (`target_logits` + `masked_cross_entropy`), AdamW through accelerate (fused on a GPU only), one
           metrics row and a status file per step. Evaluation runs on one held-out question, before the first
           step and after the last one, both outside the timed span.
  Trainer  `transformers.Trainer` with default TrainingArguments except: the same learning rate (linear decay
           to zero, no warm-up, no weight decay, gradient clipping at 1.0 as in kdviz), batch size and
           max_steps; no evaluation, saving or logging; bf16 on a GPU as kdviz. Its data are kdviz's own token
           ids (`kdviz.distill.pairs.encode_pairs`, what the loop tokenises) in kdviz's batch order, padded per batch by
           `make_batch`, with labels -100 on the prompt and the padding; the model computes the loss on the full
           logits, as any Trainer does. Its optimizer is the default, fused AdamW (torch >= 2.8).

Timed span, identically for both: from the end of optimizer step W (the warm-up steps, default 2) to the end of
the last step, taken by a callback at each step's end (kdviz's `on_metrics` for its step rows, a
`TrainerCallback.on_step_end` for the Trainer). Model loading, evaluation and checkpointing are outside it.
Peak RSS is sampled every 20 ms inside the same span, in one process (kdviz first).

    python bench/train.py                                  # embedded student, 20 steps of 8 (about 8 min here)
    python bench/train.py --student tiny-student --steps 5  # smoke run, seconds
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's kdviz, whatever `pip install -e` points at
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

from kdviz.config import ModelSpec, TrainConfig  # noqa: E402
from kdviz.distill.data import load_train_examples, usable  # noqa: E402
from kdviz.distill.loop import finetune  # noqa: E402
from kdviz.distill.methods import get_method  # noqa: E402
from kdviz.distill.metrics import EvalRow, StepRow  # noqa: E402
from kdviz.distill.pairs import encode_pairs, split_train_eval  # noqa: E402
from kdviz.lm.forward import make_batch  # noqa: E402
from kdviz.lm.models import LoadedModel, load_trainable, select_device  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import arch  # noqa: E402  (random:<name> specs: the embedded architectures, random weights)

arch.install()

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cqa" / "train.jsonl"
EVAL_SIZE = 1  # kdviz always evaluates before and after training: on one question, outside the timed span


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--student",
        default="embedded-student",
        help="kdviz student spec (default embedded-student; random:embedded-student, see bench/arch.py)",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CQA-style JSONL (default ../shared/data/cqa)")
    p.add_argument("--n", type=int, default=0, help="questions read (default: steps x batch size + 1, one epoch)")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps on each side (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step (default 8)")
    p.add_argument("--max-length", type=int, default=256, help="tokens per sequence, kdviz's default (256)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate, both sides (default 1e-4)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    p.add_argument(
        "--peak-flops",
        type=float,
        default=989e12,
        help="the GPU's peak bf16 FLOP/s for MFU (default 989e12: H100 SXM)",
    )
    args = p.parse_args(argv)
    if min(args.steps, args.batch_size) < 1 or args.warmup < 0 or args.threads < 0:
        p.error("--steps and --batch-size must be at least 1, --warmup and --threads at least 0")
    if args.steps <= args.warmup:
        p.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup}): nothing would be timed")
    args.n = args.n or args.steps * args.batch_size + EVAL_SIZE
    if args.n < 2:
        p.error("--n must be at least 2")
    return args


class RSSSampler:
    """Samples this process's resident memory every `interval` seconds in a thread, with perf_counter stamps."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), proc.memory_info().rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> float:
        """Returns the highest RSS (GB) sampled between two perf_counter times."""
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside, default=0) / 1e9


@dataclass
class Side:
    """One training loop's measurements: perf_counter at the start of training and at the end of each step."""

    name: str
    started: float = 0.0
    step_ends: list[float] = field(default_factory=list)
    rss_before_gb: float = 0.0  # the process's RSS before the side loaded its student
    peak_rss_gb: float = 0.0
    peak_gpu_gb: float = 0.0
    wall_s: float = 0.0  # the whole call: model load, evaluation and checkpoint included (kdviz)
    mean_loss: float = float("nan")

    def timed_seconds(self, warmup: int) -> float:
        return sum(self.step_seconds(warmup))

    def step_seconds(self, warmup: int) -> list[float]:
        """Returns the duration of each timed step (step W+1 onwards), end to end."""
        ends = [self.started, *self.step_ends]
        return [b - a for a, b in zip(ends[warmup:], ends[warmup + 1 :], strict=False)]


def kdviz_order(n_train: int, seed: int, steps: int, batch_size: int) -> list[list[int]]:
    """Returns the indices of each step's batch, drawn exactly as kdviz's loop draws them (`_Loop.next_batch`)."""
    generator, order, batches = torch.Generator().manual_seed(seed), [], []
    for _ in range(steps):
        while len(order) < batch_size:
            order += torch.randperm(n_train, generator=generator).tolist()
        batches.append(order[:batch_size])
        order = order[batch_size:]
    return batches


def run_kdviz(args: argparse.Namespace, out: Path) -> Side:
    side = Side("kdviz finetune (standard)")
    losses = []

    def on_metrics(row: EvalRow | StepRow) -> None:
        now = time.perf_counter()
        if isinstance(row, EvalRow) and row.step == 0:
            side.started = now  # the step-0 evaluation is logged just before the first step
        elif isinstance(row, StepRow):
            side.step_ends.append(now)
            losses.append(row.loss)

    config = TrainConfig(
        data=str(args.data),
        out=str(out),
        student=args.student,
        method="standard",
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=0,
        eval_size=EVAL_SIZE,
        limit=args.n,
        max_length=args.max_length,
        device=args.device,
    )
    wall = time.perf_counter()
    with RSSSampler() as rss:
        finetune(config, on_metrics=on_metrics)
    side.wall_s = time.perf_counter() - wall
    side.peak_rss_gb = rss.peak(side.started, side.step_ends[-1])
    side.mean_loss = sum(losses) / len(losses)
    return side


def collator(loaded: LoadedModel):
    """Returns a Trainer data collator: kdviz's per-batch padding, labels -100 except on the target tokens."""
    cpu = replace(loaded, device="cpu")  # the Trainer moves batches to its device itself

    def collate(items: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> dict[str, torch.Tensor]:
        batch = make_batch(cpu, items)
        labels = torch.full_like(batch.input_ids, -100)
        for b, (prompt, target) in enumerate(items):
            labels[b, len(prompt) : len(prompt) + len(target)] = torch.tensor(target)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "labels": labels}

    return collate


def run_trainer(args: argparse.Namespace, loaded: LoadedModel, data: list, out: Path) -> Side:
    side = Side("transformers Trainer")

    class Timer(transformers.TrainerCallback):
        def on_train_begin(self, *_, **__):
            side.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            side.step_ends.append(time.perf_counter())

    on_gpu = select_device(args.device).startswith("cuda")
    training_args = transformers.TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        train_sampling_strategy="sequential",  # `data` is already in kdviz's batch order
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
    )
    trainer = transformers.Trainer(
        model=loaded.model, args=training_args, train_dataset=data, data_collator=collator(loaded), callbacks=[Timer()]
    )
    trainer.remove_callback(transformers.PrinterCallback)  # with tqdm off it would print the final metrics dict
    wall = time.perf_counter()
    with RSSSampler() as rss:
        result = trainer.train()
    side.wall_s = time.perf_counter() - wall
    side.peak_rss_gb = rss.peak(side.started, side.step_ends[-1])
    side.mean_loss = result.training_loss
    return side


def rss_gb() -> float:
    """Returns this process's RSS in GB after a garbage collection (what the previous side left is freed)."""
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 1e9


def measure(args: argparse.Namespace, rss_before: float, side_fn, *fn_args) -> Side:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    side = side_fn(args, *fn_args)
    side.rss_before_gb = rss_before
    if torch.cuda.is_available():
        side.peak_gpu_gb = torch.cuda.max_memory_allocated() / 1e9
    if len(side.step_ends) != args.steps:
        raise SystemExit(f"{side.name}: {len(side.step_ends)} step ends recorded, expected {args.steps}")
    return side


def token_counts(items: list, batches: list[list[int]]) -> tuple[list[int], list[int]]:
    """Returns (real tokens, padded tokens) of each step's batch."""
    real, padded = [], []
    for batch in batches:
        lengths = [len(items[i][0]) + len(items[i][1]) for i in batch]
        real.append(sum(lengths))
        padded.append(max(lengths) * len(lengths))
    return real, padded


def device_line(device: str) -> str:
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{os.cpu_count()} CPU cores"
    return (
        f"device: {device} ({name}, {torch.get_num_threads()} torch threads) | python {platform.python_version()} | "
        f"torch {torch.__version__} | transformers {transformers.__version__}"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(args, sides: list[Side], n_params: int, real: list[int], padded: list[int], device: str) -> dict:
    """Prints the table and the ratios; returns {side name: steps/s, ..., "ratio": kdviz/Trainer steps/s}."""
    w, timed_steps = args.warmup, args.steps - args.warmup
    tokens = sum(real[w:])
    gpu = device.startswith("cuda")
    print(
        f"\ntimed: steps {w + 1}-{args.steps} ({timed_steps} steps, {timed_steps * args.batch_size} samples, "
        f"{tokens} real tokens, {sum(padded[w:])} with padding), from the end of step {w} to the end of the last"
    )
    header = f"  {'loop':<26} {'seconds':>8} {'steps/s':>8} {'samples/s':>9} {'tokens/s':>9} {'median s/step':>13}"
    header += f" {'peak RSS (before)':>17} {'wall s':>7} {'mean loss':>10}" + (
        f" {'GPU GB':>7} {'MFU':>6}" if gpu else ""
    )
    print(header)
    rates = {}
    for s in sides:
        seconds = s.timed_seconds(w)
        rate = timed_steps / seconds
        rates[s.name] = rate
        line = (
            f"  {s.name:<26} {seconds:>8.2f} {rate:>8.4f} {rate * args.batch_size:>9.3f} {tokens / seconds:>9.1f} "
            f"{median(s.step_seconds(w)):>13.3f} {s.peak_rss_gb:>6.2f} GB ({s.rss_before_gb:.2f}) {s.wall_s:>7.1f} {s.mean_loss:>10.6f}"
        )
        if gpu:
            line += f" {s.peak_gpu_gb:>7.2f} {6 * n_params * tokens / seconds / args.peak_flops:>6.1%}"
        print(line)
    kd, hf = sides
    rates["ratio"] = rates[kd.name] / rates[hf.name]
    paired = [b / a for a, b in zip(kd.step_seconds(w), hf.step_seconds(w), strict=True)]
    print(f"  kdviz/Trainer = {rates['ratio']:.2f}x (steps/s over the timed span)")
    print(
        f"  per step, same batch on both sides: Trainer s / kdviz s median {median(paired):.2f}x "
        f"(min {min(paired):.2f}, max {max(paired):.2f}), robust to a stall on a shared machine"
    )
    flops = 6 * n_params * tokens / kd.timed_seconds(w)
    line = f"  kdviz model FLOP/s (6 x {n_params / 1e6:.1f}M params x real tokens/s): {flops / 1e12:.3f} TFLOP/s"
    print(line + (f", MFU {flops / args.peak_flops:.1%} of {args.peak_flops:.3g} peak bf16 FLOP/s" if gpu else ""))
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(device_line(device))
    print(f"load average (1, 5, 15 min) at start: {load_average()}")

    # The data and batches kdviz's loop will train on, rebuilt from kdviz's own functions for the Trainer.
    items = usable(load_train_examples(args.data, args.n), get_method("standard"))
    train, _ = split_train_eval(items, EVAL_SIZE, TrainConfig.seed)
    pairs = [get_method("standard").pairs(t)["answer"] for t in train]
    batches = kdviz_order(len(train), TrainConfig.seed, args.steps, args.batch_size)

    with tempfile.TemporaryDirectory(prefix="kdviz-bench-train-") as tmp:
        kd = measure(args, rss_gb(), run_kdviz, Path(tmp) / "run")
        print(f"  [kdviz done; load average {load_average()}]", file=sys.stderr, flush=True)
        before = rss_gb()  # before the Trainer's copy of the student is loaded, as for kdviz
        loaded = load_trainable(ModelSpec(args.student, device=device))
        if loaded.is_encoder_decoder:
            raise SystemExit("the Trainer side builds causal-LM labels: use a decoder-only student")
        encoded, truncated = encode_pairs(loaded, pairs, args.max_length)
        data = [encoded[i] for batch in batches for i in batch]
        n_params = sum(p.numel() for p in loaded.model.parameters())
        hf = measure(args, before, run_trainer, loaded, data, Path(tmp) / "trainer")

    real, padded = token_counts(encoded, batches)
    lengths = [len(p) + len(t) for p, t in encoded]
    targets = [len(t) for _, t in encoded]
    print(
        f"\nstudent: {args.student} ({type(loaded.model).__name__}, {n_params / 1e6:.1f}M params, fp32 weights)\n"
        f"data: {args.data.resolve()}: {len(train)} training questions, gold answers; sequences {min(lengths)}-"
        f"{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f}, chat template included; target + eos "
        f"mean {sum(targets) / len(targets):.2f}), {truncated} truncated at {args.max_length}\n"
        f"{args.steps} steps of batch {args.batch_size}, lr {args.lr:g}, same batches in the same order on both sides"
    )
    report(args, [kd, hf], n_params, real, padded, device)
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
