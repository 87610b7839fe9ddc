"""Reproduce Ballout et al. (2024) on CommonsenseQA, ANLI (round 1), e-SNLI and SVAMP with kdviz's own commands.

    python bench/reproduce.py --dataset cqa --size cpu           # one dataset in about two hours on 2 CPU cores
    python bench/reproduce.py --dataset all --size paper         # the full-scale recipe, on a GPU
    python bench/reproduce.py --dataset anli1 --size smoke --out /tmp/smoke    # tiny models, seconds

Each dataset is read from ../shared/data/<dataset>/train.jsonl and gets its own folder <out>/<dataset>/. Stages,
each a `kdviz` command run in a subprocess (written, in order, to <out>/<dataset>/commands.sh so the experiment can
be repeated by hand; wall times to timings.json), each skipped when its output is already complete, so a stopped
run resumes where it was:

1. split    a seeded split (`kdviz.data.hold_out`) into data/train.jsonl and data/test.jsonl;
2. teacher  `kdviz rationales`: the embedded teacher answers every training example and its top-k attributed words
            (the rationale study's defaults: RATIONALE_METHOD, DEFAULT_TOP_K, DEFAULT_SPAN) become the rationale;
3. train    `kdviz train` for each method and seed, the same steps, batch and learning rate (runs/<method>-seed<s>):
              standard              gold answers;
              teacher_label         the embedded teacher's answers;
              rationale_input       gold answers, the teacher's attribution rationale in the prompt;
              multitask             gold answers + the teacher's attribution rationale as a second target;
              multitask-cot         gold answers + the 540B teacher's chain of thought shipped in the data
                                    (Distilling step-by-step, the anchor the paper claims to beat);
              teacher_label-540b    the 540B teacher's answers shipped in the data;
            the two 540B runs take them from the examples (`--rationale-source data` / `--label-source data`), so
            every run trains on the same examples of rationales.jsonl;
4. compare  `kdviz compare`: the teacher, every run and the untrained student on the test split;
5. results  results.json / results.md (`kdviz.compare.results`: accuracy mean ± sd over seeds, paired bootstrap
            and permutation tests against `standard` and against `multitask-cot`, the teacher's accuracy and the
            statistics of its training rationales: overlap, plausibility, faithfulness), accuracy_by_method.html
            (.png with chromium); then <out>/summary.md and accuracy_by_dataset.html/.png over every dataset with
            results (`--summary-only` writes just these).

What the teacher attributes, per task (`kdviz rationales --target-mode`):
- cqa (5 choices), anli1 and esnli (3 labels: entailment, neutral, contradiction): "choice", the teacher's
  predicted choice, so `teacher_label` learns the answer the rationale explains;
- svamp (free-form arithmetic, no choices: "choice" is refused): "generate", the teacher's own generated answer,
  so `teacher_label` learns it and the rationale explains it ("gold" would explain an answer the teacher may not
  give). Its answers are scored by numeric value. Its compare stage passes `--target-mode generate` too: every
  model generates its answer (graded by value) and its attribution explains that answer.

SIZES (per dataset; the test split is also capped at a fifth of the file):

| size  | teacher / student                   | train | test | steps x batch | seeds | methods x seeds runs |
|-------|-------------------------------------|-------|------|---------------|-------|----------------------|
| smoke | tiny / tiny-student                 | 12    | 6    | 2 x 4         | 0     | 6                    |
| cpu   | embedded-teacher / embedded-student | 150   | 80   | 30 x 8        | 0 1 2 | 18                   |
| paper | embedded-teacher / Qwen/Qwen2.5-0.5B| all   | 1000 | 1000 x 16     | 0 1 2 | 18                   |

The cpu size, measured (docs/results.md, 2026-11-30, 2 cores, two datasets' pipelines at once, one thread each):
CommonsenseQA took 142 min: the teacher 14 min; 18 runs 71 min (2.5-3.1 min per single-target run, 4.9-7.5 min per
multitask run); compare 57 min (the teacher and 19 students, each answering, attributing and measuring
faithfulness on 80 questions). Alone on the machine it should take less (2 threads run 1.2x faster than 1,
bench/precision.py). ANLI's premises are about three times as long as CommonsenseQA's questions, and SVAMP's
teacher generates, so those take longer. The paper size trains on every example outside the test split; on a GPU
the teacher loads in bf16 (`--dtype bf16`) and training runs in bf16 mixed precision; `--student` takes any hub
id, and `--lora` trains LoRA adapters instead of all its weights. Any size's numbers can be overridden
(--n-train, --steps, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's kdviz, for the subprocesses too (PYTHONPATH below)
sys.path.insert(0, str(REPO / "bench"))  # bench/figures.py

from kdviz.attribution.catalog import RATIONALE_METHOD  # noqa: E402
from kdviz.data import hold_out  # noqa: E402
from kdviz.distill.runs import read_status  # noqa: E402
from kdviz.files import write_atomic  # noqa: E402
from kdviz.rationales.select import DEFAULT_SPAN, DEFAULT_TOP_K  # noqa: E402

if TYPE_CHECKING:
    from kdviz.compare.records import Comparison

DATA_ROOT = REPO.parent / "shared" / "data"
DATASETS = {"cqa": "choice", "anli1": "choice", "esnli": "choice", "svamp": "generate"}  # -> teacher's target mode
# run label -> `kdviz train` flags; every run trains on the teacher stage's rationales.jsonl (the same examples)
METHODS: dict[str, tuple[str, ...]] = {
    "standard": ("--method", "standard"),
    "teacher_label": ("--method", "teacher_label"),
    "rationale_input": ("--method", "rationale_input"),
    "multitask": ("--method", "multitask"),
    "multitask-cot": ("--method", "multitask", "--rationale-source", "data"),
    "teacher_label-540b": ("--method", "teacher_label", "--label-source", "data"),
}
UNTRAINED = "untrained (zero-shot)"
ANCHOR = "multitask-cot"  # every method is also tested against Distilling step-by-step, the paper's bar to clear


@dataclass(frozen=True)
class Size:
    """One size of the experiment (see SIZES in the docstring); n_train None: every example outside the test."""

    teacher: str
    student: str
    n_train: int | None
    n_test: int
    steps: int
    batch_size: int
    eval_size: int
    seeds: tuple[int, ...]
    lr: float = 1e-4
    dtype: str | None = None  # the teacher's --dtype; None: kdviz's default (fp32 on a CPU)


SIZES = {
    "smoke": Size("tiny", "tiny-student", 12, 6, 2, 4, 2, (0,)),
    "cpu": Size("embedded-teacher", "embedded-student", 150, 80, 30, 8, 25, (0, 1, 2)),
    "paper": Size("embedded-teacher", "Qwen/Qwen2.5-0.5B", None, 1000, 1000, 16, 100, (0, 1, 2), 5e-5, "bf16"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[*DATASETS, "all"], help="the dataset, or all four")
    p.add_argument("--summary-only", action="store_true",
                   help="run nothing: only write <out>/summary.md and its chart from the datasets' results.json")  # fmt: skip
    p.add_argument("--size", default="cpu", choices=list(SIZES), help="smoke, cpu or paper (default cpu)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reproduce",
                   help="results root: each dataset goes to <out>/<dataset> (default bench/results/reproduce)")  # fmt: skip
    p.add_argument("--data-root", type=Path, default=DATA_ROOT, help="holds <dataset>/train.jsonl (../shared/data)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), help="runs to train (default all; keep standard)")
    p.add_argument("--seeds", nargs="+", type=int, help="training seeds (default: the size's)")
    p.add_argument("--teacher", help="teacher spec (default: the size's)")
    p.add_argument("--student", help="student spec, e.g. any hub id (default: the size's)")
    p.add_argument("--n-train", type=int, help="training examples (default: the size's)")
    p.add_argument("--n-test", type=int, help="test examples (default: the size's)")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default: the size's)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (default 0)")
    p.add_argument("--alpha", type=float, default=0.5, help="multitask answer-loss weight (default 0.5)")
    p.add_argument("--attr-batch-size", type=int, default=4, help="examples per attribution batch (default 4)")
    p.add_argument("--lora", action="store_true",
                   help="train LoRA adapters instead of all weights (a larger student; use its own --out)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--cache-dir", help="attribution cache (default kdviz's)")
    args = p.parse_args(argv)
    if not args.dataset and not args.summary_only:
        p.error("choose --dataset (or --summary-only)")
    size = SIZES[args.size]
    overrides = {"seeds": tuple(args.seeds) if args.seeds else None, "teacher": args.teacher, "student": args.student,
                 "n_train": args.n_train, "n_test": args.n_test, "steps": args.steps}  # fmt: skip
    args.sizes = replace(size, **{k: v for k, v in overrides.items() if v is not None})
    args.methods = args.methods or list(METHODS)
    if "standard" not in args.methods:
        p.error("the paired tests are against standard: keep it in --methods")
    if min(args.sizes.n_train or 1, args.sizes.n_test, args.sizes.steps) < 1:
        p.error("sizes and steps must be at least 1")
    return args


class Stages:
    """Runs kdviz commands, logs them to commands.sh and their wall time to timings.json (kept across resumes)."""

    def __init__(self, out: Path):
        self.out = out
        self.timings_path = out / "timings.json"
        self.timings = json.loads(self.timings_path.read_text()) if self.timings_path.exists() else {}
        self.commands: list[str] = []
        self.skipped = 0

    def run(self, stage: str, key: str, argv: list[str]) -> None:
        command = "kdviz " + shlex.join(argv)
        self.commands.append(command)
        print(f"\n[{stage}] {command}", flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        env.setdefault("HF_HUB_OFFLINE", "1")
        log = self.out / "logs" / f"{stage}-{key.split()[0]}.json"
        log.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        with log.open("w") as stdout:  # the command's JSON result; its progress goes to the terminal (stderr)
            code = subprocess.run([sys.executable, "-m", "kdviz", *argv], env=env, stdout=stdout).returncode
        if code:  # kdviz printed its own message above; finished stages are kept, so a rerun resumes here
            raise SystemExit(f"[{stage}] stopped with exit code {code}; run this script again to resume")
        self.timings.setdefault(stage, {})[key] = round(time.perf_counter() - started, 1)
        write_atomic(self.timings_path, json.dumps(self.timings, indent=1))

    def note(self, command: str) -> None:
        """Records a command that was skipped because its output is complete (commands.sh stays whole)."""
        self.commands.append(command)
        self.skipped += 1
        print(f"[done] {command}", flush=True)

    def write_commands(self) -> None:
        script = "#!/bin/sh\n# the kdviz commands of this experiment, in order\nset -e\n" + "\n".join(self.commands)
        write_atomic(self.out / "commands.sh", script + "\n")


def split(data: Path, out: Path, size: Size, seed: int) -> tuple[Path, Path]:
    """Writes the seeded train/test split once; refuses to reuse a folder made with other split settings."""
    folder = out / "data"
    lines = [line for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    n_test = min(size.n_test, len(lines) // 5)
    settings = {"data": str(data.resolve()), "n_train": size.n_train, "n_test": n_test, "seed": seed,
                "split": "kdviz.data.hold_out"}  # fmt: skip
    marker = folder / "split.json"
    if marker.exists():
        if json.loads(marker.read_text()) != settings:
            raise SystemExit(f"{folder} holds another split ({marker.read_text()}); choose another --out")
        return folder / "train.jsonl", folder / "test.jsonl"
    rest, test = hold_out(lines, n_test, seed)
    if size.n_train is not None and size.n_train > len(rest):
        raise SystemExit(f"{data} has {len(lines)} examples, fewer than {size.n_train} + {n_test}")
    train = rest if size.n_train is None else hold_out(rest, size.n_train, seed)[1]
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "train.jsonl", "\n".join(train) + "\n")
    write_atomic(folder / "test.jsonl", "\n".join(test) + "\n")
    write_atomic(marker, json.dumps(settings))
    return folder / "train.jsonl", folder / "test.jsonl"


def n_lines(path: Path) -> int:
    return sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.exists() else 0


def cache_flags(args: argparse.Namespace) -> list[str]:
    return ["--cache-dir", args.cache_dir] if args.cache_dir else []


def teacher_stage(args: argparse.Namespace, out: Path, stages: Stages, train: Path, target_mode: str) -> Path:
    rationales = out / "rationales.jsonl"
    dtype = ["--dtype", args.sizes.dtype] if args.sizes.dtype else []
    argv = ["rationales", "--teacher", args.sizes.teacher, "--device", args.device, *dtype, "--data", str(train),
            "--method", RATIONALE_METHOD, "--target-mode", target_mode, "--top-k", str(DEFAULT_TOP_K), "--span",
            DEFAULT_SPAN, "--batch-size", str(args.attr_batch_size), *cache_flags(args), "--out", str(rationales)]  # fmt: skip
    if n_lines(rationales) == n_lines(train):
        stages.note("kdviz " + shlex.join(argv))
    else:
        stages.run("teacher", "rationales", argv)
    return rationales


def train_stage(args: argparse.Namespace, out: Path, stages: Stages, rationales: Path) -> list[Path]:
    size, runs = args.sizes, []
    for seed in size.seeds:  # seed-major, so a stopped experiment has every method at the first seeds
        for label in args.methods:
            folder = out / "runs" / f"{label}-seed{seed}"
            argv = ["train", "--student", size.student, "--data", str(rationales), *METHODS[label],
                    "--max-steps", str(size.steps), "--batch-size", str(size.batch_size), "--lr",
                    str(size.lr), "--alpha", str(args.alpha), "--seed", str(seed), "--eval-every", "0",
                    "--eval-size", str(size.eval_size), *(["--lora"] if args.lora else []), "--device", args.device,
                    "--out", str(folder)]  # fmt: skip
            runs.append(train_once(stages, folder, argv))
    return runs


def train_once(stages: Stages, folder: Path, argv: list[str]) -> Path:
    """Runs `kdviz train` into `folder` unless a completed run is there (then only records its command); an
    interrupted run starts again (kdviz train refuses an existing folder)."""
    status = read_status(folder)
    if status is not None and status.status == "completed":
        stages.note("kdviz " + shlex.join(argv))
    else:
        if folder.exists():
            shutil.rmtree(folder)
        stages.run("train", folder.name, argv)
    return folder


def compare_stage(
    args: argparse.Namespace, out: Path, stages: Stages, test: Path, students: list[str], target_mode: str
) -> Comparison:
    folder = out / "compare"
    # Free-form data names its target mode; choice data keeps the commands it was run with (the default is choice).
    mode = ["--target-mode", target_mode] if target_mode != "choice" else []
    argv = ["compare", "--teacher", args.sizes.teacher, *[a for s in students for a in ("--student", s)], "--data",
            str(test), "--method", RATIONALE_METHOD, "--top-k", str(DEFAULT_TOP_K), *mode, "--batch-size",
            str(args.attr_batch_size), *cache_flags(args), "--out", str(folder)]  # fmt: skip
    return compare_once(stages, folder, argv, students)


def compare_once(stages: Stages, folder: Path, argv: list[str], students: list[str]) -> Comparison:
    """Runs `kdviz compare` into `folder` unless a finished report of the same students is there (then only records
    its command); returns the report."""
    from kdviz.compare.report import load_report

    previous = load_report(folder) if (folder / "report.json").exists() else None
    if previous is not None and not previous.cancelled and list(previous.settings.students) == students:
        stages.note("kdviz " + shlex.join(argv))
        return previous
    stages.run("compare", "teacher and students on the test split", argv)
    return load_report(folder)


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""  # fmt: skip
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU, torch {torch.__version__}"


def write_figure(fig, stem: Path) -> list[Path]:
    """Writes a kdviz chart as HTML, and as PNG (at the chart's own size) when playwright and chromium are
    installed."""
    from figures import write_plotly

    return write_plotly(fig, stem, width=int(fig.layout.width or 740), height=int(fig.layout.height or 400))


def reproduce(args: argparse.Namespace, dataset: str) -> Stages:
    """Runs (or resumes) every stage of one dataset into <out>/<dataset>; returns its stages (run and skipped)."""
    from kdviz.compare.results import method_table, results_markdown
    from kdviz.compare.viz import method_accuracy_figure
    from kdviz.data import load_examples, load_records
    from kdviz.rationale_records import RationaleRecord
    from kdviz.rationales.stats import rationale_stats

    out = args.out / dataset
    out.mkdir(parents=True, exist_ok=True)
    data = args.data_root / dataset / "train.jsonl"
    stages = Stages(out)
    train, test = split(data, out, args.sizes, args.split_seed)
    try:
        rationales = teacher_stage(args, out, stages, train, DATASETS[dataset])
        runs = train_stage(args, out, stages, rationales)
        method_of = {str(r): r.name.rsplit("-seed", 1)[0] for r in runs}
        method_of[args.sizes.student] = UNTRAINED  # the reference every method must beat: the student untrained
        comparison = compare_stage(args, out, stages, test, list(method_of), DATASETS[dataset])
    finally:
        stages.write_commands()
    anchor = ANCHOR if ANCHOR in args.methods else None
    # What the students learned from, measured against the data as kdviz reads it now (a build stores its
    # examples; a human rationale kdviz learned to read since, such as NLI's explanations, still counts).
    fresh = {ex.id: ex for ex in load_examples(train)}
    built = load_records(rationales, RationaleRecord)
    training = rationale_stats([replace(r, example=fresh.get(r.id, r.example)) for r in built])
    table = method_table(comparison, method_of, "standard", anchor, training)
    setup = {"dataset": dataset, "size": args.size, "data": str(data), **asdict(args.sizes), "split_seed": args.split_seed,
             "alpha": args.alpha, "lora": args.lora, "attribution": RATIONALE_METHOD, "top_k": DEFAULT_TOP_K, "span": DEFAULT_SPAN,
             "target_mode": DATASETS[dataset], "methods": args.methods, "hardware": hardware()}  # fmt: skip
    results = {"setup": setup, "timings_s": stages.timings, **table.to_dict()}
    write_atomic(out / "results.json", json.dumps(results, indent=1))
    markdown = results_markdown(table)
    write_atomic(out / "results.md", markdown)
    figure = write_figure(method_accuracy_figure(table), out / "accuracy_by_method")
    print(f"\n## {dataset}\n\n{markdown}")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {', '.join(map(str, figure))}")
    return stages


def summarize_datasets(root: Path) -> list[Path]:
    """Writes <root>/summary.md and the accuracy_by_dataset chart from every <root>/<dataset>/results.json there
    (in DATASETS order); returns the paths written, none when no dataset has results yet."""
    from kdviz.compare.results import datasets_markdown, read_results, setup_line
    from kdviz.compare.viz import datasets_accuracy_figure

    found = {d: read_results(root / d / "results.json") for d in DATASETS if (root / d / "results.json").exists()}
    if not found:
        return []
    tables = {d: table for d, (_, table) in found.items()}
    setups = [f"- {d}: {setup_line(setup)} ({setup.get('hardware')})" for d, (setup, _) in found.items()]
    summary = "# Reproduction summary\n\n" + "\n".join(setups) + "\n\n" + datasets_markdown(tables)
    write_atomic(root / "summary.md", summary)
    return [root / "summary.md", *write_figure(datasets_accuracy_figure(tables), root / "accuracy_by_dataset")]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for dataset in [] if args.summary_only else DATASETS if args.dataset == "all" else [args.dataset]:
        reproduce(args, dataset)
    written = summarize_datasets(args.out)
    print(f"wrote {', '.join(map(str, written))}" if written else f"no dataset under {args.out} has results yet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
