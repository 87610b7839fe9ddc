"""Statistics for comparing models on the same examples: accuracy with bootstrap intervals, agreement, paired tests,
and agreement between two models' word attributions (aligned across tokenizers and prompt formats).

Pure functions of predictions and scores; scipy supplies the resampling (bootstrap, permutation), the exact tests
and the rank correlations. Resampled figures are seeded, so a report is reproducible.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import numpy as np

from kdviz.attribution.words import normalize_word
from kdviz.resampling import bootstrap_ci as bootstrap_ci  # the mean's interval, shared with rationales

from .records import AttributionAgreement, McNemarTest

PERMUTATIONS = 10000  # sign flips drawn when there are more distinct ones (over 13 non-zero differences)


def sign_flip_p(differences: Sequence[float], n_resamples: int = PERMUTATIONS, seed: int = 0) -> float:
    """Returns the two-sided p-value of paired differences under "no difference" (each difference as likely
    negated): the share of sign flips whose mean is at least as far from 0 as the observed mean, every flip counted
    when there are at most `n_resamples` of them, else `n_resamples` random ones (`scipy.stats.permutation_test`)."""
    from scipy.stats import permutation_test

    # A zero difference is itself negated, so it is left out: the p-value is the same and the test exact for more
    # examples (2**k sign patterns for k non-zero differences).
    nonzero = np.asarray([d for d in differences if d], dtype=float)
    if len(nonzero) < 2:  # no flip, or one whose two signs are equally far from 0 (scipy needs two values)
        return 1.0
    # |mean| with alternative="greater" counts both tails at once: the same p as "two-sided" for this symmetric
    # null, with half the Monte Carlo variance of doubling one tail.
    result = permutation_test(
        (nonzero,), lambda x, axis: np.abs(np.mean(x, axis=axis)), permutation_type="samples", vectorized=True,
        n_resamples=n_resamples, alternative="greater", rng=np.random.default_rng(seed),
    )  # fmt: skip
    return min(1.0, float(result.pvalue))


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemarTest:
    """Returns McNemar's exact test of two models' paired correctness.

    `a_only` counts examples A gets right and B wrong, `b_only` the reverse; under "equally accurate" each
    discordant example is a fair coin, so p is the two-sided binomial probability of a split this uneven.
    """
    from scipy.stats import binomtest

    if len(a_correct) != len(b_correct):
        raise ValueError("both models must answer the same examples")
    a_only = sum(1 for a, b in zip(a_correct, b_correct, strict=True) if a and not b)
    b_only = sum(1 for a, b in zip(a_correct, b_correct, strict=True) if b and not a)
    p = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return McNemarTest(a_only, b_only, len(a_correct), min(1.0, p))


def agreement(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Returns the share of examples where two models give the same answer (None for no examples)."""
    if len(a) != len(b):
        raise ValueError("both models must answer the same examples")
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None


def _norm(word: str) -> str:
    return normalize_word(word)


def align_words(
    words_a: Sequence[str], template_a: Sequence[bool], words_b: Sequence[str], template_b: Sequence[bool]
) -> list[tuple[int, int]]:
    """Returns (index in A, index in B) of the task words both prompts share, in order.

    Words are whitespace-delimited, so they do not depend on either tokenizer; the prompts may differ by a task
    prefix or an inserted rationale line (format words, skipped), and the longest common subsequence of the
    remaining normalised words pairs them up.
    """
    keep_a = [i for i, t in enumerate(template_a) if not t and _norm(words_a[i])]
    keep_b = [j for j, t in enumerate(template_b) if not t and _norm(words_b[j])]
    matcher = difflib.SequenceMatcher(
        None, [_norm(words_a[i]) for i in keep_a], [_norm(words_b[j]) for j in keep_b], autojunk=False
    )
    return [(keep_a[m.a + k], keep_b[m.b + k]) for m in matcher.get_matching_blocks() for k in range(m.size)]


def _top(scores: Sequence[float], k: int) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda i: -scores[i])[:k])


def attribution_agreement(
    scores_a: Sequence[float], scores_b: Sequence[float], pairs: Sequence[tuple[int, int]], k: int = 5
) -> AttributionAgreement:
    """Returns how two attributions over aligned words agree: top-k overlap (share of A's k best words among
    B's k best), Spearman's ρ and Kendall's τ-b of the scores (None where undefined: fewer than 2 words, or
    constant scores)."""
    from scipy.stats import kendalltau, spearmanr

    a = [scores_a[i] for i, _ in pairs]
    b = [scores_b[j] for _, j in pairs]
    if not pairs:
        return AttributionAgreement(n_words=0)
    kk = min(k, len(pairs))
    overlap = len(_top(a, kk) & _top(b, kk)) / kk
    if len(pairs) >= 2 and len(set(a)) > 1 and len(set(b)) > 1:
        rho, tau = float(spearmanr(a, b).statistic), float(kendalltau(a, b).statistic)
        return AttributionAgreement(overlap, rho, tau, len(pairs))
    return AttributionAgreement(overlap, n_words=len(pairs))


def mean_of(values: Sequence[float | None]) -> float | None:
    """Returns the mean of the defined values (None if there are none)."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None
