"""`kdviz compare`: a teacher and students on the same examples; writes report.json, examples.csv, report.html."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import checks
from .common import add_predict_arg, stop_on_ctrl_c


def add_parser(sub) -> None:
    from kdviz.attribution.catalog import RATIONALE_METHOD, list_attribution_methods
    from kdviz.rationales.select import DEFAULT_TOP_K
    from kdviz.records import SELECTABLE_TARGET_MODES

    p = sub.add_parser(
        "compare",
        help="compare a teacher and students: accuracy, agreement, paired tests, attribution overlap",
        description="Runs the teacher and each student on the examples (attributions cached, so a rerun resumes) and "
        "writes report.json, examples.csv and report.html into --out, or into the comparison --name of a workspace "
        "(the app lists it; a finished one is never overwritten, a cancelled one is resumed); prints the summary as "
        "JSON last.",
    )
    p.add_argument("--teacher", default="embedded-teacher", metavar="SPEC", help="teacher spec (default %(default)s)")
    p.add_argument("--student", action="append", required=True, metavar="SPEC",
                   help="a student spec or training run folder (runs/<name>); repeat for several")  # fmt: skip
    p.add_argument("--data", required=True, metavar="FILE", help="examples: a dataset file or a rationale export")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N examples")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="folder for the report files")
    where.add_argument("--name", metavar="NAME", help="write the report as comparisons/NAME of the workspace")
    p.add_argument("--workspace", metavar="DIR",
                   help="the app's workspace (default $KDVIZ_WORKSPACE, else ./kdviz_workspace): --name is written "
                        "there and specs such as runs/<name> are read from there")  # fmt: skip
    p.add_argument("--method", default=RATIONALE_METHOD, choices=list_attribution_methods(),
                   help="attribution method for every model (default %(default)s)")  # fmt: skip
    add_predict_arg(p)
    p.add_argument("--target-mode", choices=SELECTABLE_TARGET_MODES,
                   help="what each model's attribution explains: choice (its predicted choice), generate (its own "
                        "greedy answer, for free-form data such as SVAMP) or gold (the gold answer; free-form answers "
                        "are still generated and graded by value); default: choice for data with choices, else "
                        "generate")  # fmt: skip
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="words kept as each model's rationale")
    p.add_argument("--batch-size", type=int, default=4, help="examples per attribution batch (default 4)")
    p.add_argument("--cache-dir", metavar="DIR", help="attribution cache (default ~/.cache/kdviz/attributions)")
    p.add_argument("--sample", type=int, default=20, help="examples shown in report.html (default 20)")
    p.set_defaults(run=run)


def run(args) -> int:
    from kdviz.compare.report import REPORT_FILES, check_may_write, compare_command, write_report
    from kdviz.compare.run import compare, with_names
    from kdviz.distill.data import load_train_examples
    from kdviz.records import ProgressEvent
    from kdviz.workspace import Workspace

    inputs = [args.data, args.teacher, *args.student]
    checks.output_folder("--out", args.out, inputs=inputs, writes=REPORT_FILES)
    workspace = Workspace(args.workspace) if args.workspace or args.name else None
    out = check_may_write(workspace.comparison_dir(args.name)) if args.name else args.out
    specs = [args.teacher, *args.student]
    # In a workspace, runs/<name> is read from there and keeps its short name; without one, specs are as typed.
    resolved = [workspace.resolve_spec(s) for s in specs] if workspace else [(s, s) for s in specs]
    shown = dict(resolved)
    examples = [t.example for t in load_train_examples(args.data, args.limit)]

    def progress(event: ProgressEvent) -> None:
        print(f"{event.stage} {shown.get(event.model, event.model)}: {event.done}/{event.total}", file=sys.stderr)

    with stop_on_ctrl_c("this batch") as should_stop:
        comparison = compare(
            resolved[0][0], [spec for spec, _ in resolved[1:]], examples, method=args.method, top_k=args.top_k,
            batch_size=args.batch_size, cache_dir=args.cache_dir, on_progress=progress, should_stop=should_stop,
            predict=args.predict, target_mode=args.target_mode,
        )  # fmt: skip
    names = list(shown.values())
    # Recorded with the report (the app shows the command): a local data file by its absolute path, to run anywhere.
    data = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data
    command = compare_command(
        names[0], names[1:], data, limit=args.limit, method=args.method, top_k=args.top_k,
        batch_size=args.batch_size, workspace=workspace.root if workspace else None, name=args.name, out=args.out,
        predict=args.predict, target_mode=args.target_mode,
    )  # fmt: skip
    comparison = with_names(comparison, shown, data=data, limit=args.limit, command=command)
    paths = write_report(comparison, out, sample=args.sample)
    for path in paths.values():
        print(f"wrote {path}", file=sys.stderr)
    summary = {
        "summary": {name: row.to_dict() for name, row in comparison.summary.items()},
        "pairwise": [p.to_dict() for p in comparison.pairwise],
        "cancelled": comparison.cancelled,
    }
    print(json.dumps(summary))
    return 0
