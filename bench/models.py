"""Benchmark the embedded models in each prediction mode: multiple-choice accuracy with its exact 95% interval, the
histogram of predicted answer positions, latency, load time and peak memory.

Each model answers the first N questions of CommonsenseQA-style data in each prediction mode of
`kdviz.attribution.targets.score_examples` (issue #12; the same path the Teacher and Rationales panels use):
"letter" (the choices listed under letters, the next-token distribution over the letters), "cloze" (the
length-normalised log-likelihood of each choice's text after the question alone) and "choice-text" (each choice's
text after the listed choices). Every model runs in its own subprocess, so its peak RSS is its own.

    python bench/models.py                            # the three embedded models, 200 questions, three modes
    python bench/models.py --models tiny --n 10       # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's kdviz, whatever `pip install -e` points at
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cqa" / "train.jsonl"
DEFAULT_MODELS = ("embedded-teacher", "embedded-teacher-fast", "embedded-student")
MODES = ("letter", "cloze", "choice-text")  # kdviz.records.PREDICT_MODES, without importing kdviz before the worker
RESULT_TAG = "RESULT "


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="kdviz model specs")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CQA-style JSONL (default ../shared/data/cqa)")
    p.add_argument("--n", type=int, default=200, help="first N questions (default 200)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="prediction modes (default all)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts (letter) or (question, choice) pairs per pass")
    p.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)  # internal: run one model, print JSON
    args = p.parse_args(argv)
    if args.n < 1 or args.batch_size < 1:
        p.error("--n and --batch-size must be at least 1")
    return args


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def interval(correct: int, n: int) -> tuple[float, float]:
    """Returns the exact (Clopper-Pearson) 95% confidence interval of an accuracy of `correct` out of `n`."""
    from scipy.stats import binomtest

    ci = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="exact")
    return ci.low, ci.high


def evaluate(spec: str, data: Path, n: int, batch_size: int, modes: Sequence[str]) -> dict:
    """Loads one model, scores the choices of the first `n` questions in each mode and returns the measurements."""
    import torch

    from kdviz import load_examples, load_model
    from kdviz.attribution.targets import score_examples
    from kdviz.lm.models import is_cached
    from kdviz.lm.prompts import default_predict_mode

    cached = is_cached(spec)
    start = time.perf_counter()
    loaded = load_model(spec)
    load_s = time.perf_counter() - start
    examples = load_examples(data, limit=n)
    per_mode = {}
    for mode in modes:
        start = time.perf_counter()
        scores = score_examples(loaded, examples, batch_size=batch_size, predict=mode)
        score_s = time.perf_counter() - start
        correct = sum(s.predicted == ex.answer for s, ex in zip(scores, examples, strict=True))
        positions = Counter(s.choices.index(s.predicted) for s in scores)
        width = max(len(s.choices) for s in scores)
        per_mode[mode] = {
            "correct": correct,
            "ci": interval(correct, len(examples)),
            "s_per_question": score_s / len(examples),
            "positions": [positions.get(i, 0) for i in range(width)],
        }
    return {
        "model": spec,
        "params_m": sum(t.numel() for t in loaded.model.parameters()) / 1e6,
        "device": loaded.device,
        "threads": torch.get_num_threads(),
        "n": len(examples),
        "default_mode": default_predict_mode(loaded),
        "modes": per_mode,
        "load_s": load_s,
        "was_cached": cached,
        "peak_rss_gb": peak_rss_gb(),
    }


def run_worker(spec: str, args: argparse.Namespace) -> dict:
    """Runs `evaluate` for one model in a fresh Python process and returns its result."""
    command = [sys.executable, __file__, "--worker", spec, "--data", str(args.data), "--n", str(args.n)]
    command += ["--batch-size", str(args.batch_size), "--modes", *args.modes]
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{spec}: worker failed (exit {proc.returncode})\n{tail}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def histogram(counts: Sequence[int]) -> str:
    """Returns the predicted positions as "A 12 B 40 ...", each letter with how often it was the prediction."""
    return " ".join(f"{'ABCDEFGHIJ'[i]} {c}" for i, c in enumerate(counts))


def print_table(results: list[dict]) -> None:
    head = (
        f"{'model':<22} {'mode':<12} {'accuracy':>9} {'95% CI':>15} {'correct':>8} {'s/question':>10}  "
        "predicted positions"
    )
    print(head)
    for r in results:
        for mode, m in r["modes"].items():
            shown = mode + (" *" if mode == r["default_mode"] else "")
            low, high = m["ci"]
            print(
                f"{r['model']:<22} {shown:<12} {m['correct'] / r['n']:>9.1%} {f'{low:.1%}-{high:.1%}':>15} "
                f"{m['correct']:>4}/{r['n']:<3} {m['s_per_question']:>10.2f}  {histogram(m['positions'])}"
            )
    print()
    print(f"{'model':<22} {'params':>7} {'load s':>7} {'cached':>6} {'peak RSS':>9}")
    for r in results:
        print(
            f"{r['model']:<22} {r['params_m']:>6.0f}M {r['load_s']:>7.1f} {'yes' if r['was_cached'] else 'no':>6} "
            f"{r['peak_rss_gb']:>6.2f} GB"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = evaluate(args.worker, args.data, args.n, args.batch_size, args.modes)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0
    import platform

    import torch
    import transformers

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no"
    print(
        f"machine: {os.cpu_count()} cores, cuda: {cuda} | python {platform.python_version()} | "
        f"torch {torch.__version__} | transformers {transformers.__version__}"
    )
    print(f"data: {args.data.resolve()}, first {args.n} questions; chance = 1 / number of choices (20% on CQA)")
    print(f"load average (1, 5, 15 min) at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    for spec in args.models:
        start = time.perf_counter()
        results.append(run_worker(spec, args))
        print(f"  {spec}: done in {time.perf_counter() - start:.0f} s", flush=True)
    print()
    print_table(results)
    print(
        "\nmodes (kdviz.attribution.targets.score_examples): letter = next-token letter after the lettered choices; "
        "cloze = mean log-probability per token of each choice's text after the question alone; choice-text = the "
        "same after the listed choices. * = the model's default mode. 95% CI: exact binomial (Clopper-Pearson)."
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
