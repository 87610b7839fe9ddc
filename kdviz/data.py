"""Read task examples: CommonsenseQA-style multiple choice, NLI and free-form QA, from JSONL, CSV, Parquet or the hub."""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from kdviz.errors import InputError
from kdviz.records import Example, Record
from kdviz.workspace import check_readable

NLI_LABEL_NAMES = {0: "entailment", 1: "neutral", 2: "contradiction"}
NLI_LABEL_NAMES_TUPLE = tuple(NLI_LABEL_NAMES.values())
T = TypeVar("T")
R = TypeVar("R", bound=Record)


# Controls, format characters (zero-width space and joiners, the BOM), surrogates, private use, unassigned code
# points and spaces: text made only of these shows nothing on screen, so the app and the CLI refuse it alike.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# The kdviz fields a column mapping may name (the record shapes `example_from_row` and training data read).
MAPPABLE_FIELDS = (
    "id", "question", "choices", "answer", "answerKey", "premise", "hypothesis", "label", "context",
    "human_rationale_extractive", "human_rationale_abstractive", "rationale", "teacher_answer", "teacher_rationale",
    "answer_value",
)  # fmt: skip


def has_visible_text(text: str) -> bool:
    """Returns whether `text` holds a character that shows on screen (not only spaces, zero-width or control
    characters)."""
    return any(unicodedata.category(ch) not in _INVISIBLE for ch in text)


def _text(value, where: str, what: str) -> str:
    """Returns a field's value as text; refuses null, a list, a mapping or a boolean, and invisible text."""
    if value is None:
        raise InputError(f"{where}: {what} is null")
    if isinstance(value, (list, dict, bool)):
        raise InputError(f"{where}: {what} must be text, not a {type(value).__name__}")
    text = str(value)
    if not has_visible_text(text):
        raise InputError(f"{where}: {what} has no visible characters")
    return text


def _optional_text(value, where: str, what: str) -> str | None:
    """Returns an optional field's text: None for null or invisible text (the teacher gave no answer there)."""
    if isinstance(value, (list, dict, bool)):
        raise InputError(f"{where}: {what} must be text, not a {type(value).__name__}")
    return None if value is None or not has_visible_text(str(value)) else str(value)


def _number(value, where: str, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: {what} must be a number, not {value!r:.40}")
    try:
        return float(value)
    except ValueError as exc:
        raise InputError(f"{where}: {what} must be a number, not {value!r:.40}") from exc


def _data_extras(row: dict, where: str) -> dict:
    """Returns the Example fields a dataset adds beside the task: a teacher's outputs, an answer's value."""
    return {
        "teacher_rationale": _optional_text(row.get("teacher_rationale"), where, "'teacher_rationale'"),
        "teacher_answer": _optional_text(row.get("teacher_answer"), where, "'teacher_answer'"),
        "answer_value": _number(row.get("answer_value"), where, "'answer_value'"),
    }


def _human_rationale(row: dict, where: str) -> str | None:
    """Returns the human rationale: the marked words (CoS-E's extractive rationale) where the data has them, else
    the human explanation (e-SNLI's and ANLI's free-text one), whose words plausibility is then measured against."""
    for key in ("human_rationale_extractive", "rationale", "human_rationale_abstractive"):
        text = _optional_text(row.get(key), where, repr(key))
        if text:  # an empty or invisible rationale falls through to the next field
            return text
    return None


def _nli_label(label, where: str) -> str | None:
    if label is None or label == -1:  # SNLI and MNLI mark examples without a gold label with -1
        return None
    label = NLI_LABEL_NAMES.get(label, label.strip().lower() if isinstance(label, str) else label)
    if label not in NLI_LABEL_NAMES_TUPLE:
        raise InputError(f"{where}: label {label!r} is not one of {', '.join(NLI_LABEL_NAMES_TUPLE)} (or 0, 1, 2)")
    return label


def example_from_row(row: dict, index: int, where: str | None = None) -> Example:
    """Returns the Example for one raw record, recognising the task by its fields.

    Multiple choice: `question`, `choices` (a list, or CommonsenseQA's {"label": [...], "text": [...]}),
    `answer` (a choice's text or letter), optional `human_rationale_extractive`. NLI: `premise`, `hypothesis`,
    `label` or `answer` (name or 0/1/2; -1 or none: no gold label), optional `human_rationale_abstractive` (a human
    explanation, the human rationale where no extractive one is given). Free-form QA: `question`, `answer`, optional
    `answer_value` (an arithmetic answer's value). Any of them may carry `teacher_rationale` and `teacher_answer`
    (a teacher's outputs shipped with the data).

    Args:
        where: where the record is, for messages ("data.jsonl, line 3"); default "record <index>".

    Raises:
        InputError: the record has none of these shapes (the message names the missing fields), a null or invisible
            id, question, premise, hypothesis or choice, or a gold answer that is not one of the choices.
    """
    where = where or f"record {index}"
    ex_id = _text(row["id"], where, "'id'") if "id" in row else str(index)
    if "premise" in row and "hypothesis" in row:
        premise, hypothesis = (_text(row[k], where, repr(k)) for k in ("premise", "hypothesis"))
        label = _nli_label(row.get("label", row.get("answer")), where)  # the shared ANLI/e-SNLI files say "answer"
        return Example(ex_id, "nli", hypothesis, NLI_LABEL_NAMES_TUPLE, label, premise, _human_rationale(row, where),
                       **_data_extras(row, where))  # fmt: skip
    if "question" not in row:
        raise InputError(
            f"{where} has no 'question' field (nor 'premise' and 'hypothesis'); it has: "
            f"{', '.join(sorted(row)) or 'nothing'}"
        )
    question = row["question"]
    if isinstance(question, dict):  # CommonsenseQA's original layout: {"stem": ..., "choices": [...]}
        row = {**row, "choices": question.get("choices", []), "question": question.get("stem")}
    question = _text(row["question"], where, "'question'")
    choices = _choices(row.get("choices"), where)
    answer = row.get("answer", row.get("answerKey"))
    if choices and isinstance(answer, str) and answer not in choices and len(answer) == 1 and answer.isalpha():
        pos = ord(answer.upper()) - ord("A")
        answer = choices[pos] if 0 <= pos < len(choices) else answer
    if choices and answer is not None and answer not in choices:
        raise InputError(f"{where}: answer {answer!r} is not one of its choices ({', '.join(choices)})")
    rationale = _human_rationale(row, where)
    return Example(
        ex_id,
        "mcqa" if choices else "qa",
        question,
        tuple(choices),
        None if answer is None else str(answer),
        row.get("context"),
        rationale,
        **_data_extras(row, where),
    )


def _choices(raw, where: str) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, dict) and "text" in raw:
        raw = raw["text"]
    if isinstance(raw, str):  # a CSV cell: a JSON list, or "a | b | c"
        try:
            raw = json.loads(raw) if raw.lstrip().startswith("[") else [c.strip() for c in raw.split("|")]
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: 'choices' is not a valid JSON list ({exc.msg})") from exc
    if not isinstance(raw, list):
        raise InputError(f"{where}: 'choices' must be a list of strings")
    return [
        _text(c["text"] if isinstance(c, dict) and "text" in c else c, where, f"choice {i}")
        for i, c in enumerate(raw, 1)
    ]


def _not_utf8(name: str, line: int, raw: bytes, exc: UnicodeDecodeError) -> str:
    """Returns the message for a line that is not UTF-8: the file, the line, the byte, its column and why."""
    return (
        f"{name}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}: "
        f"{exc.reason}); save the file as UTF-8"
    )


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields (line number, line) of a UTF-8 text file (a leading byte-order mark dropped).

    Raises:
        InputError: a line that is not UTF-8; the message names the file, the line, the byte and why.
    """
    with path.open("rb") as handle:  # bytes, so a decoding error can name its line
        for n, raw in enumerate(handle, 1):
            raw = raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(_not_utf8(path.name, n, raw, exc)) from exc


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """Yields (line number, JSON object) for each non-blank line of a JSONL file.

    Raises:
        InputError: a line that is not UTF-8, not JSON or not a JSON object; the message names the file and line.
    """
    for n, line in _utf8_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name}, line {n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise InputError(f"{path.name}, line {n}: expected a JSON object, not {type(row).__name__}")
        yield n, row


def _rows_table(path: Path) -> Iterator[tuple[str, dict]]:
    import pandas as pd

    if path.suffix.lower() == ".csv":  # pandas' decoding error names neither the line nor the file
        for _ in _utf8_lines(path):
            pass
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise InputError(f"{path.name}: cannot be read as {path.suffix[1:].upper()} ({exc})") from exc
    for n, row in enumerate(frame.to_dict(orient="records"), 1):
        for key, value in row.items():
            if hasattr(value, "tolist"):  # numpy arrays from Parquet list columns
                row[key] = value.tolist()
            elif isinstance(value, float) and value != value:  # NaN: an empty CSV cell
                row[key] = None
        yield f"row {n}", row


def _rows_hub(name: str) -> Iterator[tuple[str, dict]]:
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
    for n, row in enumerate(loaded, 1):
        yield f"row {n}", row


def located_rows(source: str | Path) -> tuple[Iterator[tuple[str, dict]], str]:
    """Returns ((where, raw record) pairs, the name to show in messages) of a JSONL, CSV or Parquet file or a hub
    dataset ("hf:name[:split]"): the one place that picks a reader by file type. `where` is "line 3" in a JSONL
    file, "row 3" (the third record) in a table or a hub dataset.

    Raises:
        InputError: no such file, or an unsupported file type (malformed content raises while iterating, naming the
            file and the line).
    """
    text = str(source)
    if text.startswith("hf:"):
        return _rows_hub(text[3:]), text[3:]
    path = Path(source).expanduser()
    check_readable(path, "the data file")
    if not path.is_file():
        raise InputError(f"no such data file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return ((f"line {n}", row) for n, row in _jsonl_objects(path)), path.name
    if suffix in (".csv", ".parquet"):
        return _rows_table(path), path.name
    raise InputError(f"{path.name}: unsupported file type {suffix!r}; use .jsonl, .csv or .parquet")


def rows_of(source: str | Path) -> tuple[Iterator[dict], str]:
    """Returns (the raw records, the name to show in messages) of what `located_rows` reads."""
    rows, name = located_rows(source)
    return (row for _, row in rows), name


def load_records(path: str | Path, cls: type[R]) -> list[R]:
    """Returns the records of type `cls` in a JSONL file (`save_jsonl`'s output, e.g. `kdviz rationales --out`),
    each line checked, ids (where records have one) unique.

    Raises:
        InputError: no such file; a line that is not UTF-8, not a JSON object or not such a record; a repeated id.
            The message names the file and the line.
    """
    path = Path(path).expanduser()
    check_readable(path, "the records file")
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    records: list[R] = []
    seen: dict[str, int] = {}
    for n, row in _jsonl_objects(path):
        try:
            record = cls.from_dict(row)
            record_id = getattr(record, "id", None)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # the shape of untrusted data
            raise InputError(f"{path.name}, line {n}: not a {cls.__name__} ({type(exc).__name__}: {exc})") from exc
        if record_id is not None and record_id in seen:
            raise InputError(
                f"{path.name}, line {n}: id {record_id!r} appears twice (first on line {seen[record_id]})"
            )
        if record_id is not None:
            seen[record_id] = n
        records.append(record)
    if not records:
        raise InputError(f"{path.name} holds no records")
    return records


def parse_columns(text: str | None) -> dict[str, str] | None:
    """Returns the column mapping of "question=prompt,answer=label" (kdviz field = the file's column), or None
    for an empty text.

    Raises:
        InputError: a pair that is not `field=column`, or a field kdviz does not read (`MAPPABLE_FIELDS`).
    """
    mapping = {}
    for pair in (p.strip() for p in (text or "").split(",")):
        if not pair:
            continue
        ours, sep, theirs = (part.strip() for part in pair.partition("="))
        if not (sep and ours and theirs):
            raise InputError(f"column mapping {pair!r}: write kdviz_field=file_column, e.g. question=prompt")
        mapping[ours] = theirs
    unknown = [ours for ours in mapping if ours not in MAPPABLE_FIELDS]
    if unknown:
        raise InputError(
            f"column mapping: kdviz reads no field {unknown[0]!r}; map one of: {', '.join(MAPPABLE_FIELDS)}"
        )
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
        InputError: missing, empty, non-UTF-8 or malformed file, a missing column, a record of no known shape, a null
            or invisible field, a gold answer outside the choices, or a repeated id; the message names the file and
            the line (or row).
    """
    rows, name = located_rows(source)
    rename = {theirs: ours for ours, theirs in (columns or {}).items()}
    examples: list[Example] = []
    seen: dict[str, str] = {}  # id -> where it was first read
    for n, (at, row) in enumerate(rows):
        where = f"{name}, {at}"
        if rename:
            missing = [theirs for theirs in rename if theirs not in row]
            if missing:
                raise InputError(f"{where}: column {missing[0]!r} (mapped in the column mapping) is missing")
            row = {rename.get(k, k): v for k, v in row.items()}
        example = example_from_row(row, n, where)
        if example.id in seen:  # builds, curation and the example picker find examples by id
            raise InputError(f"{where}: example id {example.id!r} appears twice (first on {seen[example.id]}); "
                             "ids must be unique (map another column to id)")  # fmt: skip
        seen[example.id] = at
        examples.append(example)
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
