"""Reproduce the experiment of Ballout et al. (2024) on CommonsenseQA with kdviz's own commands: the driver of
the first run in docs/results.md, kept so its commands stay valid. `bench/reproduce.py` is the driver of all four
datasets (CommonsenseQA, ANLI, e-SNLI, SVAMP), with named sizes, the 540B teacher's chain of thought as a method,
and `kdviz.data.hold_out` splits; this script shares its stage runner (`Stages`).

Stages, each a `kdviz` command run in a subprocess (the exact commands are written to <out>/commands.sh, so
the experiment can be repeated by hand), each skipped when its output is already complete (a stopped run resumes
where it was; attributions are cached):

1. split    a seeded split of ../shared/data/cqa/train.jsonl into <out>/data/train.jsonl and test.jsonl;
2. teacher  `kdviz rationales`: the teacher answers every training question (choice scoring) and its top-k
            attributed words become the rationale (<out>/rationales.jsonl);
3. train    `kdviz train` for each method and seed, the same steps, batch and learning rate (<out>/runs/);
            each run holds out `--eval-size` of its training questions as its validation split;
4. compare  `kdviz compare`: the teacher and every student on the test split (<out>/compare/report.json,
            examples.csv, report.html), attributions with the same method and k as stage 2, so `rationale_input`
            students get the teacher's rationale for each test question as they did in training;
            The untrained student is compared too (scored zero-shot like the teacher), as the reference.
5. results  the table of test accuracy by method (mean ± sd over seeds), paired tests against `standard`, the
            teacher's accuracy and overlap statistics, wall time of each stage (<out>/results.json, results.md,
            accuracy_by_method.html and .png).

    python bench/reproduce_cqa.py                               # the CPU sizes of docs/results.md
    python bench/reproduce_cqa.py --n-train 2000 --n-test 500   # the paper-sized run, on a GPU
    python bench/reproduce_cqa.py --teacher tiny --student tiny-student --n-train 12 --n-test 6 --steps 2 \\
        --seeds 0 --eval-size 2 --out /tmp/cqa-smoke             # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's kdviz, for the subprocesses too (PYTHONPATH below)
sys.path.insert(0, str(REPO / "bench"))  # bench/figures.py

from reproduce import (  # noqa: E402  (bench/reproduce.py: the same stage runner and stages)
    Stages,
    cache_flags,
    compare_once,
    hardware,
    train_once,
    write_figure,
)

from kdviz.files import write_atomic  # noqa: E402

if TYPE_CHECKING:
    from kdviz.compare.records import Comparison

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cqa" / "train.jsonl"
METHODS = ("standard", "teacher_label", "rationale_input", "multitask")
UNTRAINED = "untrained (zero-shot)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CommonsenseQA JSONL (default ../shared/data/cqa)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cqa", help="working folder")
    p.add_argument("--teacher", default="embedded-teacher", help="teacher spec (default embedded-teacher)")
    p.add_argument("--student", default="embedded-student", help="student spec (default embedded-student)")
    p.add_argument("--n-train", type=int, default=200, help="training questions (default 200)")
    p.add_argument("--n-test", type=int, default=100, help="test questions (default 100)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (default 0)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="distillation methods")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run (default 40)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--alpha", type=float, default=0.5, help="multitask answer-loss weight (default 0.5)")
    p.add_argument("--eval-size", type=int, default=30, help="validation questions held out per run (default 30)")
    p.add_argument("--top-k", type=int, default=5, help="words kept as the teacher's rationale (default 5)")
    p.add_argument("--method", default="input_x_gradient", help="attribution method (default input_x_gradient)")
    p.add_argument("--attr-batch-size", type=int, default=4, help="examples per attribution batch (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--cache-dir", help="attribution cache (default kdviz's)")
    p.add_argument("--no-untrained", dest="untrained", action="store_false",
                   help="leave out the untrained student (scored zero-shot, like the teacher) from the comparison")  # fmt: skip
    args = p.parse_args(argv)
    if min(args.n_train, args.n_test, args.steps, args.batch_size, args.top_k) < 1:
        p.error("sizes, steps, batch size and k must be at least 1")
    if "standard" not in args.methods:
        p.error("the paired tests are against standard: keep it in --methods")
    return args


def split(args: argparse.Namespace) -> tuple[Path, Path]:
    """Writes the seeded train/test split once; refuses to reuse a folder made with other split settings."""
    folder = args.out / "data"
    settings = {"data": str(args.data.resolve()), "n_train": args.n_train, "n_test": args.n_test,
                "seed": args.split_seed}  # fmt: skip
    marker = folder / "split.json"
    if marker.exists():
        if json.loads(marker.read_text()) != settings:
            raise SystemExit(f"{folder} holds another split ({marker.read_text()}); choose another --out")
        return folder / "train.jsonl", folder / "test.jsonl"
    lines = [line for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.n_train + args.n_test > len(lines):
        raise SystemExit(f"{args.data} has {len(lines)} questions, fewer than {args.n_train} + {args.n_test}")
    random.Random(args.split_seed).shuffle(lines)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "train.jsonl", "\n".join(lines[: args.n_train]) + "\n")
    write_atomic(folder / "test.jsonl", "\n".join(lines[args.n_train : args.n_train + args.n_test]) + "\n")
    write_atomic(marker, json.dumps(settings))
    return folder / "train.jsonl", folder / "test.jsonl"


def teacher_stage(args: argparse.Namespace, stages: Stages, train: Path) -> Path:
    out = args.out / "rationales.jsonl"
    argv = ["rationales", "--teacher", args.teacher, "--device", args.device, "--data", str(train), "--method",
            args.method, "--top-k", str(args.top_k), "--batch-size", str(args.attr_batch_size), *cache_flags(args),
            "--out", str(out)]  # fmt: skip
    if out.exists() and sum(1 for line in out.open() if line.strip()) == args.n_train:
        stages.note("kdviz " + shlex.join(argv))
    else:
        stages.run("teacher", "rationales", argv)
    return out


def train_stage(args: argparse.Namespace, stages: Stages, rationales: Path) -> list[Path]:
    runs = []
    for seed in args.seeds:  # seed-major, so a stopped experiment has every method at the first seeds
        for method in args.methods:
            folder = args.out / "runs" / f"{method}-seed{seed}"
            argv = ["train", "--student", args.student, "--data", str(rationales), "--method", method,
                    "--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                    "--alpha", str(args.alpha), "--seed", str(seed), "--eval-every", "0", "--eval-size",
                    str(args.eval_size), "--device", args.device, "--out", str(folder)]  # fmt: skip
            runs.append(train_once(stages, folder, argv))
    return runs


def compare_stage(args: argparse.Namespace, stages: Stages, test: Path, students: list[str]) -> Comparison:
    out = args.out / "compare"
    argv = ["compare", "--teacher", args.teacher, *[a for s in students for a in ("--student", s)], "--data",
            str(test), "--method", args.method, "--top-k", str(args.top_k), "--batch-size",
            str(args.attr_batch_size), *cache_flags(args), "--out", str(out)]  # fmt: skip
    return compare_once(stages, out, argv, students)


def main(argv: Sequence[str] | None = None) -> int:
    from kdviz.compare.results import method_table, results_markdown

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(args.out)
    train, test = split(args)
    try:
        rationales = teacher_stage(args, stages, train)
        runs = train_stage(args, stages, rationales)
        method_of = {str(r): r.name.rsplit("-seed", 1)[0] for r in runs}
        if args.untrained:  # the reference every method must beat: the student before any fine-tuning
            method_of[args.student] = UNTRAINED
        comparison = compare_stage(args, stages, test, list(method_of))
    finally:
        stages.write_commands()
    table = method_table(comparison, method_of, baseline="standard")
    setup = {
        "data": str(args.data), "n_train": args.n_train, "n_test": args.n_test, "split_seed": args.split_seed,
        "teacher": args.teacher, "student": args.student, "steps": args.steps, "batch_size": args.batch_size,
        "lr": args.lr, "alpha": args.alpha, "eval_size": args.eval_size, "top_k": args.top_k,
        "attribution": args.method, "seeds": args.seeds, "hardware": hardware(),
    }  # fmt: skip
    results = {"setup": setup, "timings_s": stages.timings, **table.to_dict()}
    write_atomic(args.out / "results.json", json.dumps(results, indent=1))
    markdown = results_markdown(table)
    write_atomic(args.out / "results.md", markdown)
    figure = write_figure(table, args.out / "accuracy_by_method")
    print("\n" + markdown)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}, {', '.join(map(str, figure))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
