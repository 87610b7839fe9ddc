"""A rationale record as a build makes it and a curator edits it: `RationaleRecord`, with its `Provenance`,
`Faithfulness` and curation status. The general records (the `Record` mixin, `Example`, `TokenAttribution`, ...) and
JSONL persistence stay in kdviz.records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from kdviz.records import Example, PredictMode, Record, TargetMode, _as_tuple

CurationStatus = Literal["pending", "accepted", "rejected"]
STATUSES: tuple[CurationStatus, ...] = get_args(CurationStatus)


@dataclass(frozen=True)
class Provenance(Record):
    """How a rationale record was made: by a rationale build (`kdviz.rationales.build`) or a comparison run
    (`kdviz.compare.run`). Every field is optional, since each writer sets only some and older files hold fewer."""

    teacher: str | None = None  # the model that answered and was attributed (a comparison's student, too)
    method: str | None = None  # the attribution method's name
    target_mode: TargetMode | None = None  # the build's attributed target (None: its default, or not a build)
    predict: PredictMode | None = None  # the prediction mode; None for records made before modes
    steps: int | None = None  # integrated gradients' steps (None for other methods)
    rule: str | None = None  # the selection rule, described for people (`SelectionRule.describe()`)
    # The selection rule's fields (`dataclasses.asdict(SelectionRule)`): a plain dict, as kdviz.rationale_records
    # must not import kdviz.rationales; None where the writer kept none (comparisons: their rule is given when
    # measured).
    rule_config: dict[str, Any] | None = None
    trained_as: str | None = None  # the prompt format a comparison's student was trained with
    kdviz_version: str | None = None  # the kdviz version that built the record
    created: str | None = None  # when it was built, UTC ("%Y-%m-%dT%H:%M:%SZ")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """Rebuilds the provenance; reads a comparison's old "model" key as `teacher`, and drops unknown keys."""
        if "model" in data and data.get("teacher") is None:  # comparisons wrote the answering model as "model"
            data = {**data, "teacher": data["model"]}
        return super().from_dict(data)


@dataclass(frozen=True)
class RationaleRecord(Record):
    """One example with the teacher's answer, its word attribution and the selected rationale, ready to curate.

    `rationale` holds indices into `words` (input order); `rationale_text` is what training uses, the selected
    words joined unless a curator edited it. `provenance` says how it was made (`Provenance`: teacher, method, rule,
    version).
    """

    example: Example
    prompt: str
    target: str
    target_mode: TargetMode
    predicted: str | None
    correct: bool | None
    words: tuple[str, ...]
    word_offsets: tuple[tuple[int, int], ...]
    word_scores: tuple[float, ...]
    word_is_template: tuple[bool, ...]
    rationale: tuple[int, ...]
    rationale_text: str
    status: CurationStatus = "pending"
    provenance: Provenance = field(default_factory=Provenance)
    faithfulness: Faithfulness | None = None  # measured on the model that answered (issue #12); None: not measured

    def __post_init__(self) -> None:
        if isinstance(self.example, dict):
            object.__setattr__(self, "example", Example.from_dict(self.example))
        if not isinstance(self.example, Example):  # a file's "example" may hold anything (issue #15)
            raise TypeError(f"example must be an object of the example's fields, not {self.example!r:.60}")
        if isinstance(self.faithfulness, dict):
            object.__setattr__(self, "faithfulness", Faithfulness.from_dict(self.faithfulness))
        if isinstance(self.provenance, dict) or self.provenance is None:  # a file's, or one from before the record
            object.__setattr__(self, "provenance", Provenance.from_dict(self.provenance or {}))
        if not isinstance(self.provenance, Provenance):
            raise TypeError(f"provenance must be an object of the provenance's fields, not {self.provenance!r:.60}")
        for name in ("words", "word_offsets", "word_scores", "word_is_template", "rationale"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if not len(self.words) == len(self.word_offsets) == len(self.word_scores) == len(self.word_is_template):
            raise ValueError("words, word_offsets, word_scores and word_is_template must have the same length")
        if any(not 0 <= i < len(self.words) for i in self.rationale):
            raise ValueError("rationale indices must point at words")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    @property
    def id(self) -> str:
        return self.example.id

    @property
    def rationale_words(self) -> list[str]:
        """Returns the rationale as words: the edited text's words (the selected words unless edited)."""
        return self.rationale_text.split()


@dataclass(frozen=True)
class Faithfulness(Record):
    """How much a rationale drives the model's prediction (ERASER, DeYoung et al. 2020), beside a random baseline.

    Probabilities are the model's probability of its predicted choice, renormalised over the choices, on the record's
    prompt scored as the prediction was made: `p_full` on the whole prompt; `comprehensiveness` = p_full − p(the
    prompt without the rationale words) (high: removing them hurts the prediction); `sufficiency` = p_full − p(the
    prompt keeping only the rationale words and the format's words) (low, even negative: they suffice). The
    `random_*` figures are the same for as many words drawn at random (seeded) from the selection rule's candidates.
    `rationale` and `random` are the indices into the record's words that were measured (a curator's edit since
    leaves `rationale` different from the record's own).
    """

    p_full: float
    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float
    rationale: tuple[int, ...] = ()
    random: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rationale", tuple(self.rationale))
        object.__setattr__(self, "random", tuple(self.random))
