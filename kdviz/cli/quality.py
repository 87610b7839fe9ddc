"""`kdviz quality`: the rationale-quality table of a saved build (issue #12).

The build's attributions are chosen from again with top-k for each k and span, and each setting is measured
(`kdviz.rationales.quality`): gold against distractor overlap, question overlap, plausibility F1, and, on the
build's teacher, comprehensiveness and sufficiency beside random words. The Rationales panel's "Quality by k and
span" runs the same and shows this command.
"""

from __future__ import annotations

import json
import sys

from kdviz.errors import InputError

from .common import add_model_args, model_spec, progress_bar, stop_on_ctrl_c


def add_parser(sub) -> None:
    p = sub.add_parser("quality", help="measure a build's rationales for each top-k and span (the quality table)")
    p.add_argument(
        "--workspace", metavar="DIR", help="the workspace of the build (default $KDVIZ_WORKSPACE or ./kdviz_workspace)"
    )
    p.add_argument("--name", required=True, help="the build to measure (its folder in builds/)")
    p.add_argument(
        "--ks", nargs="+", type=int, default=[3, 5, 10], metavar="K", help="rationale sizes (default 3 5 10)"
    )
    p.add_argument(
        "--spans", nargs="+", choices=["question", "all"], default=["question", "all"],
        help="where rationale words come from (default both: question, all)",
    )  # fmt: skip
    add_model_args(p, "--teacher", "the build's teacher")
    p.set_defaults(teacher=None)  # read from the build once it is open
    p.add_argument(
        "--no-faithfulness", action="store_true", help="skip comprehensiveness and sufficiency (no model is loaded)"
    )
    p.add_argument("--json", action="store_true", help="print the cells as a JSON list, not a Markdown table")
    p.set_defaults(run=run_quality)


def run_quality(args) -> int:
    from kdviz.rationales.curation import open_build
    from kdviz.rationales.quality import faithfulness_measure, quality_table, settings
    from kdviz.rationales.select import rule_of
    from kdviz.viz.quality import quality_markdown

    store = open_build(args.workspace, args.name)
    records = store.records()
    if not records:
        raise InputError(f"build {args.name} holds no records to measure")
    rules = settings(rule_of(records[0]), args.ks, args.spans)  # the build's exclusions; checked before any model
    measure, teacher = None, None
    with stop_on_ctrl_c("this batch") as should_stop:
        if not args.no_faithfulness:
            from kdviz.lm.models import load_model

            teacher = args.teacher or records[0].provenance.teacher or store.info.teacher
            if not teacher:
                raise InputError(f"build {args.name} does not name its teacher: give --teacher, or --no-faithfulness")
            args.teacher = teacher
            measure = faithfulness_measure(load_model(model_spec(args, "teacher")), should_stop=should_stop)
        print(
            f"build {args.name}: {len(records)} records, {len(rules)} settings"
            + (f", faithfulness on {teacher}" if teacher else ", without faithfulness"),
            file=sys.stderr,
        )
        with progress_bar(len(rules), "settings") as on_progress:
            cells = quality_table(records, rules, measure, on_progress=on_progress)
    if should_stop():
        print("interrupted: finished measurements are cached; run the same command again to resume", file=sys.stderr)
        return 130
    print(json.dumps([c.to_dict() for c in cells]) if args.json else quality_markdown(cells))
    return 0
