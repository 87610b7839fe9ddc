"""What one Teacher-panel click costs, per attribution method, against the floor and against Captum and inseq.

A click is `kdviz.attribute(loaded, example, method)`: predict the answer (the model's default prediction mode,
"letter" for the embedded teacher) and attribute it, the full output-token x input-token matrix, as the Teacher
panel and `kdviz attribute` do. For each method and each of the first N questions of the shared CQA file this times:

  click   the whole kdviz call, prediction included (in letter mode the gradient methods predict and attribute in
          one forward and one backward: kdviz.attribution.decision)
  floor   one forward and one backward of the click's own prompt and target (the predicted letter): the least a
          gradient attribution of it can cost; a click's cost is given in these units
  captum  the same attribution (prompt, target and model) by what a user writes with Captum 0.9, per example:
          LLMGradientAttribution(LayerGradientXActivation) for saliency and input_x_gradient (Captum's LLM wrapper
          refuses Saliency; same passes), LayerIntegratedGradients (same steps) and LLMAttribution(FeatureAblation)
          (per token where kdviz drops words); no Captum row for attention and attnlrp. Prediction not included:
          the `predict` column is what a Captum user pays first (kdviz's letter scoring, one forward)
  inseq   the same with inseq 0.7.1 (`logprob=True`), when the script runs in a Python that has inseq
          (bench/inseq_anchor.py; e.g. /work/inseq-venv/bin/python, a venv with --system-site-packages)

and the panel's own estimate before the click (kdviz.attribution.cost, in saliency clicks) beside the measurement.

    python bench/click_cost.py                                   # embedded teacher, all methods
    /work/inseq-venv/bin/python bench/click_cost.py --n 4        # with the inseq column
    python bench/click_cost.py --model tiny --n 2                # smoke run, seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attribution as anchors  # noqa: E402  (this checkout's kdviz on sys.path, Captum helpers, random: specs)
import torch  # noqa: E402
from captum.attr import FeatureAblation, LLMAttribution, TextTokenInput  # noqa: E402

from kdviz import attribute, load_examples, load_model  # noqa: E402
from kdviz.attribution.catalog import METHOD_DESCRIPTIONS  # noqa: E402
from kdviz.attribution.cost import relative_cost  # noqa: E402
from kdviz.attribution.methods import AttributionRequest, _prepare  # noqa: E402
from kdviz.attribution.targets import score_examples  # noqa: E402
from kdviz.lm.models import LoadedModel  # noqa: E402
from kdviz.records import Example, TokenAttribution  # noqa: E402

# Cheapest first, so a run cut short has the interactive methods.
METHODS = ("saliency", "input_x_gradient", "attnlrp", "attention", "feature_ablation", "integrated_gradients")
SLOW = ("feature_ablation", "integrated_gradients")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded-teacher", help="kdviz model spec (default embedded-teacher)")
    p.add_argument("--data", type=Path, default=anchors.DEFAULT_DATA, help="CQA-style JSONL (default shared CQA)")
    p.add_argument("--n", type=int, default=8, help="questions per one-pass method (default 8)")
    p.add_argument("--slow-n", type=int, default=2, help="questions for occlusion and IG (default 2)")
    p.add_argument("--steps", type=int, default=None, help="integrated-gradients steps (default: kdviz's)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--no-captum", action="store_true", help="skip the Captum column")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    args = p.parse_args(argv)
    if min(args.n, args.slow_n) < 1 or (args.steps is not None and args.steps < 1):
        p.error("--n, --slow-n and --steps must be at least 1")
    return args


@dataclass
class Row:
    """Per-question seconds of each path for one method."""

    method: str
    click: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    predict: list[float] = field(default_factory=list)
    captum: list[float] = field(default_factory=list)
    inseq: list[float] = field(default_factory=list)
    words: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def floor_pass(loaded: LoadedModel, attr: TokenAttribution) -> None:
    """One forward and one backward of the click's prompt and target (a letter: its first token, as predicted)."""
    request = AttributionRequest(attr.prompt, attr.target, first_token_only=attr.prediction.mode == "letter")
    anchors.floor_pass(loaded, [_prepare(loaded, request)])  # kdviz's Prepared has the ids it reads


def captum_click(loaded: LoadedModel, attr: TokenAttribution, method: str, steps: int) -> Callable[[], object] | None:
    """Returns Captum's attribution of the click's target as a call, or None where Captum has no such method."""
    if method in ("attention", "attnlrp"):
        return None
    text = anchors.model_text(loaded, attr.prompt)
    target = attr.target  # the letter, tokenized without special tokens as kdviz encodes it after a chat prompt
    if method == "feature_ablation":
        llm = LLMAttribution(FeatureAblation(loaded.model), loaded.tokenizer)
        return lambda: llm.attribute(TextTokenInput(text, loaded.tokenizer), target=target)
    llm = anchors.captum_attributor(loaded, "integrated_gradients" if method == "integrated_gradients" else "saliency")
    inp = TextTokenInput(text, loaded.tokenizer)
    if method == "integrated_gradients":
        batch = max(1, anchors.IG_TOKENS_PER_PASS // len(inp.inp_tensor[0]))
        return lambda: llm.attribute(inp, target=target, n_steps=steps, internal_batch_size=batch)
    return lambda: llm.attribute(inp, target=target)


def inseq_click(loaded: LoadedModel, attr: TokenAttribution, method: str, steps: int) -> Callable[[], object] | None:
    """Returns inseq's attribution of the click's target as a call, or None where inseq is absent or lacks it."""
    if importlib.util.find_spec("inseq") is None:
        return None
    import inseq_anchor

    model, _ = inseq_anchor.inseq_model(loaded, method)
    if model is None:
        return None
    encoded = _prepare(loaded, AttributionRequest(attr.prompt, attr.target)).encoded
    text = anchors.model_text(loaded, attr.prompt)
    # Integrated gradients from kdviz's baseline: the same integral, so the same work (inseq_anchor.py)
    baseline = "kdviz" if method == "integrated_gradients" else "inseq"
    return lambda: inseq_anchor.inseq_scores(
        model, text, attr.target, encoded.content_positions, steps, baseline=baseline
    )


def measure(loaded: LoadedModel, examples: Sequence[Example], method: str, steps: int, captum: bool) -> Row:
    """Times click, floor, prediction, Captum and inseq question by question, interleaved, so that other load on
    the machine hits every path alike."""
    row = Row(method)
    for ex in examples:
        seconds, attr = anchors.timed(lambda ex=ex: attribute(loaded, ex, method=method, steps=steps))
        row.click.append(seconds)
        row.words.append(len(attr.words))
        row.floor.append(anchors.timed(floor_pass, loaded, attr)[0])
        row.predict.append(anchors.timed(lambda ex=ex: score_examples(loaded, [ex]))[0])
        if captum and (call := captum_click(loaded, attr, method, steps)) is not None:
            row.captum.append(anchors.timed(call)[0])
        if (call := inseq_click(loaded, attr, method, steps)) is not None:
            row.inseq.append(anchors.timed(call)[0])
        print(f"  [{method}: {len(row.click)}/{len(examples)}]", file=sys.stderr, flush=True)
    return row


def mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def cell(x: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def print_rows(rows: Sequence[Row], steps: int) -> None:
    print(
        "\n| method | questions | click s | floor s | click / floor | estimate (saliency clicks) | predict s "
        "| captum s | inseq s | captum / click | inseq / click |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        click, floor, cap, ins = mean(r.click), mean(r.floor), mean(r.captum), mean(r.inseq)
        estimate = statistics.fmean(relative_cost(r.method, w, steps) for w in r.words)
        print(
            f"| {r.method} | {len(r.click)} | {click:.2f} | {floor:.2f} | {click / floor:.2f}× | {estimate:.1f} | "
            f"{cell(mean(r.predict))} | {cell(cap)} | {cell(ins)} | {cell(cap and cap / click, '{:.2f}×')} | "
            f"{cell(ins and ins / click, '{:.2f}×')} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from kdviz.attribution.catalog import DEFAULT_STEPS

    steps = args.steps or DEFAULT_STEPS
    for method in list(args.methods):
        if method == "attnlrp" and importlib.util.find_spec("lxt") is None:
            print("attnlrp skipped: lxt is not installed", flush=True)
            args.methods.remove(method)
    wall = time.perf_counter()
    loaded = load_model(args.model)
    print(anchors.device_line(loaded))
    print(f"load average (1, 5, 15 min) at start: {anchors.load_average()}")
    examples = load_examples(args.data, limit=max(args.n, args.slow_n))
    attr = attribute(loaded, examples[0], method="saliency")  # warm-up, untimed: first calls pay one-off costs
    floor_pass(loaded, attr)
    print(
        f"model {args.model}, prediction mode {attr.prediction.mode}, target e.g. {attr.target!r}; "
        f"integrated gradients {steps} steps; inseq {'present' if importlib.util.find_spec('inseq') else 'absent'}"
    )
    rows = []
    for method in args.methods:
        assert method in METHOD_DESCRIPTIONS
        n = args.slow_n if method in SLOW else args.n
        rows.append(measure(loaded, examples[:n], method, steps, not args.no_captum))
    print_rows(rows, steps)
    print(f"\nload average at end: {anchors.load_average()} | total wall time {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
