"""`kdviz rationales` (build rationale records from a teacher's attributions) and `kdviz export`."""

from __future__ import annotations

import contextlib
import json
import sys

from kdviz.attribution.catalog import DEFAULT_STEPS
from kdviz.errors import InputError

from . import checks
from .common import add_model_args, add_predict_arg, model_spec, progress_bar, stop_on_ctrl_c


def add_parsers(sub) -> None:
    from kdviz.attribution.catalog import RATIONALE_METHOD, list_attribution_methods
    from kdviz.rationales.select import DEFAULT_SPAN, DEFAULT_TOP_K

    p = sub.add_parser("rationales", help="build a rationale dataset from a teacher's attributions")
    add_model_args(p, "--teacher", "embedded-teacher")
    p.add_argument("--data", required=True, metavar="FILE", help="JSONL, CSV or Parquet file, or hf:NAME[:SPLIT]")
    p.add_argument("--columns", metavar="MAP", help="column mapping, e.g. question=prompt,answer=label")
    p.add_argument("--limit", type=int, help="the first N examples")
    p.add_argument(
        "--method", default=RATIONALE_METHOD, metavar="M", help=f"one of {', '.join(list_attribution_methods())}"
    )
    p.add_argument(
        "--target-mode", default="choice", choices=["choice", "generate", "gold"], help="what is attributed"
    )
    add_predict_arg(p)
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--top-k", type=int, help=f"keep the k best words (default {DEFAULT_TOP_K})")
    rule.add_argument("--mass", type=float, help="keep the best words until this share of the positive attribution")
    rule.add_argument("--z", type=float, help="keep words scoring above mean + z standard deviations")
    for what in ("stopwords", "punctuation", "letters", "template"):
        p.add_argument(f"--keep-{what}", action="store_true", help=f"let {what} words into rationales")
    p.add_argument(
        "--span", default=DEFAULT_SPAN, choices=["question", "all"], help="where rationale words come from (question: not "
        "the listed choices)",
    )  # fmt: skip
    p.add_argument(
        "--no-faithfulness", action="store_true", help="skip comprehensiveness and sufficiency (5 scored prompts a "
        "record on the teacher)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="integrated-gradients steps")
    p.add_argument("--batch-size", type=int, default=4, help="examples per attribution batch")
    p.add_argument("--cache-dir", help="where finished attributions are cached (default: kdviz's cache)")
    p.add_argument("--out", metavar="FILE.jsonl", help="the rationale records (optional with --workspace)")
    p.add_argument("--workspace", metavar="DIR", help="also save the records as a build the app opens (builds/NAME)")
    p.add_argument("--name", help="the build's name in --workspace (default: <data>-<method>-<time>)")
    p.set_defaults(run=run_rationales)

    p = sub.add_parser("export", help="export rationale records for training (JSONL, Parquet, HF datasets)")
    p.add_argument("--records", required=True, metavar="FILE.jsonl", help="records from `kdviz rationales` or the app")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for README.md, rationales.jsonl, rationales.parquet, hf_dataset",
    )
    p.add_argument(
        "--format", nargs="+", default=["jsonl", "parquet", "hf"], choices=["jsonl", "parquet", "hf"],
        help="formats to write (default: jsonl parquet hf)",
    )  # fmt: skip
    p.add_argument("--all", action="store_true", help="export every record with a status column (default: accepted)")
    p.set_defaults(run=run_export)


def run_rationales(args) -> int:
    from kdviz.data import load_examples, parse_columns
    from kdviz.rationales.build import build_rationales
    from kdviz.rationales.parallel import is_main_process
    from kdviz.rationales.select import DEFAULT_TOP_K, SelectionRule
    from kdviz.rationales.workspace_build import build_into_workspace
    from kdviz.records import save_jsonl

    if args.workspace is None and args.out is None:
        raise InputError("give --out FILE.jsonl, or --workspace DIR to save a build the app opens")
    if args.name is not None and args.workspace is None:
        raise InputError("--name names a build in a workspace: give --workspace too")
    checks.output_file("--out", args.out, inputs=[args.data, args.teacher])
    main = is_main_process()  # under `accelerate launch`/`torchrun`: only the first process reports and writes
    columns = parse_columns(args.columns)
    given = args.top_k is not None or args.mass is not None or args.z is not None
    rule = SelectionRule(
        top_k=args.top_k if given else DEFAULT_TOP_K,
        mass=args.mass,
        z=args.z,
        exclude_stopwords=not args.keep_stopwords,
        exclude_punctuation=not args.keep_punctuation,
        exclude_choice_letters=not args.keep_letters,
        exclude_template=not args.keep_template,
        span=args.span,
    )
    settings = dict(
        target_mode=args.target_mode, steps=args.steps, batch_size=args.batch_size,
        faithfulness=not args.no_faithfulness, predict=args.predict,
    )  # fmt: skip
    info = None
    with stop_on_ctrl_c("this batch") as should_stop:
        if args.workspace is not None:  # checks every setting before the model loads
            with _progress(args.limit, not args.no_faithfulness, main) as (on_progress, on_faithfulness):
                info, result = build_into_workspace(  # the first report sets the totals
                    args.workspace, args.name, model_spec(args, "teacher"), args.data, args.method, rule,
                    columns=columns, limit=args.limit, cache_dir=args.cache_dir, on_progress=on_progress,
                    should_stop=should_stop, out=args.out, on_faithfulness=on_faithfulness, **settings,
                )  # fmt: skip
        else:
            examples = load_examples(args.data, limit=args.limit, columns=columns)
            with _progress(len(examples), not args.no_faithfulness, main) as (on_progress, on_faithfulness):
                result = build_rationales(
                    model_spec(args, "teacher"), examples, args.method, rule, cache_dir=args.cache_dir,
                    on_progress=on_progress, should_stop=should_stop, on_faithfulness=on_faithfulness, **settings,
                )  # fmt: skip
    if not main:  # its share is in the cache, which the first process gathered; exit 0 so the launch goes on
        return 0
    if result.cancelled:
        if info is None:
            print("interrupted: finished batches are cached; run the same command again to resume", file=sys.stderr)
        else:
            print(f"interrupted: the {len(result.records)} finished records are saved as build {info.name} (marked "
                  "cancelled); finished batches are cached, so building again (another --name) resumes",
                  file=sys.stderr)  # fmt: skip
        return 130
    where = []
    if args.out is not None:
        save_jsonl(result.records, args.out)
        where.append(str(args.out))
    if info is not None:
        where.append(f"build {info.name} of {args.workspace}")
    print(
        f"{len(result.records)} records ({result.from_cache} from the cache) written to {' and '.join(where)}",
        file=sys.stderr,
    )
    print(json.dumps(result.stats.to_dict()))
    return 0


@contextlib.contextmanager
def _progress(total: int | None, faithfulness: bool, shown: bool = True):
    """Yields (on_progress, on_faithfulness) drawing a bar for the attribution and one for the faithfulness
    measurement (None without it, or both None when not `shown`)."""
    if not shown:
        yield None, None
        return
    with progress_bar(total, "attributing") as on_progress:
        if not faithfulness:
            yield on_progress, None
            return
        with progress_bar(total, "faithfulness") as on_faithfulness:
            yield on_progress, on_faithfulness


def run_export(args) -> int:
    from kdviz.data import load_records
    from kdviz.rationale_records import RationaleRecord
    from kdviz.rationales.export import EXPORT_FILES, export_records

    checks.output_folder("--out", args.out, inputs=[args.records], writes=EXPORT_FILES)
    records = load_records(args.records, RationaleRecord)  # one line per problem, naming the file and the line
    paths = export_records(records, args.out, args.format, accepted_only=not args.all, source=str(args.records))
    print(json.dumps({"written": [str(p) for p in paths]}))
    return 0
