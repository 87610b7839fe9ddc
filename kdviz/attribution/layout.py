"""What every attribution method reads: a request, the request encoded for a model, and the batch layout of the
terms whose sum is attributed (a target's tokens, minus a contrast's). Shared by `methods` and `lrp`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kdviz.lm.forward import Item
from kdviz.lm.prompts import EncodedPrompt
from kdviz.records import Prediction, TargetMode


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
    contrast: str | None = None  # attribute log p(target) - log p(contrast) ("why this and not that")
    first_token_only: bool = False  # score only the first token of target and contrast: a letter, as predicted


@dataclass
class Prepared:
    """A request encoded for a model: its prompt's tokens, target and contrast ids, and the words of its content."""

    request: AttributionRequest
    encoded: EncodedPrompt
    target_ids: tuple[int, ...]
    contrast_ids: tuple[int, ...]  # () without a contrast
    word_spans: list[tuple[int, int]]
    owners: list[int]  # per content token: its word index


Term = tuple[int, int, int, float]  # (batch row, target position, token id, sign): sign * log p(token) there


@dataclass
class Layout:
    """Batch items for some prompts and, per prompt, the terms whose sum is attributed (its target's tokens, then
    its contrast's). Rows 0..n-1 read the n prompts' targets; a contrast not read at the target's position gets a
    row of its own after them (`row_owner` says whose)."""

    items: list[Item]
    terms: list[list[Term]]
    row_owner: list[int]


def make_layout(entries: Sequence[tuple[tuple[int, ...], Prepared]]) -> Layout:
    """Returns the batch items and terms for (prompt ids, prepared request) entries (see `Layout`)."""
    items: list[Item] = [(ids, p.target_ids) for ids, p in entries]
    owner, terms = list(range(len(entries))), []
    for b, (ids, p) in enumerate(entries):
        own = [(b, t, tok, 1.0) for t, tok in enumerate(p.target_ids)]
        if len(p.target_ids) == 1 == len(p.contrast_ids):  # both read off the next-token distribution
            own.append((b, 0, p.contrast_ids[0], -1.0))
        elif p.contrast_ids:
            items.append((ids, p.contrast_ids))
            owner.append(b)
            own += [(len(items) - 1, t, tok, -1.0) for t, tok in enumerate(p.contrast_ids)]
        terms.append(own)
    return Layout(items, terms, owner)


def term_index(layout: Layout, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (row, position, token, sign), each [n, J]: where each prompt's terms are read in the target logits
    [R, T, V] and their signs (zeros past a prompt's last term)."""
    width = max(len(t) for t in layout.terms)
    index = torch.zeros((3, len(layout.terms), width), dtype=torch.long)
    sign = torch.zeros((len(layout.terms), width))
    for b, own in enumerate(layout.terms):
        for j, (row, pos, tok, s) in enumerate(own):
            index[:, b, j] = torch.tensor((row, pos, tok))
            sign[b, j] = s
    row, pos, tok = index.to(device)
    return row, pos, tok, sign.to(device)


def token_scores(method: str, grad: torch.Tensor, embeddings: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Returns the per-token scores [n, L] of a layout's n prompts from a gradient at the input embeddings
    [R, L, D]: a contrast row's gradient is added to its owner's (its prompt is one input, read twice); saliency
    takes the gradient's norm, every other gradient method gradient · input (attnlrp's relevance is that too)."""
    n = len(layout.terms)
    own = grad[:n].clone()
    for r in range(n, grad.shape[0]):
        own[layout.row_owner[r]] += grad[r]
    if method == "saliency":
        return own.norm(dim=-1).float()
    return (own.float() * embeddings[:n].float()).sum(-1)
