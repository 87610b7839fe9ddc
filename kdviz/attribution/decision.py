"""One pass per click: predict and attribute a lettered choice in one forward and one backward.

In "letter" prediction mode the model's choice is read off one next-token distribution, at the end of the prompt
that the attribution explains. The forward that predicts can therefore be the one whose graph the attribution's
backward runs on: a click costs one forward and one backward (the floor) instead of a scoring forward followed by
an attribution forward and backward. The attributed target (the predicted letter, or the gold one, against the best
other letter for a contrast) is chosen from that forward's own distribution.

Scores and predictions equal those of `build_requests` + `attribute_requests` (tests/test_decision.py). Only the
methods that attribute from a single forward take this path: saliency, input_x_gradient and attnlrp.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

from kdviz.errors import resource_errors
from kdviz.lm.forward import embed, make_batch, model_lock, target_logits
from kdviz.lm.inference import letter_scores, letter_token_ids
from kdviz.lm.prompts import LETTERS, PromptFormat, answer_choices, render_prediction
from kdviz.records import ChoiceScores, Example, Prediction, ProgressEvent, TargetMode, TokenAttribution

from .layout import AttributionRequest, Prepared, make_layout, token_scores
from .lrp import attnlrp_rules
from .methods import _prepare, _record
from .passes import Tracker

ONE_PASS_METHODS = ("saliency", "input_x_gradient", "attnlrp")
# From an example, its target mode and its choice scores: its Prediction, the choice attributed and the one
# contrasted (or None).
Decide = Callable[[Example, TargetMode, ChoiceScores], tuple[Prediction, str, str | None]]


@resource_errors("attributing", "use a shorter prompt or a smaller model")
def attribute_letter_decisions(
    loaded,
    examples: Sequence[Example],
    method: str,
    modes: Sequence[TargetMode],
    decide: Decide,
    fmt: PromptFormat | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> list[TokenAttribution]:
    """Returns the attribution of each example's decided letter (see `decide`) to its letter-mode prompt, from one
    batched forward and one backward per term (one; two with a contrast). Examples need choices, `method` one of
    ONE_PASS_METHODS; the caller checks both (and the examples' target `modes`) as `build_requests` does."""
    tracker = Tracker(on_progress, loaded.name, {"examples": len(examples)})
    rendered = [render_prediction(ex, "letter", fmt) for ex in examples]
    choices = [answer_choices(ex, fmt) for ex in examples]
    preps = [  # the first letter stands in for the target: logits at the prompt's end do not depend on it
        _prepare(loaded, AttributionRequest(r.text, LETTERS[0], m, r.template_spans, ex.id, first_token_only=True))
        for ex, r, m in zip(examples, rendered, modes, strict=True)
    ]
    letter_ids = [letter_token_ids(loaded, p.encoded, len(c)) for p, c in zip(preps, choices, strict=True)]
    layout = make_layout([(p.encoded.ids, p) for p in preps])
    batch = make_batch(loaded, layout.items)
    lrp = method == "attnlrp"
    rules = attnlrp_rules(loaded.model) if lrp else nullcontext()
    with model_lock(loaded), rules, torch.enable_grad():
        x = embed(loaded, batch.input_ids).detach().requires_grad_(True)
        logits, _ = target_logits(loaded, batch, inputs_embeds=x)
        next_logits = logits[:, 0].float()  # [B, V]: the distribution the letter is read off
        next_logprobs = torch.log_softmax(next_logits, dim=-1)
        # Per example: its prediction and the indices of the choices attributed and contrasted (or None); [J] terms
        decided, terms = [], []
        for b, ex in enumerate(examples):
            scores = letter_scores(loaded, rendered[b].text, choices[b], next_logprobs[b], letter_ids[b])
            prediction, answer, foil = decide(ex, modes[b], scores)
            target, contrast = choices[b].index(answer), None if foil is None else choices[b].index(foil)
            decided.append((prediction, target, contrast))
            # AttnLRP starts from logits (see kdviz.attribution.lrp); the other methods from log-probabilities.
            read = next_logits[b] if lrp else next_logprobs[b]
            own = [read[letter_ids[b][target]]]
            if contrast is not None:
                own.append(-read[letter_ids[b][contrast]])
            terms.append(own)
        n_terms = len(terms[0])
        values = torch.stack([torch.stack(own) for own in terms])  # [B, J]
        grads = [torch.autograd.grad(values[:, j].sum(), x, retain_graph=j < n_terms - 1)[0] for j in range(n_terms)]
    seq = token_scores(method, torch.stack(grads).sum(0), x.detach(), layout)
    matrix = torch.stack([token_scores(method, g, x.detach(), layout) for g in grads])  # [J, B, L]
    results = []
    for b, (prep, (prediction, target, foil)) in enumerate(zip(preps, decided, strict=True)):
        request = prep.request
        final = AttributionRequest(
            request.prompt, LETTERS[target], request.target_mode, request.template_spans, request.example_id,
            prediction, None if foil is None else LETTERS[foil], first_token_only=True,
        )  # fmt: skip
        ids = letter_ids[b]
        contrast_ids = () if foil is None else (ids[foil],)
        done = Prepared(final, prep.encoded, (ids[target],), contrast_ids, prep.word_spans, prep.owners)
        content = list(prep.encoded.content_positions)
        results.append(_record(loaded, method, done, matrix[:, b, content], seq[b, content]))
    tracker.advance("examples", len(examples))
    return results
