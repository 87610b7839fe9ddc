"""The records of a comparison, as report.json stores them: each model's answers, its summary row, the paired test
of every two models, and the settings it ran with. `Comparison.to_dict()` is report.json (less its key order) and
`Comparison.from_dict` reads one back, reports written before these records included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from kdviz.rationale_records import RationaleRecord
from kdviz.rationales.stats import RationaleStats
from kdviz.records import PREDICT_MODES, SELECTABLE_TARGET_MODES, Example, PredictMode, Record, TargetMode

Role = Literal["teacher", "student"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class McNemarTest(Record):
    """McNemar's exact test of two models' paired correctness: `a_only` examples only A gets right, `b_only` only
    B, `n` examples both were graded on."""

    a_only: int
    b_only: int
    n: int
    p_value: float


@dataclass(frozen=True)
class AttributionAgreement(Record):
    """How two models' word attributions agree over the words both prompts share (None where undefined): the share
    of A's top-k words among B's, Spearman's ρ and Kendall's τ-b; `n_words` aligned (None for a mean over
    examples)."""

    top_k_overlap: float | None = None
    spearman: float | None = None
    kendall: float | None = None
    n_words: int | None = None


@dataclass(frozen=True)
class PairwiseTest(Record):
    """Two models of a comparison: McNemar's test of their correctness and how often their answers agree."""

    a: str
    b: str
    a_only: int
    b_only: int
    n: int
    p_value: float
    agreement: float | None


@dataclass(frozen=True)
class ModelSummary(Record):
    """One model's row of a comparison: accuracy with its 95% bootstrap interval, agreement with the teacher, the
    overlap statistics of its own rationale words, and for students their attributions against the teacher's."""

    role: Role
    method: str | None  # how a student was trained (its run's method), else None
    teacher_at_test_time: bool
    n: int  # examples answered
    accuracy: float | None  # over the examples with a gold answer
    ci_low: float | None
    ci_high: float | None
    agreement_with_teacher: float | None  # None for the teacher itself
    overlap: RationaleStats
    accuracy_no_rationale: float | None = None  # students given the teacher's rationale: accuracy without it
    attribution_vs_teacher: AttributionAgreement | None = None  # students: means over the examples

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if isinstance(self.overlap, dict):
            object.__setattr__(self, "overlap", RationaleStats.from_dict(self.overlap))
        if isinstance(self.attribution_vs_teacher, dict):
            object.__setattr__(
                self, "attribution_vs_teacher", AttributionAgreement.from_dict(self.attribution_vs_teacher)
            )


@dataclass(frozen=True)
class ComparisonSettings(Record):
    """What a comparison ran with: model names as shown, the attribution method, k, the examples compared, the
    prediction mode (None: each model's default), the target mode attributed (None: a comparison saved before
    target modes, which attributed each model's predicted choice); and, where the app or `kdviz compare` recorded them, the data
    file, the example limit and the equivalent command."""

    teacher: str
    students: tuple[str, ...]
    method: str
    top_k: int
    n: int  # examples compared
    data: str | None = None
    limit: int | None = None
    command: str | None = None  # the `kdviz compare` command that writes the same report
    predict: PredictMode | None = None  # how the models predicted a choice; None: each model's default
    target_mode: TargetMode | None = None  # "choice", "generate" or "gold"; None: saved before modes ("choice")

    def __post_init__(self) -> None:
        object.__setattr__(self, "students", tuple(self.students))
        if self.predict is not None and self.predict not in PREDICT_MODES:
            raise ValueError(f"predict must be one of {PREDICT_MODES} or None, not {self.predict!r}")
        if self.target_mode is not None and self.target_mode not in SELECTABLE_TARGET_MODES:
            raise ValueError(f"target_mode must be one of {SELECTABLE_TARGET_MODES} or None, not {self.target_mode!r}")


@dataclass(frozen=True)
class ModelAnswers(Record):
    """One model's answers and attributions on the compared examples (records in example order)."""

    name: str
    role: Role
    method: str | None  # how a student was trained (from its run's kdviz.json), else None
    teacher_at_test_time: bool
    records: tuple[RationaleRecord, ...]
    predicted_no_rationale: tuple[str, ...] = ()  # rationale_input students: answers without the teacher's words

    def __post_init__(self) -> None:
        records = tuple(r if isinstance(r, RationaleRecord) else RationaleRecord.from_dict(r) for r in self.records)
        object.__setattr__(self, "records", records)
        object.__setattr__(self, "predicted_no_rationale", tuple(self.predicted_no_rationale))

    @property
    def predicted(self) -> list[str]:
        # An empty generation is an answer (wrong), not the target: in "gold" mode the target is the gold answer.
        return [r.target if r.predicted is None else r.predicted for r in self.records]

    @property
    def correct(self) -> list[bool | None]:
        return [r.correct for r in self.records]


@dataclass(frozen=True)
class Comparison(Record):
    """A teacher and students on the same examples, with each model's summary row and the paired tests."""

    examples: tuple[Example, ...]
    models: tuple[ModelAnswers, ...]  # the teacher first
    settings: ComparisonSettings
    summary: dict[str, ModelSummary] = field(default_factory=dict)  # by model name, in model order
    pairwise: tuple[PairwiseTest, ...] = ()
    cancelled: bool = False

    def __post_init__(self) -> None:
        examples = tuple(e if isinstance(e, Example) else Example.from_dict(e) for e in self.examples)
        models = tuple(m if isinstance(m, ModelAnswers) else ModelAnswers.from_dict(m) for m in self.models)
        summary = {k: v if isinstance(v, ModelSummary) else ModelSummary.from_dict(v) for k, v in self.summary.items()}
        pairwise = tuple(p if isinstance(p, PairwiseTest) else PairwiseTest.from_dict(p) for p in self.pairwise)
        for name, value in (("examples", examples), ("models", models), ("summary", summary), ("pairwise", pairwise)):
            object.__setattr__(self, name, value)
        if isinstance(self.settings, dict):
            object.__setattr__(self, "settings", ComparisonSettings.from_dict(self.settings))
