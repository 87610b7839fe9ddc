"""Statistics of rationales against the ground truth and human rationales (definitions in `kdviz.rationales`).

`summarize` returns a `RationaleStats` record: the figures of all records, the same figures for the records the
teacher got right and wrong, the teacher's accuracy and the overlap with each choice position. Its `to_dict()` is
the JSON that `kdviz rationales` prints and that comparisons store (report.json), and `from_dict` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kdviz.records import Example, RationaleRecord, Record

from .select import Plausibility, gold_overlap, plausibility


@dataclass(frozen=True)
class ExampleOverlap:
    """One example's overlap figures; None (or empty) where the example has no gold answer, choices or human
    rationale to compare with."""

    gold_overlap: bool | None = None  # at least one rationale word is in the gold answer
    gold_word_fraction: float | None = None  # the share of rationale words in the gold answer
    choice_overlap: tuple[bool, ...] = ()  # gold overlap against each choice, in choice order
    distractor_overlap: float | None = None  # the share of wrong choices overlapped
    plausibility: Plausibility | None = None  # against the human rationale


def overlap_of(words: Sequence[str], example: Example) -> ExampleOverlap:
    """Returns one example's overlap figures: with the gold answer, with each choice, and with the human rationale."""
    hit, fraction = gold_overlap(words, example.answer) if example.answer else (None, None)
    choices = tuple(gold_overlap(words, c)[0] for c in example.choices)
    wrong = [h for c, h in zip(example.choices, choices, strict=True) if c != example.answer]
    distractor = sum(wrong) / len(wrong) if example.answer in example.choices and wrong else None
    plaus = plausibility(words, example.human_rationale) if example.human_rationale else None
    return ExampleOverlap(hit, fraction, choices, distractor, plaus)


@dataclass(frozen=True)
class PlausibilityMeans(Record):
    """Mean word-set agreement with the human rationales, over the `n` records that have one."""

    n: int
    precision: float
    recall: float
    f1: float
    iou: float


@dataclass(frozen=True)
class OverlapStats(Record):
    """The rates of one group of records (None where no record of the group has what the rate needs)."""

    n: int  # records in the group
    gold_overlap: float | None  # share of records with a rationale word in the gold answer (Ballout et al.'s 68%)
    gold_word_fraction: float | None  # mean share of rationale words in the gold answer
    distractor_overlap: float | None  # mean share of wrong choices overlapped (the chance baseline)
    plausibility: PlausibilityMeans | None  # None when no record has a human rationale

    def __post_init__(self) -> None:
        if isinstance(self.plausibility, dict):
            object.__setattr__(self, "plausibility", PlausibilityMeans.from_dict(self.plausibility))


@dataclass(frozen=True)
class ByCorrectness(Record):
    """The rates split by whether the teacher (or the model) answered correctly; ungraded records are in neither."""

    correct: OverlapStats
    incorrect: OverlapStats

    def __post_init__(self) -> None:
        for name in ("correct", "incorrect"):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, OverlapStats.from_dict(getattr(self, name)))


@dataclass(frozen=True)
class RationaleStats(OverlapStats):
    """The statistics of a set of rationales: the rates of all records (the inherited fields), the model's
    accuracy, the rates by correctness, and the gold-overlap rate against each choice position (A, B, ...).

    `from_dict` rebuilds the nested blocks (in `__post_init__`), so a stored `to_dict()` reads back equal."""

    accuracy: float | None  # over the graded records; None when none is graded
    by_correctness: ByCorrectness
    choice_overlap_by_position: tuple[float | None, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.by_correctness, dict):
            object.__setattr__(self, "by_correctness", ByCorrectness.from_dict(self.by_correctness))
        object.__setattr__(self, "choice_overlap_by_position", tuple(self.choice_overlap_by_position))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _block(rows: list[ExampleOverlap]) -> OverlapStats:
    gold = [r for r in rows if r.gold_overlap is not None]
    plaus = [r.plausibility for r in rows if r.plausibility is not None]
    means = None
    if plaus:
        means = PlausibilityMeans(
            len(plaus), *(_mean([getattr(p, k) for p in plaus]) for k in ("precision", "recall", "f1", "iou"))
        )
    return OverlapStats(
        n=len(rows),
        gold_overlap=_mean([float(r.gold_overlap) for r in gold]),
        gold_word_fraction=_mean([r.gold_word_fraction for r in gold]),
        distractor_overlap=_mean([r.distractor_overlap for r in rows if r.distractor_overlap is not None]),
        plausibility=means,
    )


def summarize(items: Sequence[tuple[Sequence[str], Example, bool | None]]) -> RationaleStats:
    """Returns rates over (rationale words, example, model correct) triples, overall and by correctness."""
    rows = [overlap_of(words, ex) for words, ex, _ in items]
    marks = [c for _, _, c in items]
    n_choices = max((len(ex.choices) for _, ex, _ in items), default=0)
    overall = _block(rows)
    return RationaleStats(
        n=overall.n,
        gold_overlap=overall.gold_overlap,
        gold_word_fraction=overall.gold_word_fraction,
        distractor_overlap=overall.distractor_overlap,
        plausibility=overall.plausibility,
        accuracy=_mean([float(c) for c in marks if c is not None]),
        by_correctness=ByCorrectness(
            correct=_block([r for r, c in zip(rows, marks, strict=True) if c is True]),
            incorrect=_block([r for r, c in zip(rows, marks, strict=True) if c is False]),
        ),
        choice_overlap_by_position=tuple(
            _mean([float(r.choice_overlap[k]) for r in rows if len(r.choice_overlap) > k]) for k in range(n_choices)
        ),
    )


def rationale_stats(records: Sequence[RationaleRecord]) -> RationaleStats:
    """Returns the statistics of a rationale build: gold overlap (the paper's 68% figure), gold word fraction,
    distractor overlap, plausibility against human rationales, and the teacher's accuracy, overall and split by
    whether the teacher was correct."""
    return summarize([(rec.rationale_words, rec.example, rec.correct) for rec in records])
