"""Merge subword tokens into whitespace-delimited words, by character offsets (works for any tokenizer)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_WORD = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Returns the character spans of the whitespace-delimited words of `text`."""
    return [m.span() for m in _WORD.finditer(text)]


def assign_tokens(token_offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Returns, per token, the index of the word it overlaps most (-1 for whitespace-only tokens)."""
    owners, w = [], 0
    for a, b in token_offsets:
        best, best_overlap = -1, 0
        # Tokens and words are both in text order: start from the last matched word.
        for j in range(max(w - 1, 0), len(spans)):
            lo, hi = spans[j]
            if lo >= b:
                break
            overlap = min(b, hi) - max(a, lo)
            if overlap > best_overlap:
                best, best_overlap = j, overlap
        owners.append(best)
        w = best if best >= 0 else w
    return owners


def merge_scores(scores: Sequence[float], owners: Sequence[int], n_words: int) -> list[float]:
    """Returns per-word sums of token scores (the sum keeps totals, and so IG's completeness, intact)."""
    merged = [0.0] * n_words
    for score, owner in zip(scores, owners, strict=False):
        if owner >= 0:
            merged[owner] += score
    return merged


def token_groups(owners: Sequence[int], n_words: int) -> list[list[int]]:
    """Returns, per word, the indices of the tokens it is made of."""
    groups: list[list[int]] = [[] for _ in range(n_words)]
    for i, owner in enumerate(owners):
        if owner >= 0:
            groups[owner].append(i)
    return groups


def overlaps_any(span: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    """Returns whether `span` shares at least one character with any span in `others`."""
    return any(min(span[1], b) > max(span[0], a) for a, b in others)


# Punctuation stripped from word ends: ASCII plus typographic quotes, guillemets, ellipsis and dashes.
_PUNCT = string.punctuation + "“”‘’«»…–—"


def normalize_word(word: str) -> str:
    """Returns the word lower-cased with punctuation stripped from both ends ("" for pure punctuation).

    The one word comparison of kdviz: rationale overlap with gold answers and human rationales, and the alignment of
    two models' prompts in a comparison, both compare words through it. A number is written one way: "84.0", "84.",
    "84" are "84" (SVAMP's gold answers write "( 84.0 / 2.0 )" of a question that says "84 points").
    """
    cleaned = word.strip(_PUNCT).lower()
    if _NUMBER.fullmatch(cleaned):
        value = float(cleaned.replace(",", ""))
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return cleaned


_NUMBER = re.compile(
    r"\d{1,3}(,\d{3})+(\.\d+)?|\d+(\.\d*)?|\.\d+"
)  # 84, 84.0, 1,200, .5 (no sign: "-" is punctuation)
