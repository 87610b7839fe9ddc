"""Benchmark choice scoring: one row per (question, choice) pair against the shared prompt prefix (issue #16).

For the first N CommonsenseQA questions, in each text-scoring prediction mode ("cloze": the question alone;
"choice-text": the choices listed, then each choice's text), it times `kdviz.lm.inference.score_choices_batch`
twice on the same prompts:

  pairs   shared_prefix=False: each (prompt, choice) pair is one row, so the prompt runs once per choice.
  prefix  shared_prefix=True: each prompt runs once with a key/value cache, then its choices as one batch from it.

and prints, per path, seconds, forward calls, the token positions fed to the model (padding included), the largest
score difference between the paths and how many predictions agree. Letter mode is not timed: it already reads
every choice off one forward per prompt.

    python bench/scoring.py                          # embedded teacher, 50 questions
    python bench/scoring.py --model tiny --n 5       # smoke run, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's kdviz, whatever `pip install -e` points at
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP: idle threads yield the CPU

import torch  # noqa: E402

from kdviz import load_examples, load_model  # noqa: E402
from kdviz.lm.forward import counting_forward_tokens  # noqa: E402
from kdviz.lm.inference import score_choices_batch  # noqa: E402
from kdviz.lm.prompts import answer_choices, render_prediction  # noqa: E402

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cqa" / "train.jsonl"
MODES = ("cloze", "choice-text")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-teacher", help="kdviz model spec (default embedded-teacher)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CQA-style JSONL (default ../shared/data/cqa)")
    p.add_argument("--n", type=int, default=50, help="first N questions (default 50)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="prediction modes (default both)")
    p.add_argument("--batch-size", type=int, default=32, help="(question, choice) pairs per pass (default 32)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    args = p.parse_args(argv)
    if args.n < 1 or args.batch_size < 1 or args.threads < 0:
        p.error("--n and --batch-size must be at least 1, --threads at least 0")
    return args


def time_path(loaded, prompts, choices, batch_size: int, shared_prefix: bool) -> tuple[dict, list]:
    """Returns ({seconds, forwards, tokens}, the scores) of one scoring path."""
    start = time.perf_counter()
    with counting_forward_tokens(loaded) as counts:
        scores = score_choices_batch(loaded, prompts, choices, batch_size=batch_size, shared_prefix=shared_prefix)
    return {"seconds": time.perf_counter() - start, **counts}, scores


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    examples = load_examples(args.data, limit=args.n)
    print(f"model {args.model}  questions {len(examples)}  batch {args.batch_size}  threads {torch.get_num_threads()}")
    print(f"{'mode':<12} {'path':<7} {'seconds':>8} {'forwards':>8} {'tokens':>8} {'speed-up':>8}")
    for mode in args.modes:
        prompts = [render_prediction(ex, mode).text for ex in examples]
        choices = [answer_choices(ex) for ex in examples]
        time_path(loaded, prompts[:1], choices[:1], args.batch_size, True)  # warm-up: first-call allocations
        pairs, old = time_path(loaded, prompts, choices, args.batch_size, shared_prefix=False)
        prefix, new = time_path(loaded, prompts, choices, args.batch_size, shared_prefix=True)
        for name, row in (("pairs", pairs), ("prefix", prefix)):
            speedup = pairs["seconds"] / row["seconds"]
            print(
                f"{mode:<12} {name:<7} {row['seconds']:8.2f} {row['forwards']:8d} {row['tokens']:8d} {speedup:7.2f}x"
            )
        diff = max(abs(a - b) for o, s in zip(old, new, strict=True) for a, b in zip(o.scores, s.scores, strict=True))
        agree = sum(o.predicted == s.predicted for o, s in zip(old, new, strict=True))
        print(f"{mode:<12} max |score difference| {diff:.2e}, predictions agree {agree}/{len(old)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
