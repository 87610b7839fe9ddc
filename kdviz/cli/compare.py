"""`kdviz compare`: a teacher and students on the same examples; writes report.json, examples.csv, report.html."""

from __future__ import annotations

import json
import sys

from .common import stop_on_ctrl_c


def add_parser(sub) -> None:
    from kdviz.attribution.catalog import list_attribution_methods

    p = sub.add_parser(
        "compare",
        help="compare a teacher and students: accuracy, agreement, paired tests, attribution overlap",
        description="Runs the teacher and each student on the examples (attributions cached, so a rerun resumes) and "
        "writes report.json, examples.csv and report.html into --out; prints the summary as JSON last.",
    )
    p.add_argument("--teacher", default="embedded-teacher", metavar="SPEC", help="teacher spec (default %(default)s)")
    p.add_argument("--student", action="append", required=True, metavar="SPEC",
                   help="a student spec or training run folder (runs/<name>); repeat for several")  # fmt: skip
    p.add_argument("--data", required=True, metavar="FILE", help="examples: a dataset file or a rationale export")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N examples")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    p.add_argument("--method", default="input_x_gradient", choices=list_attribution_methods(),
                   help="attribution method for every model (default %(default)s)")  # fmt: skip
    p.add_argument("--top-k", type=int, default=5, help="words kept as each model's rationale (default 5)")
    p.add_argument("--batch-size", type=int, default=4, help="examples per attribution batch (default 4)")
    p.add_argument("--cache-dir", metavar="DIR", help="attribution cache (default ~/.cache/kdviz/attributions)")
    p.add_argument("--sample", type=int, default=20, help="examples shown in report.html (default 20)")
    p.set_defaults(run=run)


def run(args) -> int:
    from kdviz.compare.report import write_report
    from kdviz.compare.run import compare
    from kdviz.distill.data import load_train_examples
    from kdviz.errors import InputError

    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    examples = [t.example for t in load_train_examples(args.data, args.limit)]

    def progress(stage: str, done: int, total: int) -> None:
        print(f"{stage}: {done}/{total}", file=sys.stderr)

    with stop_on_ctrl_c("this batch") as should_stop:
        comparison = compare(
            args.teacher, args.student, examples, method=args.method, top_k=args.top_k, batch_size=args.batch_size,
            cache_dir=args.cache_dir, on_progress=progress, should_stop=should_stop,
        )  # fmt: skip
    paths = write_report(comparison, args.out, sample=args.sample)
    for path in paths.values():
        print(f"wrote {path}", file=sys.stderr)
    summary = {"summary": comparison.summary, "pairwise": list(comparison.pairwise), "cancelled": comparison.cancelled}
    print(json.dumps(summary))
    return 0
