"""Token attribution of a target completion to the prompt: the only module that imports captum.

Every method runs batched over examples and over target tokens: one forward pass per batch and one backward
pass per target token position (Captum's LLM wrappers do a forward and a backward per example and per target
token). The target is scored by teacher forcing, so a generated answer, the gold answer or a chosen option are
all just target strings. Methods are checked against Captum's own LLM attribution in the tests.

What is attributed is a sum of signed "terms", log p(token) at a target position: +log p of each target token, and
for a contrastive request -log p of each contrast token. A contrast read at the target's own position (a letter
against a letter, any two one-token targets) costs nothing extra; a longer one is a second row of the batch with
the same prompt, whose prompt gradients are added to the first row's (the prompt is one input, read twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kdviz.errors import InputError, resource_errors
from kdviz.lm.forward import Batch, eager_attention, embed, make_batch, target_logits, target_logprobs
from kdviz.lm.prompts import check_prompt_tokens, check_target, check_target_tokens, encode, encode_target
from kdviz.records import TokenAttribution

from .catalog import (  # noqa: F401
    CONTRASTIVE_METHODS,
    DEFAULT_METHOD,
    DEFAULT_STEPS,
    METHOD_DESCRIPTIONS,
    AttributionMethod,
    check_contrastive,
    check_method,
    list_attribution_methods,
)
from .layout import AttributionRequest as AttributionRequest  # the public request type
from .layout import Layout, Prepared, make_layout, term_index, token_scores
from .lrp import attnlrp
from .passes import (  # noqa: F401  (re-exported: bench/attribution.py and the tests read the budget here)
    CHUNK_UNITS,
    CPU_TOKENS_PER_PASS,
    Passes,
    Progress,
    Tracker,
    default_tokens_per_pass,
    rows_and_length,
    split_batches,
)
from .words import assign_tokens, merge_scores, overlaps_any, token_groups, word_spans


def _term_values(loaded, batch: Batch, layout: Layout, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Returns the signed log-probabilities of each prompt's terms, [k, n, J] (zeros past a prompt's last term),
    for `inputs_embeds` repeating the batch k times (k = 1 without)."""
    logits, _ = target_logits(loaded, batch, inputs_embeds)
    rows = batch.input_ids.shape[0]
    logits = logits.view(logits.shape[0] // rows, rows, *logits.shape[1:])  # [k, R, T, V]
    row, pos, tok, sign = term_index(layout, logits.device)
    picked = logits[:, row, pos, tok].float()
    total = torch.logsumexp(logits.float(), dim=-1)[:, row, pos]
    return (picked - total) * sign


# Each method maps (model, batch, prepared examples, layout, options) to, per example, a [J, n] matrix (one row
# per term: target tokens, then contrast tokens) and the [n] scores of the whole objective, where n counts the
# example's content tokens.
MethodFn = Callable[..., list[tuple[torch.Tensor, torch.Tensor]]]


def _content(rows: torch.Tensor, b: int, prep: Prepared) -> torch.Tensor:
    return rows[..., b, list(prep.encoded.content_positions)]


# bench/attribution.py gives Captum's integrated gradients this internal batch (tokens), as kdviz's CPU default.
IG_TOKENS_PER_PASS = CPU_TOKENS_PER_PASS


def _gradient_method(kind: str) -> MethodFn:
    def run(
        loaded,
        batch: Batch,
        preps: list[Prepared],
        layout: Layout,
        steps: int,
        per_token: bool,
        passes: Passes | None = None,
    ):
        passes = passes or Passes()
        with torch.enable_grad():
            base = embed(loaded, batch.input_ids).detach()  # [R, L, D]: a contrast row repeats its prompt
            rows = base.shape[0]
            alphas, weights, content = [1.0], [1.0], None
            if kind == "integrated_gradients":
                # Gauss-Legendre quadrature with Captum's own nodes and weights. The baseline is a zero embedding
                # at the prompt text's tokens (`content_positions`); chat-template and special tokens and the
                # target keep their real embeddings. Captum's LLMGradientAttribution by default swaps every prompt
                # token, template included, for token id 0 (a real token with a non-zero embedding in most
                # vocabularies), so its scores differ; given this baseline they agree (tests/test_ig_captum.py).
                # Caveat: RMS-normalised encoders (T5) are discontinuous at exactly zero, so there the scores
                # sum to f(input) - f(just off zero), not f(input) - f(zero).
                from captum.attr._utils.approximation_methods import approximation_parameters

                step_sizes_fn, alphas_fn = approximation_parameters("gausslegendre")
                alphas, weights = alphas_fn(steps), step_sizes_fn(steps)
                content = torch.zeros(base.shape[:2] + (1,), device=base.device, dtype=base.dtype)
                for r, b in enumerate(layout.row_owner):
                    content[r, list(preps[b].encoded.content_positions)] = 1
            chunk = max(1, passes.tokens // base.shape[:2].numel())
            n_terms = max(len(t) for t in layout.terms) if per_token else 0
            # Per term (and for the whole objective), the gradient summed over steps with quadrature weights.
            term_grads: list[torch.Tensor] = [torch.zeros_like(base) for _ in range(n_terms)]
            grad_sum = torch.zeros_like(base)
            for start in range(0, len(alphas), chunk):
                a, w = alphas[start : start + chunk], weights[start : start + chunk]
                if content is None:
                    x = base.clone()
                else:
                    x = torch.cat([base * (1 - content) + content * (s * base) for s in a])
                x.requires_grad_(True)
                values = _term_values(loaded, batch, layout, inputs_embeds=x)  # [k, n, J]
                w_t = torch.tensor(w, device=x.device, dtype=x.dtype)[:, None, None, None]

                def combine(grad: torch.Tensor, w_t: torch.Tensor = w_t) -> torch.Tensor:  # [k*R, L, D] -> [R, L, D]
                    return (grad.view(len(w_t), rows, *grad.shape[1:]) * w_t).sum(0)

                for j in range(n_terms):
                    (grad,) = torch.autograd.grad(values[..., j].sum(), x, retain_graph=j < n_terms - 1)
                    term_grads[j] += combine(grad)
                if not n_terms:
                    (grad,) = torch.autograd.grad(values.sum(), x)
                    grad_sum += combine(grad)
                del x, values
                if content is not None:
                    passes.advance(len(a))
            if n_terms:
                grad_sum = torch.stack(term_grads).sum(0)

            # The whole objective's score: for linear methods the sum of the rows; for saliency the norm of the
            # summed gradient, which is the gradient of the objective itself.
            seq = token_scores(kind, grad_sum, base, layout).detach()
            matrix_rows = [token_scores(kind, g, base, layout).detach() for g in term_grads]
            matrix = torch.stack(matrix_rows) if matrix_rows else torch.zeros((0,) + seq.shape, device=seq.device)
        return [(_content(matrix, b, p)[: len(layout.terms[b])], _content(seq, b, p)) for b, p in enumerate(preps)]

    return run


@torch.no_grad()
def _feature_ablation(
    loaded,
    batch: Batch,
    preps: list[Prepared],
    layout: Layout,
    steps: int,
    per_token: bool,
    passes: Passes | None = None,
):
    passes = passes or Passes()
    # Occlusion at word level: drop all tokens of one word and measure how much each term (each target token's
    # log-probability, minus each contrast token's) falls. Dropping (rather than substituting a pad token) keeps
    # the input on-distribution; a word's effect is shared equally among its tokens so word sums give it back.
    base_values = _term_values(loaded, batch, layout)[0]  # [n, J]
    results = []
    for b, prep in enumerate(preps):
        groups = token_groups(prep.owners, len(prep.word_spans))
        positions, n_terms = prep.encoded.content_positions, len(layout.terms[b])
        variants = []
        for group in groups:
            drop = {positions[i] for i in group}
            variants.append((tuple(tok for k, tok in enumerate(prep.encoded.ids) if k not in drop), prep))
        rows, length = _size(prep)
        chunk = max(1, passes.tokens // (rows * length))  # a variant is one word shorter: the budget holds
        diffs = []
        for start in range(0, len(variants), chunk):
            part = make_layout(variants[start : start + chunk])
            values = _term_values(loaded, make_batch(loaded, part.items), part)[0]
            diffs.append(base_values[b : b + 1, :n_terms] - values[:, :n_terms])
            passes.advance(len(part.terms))
        word_effect = torch.cat(diffs).T if diffs else torch.zeros((n_terms, 0))  # [J, words]
        matrix = torch.zeros((n_terms, len(positions)), device=word_effect.device)
        for w, group in enumerate(groups):
            for i in group:
                matrix[:, i] = word_effect[:, w] / len(group)
        results.append((matrix.float(), matrix.sum(0).float()))
    return results


@torch.no_grad()
def _attention(loaded, batch: Batch, preps: list[Prepared], layout: Layout, steps: int, per_token: bool):
    # Mean attention over layers and heads from the position that predicts each target token (cross-attention
    # for encoder-decoder models) to each prompt token. Needs eager attention, switched on only for this call; the
    # model is shared, so its lock keeps every other thread's forward out until it is switched back. It has no
    # contrastive form (attribute_requests refuses one): attention is not a function of the target.
    with eager_attention(loaded):
        _, out = target_logprobs(loaded, batch, output_attentions=True)
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
    "attnlrp": attnlrp,  # optional: needs the lxt package
}
assert set(METHODS) == set(METHOD_DESCRIPTIONS), "kdviz.attribution.catalog names every method"


def _prepare(loaded, request: AttributionRequest) -> Prepared:
    check_target(request.target)
    if request.contrast is not None:
        check_target(request.contrast, "the contrast")
    encoded = encode(loaded, request.prompt)
    check_prompt_tokens(encoded)
    spans = word_spans(request.prompt)
    keep = 1 if request.first_token_only else None
    target = encode_target(loaded, encoded, request.target)[:keep]
    contrast = encode_target(loaded, encoded, request.contrast)[:keep] if request.contrast is not None else ()
    check_target_tokens(target)
    check_target_tokens(contrast, "the contrast")
    return Prepared(request, encoded, target, contrast, spans, assign_tokens(encoded.content_offsets, spans))


def _size(prep: Prepared) -> tuple[int, int]:
    return rows_and_length(len(prep.encoded.ids), len(prep.target_ids), len(prep.contrast_ids))


@torch.no_grad()
def _integrals(loaded, batch: Batch, preps: list[Prepared], layout: Layout) -> list[float]:
    """Returns, per prompt, f(input) - f(baseline) of its attributed objective (the sum of its terms), the value
    integrated gradients' scores sum to when the integral is exact: one forward of the batch at both ends of the
    path (the baseline: zero embeddings at the prompt text's tokens, as `_gradient_method` integrates from)."""
    base = embed(loaded, batch.input_ids)
    zeroed = base.clone()
    for r, b in enumerate(layout.row_owner):
        zeroed[r, list(preps[b].encoded.content_positions)] = 0
    values = _term_values(loaded, batch, layout, inputs_embeds=torch.cat([base, zeroed])).sum(-1)  # [2, n]
    return (values[0] - values[1]).tolist()


def _record(
    loaded, method: str, prep: Prepared, matrix: torch.Tensor, seq: torch.Tensor, integral: float | None = None
) -> TokenAttribution:
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
        output_tokens=tuple(tok.decode([i]) for i in prep.target_ids + prep.contrast_ids) if rows else (),
        token_scores=rows,
        seq_scores=seq_list,
        words=tuple(req.prompt[a:b] for a, b in prep.word_spans),
        word_offsets=tuple(prep.word_spans),
        word_scores=merge_scores(seq_list, prep.owners, n_words),
        word_token_scores=[merge_scores(row, prep.owners, n_words) for row in rows] if n_words else [],
        word_is_template=tuple(overlaps_any(s, req.template_spans) for s in prep.word_spans),
        example_id=req.example_id,
        prediction=req.prediction,
        contrast=req.contrast,
        n_contrast_tokens=len(prep.contrast_ids) if rows else 0,
        integral=integral,
    )


# The stage's one out-of-memory boundary: whoever attributes (a panel, a build, a comparison) gets this advice.
@resource_errors(
    "attributing",
    "use a smaller batch size, fewer integrated-gradients steps, a shorter prompt or target, or a smaller model",
)
def attribute_requests(
    loaded,
    requests: Sequence[AttributionRequest],
    method: AttributionMethod = DEFAULT_METHOD,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 4,
    per_token: bool = True,
    on_progress: Progress | None = None,
    tokens_per_pass: int | None = None,
) -> list[TokenAttribution]:
    """Returns one TokenAttribution per request, computed up to `batch_size` examples at a time.

    Args:
        steps: integration steps for integrated_gradients (see bench/ig_steps.py for what each number buys).
        per_token: also compute the output-token × input-token matrix; False keeps only the whole-target
            scores, in one backward pass per batch (the fast path for building datasets).
        on_progress: called with a ProgressEvent at the start (done=0) and after each unit of work: stage
            "examples" after each batch; for integrated_gradients "steps" and for feature_ablation "words" as each
            chunk of passes finishes (totals over the whole call).
        tokens_per_pass: the memory budget of one pass (rows x padded length): batches, integration-step chunks and
            occlusion chunks are cut to fit it; default `default_tokens_per_pass(loaded)` (from free GPU memory,
            CPU_TOKENS_PER_PASS on a CPU).

    Raises:
        UnknownNameError: unknown method.  InputError: empty prompt, target or contrast; a contrastive request for a
            method without a contrastive form (attention); steps, batch_size or tokens_per_pass below 1.
    """
    check_method(method)
    if steps < 1 or batch_size < 1 or (tokens_per_pass is not None and tokens_per_pass < 1):
        raise InputError("steps, batch_size and tokens_per_pass must be at least 1")
    check_contrastive(method, next((r.contrast for r in requests if r.contrast is not None), None))
    tokens = tokens_per_pass or default_tokens_per_pass(loaded)
    prepared = [_prepare(loaded, r) for r in requests]
    batches = [[prepared[i] for i in b] for b in split_batches([_size(p) for p in prepared], batch_size, tokens)]
    unit = CHUNK_UNITS.get(method)
    totals = {"examples": len(requests)}
    if unit == "steps":
        totals[unit] = steps * len(batches)
    elif unit == "words":
        totals[unit] = sum(len(p.word_spans) for p in prepared)
    tracker = Tracker(on_progress, loaded.name, totals)
    options = {"passes": Passes(tokens, lambda n: tracker.advance(unit, n))} if unit else {}
    results: list[TokenAttribution] = []
    for preps in batches:
        layout = make_layout([(p.encoded.ids, p) for p in preps])
        batch = make_batch(loaded, layout.items)
        scored = METHODS[method](loaded, batch, preps, layout, steps=steps, per_token=per_token, **options)
        # IG's scores should sum to f(input) - f(baseline): kept to tell how close `steps` came (one more forward)
        integrals = (
            _integrals(loaded, batch, preps, layout) if method == "integrated_gradients" else [None] * len(preps)
        )
        results += [
            _record(loaded, method, p, m, s, i) for p, (m, s), i in zip(preps, scored, integrals, strict=False)
        ]
        tracker.advance("examples", len(preps))
    return results
