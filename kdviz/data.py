"""Read task examples from files: CommonsenseQA-style multiple choice, NLI and free-form QA, in JSONL."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError
from .records import Example

NLI_LABEL_NAMES = {0: "entailment", 1: "neutral", 2: "contradiction"}
NLI_LABEL_NAMES_TUPLE = tuple(NLI_LABEL_NAMES.values())


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
    if isinstance(raw, list):
        return [str(c["text"]) if isinstance(c, dict) else str(c) for c in raw]
    raise InputError(f"record {index}: 'choices' must be a list of strings")


def load_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """Returns the examples of a JSONL file (one JSON object a line), the first `limit` if given.

    Raises:
        InputError: missing or empty file, a line that is not JSON, or a record of no known shape.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such data file: {path}")
    examples: list[Example] = []
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
            examples.append(example_from_row(row, n - 1))
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        raise InputError(f"{path.name} holds no examples")
    return examples


def demo_path() -> Path:
    """Returns the bundled CommonsenseQA-style demo set (assets/cqa_demo.jsonl)."""
    return Path(__file__).resolve().parent.parent / "assets" / "cqa_demo.jsonl"
