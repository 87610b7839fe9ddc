"""Typed, serialisable records passed between kdviz's stages, and atomic JSONL/JSON persistence for them.

Every record is a frozen dataclass of plain Python values (no tensors), so any stage can be re-run from a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, get_args

from kdviz.files import write_atomic

try:
    import fcntl
except ImportError:  # Windows: no flock, so no data-parallel builds into one cache there
    fcntl = None  # type: ignore[assignment]

R = TypeVar("R", bound="Record")


class Record:
    """Mixin: `to_dict()` gives JSON-ready values, `from_dict()` rebuilds an equal record."""

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples become lists, as in the file

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def _as_tuple(value: Iterable[Any] | None) -> tuple[Any, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (value or ()))


@dataclass(frozen=True)
class Example(Record):
    """One task instance: multiple-choice QA, NLI or free-form QA.

    `task` is "mcqa" (question + choices), "nli" (`context` = premise, `question` = hypothesis, choices = labels)
    or "qa" (question, free-text answer). `human_rationale` is a human-marked evidence span, or a human explanation
    where the data has only that (e-SNLI, ANLI).
    `teacher_rationale` and `teacher_answer` are what a teacher outside kdviz said, where the data ships it (the
    540B model's chain of thought and answer of "Distilling step-by-step"); `answer_value` is the value of an
    arithmetic gold answer (SVAMP's "( 84.0 / 2.0 )" is 42.0).
    """

    id: str
    task: str
    question: str
    choices: tuple[str, ...] = ()
    answer: str | None = None
    context: str | None = None
    human_rationale: str | None = None
    teacher_rationale: str | None = None
    teacher_answer: str | None = None
    answer_value: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.task not in ("mcqa", "nli", "qa"):
            raise ValueError(f"task must be mcqa, nli or qa, not {self.task!r}")

    def task_dict(self) -> dict[str, Any]:
        """Returns `to_dict()` without what the data adds beside the task (`DATA_EXTRAS`): caches key examples on
        it, so attributions cached before those fields were read still match, and reading them never re-runs one."""
        return {k: v for k, v in self.to_dict().items() if k not in DATA_EXTRAS}


DATA_EXTRAS = ("teacher_rationale", "teacher_answer", "answer_value")  # an Example's fields no model reads


@dataclass(frozen=True)
class TrainExample(Record):
    """A task example with a teacher's outputs for it (None where the data has none): what students train on."""

    example: Example
    teacher_answer: str | None = None
    rationale: str | None = None  # the teacher's rationale words, space-separated

    def __post_init__(self) -> None:
        if isinstance(self.example, dict):
            object.__setattr__(self, "example", Example.from_dict(self.example))


@dataclass(frozen=True)
class Generation(Record):
    """A model's free-text completion of a prompt."""

    model_name: str
    prompt: str
    completion: str
    completion_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "completion_tokens", tuple(self.completion_tokens))


@dataclass(frozen=True)
class ChoiceScores(Record):
    """Length-normalised log-likelihood of each answer choice; the prediction is the highest-scoring choice."""

    model_name: str
    prompt: str
    choices: tuple[str, ...]
    scores: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "scores", tuple(self.scores))
        if len(self.choices) != len(self.scores) or not self.choices:
            raise ValueError(f"{len(self.scores)} scores for {len(self.choices)} choices")

    @property
    def predicted_index(self) -> int:
        return max(range(len(self.scores)), key=self.scores.__getitem__)

    @property
    def predicted(self) -> str:
        return self.choices[self.predicted_index]


# How the attributed target was chosen: the model's free completion, its best-scoring choice, the gold answer, or
# a target string the caller gave ("forced").
TargetMode = Literal["generate", "choice", "gold", "forced"]
TARGET_MODES: tuple[TargetMode, ...] = get_args(TargetMode)
SELECTABLE_TARGET_MODES: tuple[TargetMode, ...] = ("choice", "generate", "gold")  # "forced": give the target itself

# How a model predicts a choice (issue #12): "letter" reads the next-token letter after the lettered choices, "cloze"
# scores each choice's text after the question alone, "choice-text" each one's text after the listed choices.
PredictMode = Literal["letter", "cloze", "choice-text"]
PREDICT_MODES: tuple[PredictMode, ...] = get_args(PredictMode)
# Contrastive targets, log p(target) - log p(contrast): "runner-up" the prediction against the best other choice,
# "gold" the gold answer against the prediction (the runner-up when they are equal, so it is never zero).
ContrastMode = Literal["runner-up", "gold"]
CONTRAST_MODES: tuple[ContrastMode, ...] = get_args(ContrastMode)


@dataclass(frozen=True)
class Prediction(Record):
    """What a model answered for an example, beside the target that was attributed.

    `predicted` is its best-scoring choice where `choices` were scored (`choice_scores`, parallel to them, are
    log-probabilities: of each choice's letter renormalised over the letters in "letter" mode, length-normalised
    log-likelihoods of each choice's text otherwise), or the answer it was judged on otherwise; `mode` is the
    prediction mode that scored the choices (None where none were scored, or for records written before modes
    existed: those were "cloze"); `generated` its free completion where one was generated; `correct` compares
    `predicted` with `gold` (None without a gold answer or prediction).
    """

    predicted: str | None = None
    correct: bool | None = None
    gold: str | None = None
    choices: tuple[str, ...] = ()
    choice_scores: tuple[float, ...] = ()
    generated: str | None = None
    mode: PredictMode | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "choice_scores", tuple(self.choice_scores))
        if len(self.choices) != len(self.choice_scores):
            raise ValueError(f"{len(self.choice_scores)} choice scores for {len(self.choices)} choices")
        if self.mode is not None and self.mode not in PREDICT_MODES:
            raise ValueError(f"mode must be one of {PREDICT_MODES}, not {self.mode!r}")

    def best_other(self, choice: str) -> str | None:
        """Returns the best-scoring choice other than `choice` (None with fewer than two choices scored)."""
        others = [i for i, c in enumerate(self.choices) if c != choice]
        return self.choices[max(others, key=self.choice_scores.__getitem__)] if others else None

    @property
    def runner_up(self) -> str | None:
        """Returns the second-best choice (None with fewer than two choices scored)."""
        return self.best_other(self.predicted) if self.predicted is not None else None


@dataclass(frozen=True)
class TokenAttribution(Record):
    """How much each prompt token (and word) contributed to a target completion.

    Token level: `token_scores[t][i]` is the attribution of input token i to output token t
    (shape [len(output_tokens)][len(input_tokens)]); `seq_scores[i]` attributes the whole target
    (its summed log-probability) to input token i. Only the prompt's own tokens appear: chat-template
    and special tokens are excluded. `input_offsets` are character spans into `prompt`.

    Word level (the same scores merged over subword pieces): `words`, `word_offsets`, `word_scores`
    ([len(words)]), `word_token_scores` ([len(output_tokens)][len(words)]), and `word_is_template`, true
    for the prompt format's own words ("Question:", "A)", ...).

    `prediction` is what the model answered (its choice scores, correctness, prediction mode), where that is known.

    `integral` (integrated gradients only) is f(input) - f(baseline) of the attributed objective: what the prompt
    tokens' scores sum to when the path integral is exact; `completeness_error` says how far the scores' sum is from
    it with the steps used (Sundararajan et al.'s completeness; Captum's convergence delta, relative).

    A contrastive attribution (`contrast` set: the choice, or its letter, attributed against) scores
    log p(target) - log p(contrast) given the same prompt: `seq_scores` and `word_scores` attribute that difference,
    and the last `n_contrast_tokens` of `output_tokens` are the contrast's tokens, whose rows in `token_scores`
    attribute -log p(contrast token) (so the rows still sum to the whole difference for additive methods).
    """

    model_name: str
    method: str
    prompt: str
    target: str
    target_mode: TargetMode
    input_tokens: tuple[str, ...]
    input_offsets: tuple[tuple[int, int], ...]
    output_tokens: tuple[str, ...]
    token_scores: tuple[tuple[float, ...], ...]
    seq_scores: tuple[float, ...]
    words: tuple[str, ...] = ()
    word_offsets: tuple[tuple[int, int], ...] = ()
    word_scores: tuple[float, ...] = ()
    word_token_scores: tuple[tuple[float, ...], ...] = ()
    word_is_template: tuple[bool, ...] = ()
    example_id: str | None = None
    prediction: Prediction | None = None
    contrast: str | None = None
    n_contrast_tokens: int = 0
    integral: float | None = None

    @property
    def completeness_error(self) -> float | None:
        """Returns |sum of the prompt tokens' scores - integral| / |integral| (None without an integral)."""
        if self.integral is None:
            return None
        gap = abs(sum(self.seq_scores) - self.integral)
        return gap / abs(self.integral) if self.integral else (0.0 if gap == 0 else float("inf"))

    def __post_init__(self) -> None:
        for name in (
            "input_tokens",
            "input_offsets",
            "output_tokens",
            "token_scores",
            "seq_scores",
            "words",
            "word_offsets",
            "word_scores",
            "word_token_scores",
            "word_is_template",
        ):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if isinstance(self.prediction, dict):
            object.__setattr__(self, "prediction", Prediction.from_dict(self.prediction))
        n_in, n_out, n_words = len(self.input_tokens), len(self.output_tokens), len(self.words)
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, not {self.target_mode!r}")
        if len(self.input_offsets) != n_in or len(self.seq_scores) != n_in:
            raise ValueError(
                f"{len(self.seq_scores)} scores / {len(self.input_offsets)} offsets for {n_in} input tokens"
            )
        if len(self.token_scores) != n_out or any(len(row) != n_in for row in self.token_scores):
            raise ValueError(f"token_scores must be [{n_out}][{n_in}] (output x input tokens)")
        if (len(self.word_offsets), len(self.word_scores), len(self.word_is_template)) != (n_words,) * 3:
            raise ValueError(f"word_offsets, word_scores and word_is_template must each have {n_words} entries")
        if len(self.word_token_scores) != (n_out if n_words else 0) or any(
            len(row) != n_words for row in self.word_token_scores
        ):
            raise ValueError(f"word_token_scores must be [{n_out}][{n_words}] (output tokens x words)")
        if not 0 <= self.n_contrast_tokens <= n_out or (self.n_contrast_tokens and self.contrast is None):
            raise ValueError(f"n_contrast_tokens must count contrast tokens among the {n_out} output tokens")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenAttribution:
        if "meta" in data and "prediction" not in data:  # written before the Prediction record: its keys match
            data = {**data, "prediction": Prediction.from_dict(data["meta"]) if data["meta"] else None}
        return super().from_dict(data)

    @property
    def predicted(self) -> str | None:
        """Returns the model's answer: its predicted choice where choices were scored, else a generated target."""
        if self.prediction is not None and self.prediction.predicted is not None:
            return self.prediction.predicted
        return self.target if self.target_mode == "generate" else None

    def top_words(self, k: int = 10, include_template: bool = False) -> list[tuple[str, float]]:
        """Returns the k highest-scoring words as (word, score), best first."""
        ranked = sorted(
            (i for i in range(len(self.words)) if include_template or not self.word_is_template[i]),
            key=lambda i: -self.word_scores[i],
        )
        return [(self.words[i], self.word_scores[i]) for i in ranked[:k]]


@dataclass(frozen=True)
class ProgressEvent(Record):
    """Where a long job stands: `done` of `total` units of its current stage.

    `stage` says what is at work ("teacher", "student", "attributing", "training"), `model` which model, where one
    is; a UI shows the fraction and an ETA from these, a CLI a bar. Jobs call `on_progress(event)` after each unit
    of work, and once with done=0 (or the units already cached) when a stage starts.
    """

    stage: str
    done: int
    total: int
    model: str | None = None
    elapsed_s: float | None = None  # seconds since the stage started, where the job measures them

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (elapsed / done per unit); None before the first unit or untimed."""
        if self.elapsed_s is None or self.done <= 0:
            return None
        return self.elapsed_s / self.done * max(self.total - self.done, 0)


class RecordLog(Generic[R]):
    """An append-only JSONL file of records by key, the disk cache of long jobs (attributions, faithfulness).

    Each `add` appends a batch and flushes it to disk, so a crash or a cancel loses at most the batch being
    written; `load` skips a torn last line. Each line is {"key": ..., `field`: record}.
    """

    def __init__(self, path: str | Path, cls: type[R], field: str):
        self.path, self.cls, self.field = Path(path), cls, field

    def load(self) -> dict[str, R]:
        """Returns the logged records by key (a later line for a key wins)."""
        found: dict[str, R] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    found[entry["key"]] = self.cls.from_dict(entry[self.field])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        return found

    def add(self, items: Iterable[tuple[str, R]]) -> None:
        """Appends (key, record) pairs and flushes them to disk.

        The append holds an exclusive lock on the file: the processes of a data-parallel build
        (`kdviz.rationales.parallel`) share one file, and a batch larger than one write could interleave with theirs.
        """
        data = "".join(json.dumps({"key": k, self.field: v.to_dict()}, ensure_ascii=False) + "\n" for k, v in items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:  # "a": every write lands at the end, whatever was read before
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            if handle.seek(0, os.SEEK_END) > 0 and handle.seek(-1, os.SEEK_END) >= 0 and handle.read(1) != b"\n":
                data = "\n" + data  # a kill mid-line left a torn last line: end it, keep ours whole
            handle.write(data.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


def save_jsonl(records: Iterable[Record], path: str | Path) -> Path:
    """Writes records one JSON object a line, atomically; returns the path."""
    return write_atomic(path, "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))


def load_jsonl(path: str | Path, cls: type[R]) -> list[R]:
    """Reads records of type `cls` written by `save_jsonl`."""
    with open(path, encoding="utf-8") as handle:
        return [cls.from_dict(json.loads(line)) for line in handle if line.strip()]
