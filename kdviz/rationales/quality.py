"""Rationale quality across selection settings (issue #12): one attribution, many rationales, each measured.

A build's word attributions are chosen from again (`reselect`, no model needed) with top-k for each k and each span,
and every setting is measured the same way: gold overlap against distractor overlap (does the rationale point at
the answer more than at a wrong choice?), question overlap, plausibility against human rationales, and
faithfulness (comprehensiveness and sufficiency beside the random-k baseline, `kdviz.rationales.faithfulness`).
`bench/rationale_quality.py` runs it for every attribution method; the Rationales panel for one build.

Scoring is shared across settings: the full prompt, and the random words drawn for a (k, span) setting, are the
same prompts whatever the method, so a `ScoreMemo` scores each distinct prompt once (a 5-method x 3-k x 2-span
study costs about a third of the prompts it would one setting at a time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdviz.errors import InputError
from kdviz.rationale_records import Faithfulness, RationaleRecord
from kdviz.records import ChoiceScores, Record
from kdviz.resampling import bootstrap_ci

from .build import reselect
from .faithfulness import Scorer, measure_faithfulness, model_scorer
from .select import SPANS, SelectionRule, Span
from .stats import current_faithfulness, rationale_stats

DEFAULT_KS = (3, 5, 10)
Measure = Callable[[Sequence[RationaleRecord], SelectionRule], list[Faithfulness | None]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class QualityCell(Record):
    """The measurements of one selection setting (top-k words over a span) of one attribution method.

    Rates are over the records that have what they need (None when none has): `gold_overlap` and
    `distractor_overlap` as in `kdviz.rationales.stats`; `plausibility_f1` against human rationales; the four
    faithfulness means over the `measured` records, and the gains' intervals (resampling the records); `words` the mean rationale size (below k when a prompt has
    fewer candidate words); `seconds_per_example` the attribution's cost, when the caller timed it.
    """

    method: str
    k: int
    span: Span
    n: int
    words: float
    gold_overlap: float | None
    distractor_overlap: float | None
    question_overlap: float | None
    plausibility_f1: float | None
    measured: int = 0
    comprehensiveness: float | None = None
    random_comprehensiveness: float | None = None
    sufficiency: float | None = None
    random_sufficiency: float | None = None
    seconds_per_example: float | None = None
    # 95% bootstrap intervals of the mean per-record gains (below), over the measured records
    comprehensiveness_gain_ci: tuple[float, float] | None = None
    sufficiency_gain_ci: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("comprehensiveness_gain_ci", "sufficiency_gain_ci"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value) if value is not None else None)

    @property
    def comprehensiveness_gain(self) -> float | None:
        """Comprehensiveness above the random baseline's (higher is better)."""
        c, r = self.comprehensiveness, self.random_comprehensiveness
        return None if c is None or r is None else c - r

    @property
    def sufficiency_gain(self) -> float | None:
        """How much less the prediction drops on the rationale alone than on random words alone (higher is better)."""
        s, r = self.sufficiency, self.random_sufficiency
        return None if s is None or r is None else r - s


class ScoreMemo:
    """Wraps a scorer so that each distinct (prompt, choices, letters) is scored once, however often it is asked."""

    def __init__(self, score: Scorer):
        self.score, self.scores, self.scored = score, {}, 0

    def __call__(self, prompts: list[str], choices: list[tuple[str, ...]], letters: bool) -> list[ChoiceScores]:
        keys = [(p, tuple(c), letters) for p, c in zip(prompts, choices, strict=True)]
        # Longest first: batches of similar lengths waste less on padding (an edited prompt is often half the full).
        new = sorted(dict.fromkeys(k for k in keys if k not in self.scores), key=lambda k: -len(k[0]))
        if new:
            fresh = self.score([p for p, _, _ in new], [c for _, c, _ in new], letters)
            self.scores.update(zip(new, fresh, strict=True))
            self.scored += len(new)
        return [self.scores[k] for k in keys]


def settings(base: SelectionRule | None = None, ks: Sequence[int] = DEFAULT_KS, spans: Sequence[Span] = SPANS):
    """Returns the top-k rules to measure, span-major: every k over each span, the base rule's exclusions kept."""
    if not ks or not spans:
        raise InputError("give at least one k and one span to measure")
    base = base or SelectionRule()
    return [dataclasses.replace(base, top_k=int(k), mass=None, z=None, span=s) for s in spans for k in ks]


def quality_cell(
    method: str, rule: SelectionRule, records: Sequence[RationaleRecord], seconds_per_example: float | None = None
) -> QualityCell:
    """Returns the measurements of records already selected by `rule` (with their faithfulness, where measured)."""
    stats = rationale_stats(records)
    faith = stats.faithfulness
    measured = [f for f in (current_faithfulness(r) for r in records) if f is not None]
    return QualityCell(
        method=method,
        k=rule.top_k or 0,
        span=rule.span,
        n=stats.n,
        words=sum(len(r.rationale) for r in records) / len(records) if records else 0.0,
        gold_overlap=stats.gold_overlap,
        distractor_overlap=stats.distractor_overlap,
        question_overlap=stats.question_overlap,
        plausibility_f1=stats.plausibility.f1 if stats.plausibility else None,
        measured=faith.n if faith else 0,
        comprehensiveness=faith.comprehensiveness if faith else None,
        random_comprehensiveness=faith.random_comprehensiveness if faith else None,
        sufficiency=faith.sufficiency if faith else None,
        random_sufficiency=faith.random_sufficiency if faith else None,
        seconds_per_example=seconds_per_example,
        comprehensiveness_gain_ci=bootstrap_ci([f.comprehensiveness - f.random_comprehensiveness for f in measured]),
        sufficiency_gain_ci=bootstrap_ci([f.random_sufficiency - f.sufficiency for f in measured]),
    )


def quality_table(
    records: Sequence[RationaleRecord],
    rules: Sequence[SelectionRule],
    measure: Measure | None = None,
    *,
    method: str | None = None,
    seconds_per_example: float | None = None,
    on_progress: Progress | None = None,
) -> list[QualityCell]:
    """Returns one cell per rule: the records' attributions selected again by the rule and measured.

    Args:
        records: one build's records (their word scores are what is selected from).
        measure: returns the faithfulness of records selected by a rule (e.g. `faithfulness_measure(...)`); None
            leaves faithfulness out (no model needed).
        method: the attribution method's name in the cells (default: the records' provenance).
        on_progress: called with (settings done, settings) after each.
    """
    if not records:
        raise InputError("no rationale records to measure")
    name = method or str(records[0].provenance.method or "?")
    cells = []
    for n, rule in enumerate(rules):
        chosen = reselect(records, rule)
        # Without a measure every cell goes without faithfulness: a record's own measurement (kept by `reselect`
        # where the rationale is unchanged) had its random baseline drawn under the build's rule, not this one.
        found = measure(chosen, rule) if measure is not None else [None] * len(chosen)
        chosen = [dataclasses.replace(r, faithfulness=f) for r, f in zip(chosen, found, strict=True)]
        cells.append(quality_cell(name, rule, chosen, seconds_per_example))
        if on_progress:
            on_progress(n + 1, len(rules))
    return cells


def faithfulness_measure(
    loaded,
    *,
    memo: ScoreMemo | None = None,
    seed: int = 0,
    batch_size: int = 8,
    cache_dir: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Measure:
    """Returns a `Measure` that scores on `loaded` (a `LoadedModel`) through `memo` (shared across methods when
    given), caching each record's measurement on disk as `kdviz rationales` does."""
    memo = memo or ScoreMemo(model_scorer(loaded, 4 * batch_size))

    def measure(records: Sequence[RationaleRecord], rule: SelectionRule) -> list[Faithfulness | None]:
        return measure_faithfulness(
            loaded, records, seed=seed, rule=rule, batch_size=batch_size, cache_dir=cache_dir, score=memo,
            should_stop=should_stop,
        )  # fmt: skip

    return measure
