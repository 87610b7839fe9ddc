"""Training data for students: what each distillation method feeds the model, read from any kdviz output.

A student trains on `TrainExample`s: a task example plus, where the data has them, the teacher's answer and the
teacher's rationale words. They are read from a rationale export (folder, JSONL, Parquet, HF dataset), from the
curated `records.jsonl` of a Rationales build, or from any plain dataset: `standard` needs only gold answers; the
others need `teacher_answer` / `teacher_rationale` columns, which a plain dataset may hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .data import _rows_hub, _rows_jsonl, _rows_table, example_from_row
from .errors import InputError, UnknownNameError
from .prompts import RenderedPrompt, render
from .records import Example, RationaleRecord, Record

LABEL_PREFIX, RATIONALE_PREFIX = "[label] ", "[rationale] "  # task prefixes of Distilling step-by-step


@dataclass(frozen=True)
class TrainExample(Record):
    """A task example with the teacher's outputs for it (None where the data has none)."""

    example: Example
    teacher_answer: str | None = None
    rationale: str | None = None  # the teacher's rationale words, space-separated

    def __post_init__(self) -> None:
        if isinstance(self.example, dict):
            object.__setattr__(self, "example", Example.from_dict(self.example))


@dataclass(frozen=True)
class Method:
    """A distillation method: what it needs from the data and the teacher, and what it costs at test time."""

    name: str
    summary: str
    needs_gold: bool = True  # trains on (or mixes in) the gold answer
    needs_teacher_answer: bool = False
    needs_rationale: bool = False
    needs_teacher_model: bool = False  # the teacher runs during training (its logits)
    teacher_at_test_time: bool = False  # a new input needs the teacher's rationale before the student answers


METHODS = {
    m.name: m
    for m in (
        Method("standard", "input → gold answer: plain fine-tuning, the baseline"),
        Method("teacher_label", "input → the teacher's answer (sequence-level KD)", False, True),
        Method(
            "rationale_input",
            "input + the teacher's rationale words → answer (Ballout et al., 2024)",
            needs_rationale=True,
            teacher_at_test_time=True,
        ),
        Method(
            "multitask",
            "[label] input → answer and [rationale] input → rationale words, α·answer + (1−α)·rationale "
            "(Distilling step-by-step, Hsieh et al., 2023)",
            needs_rationale=True,
        ),
        Method(
            "logit_kd",
            "gold answer loss mixed with KL (or JSD) to the teacher's token distributions; same vocabulary only",
            needs_teacher_model=True,
        ),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UnknownNameError("distillation method", name, tuple(METHODS))
    return METHODS[name]


def with_rationale(prompt: str, rationale: str) -> str:
    """Returns the prompt with a "Rationale:" line just before its final "Answer:" cue."""
    return _with_rationale(RenderedPrompt(prompt), rationale).text


def _with_rationale(rendered: RenderedPrompt, rationale: str) -> RenderedPrompt:
    # The inserted line counts as template: attribution shows it, but rationale selection and statistics only
    # look at the task's own words.
    cue, text = "\nAnswer:", rendered.text
    at = len(text) - len(cue) if text.endswith(cue) else len(text)
    line = f"\nRationale: {rationale.strip()}"
    spans = [(a, b) if b <= at else (a + len(line), b + len(line)) for a, b in rendered.template_spans]
    return RenderedPrompt(text[:at] + line + text[at:], tuple(sorted([*spans, (at, at + len(line))])))


def render_student(item: TrainExample, method: str, task: str = "answer") -> RenderedPrompt:
    """Returns the student's input for an example under a method, with the spans that are format, not task.

    `task` is "answer", or "rationale" for the second task of multitask.
    """
    rendered = render(item.example)
    if method == "rationale_input":
        if not item.rationale:
            raise InputError(f"example {item.example.id!r} has no teacher rationale, which rationale_input needs")
        return _with_rationale(rendered, item.rationale)
    if method == "multitask":
        prefix = RATIONALE_PREFIX if task == "rationale" else LABEL_PREFIX
        spans = ((0, len(prefix)), *((a + len(prefix), b + len(prefix)) for a, b in rendered.template_spans))
        return RenderedPrompt(prefix + rendered.text, spans)
    return rendered


def student_prompt(item: TrainExample, method: str, task: str = "answer") -> str:
    """Returns the student's input text for an example under a method (see `render_student`)."""
    return render_student(item, method, task).text


def training_pairs(item: TrainExample, method: str) -> dict[str, tuple[str, str]]:
    """Returns {task: (prompt, target)} for one example: "answer" always, "rationale" for multitask."""
    target = item.teacher_answer if method == "teacher_label" else item.example.answer
    pairs = {"answer": (student_prompt(item, method), str(target))}
    if method == "multitask":
        pairs["rationale"] = (student_prompt(item, method, "rationale"), str(item.rationale))
    return pairs


def usable(items: Sequence[TrainExample], method: Method) -> list[TrainExample]:
    """Returns the examples a method can train on; raises a clear error when the data lacks what it needs."""
    kept = list(items)
    for needed, attr, what in (
        (method.needs_gold, "answer", "gold answers"),
        (method.needs_teacher_answer, "teacher_answer", "the teacher's answers"),
        (method.needs_rationale, "rationale", "the teacher's rationales"),
    ):
        if not needed:
            continue
        kept = [t for t in kept if (t.example.answer if attr == "answer" else getattr(t, attr))]
        if not kept:
            hint = (
                " Build them in the Rationales panel (or with `kdviz rationales`) and train on its export."
                if attr != "answer"
                else ""
            )
            raise InputError(f"method {method.name!r} needs {what}; the data has none.{hint}")
    return kept


def _from_row(row: dict, index: int) -> TrainExample | None:
    """Returns the training example of one row of any supported shape (None for a rejected rationale)."""
    if row.get("status") == "rejected":
        return None
    if "example" in row and "words" in row:  # a RationaleRecord (build or curation records.jsonl)
        record = RationaleRecord.from_dict(row)
        answer = record.predicted if record.predicted is not None else record.target
        return TrainExample(record.example, answer, record.rationale_text or None)
    if "teacher_answer" in row and "rationale" in row and "prompt" in row:  # a row of `kdviz export`
        example = Example(
            str(row.get("id", index)),
            row.get("task") or ("mcqa" if row.get("choices") else "qa"),
            str(row.get("question", "")),
            tuple(row.get("choices") or ()),
            row.get("answer"),
            row.get("context"),
            row.get("human_rationale"),
        )
        return TrainExample(example, row.get("teacher_answer"), row.get("rationale") or None)
    # A plain dataset may carry its own teacher's outputs (the CommonsenseQA file has a 540B model's answer and
    # chain of thought): teacher_label and multitask can then train on those.
    return TrainExample(example_from_row(row, index), row.get("teacher_answer"), row.get("teacher_rationale"))


def _rows(source: str | Path):
    text = str(source)
    if text.startswith("hf:"):
        return _rows_hub(text[3:]), text[3:]
    path = Path(source).expanduser()
    if path.is_dir():
        for name in ("rationales.jsonl", "records.jsonl", "rationales.parquet"):
            if (path / name).is_file():
                return _rows(path / name)
        folder = path / "hf_dataset" if (path / "hf_dataset").is_dir() else path
        if (folder / "dataset_info.json").is_file():
            import datasets

            return iter(datasets.load_from_disk(str(folder))), path.name
        raise InputError(
            f"folder {path} holds no rationale export (rationales.jsonl, rationales.parquet, hf_dataset) "
            "and no records.jsonl"
        )
    if not path.is_file():
        raise InputError(f"no such data file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _rows_jsonl(path), path.name
    if suffix in (".csv", ".parquet"):
        return _rows_table(path), path.name
    raise InputError(f"{path.name}: unsupported file type {suffix!r}; use .jsonl, .csv, .parquet or an export folder")


def load_train_examples(source: str | Path, limit: int | None = None) -> list[TrainExample]:
    """Returns the training examples in a file, export folder or hub dataset ("hf:name[:split]").

    Raises:
        InputError: missing, empty or malformed data (the message names the file and the problem).
    """
    rows, name = _rows(source)
    items: list[TrainExample] = []
    for n, row in enumerate(rows):
        try:
            item = _from_row(dict(row), n)
        except (TypeError, ValueError, KeyError, json.JSONDecodeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{name}, record {n}: cannot be read as a training example ({exc})") from exc
        if item is not None:
            items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise InputError(f"{name} holds no training examples")
    return items
