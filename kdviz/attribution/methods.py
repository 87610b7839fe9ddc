"""Token attribution of a target completion to the prompt: the only module that imports captum.

Every method runs batched over examples and over target tokens: one forward pass per batch and one backward
pass per target token position (Captum's LLM wrappers do a forward and a backward per example and per target
token). The target is scored by teacher forcing, so a generated answer, the gold answer or a chosen option are
all just target strings. Methods are checked against Captum's own LLM attribution in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from kdviz.errors import InputError
from kdviz.lm.forward import Batch, embed, make_batch, model_lock, target_logprobs
from kdviz.lm.prompts import EncodedPrompt, encode, encode_target
from kdviz.records import Prediction, TargetMode, TokenAttribution

from .catalog import DEFAULT_METHOD, METHOD_DESCRIPTIONS, AttributionMethod, check_method, list_attribution_methods  # noqa: F401
from .words import assign_tokens, merge_scores, overlaps_any, token_groups, word_spans

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AttributionRequest:
    """One prompt and the target string whose log-probability is attributed to it, and what the model predicted
    (copied into the attribution record)."""

    prompt: str
    target: str
    target_mode: TargetMode = "forced"
    template_spans: tuple[tuple[int, int], ...] = ()
    example_id: str | None = None
    prediction: Prediction | None = None


@dataclass
class _Prepared:
    request: AttributionRequest
    encoded: EncodedPrompt
    target_ids: tuple[int, ...]
    word_spans: list[tuple[int, int]]
    owners: list[int]  # per content token: its word index


# Each method maps (model, batch, prepared examples, options) to, per example, a [T, n] token matrix and the
# [n] scores of the whole target, where n counts the example's content tokens.
MethodFn = Callable[..., list[tuple[torch.Tensor, torch.Tensor]]]


def _content(rows: torch.Tensor, b: int, prep: _Prepared) -> torch.Tensor:
    return rows[..., b, list(prep.encoded.content_positions)]


# Integrated gradients runs its steps in chunks of about this many tokens (steps x batch x length): all steps at
# once would hold the activations of steps x batch sequences, e.g. 80 x 85 tokens ~ 40 GB for the 1.5B teacher.
IG_TOKENS_PER_PASS = 1024


def _gradient_method(kind: str) -> MethodFn:
    def run(loaded, batch: Batch, preps: list[_Prepared], steps: int, per_token: bool):
        with torch.enable_grad():
            base = embed(loaded, batch.input_ids).detach()
            bsz = base.shape[0]
            alphas, weights, content = [1.0], [1.0], None
            if kind == "integrated_gradients":
                # Gauss-Legendre quadrature, as Captum's IntegratedGradients; the baseline is a zero embedding
                # at the prompt text's positions, template and target positions keep their real embeddings.
                # Caveat: RMS-normalised encoders (T5) are discontinuous at exactly zero, so there the scores
                # sum to f(input) - f(just off zero), not f(input) - f(zero).
                from captum.attr._utils.approximation_methods import approximation_parameters

                step_sizes_fn, alphas_fn = approximation_parameters("gausslegendre")
                alphas, weights = alphas_fn(steps), step_sizes_fn(steps)
                content = torch.zeros(base.shape[:2] + (1,), device=base.device, dtype=base.dtype)
                for b, prep in enumerate(preps):
                    content[b, list(prep.encoded.content_positions)] = 1
            chunk = max(1, IG_TOKENS_PER_PASS // base.shape[:2].numel())
            n_targets = batch.target_ids.shape[1] if per_token else 0
            # Per target token (and for the whole target), the gradient summed over steps with quadrature weights.
            token_grads: list[torch.Tensor] = [torch.zeros_like(base) for _ in range(n_targets)]
            grad_sum = torch.zeros_like(base)
            for start in range(0, len(alphas), chunk):
                a, w = alphas[start : start + chunk], weights[start : start + chunk]
                if content is None:
                    x = base.clone()
                else:
                    x = torch.cat([base * (1 - content) + content * (s * base) for s in a])
                x.requires_grad_(True)
                logp, _ = target_logprobs(loaded, batch, inputs_embeds=x)
                w_t = torch.tensor(w, device=x.device, dtype=x.dtype)[:, None, None, None]

                def combine(grad: torch.Tensor, w_t: torch.Tensor = w_t) -> torch.Tensor:  # [k*B, L, D] -> [B, L, D]
                    return (grad.view(len(w_t), bsz, *grad.shape[1:]) * w_t).sum(0)

                for t in range(n_targets):
                    (grad,) = torch.autograd.grad(logp[:, t].sum(), x, retain_graph=t < n_targets - 1)
                    token_grads[t] += combine(grad)
                if not n_targets:
                    (grad,) = torch.autograd.grad(logp.sum(), x)
                    grad_sum += combine(grad)
                del x, logp
            if n_targets:
                grad_sum = torch.stack(token_grads).sum(0)

            def reduce(grad: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L]
                return grad.norm(dim=-1) if kind == "saliency" else (grad * base).sum(-1).float()

            # The whole target's score: for linear methods the sum of the rows; for saliency the norm of the
            # summed gradient, which is the gradient of the target's total log-probability.
            seq = reduce(grad_sum).detach().float()
            rows = [reduce(g).detach() for g in token_grads]
            matrix = torch.stack(rows) if rows else torch.zeros((0,) + seq.shape, device=seq.device)
        return [(_content(matrix, b, p)[: len(p.target_ids)], _content(seq, b, p)) for b, p in enumerate(preps)]

    return run


@torch.no_grad()
def _feature_ablation(loaded, batch: Batch, preps: list[_Prepared], steps: int, per_token: bool, chunk: int = 16):
    # Occlusion at word level: drop all tokens of one word and measure how much each target token's
    # log-probability falls. Dropping (rather than substituting a pad token) keeps the input on-distribution;
    # a word's effect is shared equally among its tokens so word sums give the word's effect back.
    base_logp, _ = target_logprobs(loaded, batch)
    results = []
    for b, prep in enumerate(preps):
        groups = token_groups(prep.owners, len(prep.word_spans))
        positions = prep.encoded.content_positions
        items = []
        for group in groups:
            drop = {positions[i] for i in group}
            ids = tuple(tok for k, tok in enumerate(prep.encoded.ids) if k not in drop)
            items.append((ids, prep.target_ids))
        diffs = []
        for start in range(0, len(items), chunk):
            logp, _ = target_logprobs(loaded, make_batch(loaded, items[start : start + chunk]))
            diffs.append(base_logp[b : b + 1, : len(prep.target_ids)] - logp[:, : len(prep.target_ids)])
        word_effect = torch.cat(diffs).T if diffs else torch.zeros((len(prep.target_ids), 0))  # [T, words]
        matrix = torch.zeros((len(prep.target_ids), len(positions)), device=word_effect.device)
        for w, group in enumerate(groups):
            for i in group:
                matrix[:, i] = word_effect[:, w] / len(group)
        results.append((matrix.float(), matrix.sum(0).float()))
    return results


@torch.no_grad()
def _attention(loaded, batch: Batch, preps: list[_Prepared], steps: int, per_token: bool):
    # Mean attention over layers and heads from the position that predicts each target token (cross-attention
    # for encoder-decoder models) to each prompt token. Needs eager attention, switched on only for this call; the
    # model is shared, so its lock keeps every other thread's forward out until it is switched back.
    model = loaded.model
    with model_lock(loaded):
        previous = model.config._attn_implementation
        if previous != "eager":
            model.set_attn_implementation("eager")
        try:
            _, out = target_logprobs(loaded, batch, output_attentions=True)
        finally:
            if previous != "eager":
                model.set_attn_implementation(previous)
    maps = out.cross_attentions if loaded.is_encoder_decoder else out.attentions
    mean = torch.stack([a.float() for a in maps]).mean(dim=(0, 2))  # [B, queries, keys]
    results = []
    for b, prep in enumerate(preps):
        n_target = len(prep.target_ids)
        start = 0 if loaded.is_encoder_decoder else batch.prompt_lengths[b] - 1
        rows = mean[b, start : start + n_target][:, list(prep.encoded.content_positions)]
        results.append((rows, rows.mean(0)))
    return results


METHODS: dict[str, MethodFn] = {
    "saliency": _gradient_method("saliency"),
    "input_x_gradient": _gradient_method("input_x_gradient"),
    "integrated_gradients": _gradient_method("integrated_gradients"),
    "feature_ablation": _feature_ablation,
    "attention": _attention,
}
assert set(METHODS) == set(METHOD_DESCRIPTIONS), "kdviz.attribution.catalog names every method"


def _prepare(loaded, request: AttributionRequest) -> _Prepared:
    if not request.target.strip():
        raise InputError("the target to attribute is empty")
    encoded = encode(loaded, request.prompt)
    spans = word_spans(request.prompt)
    return _Prepared(
        request,
        encoded,
        encode_target(loaded, encoded, request.target),
        spans,
        assign_tokens(encoded.content_offsets, spans),
    )


def _record(loaded, method: str, prep: _Prepared, matrix: torch.Tensor, seq: torch.Tensor) -> TokenAttribution:
    tok = loaded.tokenizer
    req, n_words = prep.request, len(prep.word_spans)
    rows = matrix.cpu().tolist()
    seq_list = seq.cpu().tolist()
    return TokenAttribution(
        model_name=loaded.name,
        method=method,
        prompt=req.prompt,
        target=req.target,
        target_mode=req.target_mode,
        input_tokens=tuple(tok.decode([prep.encoded.ids[i]]) for i in prep.encoded.content_positions),
        input_offsets=prep.encoded.content_offsets,
        output_tokens=tuple(tok.decode([i]) for i in prep.target_ids) if rows else (),
        token_scores=rows,
        seq_scores=seq_list,
        words=tuple(req.prompt[a:b] for a, b in prep.word_spans),
        word_offsets=tuple(prep.word_spans),
        word_scores=merge_scores(seq_list, prep.owners, n_words),
        word_token_scores=[merge_scores(row, prep.owners, n_words) for row in rows] if n_words else [],
        word_is_template=tuple(overlaps_any(s, req.template_spans) for s in prep.word_spans),
        example_id=req.example_id,
        prediction=req.prediction,
    )


def attribute_requests(
    loaded,
    requests: Sequence[AttributionRequest],
    method: AttributionMethod = DEFAULT_METHOD,
    *,
    steps: int = 20,
    batch_size: int = 4,
    per_token: bool = True,
    on_progress: Progress | None = None,
) -> list[TokenAttribution]:
    """Returns one TokenAttribution per request, computed `batch_size` examples at a time.

    Args:
        steps: integration steps for integrated_gradients (20 or more for stable scores).
        per_token: also compute the output-token × input-token matrix; False keeps only the whole-target
            scores, in one backward pass per batch (the fast path for building datasets).

    Raises:
        UnknownNameError: unknown method.  InputError: empty prompt or target.
    """
    check_method(method)
    if steps < 1 or batch_size < 1:
        raise InputError("steps and batch_size must be at least 1")
    results: list[TokenAttribution] = []
    for start in range(0, len(requests), batch_size):
        preps = [_prepare(loaded, r) for r in requests[start : start + batch_size]]
        batch = make_batch(loaded, [(p.encoded.ids, p.target_ids) for p in preps])
        scored = METHODS[method](loaded, batch, preps, steps=steps, per_token=per_token)
        results += [_record(loaded, method, p, m, s) for p, (m, s) in zip(preps, scored, strict=False)]
        if on_progress:
            on_progress(len(results), len(requests))
    return results
