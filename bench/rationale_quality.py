"""Which attribution method, k and span make the best rationales? A method study users can repeat (issue #12).

For each attribution method, the teacher's prediction (in its default prediction mode, "letter" for the embedded
teacher) is attributed on the first N questions of CommonsenseQA-style data, once; the word scores are then
selected from with top-k for each k and each span ("question": question words only; "all": any prompt word) and
every setting is measured (`kdviz.rationales.quality`): gold overlap against distractor overlap, question overlap,
plausibility F1 against the human CoS-E rationales, comprehensiveness and sufficiency against as many random words
(ERASER), and the attribution's seconds per example.

Everything is cached under --out (attributions, faithfulness, the cells of finished methods, attribution timings),
so an interrupted run resumes where it stopped: rerun the same command. Seconds per example count only the examples
attributed by a run, not those read back from the cache.

    python bench/rationale_quality.py                           # 6 methods x k 3,5,10 x 2 spans, 100 questions
    python bench/rationale_quality.py --model tiny --n 6        # smoke run, seconds

Writes to --out (default bench/results/rationale_quality): cells.jsonl (one `QualityCell` per line), table.md,
quality.html and quality.png (when playwright and chromium are installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's kdviz, whatever `pip install -e` points at
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cqa" / "train.jsonl"
# Cheapest first, so an interrupted run has the cheap methods complete. attnlrp runs where lxt is installed.
METHODS = ("attention", "saliency", "input_x_gradient", "attnlrp", "feature_ablation", "integrated_gradients")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-teacher", help="teacher: kdviz model spec (default embedded-teacher)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CQA-style JSONL (default ../shared/data/cqa)")
    p.add_argument("--n", type=int, default=100, help="first N questions (default 100)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="attribution methods (default: all six)")
    p.add_argument("--ks", nargs="+", type=int, default=[3, 5, 10], help="rationale sizes (default 3 5 10)")
    p.add_argument("--spans", nargs="+", choices=("question", "all"), default=["question", "all"])
    p.add_argument("--predict", default=None, help="prediction mode (default: the teacher's default)")
    p.add_argument("--steps", type=int, default=20, help="integrated-gradients steps (default 20)")
    p.add_argument("--batch-size", type=int, default=4, help="examples per attribution batch (default 4)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rationale_quality")
    p.add_argument("--table-only", action="store_true",
                   help="write table.md and the plot from the stored cells of --methods, loading no model")  # fmt: skip
    p.add_argument("--recompute-cells", action="store_true",
                   help="measure every method's settings again (from the caches where they hold them)")  # fmt: skip
    args = p.parse_args(argv)
    if args.n < 1 or args.batch_size < 1 or min(args.ks) < 1:
        p.error("--n, --batch-size and every k must be at least 1")
    return args


class Timings:
    """Seconds spent attributing, and examples attributed, per method, over every (resumed) run: a JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, list[float]] = json.loads(path.read_text()) if path.exists() else {}

    def add(self, method: str, seconds: float, examples: int) -> None:
        from kdviz.files import write_atomic

        if examples:  # read again first: another run (another method) may have written since
            self.data = {**self.data, **(json.loads(self.path.read_text()) if self.path.exists() else {})}
            total = self.data.get(method, [0.0, 0])
            self.data[method] = [total[0] + seconds, total[1] + examples]
            write_atomic(self.path, json.dumps(self.data, indent=1))

    def per_example(self, method: str) -> float | None:
        seconds, examples = self.data.get(method, (0.0, 0))
        return seconds / examples if examples else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from kdviz.attribution.catalog import check_method
    from kdviz.data import load_examples
    from kdviz.lm.models import load_model
    from kdviz.rationales.build import build_rationales
    from kdviz.rationales.faithfulness import model_scorer
    from kdviz.rationales.quality import QualityCell, ScoreMemo, faithfulness_measure, quality_table, settings
    from kdviz.records import load_jsonl, save_jsonl

    for method in args.methods:
        check_method(method)
    if "attnlrp" in args.methods and importlib.util.find_spec("lxt") is None:
        print("attnlrp skipped: lxt is not installed (pip install --no-deps lxt==2.1)", flush=True)
        args.methods.remove("attnlrp")
    args.out.mkdir(parents=True, exist_ok=True)
    cells_path = args.out / "cells.jsonl"
    if args.table_only:
        stored = (
            {(c.method, c.k, c.span): c for c in load_jsonl(cells_path, QualityCell)} if cells_path.exists() else {}
        )
        wanted = [(m, r.top_k, r.span) for m in args.methods for r in settings(ks=args.ks, spans=args.spans)]
        missing = [key for key in wanted if key not in stored]
        if missing:
            raise SystemExit(f"no stored cell for {', '.join(map(str, missing[:3]))}: run the study for those methods")
        return report(sorted(wanted, key=lambda k: (args.methods.index(k[0]), k[2] != "question", k[1])), stored, args)
    examples = load_examples(args.data, limit=args.n)
    rules = settings(ks=args.ks, spans=args.spans)
    t0 = time.perf_counter()
    teacher = load_model(args.model)
    print(f"teacher {teacher.name} loaded in {time.perf_counter() - t0:.1f} s; {len(examples)} questions", flush=True)

    timings = Timings(args.out / "timings.json")
    memo = ScoreMemo(model_scorer(teacher, batch_size=16))
    stored = load_jsonl(cells_path, QualityCell) if cells_path.exists() and not args.recompute_cells else []
    cells = {(c.method, c.k, c.span): c for c in stored}
    wanted = {(m, r.top_k, r.span) for m in args.methods for r in rules}
    for method in args.methods:
        if not args.recompute_cells and all((method, r.top_k, r.span) in cells for r in rules):
            print(f"{method}: done in an earlier run", flush=True)
            continue
        start, fresh = time.perf_counter(), [0]

        def progress(done: int, total: int, start=start, method=method, fresh=fresh) -> None:
            fresh[0] = fresh[0] or total - done  # the first call reports the cached ones as done
            print(f"  {method}: attributed {done}/{total}  ({time.perf_counter() - start:.0f} s)", flush=True)

        build = build_rationales(
            teacher, examples, method, rules[0], steps=args.steps, batch_size=args.batch_size,
            cache_dir=args.out / "cache", faithfulness=False, predict=args.predict, on_progress=progress,
        )  # fmt: skip
        timings.add(method, time.perf_counter() - start, len(examples) - build.from_cache)
        scored_before, t_measure = memo.scored, time.perf_counter()
        measure = faithfulness_measure(teacher, memo=memo, cache_dir=args.out / "cache" / "faithfulness")
        table = quality_table(
            build.records, rules, measure, method=method, seconds_per_example=timings.per_example(method),
            on_progress=lambda d, t, m=method: print(f"  {m}: measured setting {d}/{t}", flush=True),
        )  # fmt: skip
        print(
            f"{method}: {len(build.records)} records, accuracy {build.stats.accuracy:.3f}; faithfulness "
            f"{memo.scored - scored_before} prompts scored in {time.perf_counter() - t_measure:.0f} s",
            flush=True,
        )
        # Another run measuring other methods at the same time may have saved cells since: keep them.
        others = load_jsonl(cells_path, QualityCell) if cells_path.exists() else []
        cells = {**cells, **{(c.method, c.k, c.span): c for c in others if c.method != method}}
        cells.update({(c.method, c.k, c.span): c for c in table})
        save_jsonl(list(cells.values()), cells_path)
    return report(sorted(wanted, key=lambda k: (args.methods.index(k[0]), k[2] != "question", k[1])), cells, args)


def report(keys: Sequence[tuple], cells: dict, args: argparse.Namespace) -> int:
    """Writes table.md and the plot (quality.html, and .png where chromium is installed) of the cells at `keys`."""
    from figures import write_plotly

    from kdviz.files import write_atomic
    from kdviz.viz.quality import quality_figure, quality_markdown

    ordered = [cells[key] for key in keys]
    markdown = quality_markdown(ordered)
    write_atomic(args.out / "table.md", markdown + "\n")
    print(markdown)
    figure = quality_figure(ordered)
    for path in write_plotly(figure, args.out / "quality", width=1100, height=figure.layout.height):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
