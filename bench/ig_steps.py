"""How many integration steps does integrated gradients need? Completeness error and rationale stability by steps.

Integrated gradients' scores sum to f(input) - f(baseline) when the path integral is exact (completeness); with
S Gauss-Legendre nodes they sum to an approximation of it. For each question (the teacher's prediction in its
default prediction mode, as a rationale build attributes it), this measures, per number of steps:

  completeness error   |sum of scores - (f(x) - f(baseline))| / |f(x) - f(baseline)|, f = the attributed log-prob
  cosine               of the word scores with those at the most steps measured (the reference)
  top-3 agreement      share of the top-3 question words (the rationale rule `span question, k 3`) that the
                       reference's top-3 also holds

and the seconds per example. kdviz's default (kdviz.attribution.catalog.DEFAULT_STEPS) is the fewest steps whose
median completeness error in letter mode is under 10% (bench/README.md).

    python bench/ig_steps.py --model embedded-student --predict letter --n 10 --steps 8 16 32 64 128
    python bench/ig_steps.py --model embedded-teacher --predict letter --n 3 --steps 16 32 64
    python bench/ig_steps.py --model tiny --n 3          # smoke run, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's kdviz, whatever `pip install -e` points at
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cqa" / "train.jsonl"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-student", help="kdviz model spec (default embedded-student)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CQA-style JSONL (default ../shared/data/cqa)")
    p.add_argument("--n", type=int, default=20, help="first N questions (default 20)")
    p.add_argument("--steps", nargs="+", type=int, default=[2, 4, 8, 12, 20, 32], help="steps to measure")
    p.add_argument("--predict", default=None, help="prediction mode (default: the model's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.n < 1 or min(args.steps) < 1:
        p.error("--n and every step count must be at least 1")
    args.steps = sorted(set(args.steps))
    return args


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm if norm else 1.0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kdviz.attribution.methods import attribute_requests
    from kdviz.attribution.targets import build_requests
    from kdviz.data import load_examples
    from kdviz.lm.models import load_model
    from kdviz.rationales.select import SelectionRule, select_rationale

    examples = load_examples(args.data, limit=args.n)
    loaded = load_model(args.model)
    requests = build_requests(loaded, examples, predict=args.predict)
    rule = SelectionRule(top_k=3, span="question")
    print(f"{loaded.name}: {len(requests)} questions, prediction mode {requests[0].prediction.mode}", flush=True)
    results: dict[int, list] = {}
    seconds: dict[int, float] = {}
    for steps in args.steps:
        t0 = time.perf_counter()
        results[steps] = attribute_requests(loaded, requests, "integrated_gradients", steps=steps, per_token=False,
                                            batch_size=1)  # fmt: skip
        seconds[steps] = (time.perf_counter() - t0) / len(requests)
        print(f"  {steps} steps: {seconds[steps]:.2f} s per example", flush=True)
    reference = results[args.steps[-1]]
    print(f"\nreference: {args.steps[-1]} steps; f(x) - f(baseline) median "
          f"{statistics.median(attr.integral for attr in reference):+.3f}\n")  # fmt: skip
    print(
        "| steps | completeness error, median [max] | cosine with reference, median [min] | top-3 agreement | s/example |"
    )
    print("|---:|---|---|---:|---:|")
    for steps in args.steps:
        errors, cosines, agree = [], [], []
        for attr, ref in zip(results[steps], reference, strict=True):
            errors.append(attr.completeness_error)  # against the record's own f(input) - f(baseline)
            cosines.append(cosine(attr.word_scores, ref.word_scores))
            mine, theirs = set(select_rationale(attr, rule)), set(select_rationale(ref, rule))
            agree.append(len(mine & theirs) / len(theirs) if theirs else 1.0)
        print(
            f"| {steps} | {statistics.median(errors):.3f} [{max(errors):.3f}] | {statistics.median(cosines):.4f} "
            f"[{min(cosines):.4f}] | {statistics.mean(agree):.3f} | {seconds[steps]:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
