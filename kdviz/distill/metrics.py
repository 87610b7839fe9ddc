"""The rows a training run logs: a `StepRow` per optimizer step, an `EvalRow` (with its `Sample` predictions) per
evaluation, and the `FinalMetrics` a run ends with.

`finetune(on_metrics=...)` passes these records; `runs.metrics.jsonl` stores their `to_dict()`, one JSON object a
line with a "kind" field ("step" or "eval") that `row_from_dict` reads back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from kdviz.records import Record


def _without_none(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not (k in names and v is None)}


@dataclass(frozen=True)
class Sample(Record):
    """One held-out example's prediction at an evaluation (`correct` is None without a gold answer)."""

    id: str
    question: str
    gold: str | None
    predicted: str
    correct: bool | None


# The loss parts a step can log: the answer task always, the rationale task (multitask), the divergence (logit_kd).
LOSS_PARTS = ("loss_answer", "loss_rationale", "loss_kd")


@dataclass(frozen=True, kw_only=True)
class StepRow(Record):
    """One optimizer step: its loss (the weighted total of its parts), learning rate, time and throughput."""

    kind: ClassVar[Literal["step"]] = "step"
    step: int
    loss_answer: float
    loss_rationale: float | None = None
    loss_kd: float | None = None
    loss: float
    lr: float  # the rate this step used
    elapsed_s: float  # since the run started (model loading included)
    eta_s: float
    samples_per_s: float

    @property
    def parts(self) -> dict[str, float]:
        """Returns the logged loss parts by short name ("answer", "rationale", "kd")."""
        return {n.removeprefix("loss_"): getattr(self, n) for n in LOSS_PARTS if getattr(self, n) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **_without_none(super().to_dict(), LOSS_PARTS)}  # a part not logged is absent


@dataclass(frozen=True, kw_only=True)
class EvalRow(Record):
    """One evaluation on the held-out examples: accuracy (None without gold answers) and a few predictions."""

    kind: ClassVar[Literal["eval"]] = "eval"
    step: int  # 0: the untrained student
    eval_accuracy: float | None
    eval_n: int
    elapsed_s: float
    samples: tuple[Sample, ...] = ()

    def __post_init__(self) -> None:
        samples = tuple(Sample.from_dict(s) if isinstance(s, dict) else s for s in self.samples)
        object.__setattr__(self, "samples", samples)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **super().to_dict()}


MetricsRow = StepRow | EvalRow
ROW_TYPES: dict[str, type[StepRow] | type[EvalRow]] = {"step": StepRow, "eval": EvalRow}


def row_from_dict(data: dict[str, Any]) -> MetricsRow:
    """Returns the row a metrics.jsonl line holds.

    Raises:
        ValueError: no known "kind".  TypeError: a field is missing.
    """
    kind = data.get("kind")
    if kind not in ROW_TYPES:
        raise ValueError(f"a metrics row of unknown kind {kind!r}")
    return ROW_TYPES[kind].from_dict(data)


@dataclass(frozen=True)
class FinalMetrics(Record):
    """Where a run stands: the last step's losses and the last evaluation's accuracy (None: not logged yet)."""

    loss: float | None = None
    loss_answer: float | None = None
    loss_rationale: float | None = None
    loss_kd: float | None = None
    eval_accuracy: float | None = None

    def after_step(self, row: StepRow) -> FinalMetrics:
        return dataclasses.replace(self, loss=row.loss, **{n: getattr(row, n) for n in LOSS_PARTS})

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if v is not None}  # as the run logged them

    @classmethod
    def coerce(cls, value: FinalMetrics | dict[str, Any] | None) -> FinalMetrics:
        """Returns `value` as a record (a dict read from a file, or None for nothing logged)."""
        return value if isinstance(value, FinalMetrics) else cls.from_dict(value or {})


@dataclass(frozen=True)
class TrainResult(Record):
    """How a run ended and its last metrics."""

    run_dir: str
    status: Literal["completed", "cancelled"]
    steps: int
    elapsed_s: float
    final: FinalMetrics = field(default_factory=FinalMetrics)
    teacher_at_test_time: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "final", FinalMetrics.coerce(self.final))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "final": self.final.to_dict()}


def final_of(rows: Sequence[MetricsRow]) -> FinalMetrics:
    """Returns the last metrics of a run's logged rows (its steps' losses, its last evaluation's accuracy)."""
    final = FinalMetrics()
    for row in rows:
        final = final.after_step(row) if isinstance(row, StepRow) else replace(final, eval_accuracy=row.eval_accuracy)
    return final
