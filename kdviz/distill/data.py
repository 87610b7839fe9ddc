"""Training data for students: what each distillation method feeds the model, read from any kdviz output.

A student trains on `TrainExample`s: a task example plus, where the data has them, the teacher's answer and the
teacher's rationale words. They are read from a rationale export (folder, JSONL, Parquet, HF dataset), from the
curated `records.jsonl` of a Rationales build, or from any plain dataset: `standard` needs only gold answers; the
others need `teacher_answer` / `teacher_rationale` columns, which a plain dataset may hold.

Sources (`TrainConfig.rationale_source` / `label_source`): "build" trains on the rationales and answers the data
holds as training data (a build's attribution rationales and its teacher's predictions; a plain dataset's own
columns), "data" on the example's `teacher_rationale` / `teacher_answer` fields, which a build keeps from its
dataset: the same examples, with a build's attribution rationales or the dataset's 540B chain of thought.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from kdviz.config import TrainConfig
from kdviz.data import example_from_row, rows_of
from kdviz.errors import InputError
from kdviz.rationale_records import RationaleRecord
from kdviz.records import Example, TrainExample
from kdviz.workspace import check_readable

from .methods import Method


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
                " Build them in the Rationales panel (or with `kdviz rationales`) and train on its export, or take"
                " the dataset's own teacher outputs (rationale/label source: data)."
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
            teacher_rationale=row.get("data_teacher_rationale"),  # absent from exports made before they were kept
            teacher_answer=row.get("data_teacher_answer"),
            answer_value=row.get("answer_value"),
        )
        return TrainExample(example, row.get("teacher_answer"), row.get("rationale") or None)
    # A plain dataset may carry its own teacher's outputs (the CommonsenseQA file has a 540B model's answer and
    # chain of thought): teacher_label and multitask can then train on those.
    example = example_from_row(row, index)
    return TrainExample(example, example.teacher_answer, example.teacher_rationale)


def _rows(source: str | Path):
    """Returns (raw records, name) of a rationale export folder, a build folder, or any file `rows_of` reads."""
    if str(source).startswith("hf:"):
        return rows_of(source)
    path = Path(str(source)).expanduser()
    check_readable(path, "the training data")
    if not path.is_dir():
        return rows_of(source)
    for name in ("rationales.jsonl", "records.jsonl", "rationales.parquet"):
        if (path / name).is_file():
            return rows_of(path / name)
    folder = path / "hf_dataset" if (path / "hf_dataset").is_dir() else path
    if (folder / "dataset_info.json").is_file():  # a `datasets.save_to_disk` folder
        import datasets

        return iter(datasets.load_from_disk(str(folder))), path.name
    raise InputError(
        f"folder {path} holds no rationale export (rationales.jsonl, rationales.parquet, hf_dataset) "
        "and no records.jsonl"
    )


SOURCES = ("build", "data")  # where the teacher's rationales and answers come from (see the module's docstring)
_DATA_FIELDS = {
    "rationale": ("teacher_rationale", "--rationale-source"),
    "teacher_answer": ("teacher_answer", "--label-source"),
}


def with_sources(
    items: Sequence[TrainExample], name: str, rationale_source: str = "build", label_source: str = "build"
) -> list[TrainExample]:
    """Returns the examples with their teacher rationale and answer taken from `rationale_source` and
    `label_source`: "build" keeps what the training data holds, "data" takes each example's `teacher_rationale` /
    `teacher_answer` (None where that example has none; methods that need one then skip it, see `usable`).

    Raises:
        InputError: an unknown source, or "data" when no example has the field (the message names the file).
    """
    items = list(items)
    for attr, source in (("rationale", rationale_source), ("teacher_answer", label_source)):
        field, flag = _DATA_FIELDS[attr]
        if source not in SOURCES:
            raise InputError(f"{flag} must be {' or '.join(SOURCES)}, not {source!r}")
        if source == "build":
            continue
        if not any(getattr(t.example, field) for t in items):
            raise InputError(
                f"{flag} data needs a {field!r} field; {name} has none (a `kdviz export` does not keep the "
                "dataset's: train on the build's records.jsonl or on the dataset itself)"
            )
        items = [dataclasses.replace(t, **{attr: getattr(t.example, field)}) for t in items]
    return items


def load_train_examples(
    source: str | Path, limit: int | None = None, rationale_source: str = "build", label_source: str = "build"
) -> list[TrainExample]:
    """Returns the training examples in a file, export folder or hub dataset ("hf:name[:split]"), their teacher
    rationales and answers from `rationale_source` and `label_source` (see `with_sources`).

    Raises:
        InputError: missing, empty or malformed data (the message names the file and the problem), or a "data"
            source the data has no field for.
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
    return with_sources(items, name, rationale_source, label_source)


def train_examples(config: TrainConfig) -> list[TrainExample]:
    """Returns the training examples a `TrainConfig` names: its data, limit and teacher sources (the one place a
    fine-tune reads its data)."""
    return load_train_examples(config.data, config.limit, config.rationale_source, config.label_source)
