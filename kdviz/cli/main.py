"""The `kdviz` command line: each subcommand reads its inputs, makes one library call and prints or writes a file."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from kdviz.errors import KdvizError

logger = logging.getLogger("kdviz")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line on stderr, exit 2 (argparse would print the whole usage)
        raise SystemExit(_fail(f"{self.prog}: {message} (see --help)"))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _model_args(p: argparse.ArgumentParser, flag: str, default: str) -> None:
    p.add_argument(
        flag, default=default, metavar="SPEC", help=f"hub id, local path, .gguf, tiny, embedded-* (default {default})"
    )
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ...")
    p.add_argument("--no-chat", action="store_true", help="do not apply the model's chat template")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (unsafe)")


def _spec(args, name: str):
    from kdviz.config import ModelSpec

    return ModelSpec(
        getattr(args, name),
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        chat=False if args.no_chat else None,
    )


def build_parser() -> argparse.ArgumentParser:
    from kdviz.attribution.methods import list_attribution_methods
    from kdviz.lm.prompts import FORMATS

    from .compare import add_compare_parser
    from .train import add_train_parser

    parser = _Parser(prog="kdviz", description="Attribution-guided knowledge distillation workbench.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and model loading")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("attribute", help="attribute a model's answer to the input tokens")
    _model_args(p, "--model", "embedded-teacher")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the question or free text")
    src.add_argument("--data", metavar="FILE", help="a JSONL dataset: attribute its examples (batched) to --out")
    p.add_argument("--choices", nargs="+", metavar="CHOICE", help="answer choices (makes a multiple-choice prompt)")
    p.add_argument("--gold", help="the gold answer (for --target-mode gold and correctness)")
    p.add_argument("--target", help="attribute this target string instead of the model's answer")
    p.add_argument(
        "--target-mode", choices=["choice", "generate", "gold"], help="default: choice if there are choices"
    )
    p.add_argument(
        "--method", default="input_x_gradient", metavar="M", help=f"one of {', '.join(list_attribution_methods())}"
    )
    p.add_argument(
        "--format", dest="fmt", choices=FORMATS, help="prompt format (default: mcqa with --choices, else raw)"
    )
    p.add_argument("--steps", type=int, default=20, help="integrated-gradients steps (default 20)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--limit", type=int, help="with --data: the first N examples")
    p.add_argument("--batch-size", type=int, default=4, help="with --data: examples per batch")
    p.add_argument("--out", metavar="FILE", help="also write the record(s) as JSONL")
    p.add_argument("--top-k", type=int, default=10, help="words listed in the text output")
    p.add_argument("--json", action="store_true", help="print the record as JSON")

    p = sub.add_parser("app", help="launch the Gradio workbench")
    p.add_argument("--teacher", default="embedded-teacher", metavar="SPEC")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    p.add_argument(
        "--workspace", help="folder of rationale builds and exports (default $KDVIZ_WORKSPACE or ./kdviz_workspace)"
    )

    p = sub.add_parser("rationales", help="build a rationale dataset from a teacher's attributions")
    _model_args(p, "--teacher", "embedded-teacher")
    p.add_argument("--data", required=True, metavar="FILE", help="JSONL, CSV or Parquet file, or hf:NAME[:SPLIT]")
    p.add_argument("--columns", metavar="MAP", help="column mapping, e.g. question=prompt,answer=label")
    p.add_argument("--limit", type=int, help="the first N examples")
    p.add_argument(
        "--method", default="input_x_gradient", metavar="M", help=f"one of {', '.join(list_attribution_methods())}"
    )
    p.add_argument(
        "--target-mode", default="choice", choices=["choice", "generate", "gold"], help="what is attributed"
    )
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--top-k", type=int, help="keep the k best words (default 5)")
    rule.add_argument("--mass", type=float, help="keep the best words until this share of the positive attribution")
    rule.add_argument("--z", type=float, help="keep words scoring above mean + z standard deviations")
    for what in ("stopwords", "punctuation", "letters", "template"):
        p.add_argument(f"--keep-{what}", action="store_true", help=f"let {what} words into rationales")
    p.add_argument("--steps", type=int, default=20, help="integrated-gradients steps")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--cache-dir", help="where finished attributions are cached (default: kdviz's cache)")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="the rationale records")

    p = sub.add_parser("export", help="export rationale records for training (JSONL, Parquet, HF datasets)")
    p.add_argument("--records", required=True, metavar="FILE.jsonl", help="records from `kdviz rationales` or the app")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--format", nargs="+", default=["jsonl", "parquet", "hf"], choices=["jsonl", "parquet", "hf"])
    p.add_argument("--all", action="store_true", help="export every record with a status column (default: accepted)")

    sub.add_parser("models", help="list the offline model specs and whether they are ready")
    add_train_parser(sub)
    add_compare_parser(sub)
    return parser


def _print_attribution(attr, top_k: int) -> None:
    print(f"model: {attr.model_name}  method: {attr.method}  target ({attr.target_mode}): {attr.target!r}")
    if "predicted" in attr.meta:
        correct = attr.meta.get("correct")
        print(f"predicted: {attr.meta['predicted']!r}" + ("" if correct is None else f"  correct: {correct}"))
    print("tokens:")
    for token, score in zip(attr.input_tokens, attr.seq_scores, strict=False):
        print(f"  {token!r:<20} {score: .5g}")
    print(f"top {top_k} words:")
    for word, score in attr.top_words(top_k):
        print(f"  {word:<20} {score: .5g}")


def _attribute(args) -> int:
    from kdviz.attribution.targets import attribute, attribute_examples
    from kdviz.records import Example, save_jsonl

    spec = _spec(args, "model")
    if args.data:
        from tqdm import tqdm

        from kdviz.data import load_examples

        examples = load_examples(args.data, limit=args.limit)
        with tqdm(total=len(examples), desc="attributing", unit="ex", file=sys.stderr) as bar:
            attrs = attribute_examples(
                spec,
                examples,
                args.method,
                target_mode=args.target_mode,
                steps=args.steps,
                batch_size=args.batch_size,
                on_progress=lambda done, total: bar.update(done - bar.n),
            )
        if args.out:
            save_jsonl(attrs, args.out)
        for attr in attrs:
            print(
                json.dumps(attr.to_dict())
                if args.json
                else f"{attr.example_id}\t{attr.target!r}\t{attr.top_words(args.top_k)}"
            )
        return 0
    if args.choices:
        example = Example("prompt", args.fmt or "mcqa", args.prompt, tuple(args.choices), args.gold)
    else:
        example = Example("prompt", "qa", args.prompt, (), args.gold)
    fmt = args.fmt or ("mcqa" if args.choices else "raw")
    attr = attribute(
        spec,
        example,
        target=args.target,
        method=args.method,
        target_mode=args.target_mode,
        fmt=fmt,
        steps=args.steps,
        max_new_tokens=args.max_new_tokens,
    )
    if args.out:
        save_jsonl([attr], args.out)
    if args.json:
        print(json.dumps(attr.to_dict(), ensure_ascii=False))
    else:
        _print_attribution(attr, args.top_k)
    return 0


def _rationales(args) -> int:
    from tqdm import tqdm

    from kdviz.data import load_examples
    from kdviz.rationales.build import build_rationales
    from kdviz.rationales.select import SelectionRule
    from kdviz.records import save_jsonl

    columns = dict(pair.split("=", 1) for pair in args.columns.split(",")) if args.columns else None
    examples = load_examples(args.data, limit=args.limit, columns=columns)
    given = args.top_k is not None or args.mass is not None or args.z is not None
    rule = SelectionRule(
        top_k=args.top_k if given else 5,
        mass=args.mass,
        z=args.z,
        exclude_stopwords=not args.keep_stopwords,
        exclude_punctuation=not args.keep_punctuation,
        exclude_choice_letters=not args.keep_letters,
        exclude_template=not args.keep_template,
    )
    with tqdm(total=len(examples), desc="attributing", unit="ex", file=sys.stderr) as bar:
        try:
            result = build_rationales(
                _spec(args, "teacher"),
                examples,
                args.method,
                rule,
                target_mode=args.target_mode,
                steps=args.steps,
                batch_size=args.batch_size,
                cache_dir=args.cache_dir,
                on_progress=lambda done, total: bar.update(done - bar.n),
            )
        except KeyboardInterrupt:
            print("interrupted: finished batches are cached; run the same command again to resume", file=sys.stderr)
            return 130
    save_jsonl(result.records, args.out)
    print(f"{len(result.records)} records ({result.from_cache} from the cache) written to {args.out}", file=sys.stderr)
    print(json.dumps(result.stats))
    return 0


def _export(args) -> int:
    from kdviz.rationales.export import export_records
    from kdviz.records import RationaleRecord, load_jsonl

    try:
        records = load_jsonl(args.records, RationaleRecord)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise KdvizError(f"cannot read rationale records from {args.records}: {exc}") from exc
    paths = export_records(records, args.out, args.format, accepted_only=not args.all, info={"source": args.records})
    print(json.dumps({"written": [str(p) for p in paths]}))
    return 0


def _models(args) -> int:
    from kdviz.lm.embedded import EMBEDDED
    from kdviz.lm.models import is_cached, list_model_specs

    for name in list_model_specs():
        info = EMBEDDED.get(name)
        state = ("ready" if is_cached(name) else "converts on first use (one time)") if info else "built in-process"
        print(f"{name:<22} {info.name if info else 'tiny random model (tests)':<42} {state}")
    return 0


def _app(args) -> int:
    from kdviz.ui import launch

    launch(teacher=args.teacher, host=args.host, port=args.port, share=args.share, workspace=args.workspace)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 2 bad input or a KdvizError)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0; bad arguments were reported in one line
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        from .compare import run_compare
        from .train import run_train

        commands = dict(attribute=_attribute, rationales=_rationales, export=_export, app=_app, models=_models)
        return {**commands, "train": run_train, "compare": run_compare}[args.command](args)
    except KdvizError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except ValueError as exc:  # invalid configuration values (ranges), raised by records and configs
        return _fail(str(exc))
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if isinstance(exc, RuntimeError) and "out of memory" not in str(exc).lower():
            raise
        return _fail("out of memory: use a smaller model, fewer --steps or a smaller --batch-size")
