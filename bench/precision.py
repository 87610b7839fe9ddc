"""bf16 against fp32, and one torch thread against two, for the embedded teacher on the CPU (issue #16, item 4).

Two copies of the model in one process, fp32 and bf16 weights (`--dtype bf16` loads the second), measured question by
question, interleaved, so that other load on the machine hits both alike:

  scoring   letter-mode choice scores of the first N questions: seconds, accuracy, how many predictions flip
            against fp32, and the largest and mean change of a letter's log-probability
  click     a saliency click (`kdviz.attribute`, one forward and one backward) on the first M questions: seconds,
            and how many of fp32's top-3 question words (the rationale rule `span question, k 3`) bf16 keeps

then the fp32 click again with 1 and with 2 torch threads (OMP_WAIT_POLICY=PASSIVE, as kdviz sets it).

    python bench/precision.py                      # embedded teacher, 100 questions scored, 10 clicked
    python bench/precision.py --model tiny --n 8 --clicks 2     # smoke run, seconds
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported, as kdviz's CLI does
sys.path.insert(0, str(Path(__file__).resolve().parent))
import attribution as anchors  # noqa: E402  (this checkout's kdviz on sys.path; timed(), the shared CQA path)
import torch  # noqa: E402

from kdviz import attribute, load_examples, load_model  # noqa: E402
from kdviz.attribution.targets import score_examples  # noqa: E402
from kdviz.rationales.select import SelectionRule, select_rationale  # noqa: E402

saliency_click = functools.partial(attribute, method="saliency")  # what a Teacher-panel click runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-teacher", help="kdviz model spec (default embedded-teacher)")
    p.add_argument(
        "--data", type=Path, default=anchors.DEFAULT_DATA, help="CQA-style JSONL (default the shared CQA file)"
    )
    p.add_argument("--n", type=int, default=100, help="questions scored (default 100)")
    p.add_argument("--clicks", type=int, default=10, help="questions clicked with saliency (default 10)")
    args = p.parse_args(argv)
    if min(args.n, args.clicks) < 1:
        p.error("--n and --clicks must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fp32 = load_model(args.model)
    # What --dtype bf16 loads, without loading the weights a second time
    bf16 = dataclasses.replace(fp32, model=copy.deepcopy(fp32.model).to(torch.bfloat16))
    examples = load_examples(args.data, limit=max(args.n, args.clicks))
    print(f"{fp32.name}: {args.n} questions scored, {args.clicks} clicked; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", flush=True)  # fmt: skip
    models = {"fp32": fp32, "bf16": bf16}
    for loaded in models.values():  # warm-up, untimed
        attribute(loaded, examples[0], method="saliency")
    seconds = {k: 0.0 for k in models}
    scores = {k: [] for k in models}
    for ex in examples[: args.n]:
        for name, loaded in models.items():
            s, (cs,) = anchors.timed(score_examples, loaded, [ex])
            seconds[name] += s
            scores[name].append(cs)
    rule = SelectionRule(top_k=3, span="question")
    clicks = {k: [] for k in models}
    kept = []
    for ex in examples[: args.clicks]:
        attrs = {}
        for name, loaded in models.items():
            s, attrs[name] = anchors.timed(saliency_click, loaded, ex)
            clicks[name].append(s)
        ref, low = set(select_rationale(attrs["fp32"], rule)), set(select_rationale(attrs["bf16"], rule))
        kept.append(len(ref & low) / len(ref) if ref else 1.0)
    threads = {}
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        threads[n_threads] = [anchors.timed(saliency_click, fp32, ex)[0]
                              for ex in examples[: args.clicks]]  # fmt: skip

    gold = [ex.answer for ex in examples[: args.n]]
    print("\n| weights | scoring s/question | accuracy | flips vs fp32 | max / mean abs change of a letter log-prob "
          "| saliency click s | fp32's top-3 question words kept |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|")
    for name in models:
        acc = statistics.fmean(cs.predicted == g for cs, g in zip(scores[name], gold, strict=True))
        flips = sum(a.predicted != b.predicted for a, b in zip(scores[name], scores["fp32"], strict=True))
        deltas = [abs(x - y) for a, b in zip(scores[name], scores["fp32"], strict=True)
                  for x, y in zip(a.scores, b.scores, strict=True)]  # fmt: skip
        print(f"| {name} | {seconds[name] / args.n:.2f} | {acc:.3f} | {flips}/{args.n} | {max(deltas):.3f} / "
              f"{statistics.fmean(deltas):.3f} | {statistics.fmean(clicks[name]):.2f} | "
              f"{statistics.fmean(kept) if name == 'bf16' else 1.0:.2f} |")  # fmt: skip
    print("\n| torch threads (fp32, PASSIVE) | saliency click s |")
    print("|---:|---:|")
    for n_threads, times in threads.items():
        print(f"| {n_threads} | {statistics.fmean(times):.2f} |")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
