"""`kdviz attribute`: one prompt, or a dataset's examples, attributed by a model."""

from __future__ import annotations

import json

from kdviz.attribution.catalog import DEFAULT_STEPS

from . import checks
from .common import add_model_args, add_predict_arg, model_spec, progress_bar


def add_parser(sub) -> None:
    from kdviz.attribution.catalog import DEFAULT_METHOD, list_attribution_methods
    from kdviz.lm.prompts import FORMATS
    from kdviz.records import CONTRAST_MODES, SELECTABLE_TARGET_MODES

    p = sub.add_parser("attribute", help="attribute a model's answer to the input tokens")
    add_model_args(p, "--model", "embedded-teacher")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the question or free text")
    src.add_argument("--data", metavar="FILE", help="a JSONL dataset: attribute its examples (batched) to --out")
    p.add_argument("--choices", nargs="+", metavar="CHOICE", help="answer choices (makes a multiple-choice prompt)")
    p.add_argument("--gold", help="the gold answer (for --target-mode gold and correctness)")
    p.add_argument("--target", help="attribute this target string instead of the model's answer")
    p.add_argument("--target-mode", choices=SELECTABLE_TARGET_MODES, help="default: choice if there are choices")
    add_predict_arg(p)
    p.add_argument(
        "--contrast",
        choices=CONTRAST_MODES,
        help="attribute a difference of log-probabilities: runner-up (the prediction against the runner-up) or "
        "gold (the gold answer against the prediction)",
    )
    p.add_argument(
        "--method", default=DEFAULT_METHOD, metavar="M", help=f"one of {', '.join(list_attribution_methods())}"
    )
    p.add_argument(
        "--format", dest="fmt", choices=FORMATS, help="prompt format (default: mcqa with --choices, else raw)"
    )
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"integrated-gradients steps (default {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=24, help="tokens generated for a free answer (target mode generate)"
    )
    p.add_argument("--limit", type=int, help="with --data: the first N examples")
    p.add_argument("--batch-size", type=int, default=4, help="with --data: examples per batch")
    p.add_argument("--out", metavar="FILE", help="also write the record(s) as JSONL")
    p.add_argument("--top-k", type=int, default=10, help="words listed in the text output")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(run=run)


def _print_attribution(attr, top_k: int) -> None:
    from kdviz.viz.attribution import scored_target_text

    print(f"model: {attr.model_name}  method: {attr.method}  target ({attr.target_mode}): {attr.target!r}")
    pred = attr.prediction
    if pred is not None and pred.predicted is not None:
        print(f"predicted: {pred.predicted!r}" + ("" if pred.correct is None else f"  correct: {pred.correct}"))
    if pred is not None and pred.mode is not None:
        print(f"prediction mode: {pred.mode}")
    print(f"scored: {scored_target_text(attr)}")
    print("tokens:")
    for token, score in zip(attr.input_tokens, attr.seq_scores, strict=False):
        print(f"  {token!r:<20} {score: .5g}")
    print(f"top {top_k} words:")
    for word, score in attr.top_words(top_k):
        print(f"  {word:<20} {score: .5g}")


def run(args) -> int:
    from kdviz.attribution.targets import attribute, attribute_examples
    from kdviz.lm.prompts import prompt_example
    from kdviz.records import save_jsonl

    checks.output_file("--out", args.out, inputs=[args.data, args.model])
    spec = model_spec(args, "model")
    if args.data:
        from kdviz.data import load_examples

        examples = load_examples(args.data, limit=args.limit)
        with progress_bar(len(examples), "attributing") as on_progress:
            attrs = attribute_examples(
                spec,
                examples,
                args.method,
                target_mode=args.target_mode,
                steps=args.steps,
                batch_size=args.batch_size,
                on_progress=on_progress,
                predict=args.predict,
                contrast=args.contrast,
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
    example, fmt = prompt_example(args.prompt, args.choices or (), args.gold, args.fmt)
    attr = attribute(
        spec,
        example,
        target=args.target,
        method=args.method,
        target_mode=args.target_mode,
        fmt=fmt,
        steps=args.steps,
        max_new_tokens=args.max_new_tokens,
        predict=args.predict,
        contrast=args.contrast,
    )
    if args.out:
        save_jsonl([attr], args.out)
    if args.json:
        print(json.dumps(attr.to_dict(), ensure_ascii=False))
    else:
        _print_attribution(attr, args.top_k)
    return 0
