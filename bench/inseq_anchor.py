"""The inseq side of kdviz's attribution benchmark: the same prompt, target and model, attributed by inseq 0.7.1.

inseq is not a kdviz dependency and is imported only when a function here needs it. Run with the venv that has it:

    /work/inseq-venv/bin/python bench/inseq_anchor.py                          # agreement on `tiny`, seconds
    /work/inseq-venv/bin/python bench/inseq_anchor.py tiny embedded-student    # and on the student

API (the caller times `inseq_scores`):

    anchor, note = inseq_model(loaded, "input_x_gradient")   # None and the reason for a method inseq lacks
    scores = inseq_scores(anchor, model_text, target_text, encoded.content_positions, steps=20)

How each kdviz method maps onto inseq, and how inseq's output is reduced to kdviz's whole-target score per prompt
token (inseq attributes one target token per step, each teacher-forced on the tokens before it, and keeps the
embedding dimension). The attributed function is inseq's "probability" with `logprob=True`: kdviz attributes
log-probabilities, and the gradient of the summed log-probabilities is the sum of the per-step gradients. With
inseq's default `logprob=False` (probabilities) input_x_gradient's cosine with kdviz falls to 0.97-0.997 on tiny.

  saliency              inseq "saliency" with Captum's `abs=False`; gradients summed over target steps, then the
                        L2 norm over the embedding dimension (inseq's "vnorm"): the norm of the gradient of the summed
                        log-probability, as kdviz. inseq's default `abs=True` takes |gradient| per step first, so it
                        matches only for one-token targets.
  input_x_gradient      inseq "input_x_gradient"; summed over the embedding dimension (inseq's "sum" aggregation, not
                        its default "vnorm", which drops the sign) and over target steps.
  integrated_gradients  inseq "integrated_gradients" (Captum's, Gauss-Legendre nodes like kdviz); reduced as
                        input_x_gradient. inseq's baseline swaps every token (template and earlier target tokens
                        included, EOS excepted) for the unk token (pad when the tokenizer has none); kdviz's is a zero
                        embedding at the prompt text's tokens only. inseq's `attribute` ignores a `baselines`
                        argument, so `baseline="kdviz"` builds inseq's input batch itself with kdviz's baseline and
                        hands it to the attribution method (inseq's `prepare_and_attribute`, one level below
                        `attribute`; same attribution loop). Cosine with kdviz: 1.000000 with kdviz's baseline,
                        0.45 (tiny) and 0.05 (student) with inseq's.
  attention             inseq "attention" (a final-step method): the attention rows of the positions that predict the
                        target tokens, averaged over layers, heads and target tokens, as kdviz. inseq needs the
                        attention weights, which transformers 5's default SDPA attention does not return (inseq fails
                        with "stack expects a non-empty TensorList"): eager attention is switched on for the call.
  feature_ablation      inseq "occlusion": each token's embedding swapped for the unk token's, |drop| of each
                        target token's log-probability, summed over target tokens. Not the same method: kdviz drops
                        whole words and keeps the sign, so expect no agreement (cosine -0.15 on tiny, -0.30 on the
                        student).
  attnlrp               no inseq method.

Tokenization: inseq re-tokenizes `model_text` and `model_text + target_text` with special tokens added as the
tokenizer does (`skip_special_tokens=False`, the default: True would delete "<|im_start|>" and the like from the texts
and shift every position). With the chat template already in `model_text` this gives kdviz's own ids; pass
`expected_ids` to have `inseq_scores` check that.

Pad tokens: inseq removes every token that reads as the pad token from its output and truncates the attribution
rows to match, so with SmolLM2 (embedded-student: pad = eos = "<|im_end|>", in every chat prompt) its token list
lost the two "<|im_end|>" and its `attr_pos_start` was 2 short. `inseq_model` sets the wrapper's `pad_token` to None,
which only turns that dropping off (one sequence at a time has no padding).

Side effects of wrapping: inseq moves the model to `loaded.device` (no copy), puts it in eval mode, and sets the
tokenizer's pad and unk ids when missing (unk to pad); it also sets left padding and truncation, which
`inseq_model` puts back.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attribution as bench  # noqa: E402  (model_text(), prepare(), spearman(); puts this checkout's kdviz first)

from kdviz.attribution.methods import AttributionRequest, attribute_requests, default_tokens_per_pass  # noqa: E402
from kdviz.lm.forward import eager_attention  # noqa: E402
from kdviz.lm.models import LoadedModel  # noqa: E402

INSEQ_VERSION = "0.7.1"
# kdviz method -> inseq method name
INSEQ_METHOD = {
    "saliency": "saliency",
    "input_x_gradient": "input_x_gradient",
    "integrated_gradients": "integrated_gradients",
    "feature_ablation": "occlusion",
    "attention": "attention",
}
Baseline = Literal["inseq", "kdviz"]


def require_inseq() -> ModuleType:
    """Returns the inseq module, or raises ImportError saying how to run the benchmark where inseq is installed."""
    try:
        return importlib.import_module("inseq")
    except ImportError as err:
        raise ImportError(
            f"the inseq anchor needs inseq {INSEQ_VERSION}, which kdviz does not depend on: run the benchmark with "
            f"/work/inseq-venv/bin/python, or `pip install inseq=={INSEQ_VERSION}` in a separate venv "
            f"(made with --system-site-packages to see this kdviz)"
        ) from err


@dataclass(frozen=True)
class InseqAnchor:
    """An inseq AttributionModel over a kdviz model (the same instance, not a second copy) for one kdviz method."""

    model: Any  # inseq.models.HuggingfaceModel
    method: str  # kdviz's method name; inseq's is INSEQ_METHOD[method]
    loaded: LoadedModel


def inseq_model(loaded: LoadedModel, method: str) -> tuple[InseqAnchor | None, str]:
    """Returns (anchor, note): the inseq wrapper of `loaded` for `method` and how inseq's method relates to kdviz's,
    or (None, why) for a method inseq lacks."""
    if method not in INSEQ_METHOD:
        return None, f"inseq {INSEQ_VERSION} has no {method!r} method"
    inseq = require_inseq()
    name = INSEQ_METHOD[method]
    tokenizer = loaded.tokenizer
    sides = tokenizer.padding_side, tokenizer.truncation_side
    model = inseq.load_model(loaded.model, name, tokenizer=tokenizer, device=loaded.device)
    # inseq's decoder-only wrapper sets the shared tokenizer to left padding and truncation, which it needs only to
    # batch several sequences; one at a time, kdviz's settings do.
    tokenizer.padding_side, tokenizer.truncation_side = sides
    # inseq drops every token whose text is the pad token from its output, and cuts the attribution rows to the
    # shorter list: SmolLM2's pad token is "<|im_end|>", which its chat template puts in every prompt. With a single
    # sequence there is no padding to drop.
    model.pad_token = None
    note = f"inseq {name!r}" + (
        ", a different method: see the module docstring" if method == "feature_ablation" else ""
    )
    return InseqAnchor(model, method, loaded), note


def _attribution_args(anchor: InseqAnchor, n_tokens: int, steps: int) -> dict[str, Any]:
    if anchor.method == "saliency":
        return {"abs": False}  # signed gradients, so that summing over target steps gives the objective's gradient
    if anchor.method == "integrated_gradients":
        # kdviz's memory budget per pass, as bench/attribution.py gives Captum
        chunk = max(1, default_tokens_per_pass(anchor.loaded) // n_tokens)
        return {"n_steps": steps, "internal_batch_size": chunk}
    return {}


def _kdviz_baseline_batch(anchor: InseqAnchor, full_text: str, content_positions: Sequence[int]) -> Any:
    """Returns inseq's input batch for `full_text` with kdviz's IG baseline: the real embeddings, zeroed at the
    prompt text's tokens."""
    from inseq.data import get_batch_from_inputs

    batch = get_batch_from_inputs(anchor.model, full_text)
    baseline = batch.input_embeds.detach().clone()
    baseline[:, list(content_positions)] = 0
    batch.baseline_embeds = baseline
    return batch


def _attribute(anchor: InseqAnchor, model_text: str, target_text: str, steps: int, baseline: Baseline, positions):
    full_text = model_text + target_text
    model = anchor.model
    n_tokens = len(model.encode(full_text).input_ids[0])
    args = _attribution_args(anchor, n_tokens, steps)
    fn_args = {} if anchor.method == "attention" else {"logprob": True}  # attention ignores the attributed function
    if baseline == "kdviz":
        if anchor.method != "integrated_gradients":
            raise ValueError("baseline='kdviz' applies to integrated_gradients only")
        from inseq.data import merge_attributions

        outputs = model.attribution_method.prepare_and_attribute(  # batched: a list of outputs, as in `attribute`
            model_text,
            _kdviz_baseline_batch(anchor, full_text, positions),
            attributed_fn=model.get_attributed_fn("probability"),
            attribution_args=args,
            attributed_fn_args=fn_args,
            show_progress=False,
        )
        return merge_attributions(outputs)
    with eager_attention(anchor.loaded) if anchor.method == "attention" else contextlib.nullcontext():
        return model.attribute(
            model_text,
            full_text,
            attributed_fn="probability",
            attribute_target=False,  # for encoder-decoder models only; inseq ignores it for decoder-only ones
            show_progress=False,
            **fn_args,
            **args,
        )


def _whole_target(method: str, per_step: torch.Tensor) -> torch.Tensor:
    """Reduces inseq's prompt rows [prompt tokens, target steps, ...] to kdviz's whole-target score per token."""
    if method == "saliency":  # [P, J, D]: norm of the summed gradient
        return per_step.sum(1).norm(dim=-1)
    if method == "attention":  # [P, J, layers, heads]: mean over everything but the prompt token
        return per_step.flatten(1).mean(1)
    if per_step.dim() == 3:  # input x gradient, IG: [P, J, D]
        return per_step.sum(dim=(1, 2))
    return per_step.sum(1)  # occlusion: [P, J]


def inseq_scores(
    anchor: InseqAnchor,
    model_text: str,
    target_text: str,
    content_positions: Sequence[int],
    steps: int,
    *,
    baseline: Baseline = "inseq",
    expected_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """Returns inseq's whole-target attribution [len(content_positions)] of `target_text` (teacher-forced after
    `model_text`, the exact string kdviz tokenizes) to the prompt tokens at `content_positions`.

    `steps`: integration steps (integrated gradients only). `baseline`: inseq's own, or kdviz's (integrated
    gradients only; see the module docstring). `expected_ids`: kdviz's prompt and target ids, checked against the
    tokens inseq attributed.

    Raises:
        ValueError: inseq tokenized the prompt or target differently from `expected_ids`, or the prompt has fewer
            tokens than `content_positions` point into.
    """
    out = _attribute(anchor, model_text, target_text, steps, baseline, content_positions)
    seq = out.sequence_attributions[0]
    ids = [t.id for t in seq.target]  # decoder-only: the whole sequence, prompt then target
    if expected_ids is not None and ids != list(expected_ids):
        raise ValueError(f"inseq tokenized differently from kdviz: {ids} != {list(expected_ids)}")
    n_prompt = seq.attr_pos_start
    if max(content_positions) >= n_prompt:
        raise ValueError(f"content position {max(content_positions)} is past inseq's {n_prompt}-token prompt")
    return _whole_target(anchor.method, seq.target_attributions[:n_prompt].float())[list(content_positions)]


# ----------------------------------------------------------------------------------------------------------------
# Self-check: inseq against kdviz on the same examples.

CHECK_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "attention", "feature_ablation")


@dataclass
class Agreement:
    """Per-example cosines of inseq's and kdviz's whole-target scores, and the seconds each took per example."""

    method: str
    cosine: list[float] = field(default_factory=list)
    spearman: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)  # max |inseq - kdviz| / max |kdviz|
    inseq_seconds: list[float] = field(default_factory=list)
    kdviz_seconds: list[float] = field(default_factory=list)
    failure: str = ""

    def line(self) -> str:
        if self.failure:
            return f"{self.method:<38} FAILED: {self.failure}"
        n = len(self.cosine)
        return (
            f"{self.method:<38} cosine mean {sum(self.cosine) / n:.6f} (min {min(self.cosine):.6f}), "
            f"Spearman mean {sum(self.spearman) / n:.4f}, max gap {max(self.gap):.1e} | "
            f"s/example inseq {sum(self.inseq_seconds) / n:.3f}, kdviz {sum(self.kdviz_seconds) / n:.3f}"
        )


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()


def kdviz_whole_target(loaded: LoadedModel, request: AttributionRequest, method: str, steps: int) -> torch.Tensor:
    """kdviz's whole-target scores for one request (per_token=False: one backward pass per batch)."""
    result = attribute_requests(loaded, [request], method, steps=steps, per_token=False)[0]
    return torch.tensor(result.seq_scores)


def check_agreement(
    loaded: LoadedModel,
    n: int = 3,
    methods: Sequence[str] = CHECK_METHODS,
    steps: int = 20,
    data: Path = bench.DEFAULT_DATA,
) -> list[Agreement]:
    """Compares inseq's and kdviz's whole-target scores on the first `n` questions of `data`, gold answers as
    targets; integrated gradients twice, with inseq's baseline and with kdviz's. Returns one Agreement per row."""
    items = bench.prepare(loaded, data, n)  # also checks that Captum's tokenization is kdviz's
    warm = items[0]  # untimed warm-ups: first calls pay one-off setup costs
    kdviz_whole_target(loaded, warm.request, "saliency", steps)
    anchor, _ = inseq_model(loaded, "saliency")
    inseq_scores(anchor, warm.model_text, warm.target_text, warm.encoded.content_positions, steps)
    rows = []
    for method in methods:
        anchor, note = inseq_model(loaded, method)
        if anchor is None:
            rows.append(Agreement(method, failure=note))
            continue
        variants: list[Baseline] = ["inseq", "kdviz"] if method == "integrated_gradients" else ["inseq"]
        for baseline in variants:
            label = f"{method} ({baseline} baseline)" if len(variants) > 1 else method
            rows.append(_agreement_row(loaded, anchor, items, label, baseline, steps))
    return rows


def _agreement_row(
    loaded: LoadedModel,
    anchor: InseqAnchor,
    items: Sequence[bench.Prepared],
    label: str,
    baseline: Baseline,
    steps: int,
) -> Agreement:
    row = Agreement(label)
    for p in items:
        positions, expected = p.encoded.content_positions, p.encoded.ids + p.target_ids
        try:
            run = functools.partial(inseq_scores, baseline=baseline, expected_ids=expected)
            seconds, ours = bench.timed(run, anchor, p.model_text, p.target_text, positions, steps)
        except Exception as err:  # report inseq's failure and go on with the other methods
            row.failure = f"{type(err).__name__}: {err}"
            return row
        kd_seconds, theirs = bench.timed(kdviz_whole_target, loaded, p.request, anchor.method, steps)
        if not (math.isfinite(ours.sum().item()) and ours.shape == theirs.shape):
            row.failure = f"inseq gave {ours.shape} scores with non-finite values or kdviz gave {theirs.shape}"
            return row
        row.cosine.append(_cosine(ours, theirs))
        row.spearman.append(bench.spearman(ours, theirs))
        row.gap.append(((ours - theirs).abs().max() / theirs.abs().max()).item())
        row.inseq_seconds.append(seconds)
        row.kdviz_seconds.append(kd_seconds)
    return row


def main(argv: Sequence[str]) -> int:
    require_inseq()
    torch.set_num_threads(int(os.environ.get("KDVIZ_BENCH_THREADS", "1")))  # a shared machine by default
    for spec in argv or ["tiny"]:
        loaded = bench.load_model(spec)
        print(f"\n{spec}: inseq {INSEQ_VERSION} vs kdviz, whole-target scores on the prompt text's tokens")
        for row in check_agreement(loaded):
            print(f"  {row.line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
