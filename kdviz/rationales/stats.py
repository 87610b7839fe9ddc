"""Statistics of rationales against the ground truth and human rationales (definitions in `kdviz.rationales`).

`summarize` returns a `RationaleStats` record: the figures of all records, the same figures for the records the
teacher got right and wrong, the teacher's accuracy and the overlap with each choice position, and, where the records
were measured (`kdviz.rationales.faithfulness`), the means of their comprehensiveness and sufficiency. Its `to_dict()` is
the JSON that `kdviz rationales` prints and that comparisons store (report.json), and `from_dict` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kdviz.rationale_records import Faithfulness, RationaleRecord
from kdviz.records import Example, Record

from .select import Plausibility, gold_overlap, plausibility, words_of


@dataclass(frozen=True)
class ExampleOverlap:
    """One example's overlap figures; None (or empty) where the example has no gold answer, choices or human
    rationale to compare with."""

    gold_overlap: bool | None = None  # at least one rationale word is in the gold answer
    gold_word_fraction: float | None = None  # the share of rationale words in the gold answer
    choice_overlap: tuple[bool, ...] = ()  # gold overlap against each choice, in choice order
    distractor_overlap: float | None = None  # the share of wrong choices overlapped
    plausibility: Plausibility | None = None  # against the human rationale
    question_overlap: bool | None = None  # at least one rationale word is in the question (or context)
    faithfulness: Faithfulness | None = None  # measured on the model, for the rationale as it is


def overlap_of(words: Sequence[str], example: Example, faithfulness: Faithfulness | None = None) -> ExampleOverlap:
    """Returns one example's overlap figures: with the gold answer, with each choice, with the question, and with
    the human rationale; `faithfulness` is carried along (it needs the model, see `kdviz.rationales.faithfulness`).
    NLI choices are labels ("entailment", ...), not words a rationale could pick: no gold or choice overlap there."""
    candidates = () if example.task == "nli" else example.choices  # the choices a rationale word could name
    answer = example.answer if example.task != "nli" else None
    hit, fraction = gold_overlap(words, answer) if answer else (None, None)
    choices = tuple(gold_overlap(words, c)[0] for c in candidates)
    wrong = [h for c, h in zip(candidates, choices, strict=True) if c != answer]
    distractor = sum(wrong) / len(wrong) if answer in candidates and wrong else None
    plaus = plausibility(words, example.human_rationale) if example.human_rationale else None
    asked = words_of(f"{example.context or ''} {example.question}")
    in_question = any(w in asked for w in words_of(" ".join(words)))
    return ExampleOverlap(hit, fraction, choices, distractor, plaus, in_question, faithfulness)


def current_faithfulness(rec: RationaleRecord) -> Faithfulness | None:
    """Returns the record's faithfulness if it was measured for the rationale the record holds now (None when it
    was not measured, or a curator has changed the rationale's words since)."""
    f = rec.faithfulness
    return f if f is not None and f.rationale == rec.rationale else None


@dataclass(frozen=True)
class PlausibilityMeans(Record):
    """Mean word-set agreement with the human rationales, over the `n` records that have one."""

    n: int
    precision: float
    recall: float
    f1: float
    iou: float


@dataclass(frozen=True)
class FaithfulnessMeans(Record):
    """Mean faithfulness (ERASER) over the `n` records that were measured: the model's probability of its prediction
    on the full prompt, comprehensiveness and sufficiency of the rationales, and of random words as many."""

    n: int
    p_full: float
    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float


@dataclass(frozen=True)
class OverlapStats(Record):
    """The rates of one group of records (None where no record of the group has what the rate needs)."""

    n: int  # records in the group
    gold_overlap: float | None  # share of records with a rationale word in the gold answer (Ballout et al.'s 68%)
    gold_word_fraction: float | None  # mean share of rationale words in the gold answer
    distractor_overlap: float | None  # mean share of wrong choices overlapped (the chance baseline)
    plausibility: PlausibilityMeans | None  # None when no record has a human rationale
    # Added for issue #12, keyword-only so that subclasses keep their fields and stored stats without them still read.
    question_overlap: float | None = field(default=None, kw_only=True)  # share with a question (or context) word
    faithfulness: FaithfulnessMeans | None = field(default=None, kw_only=True)  # None when none was measured

    def __post_init__(self) -> None:
        if isinstance(self.plausibility, dict):
            object.__setattr__(self, "plausibility", PlausibilityMeans.from_dict(self.plausibility))
        if isinstance(self.faithfulness, dict):
            object.__setattr__(self, "faithfulness", FaithfulnessMeans.from_dict(self.faithfulness))


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


_FAITHFULNESS_KEYS = ("p_full", "comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency")


def _block(rows: list[ExampleOverlap]) -> OverlapStats:
    gold = [r for r in rows if r.gold_overlap is not None]
    plaus = [r.plausibility for r in rows if r.plausibility is not None]
    means = None
    if plaus:
        means = PlausibilityMeans(
            len(plaus), *(_mean([getattr(p, k) for p in plaus]) for k in ("precision", "recall", "f1", "iou"))
        )
    measured = [r.faithfulness for r in rows if r.faithfulness is not None]
    faithful = None
    if measured:
        faithful = FaithfulnessMeans(
            len(measured), *(_mean([getattr(f, k) for f in measured]) for k in _FAITHFULNESS_KEYS)
        )
    return OverlapStats(
        n=len(rows),
        gold_overlap=_mean([float(r.gold_overlap) for r in gold]),
        gold_word_fraction=_mean([r.gold_word_fraction for r in gold]),
        distractor_overlap=_mean([r.distractor_overlap for r in rows if r.distractor_overlap is not None]),
        plausibility=means,
        question_overlap=_mean([float(r.question_overlap) for r in rows if r.question_overlap is not None]),
        faithfulness=faithful,
    )


def summarize(
    items: Sequence[tuple[Sequence[str], Example, bool | None]],
    faithfulness: Sequence[Faithfulness | None] | None = None,
) -> RationaleStats:
    """Returns rates over (rationale words, example, model correct) triples, overall and by correctness;
    `faithfulness`, parallel to `items` (None where a record was not measured), adds the faithfulness means."""
    measured = list(faithfulness) if faithfulness is not None else [None] * len(items)
    if len(measured) != len(items):
        raise ValueError(f"{len(measured)} faithfulness entries for {len(items)} items")
    rows = [overlap_of(words, ex, f) for (words, ex, _), f in zip(items, measured, strict=True)]
    marks = [c for _, _, c in items]
    n_choices = max((len(ex.choices) for _, ex, _ in items), default=0)
    overall = _block(rows)
    return RationaleStats(
        n=overall.n,
        gold_overlap=overall.gold_overlap,
        gold_word_fraction=overall.gold_word_fraction,
        distractor_overlap=overall.distractor_overlap,
        plausibility=overall.plausibility,
        question_overlap=overall.question_overlap,
        faithfulness=overall.faithfulness,
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
    distractor overlap, question overlap, plausibility against human rationales, faithfulness (over the records
    measured for the rationale they hold now), and the teacher's accuracy, overall and split by whether the teacher
    was correct."""
    return summarize(
        [(rec.rationale_words, rec.example, rec.correct) for rec in records],
        [current_faithfulness(rec) for rec in records],
    )
