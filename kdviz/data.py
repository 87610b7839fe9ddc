"""Read task examples: CommonsenseQA-style multiple choice, NLI and free-form QA, from JSONL, CSV, Parquet or the hub."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from kdviz.errors import InputError
from kdviz.records import Example

NLI_LABEL_NAMES = {0: "entailment", 1: "neutral", 2: "contradiction"}
NLI_LABEL_NAMES_TUPLE = tuple(NLI_LABEL_NAMES.values())
T = TypeVar("T")


def example_from_row(row: dict, index: int) -> Example:
    """Returns the Example for one raw record, recognising the task by its fields.

    Multiple choice: `question`, `choices` (a list, or CommonsenseQA's {"label": [...], "text": [...]}),
    `answer` (a choice's text or letter), optional `human_rationale_extractive`. NLI: `premise`, `hypothesis`,
    `label` (name or 0/1/2). Free-form QA: `question`, `answer`.

    Raises:
        InputError: the record has none of these shapes (the message names the missing fields).
    """
    ex_id = str(row.get("id", index))
    if "premise" in row and "hypothesis" in row:
        label = row.get("label")
        label = NLI_LABEL_NAMES.get(label, label) if label is not None else None
        return Example(ex_id, "nli", str(row["hypothesis"]), NLI_LABEL_NAMES_TUPLE, label, str(row["premise"]))
    if "question" not in row:
        raise InputError(
            f"record {index} has no 'question' field (nor 'premise' and 'hypothesis'); it has: "
            f"{', '.join(sorted(row)) or 'nothing'}"
        )
    question = row["question"]
    if isinstance(question, dict):  # CommonsenseQA's original layout: {"stem": ..., "choices": [...]}
        row = {**row, "choices": question.get("choices", []), "question": question.get("stem", "")}
        question = row["question"]
    choices = _choices(row.get("choices"), index)
    answer = row.get("answer", row.get("answerKey"))
    if choices and isinstance(answer, str) and answer not in choices and len(answer) == 1 and answer.isalpha():
        pos = ord(answer.upper()) - ord("A")
        answer = choices[pos] if 0 <= pos < len(choices) else answer
    if choices and answer is not None and answer not in choices:
        raise InputError(f"record {index}: answer {answer!r} is not one of its choices")
    rationale = row.get("human_rationale_extractive") or row.get("rationale")
    return Example(
        ex_id,
        "mcqa" if choices else "qa",
        str(question),
        tuple(choices),
        None if answer is None else str(answer),
        row.get("context"),
        rationale,
    )


def _choices(raw, index: int) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, dict) and "text" in raw:
        return [str(c) for c in raw["text"]]
    if isinstance(raw, str):  # a CSV cell: a JSON list, or "a | b | c"
        try:
            raw = json.loads(raw) if raw.lstrip().startswith("[") else [c.strip() for c in raw.split("|")]
        except json.JSONDecodeError as exc:
            raise InputError(f"record {index}: 'choices' is not a valid JSON list ({exc.msg})") from exc
    if isinstance(raw, list):
        return [str(c["text"]) if isinstance(c, dict) else str(c) for c in raw]
    raise InputError(f"record {index}: 'choices' must be a list of strings")


def _rows_jsonl(path: Path):
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name}, line {n}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path.name}, line {n}: expected a JSON object")
            yield row


def _rows_table(path: Path):
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise InputError(f"{path.name}: cannot be read as {path.suffix[1:].upper()} ({exc})") from exc
    for row in frame.to_dict(orient="records"):
        for key, value in row.items():
            if hasattr(value, "tolist"):  # numpy arrays from Parquet list columns
                row[key] = value.tolist()
            elif isinstance(value, float) and value != value:  # NaN: an empty CSV cell
                row[key] = None
        yield row


def _rows_hub(name: str):
    try:
        import datasets

        repo, _, split = name.partition(":")
        loaded = datasets.load_dataset(repo, split=split or "train")
    except Exception as exc:
        offline = "HF_HUB_OFFLINE=1 is set, " if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise InputError(
            f"could not load dataset {name!r} from the Hugging Face hub ({offline}{type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); use a local JSONL, CSV or Parquet file"
        ) from exc
    yield from loaded


def rows_of(source: str | Path) -> tuple[Iterator[dict], str]:
    """Returns (the raw records, the name to show in messages) of a JSONL, CSV or Parquet file or a hub dataset
    ("hf:name[:split]"): the one place that picks a reader by file type.

    Raises:
        InputError: no such file, or an unsupported file type (malformed content raises while iterating).
    """
    text = str(source)
    if text.startswith("hf:"):
        return _rows_hub(text[3:]), text[3:]
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"no such data file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _rows_jsonl(path), path.name
    if suffix in (".csv", ".parquet"):
        return _rows_table(path), path.name
    raise InputError(f"{path.name}: unsupported file type {suffix!r}; use .jsonl, .csv or .parquet")


def parse_columns(text: str | None) -> dict[str, str] | None:
    """Returns the column mapping of "question=prompt,answer=label" (kdviz field = the file's column), or None
    for an empty text.

    Raises:
        InputError: a pair that is not `field=column`.
    """
    mapping = {}
    for pair in (p.strip() for p in (text or "").split(",")):
        if not pair:
            continue
        ours, sep, theirs = (part.strip() for part in pair.partition("="))
        if not (sep and ours and theirs):
            raise InputError(f"column mapping {pair!r}: write kdviz_field=file_column, e.g. question=prompt")
        mapping[ours] = theirs
    return mapping or None


def format_columns(columns: dict[str, str] | None) -> str | None:
    """Returns the text `parse_columns` reads back into `columns` (None for no mapping)."""
    return ",".join(f"{ours}={theirs}" for ours, theirs in columns.items()) if columns else None


def absolute_source(source: str) -> str:
    """Returns a data source as a saved config should keep it: "hf:name" as it is, a path made absolute (so the
    config still points at the data from another working folder)."""
    return source if source.startswith("hf:") else str(Path(source).expanduser().resolve())


def load_examples(
    source: str | Path, limit: int | None = None, columns: dict[str, str] | None = None
) -> list[Example]:
    """Returns the examples of a JSONL, CSV or Parquet file, or of a hub dataset ("hf:name[:split]").

    Args:
        limit: read only the first `limit` examples.
        columns: maps kdviz's field names to the file's (e.g. {"question": "prompt", "answer": "label"}).

    Raises:
        InputError: missing, empty or malformed file, a missing column, or a record of no known shape.
    """
    rows, name = rows_of(source)
    rename = {theirs: ours for ours, theirs in (columns or {}).items()}
    examples: list[Example] = []
    for n, row in enumerate(rows):
        if rename:
            missing = [theirs for theirs in rename if theirs not in row]
            if missing:
                raise InputError(f"{name}: column {missing[0]!r} (mapped in the column mapping) is missing")
            row = {rename.get(k, k): v for k, v in row.items()}
        examples.append(example_from_row(row, n))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise InputError(f"{name} holds no examples")
    return examples


def hold_out(items: Sequence[T], n_held: int, seed: int) -> tuple[list[T], list[T]]:
    """Returns (kept, held out): `n_held` items drawn by a seeded permutation, both in their original order.

    The one seeded split: training's held-out set (`kdviz.distill.loop.split_train_eval`) and `split_examples`
    draw with it, so a seed holds out the same examples everywhere. It is torch's `randperm`, which the training
    split has always used, so runs made before keep their held-out examples.
    """
    import torch

    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:n_held])
    return [t for i, t in enumerate(items) if i not in held], [t for i, t in enumerate(items) if i in held]


def split_examples(
    examples: list[Example], valid_fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Returns (train, validation): `valid_fraction` of the examples (at least one) held out by `hold_out`."""
    if not 0 < valid_fraction < 1:
        raise InputError("the validation fraction must be between 0 and 1")
    return hold_out(examples, max(1, round(len(examples) * valid_fraction)), seed)


def demo_path() -> Path:
    """Returns the bundled CommonsenseQA-style demo set (assets/cqa_demo.jsonl)."""
    return Path(__file__).resolve().parent.parent / "assets" / "cqa_demo.jsonl"
