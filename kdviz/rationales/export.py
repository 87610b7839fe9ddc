"""Export curated rationale records for training: JSONL, Parquet and a Hugging Face `datasets` folder, with a
dataset card holding the provenance and the statistics. Every file is written beside and then renamed into place."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

from kdviz.errors import InputError, UnknownNameError
from kdviz.files import replacing_folder, write_atomic
from kdviz.format import number
from kdviz.rationale_records import Provenance, RationaleRecord
from kdviz.workspace import Workspace

from .curation import open_build
from .stats import FaithfulnessMeans, rationale_stats

EXPORT_FORMATS = ("jsonl", "parquet", "hf")
EXPORT_FILES = ("README.md", "rationales.jsonl", "rationales.parquet", "hf_dataset")  # what an export writes


def training_rows(records: Sequence[RationaleRecord], with_status: bool) -> list[dict]:
    """Returns flat rows (one per record) with the example, the teacher's answer and the rationale, and the
    dataset's own teacher outputs and answer value (`data_teacher_*`, `answer_value`: None where it has none)."""
    rows = []
    for r in records:
        row = {
            "id": r.id,
            "task": r.example.task,
            "question": r.example.question,
            "context": r.example.context,
            "choices": list(r.example.choices),
            "answer": r.example.answer,
            "prompt": r.prompt,
            "teacher_answer": r.predicted if r.predicted is not None else r.target,
            "teacher_correct": r.correct,
            "rationale": r.rationale_text,
            "rationale_words": [r.words[i] for i in r.rationale],
            "human_rationale": r.example.human_rationale,
            # what the dataset itself shipped (e.g. a 540B teacher's chain of thought), kept so that an export
            # trains with `--rationale-source data` / `--label-source data` as its build did
            "data_teacher_rationale": r.example.teacher_rationale,
            "data_teacher_answer": r.example.teacher_answer,
            "answer_value": r.example.answer_value,
        }
        if with_status:
            row["status"] = r.status
        rows.append(row)
    return rows


def dataset_card(
    records: Sequence[RationaleRecord], accepted_only: bool, name: str | None = None, source: str | None = None
) -> str:
    """Returns the README.md of an exported dataset: what it is, how it was made, and its statistics."""
    stats = rationale_stats(records)
    prov = records[0].provenance if records else Provenance()
    lines = [
        "---",
        "tags: [kdviz, rationales, knowledge-distillation]",
        "---",
        "",
        f"# Rationale dataset: {name or 'kdviz export'}",
        "",
        "Built with kdviz (attribution-guided knowledge distillation, after Ballout et al., 2024): the teacher's "
        "most-attributed input words are the rationale of each example.",
        "",
        "## Provenance",
        "",
        f"- source data: {source or 'n/a'}",
        f"- teacher: {prov.teacher or 'n/a'}; attribution: {prov.method or 'n/a'}; "
        f"attributed target: {prov.target_mode or 'n/a'}",
        f"- selection rule: {prov.rule or 'n/a'}",
        f"- kdviz {prov.kdviz_version or '?'}, built {prov.created or '?'}",
        f"- records: {len(records)} ({'accepted only' if accepted_only else 'all, with a status column'})",
        "",
        "## Statistics",
        "",
        "| statistic | all | teacher correct | teacher wrong |",
        "|---|---|---|---|",
    ]
    blocks = (stats, stats.by_correctness.correct, stats.by_correctness.incorrect)
    for label, figure in [
        ("records", lambda b: b.n),
        ("gold overlap (≥1 rationale word in the gold answer)", lambda b: b.gold_overlap),
        ("rationale words in the gold answer", lambda b: b.gold_word_fraction),
        ("share of wrong choices overlapped (baseline)", lambda b: b.distractor_overlap),
        ("question overlap (≥1 rationale word in the question)", lambda b: b.question_overlap),
    ]:
        lines.append(f"| {label} | " + " | ".join(number(figure(b)) for b in blocks) + " |")
    lines.append(f"\nTeacher accuracy: {number(stats.accuracy)}.")
    if p := stats.plausibility:
        lines.append(
            f"Plausibility against human rationales ({p.n} records): precision {number(p.precision)}, "
            f"recall {number(p.recall)}, F1 {number(p.f1)}, IoU {number(p.iou)}."
        )
    lines += _faithfulness_lines(stats.faithfulness, len(records))
    lines += [
        "",
        "Definitions: see `kdviz.rationales` (words lower-cased, punctuation stripped).",
        "",
        "## Fields",
        "",
        ", ".join(f"`{k}`" for k in training_rows(records[:1], not accepted_only)[0]) if records else "",
    ]
    return "\n".join(lines) + "\n"


def _faithfulness_lines(means: FaithfulnessMeans | None, n_records: int) -> list[str]:
    """Returns the card's faithfulness section (ERASER; none when no record was measured)."""
    if means is None:
        return []
    return [
        "",
        "## Faithfulness",
        "",
        f"Measured on the teacher for {means.n} of {n_records} records (ERASER, DeYoung et al. 2020): the drop in the "
        "teacher's probability of its prediction when the rationale words are removed from the prompt "
        "(comprehensiveness, higher is more faithful) and when only they are kept (sufficiency, lower is better), "
        "beside the same for as many random candidate words. Its mean probability of the prediction on the full "
        f"prompt: {number(means.p_full)}.",
        "",
        "| | rationale | random words (as many) |",
        "|---|---|---|",
        f"| comprehensiveness | {number(means.comprehensiveness)} | {number(means.random_comprehensiveness)} |",
        f"| sufficiency | {number(means.sufficiency)} | {number(means.random_sufficiency)} |",
    ]


def export_records(
    records: Sequence[RationaleRecord],
    out_dir: str | Path,
    formats: Sequence[str] = EXPORT_FORMATS,
    accepted_only: bool = True,
    name: str | None = None,
    source: str | None = None,
) -> list[Path]:
    """Writes the records in each format into `out_dir` and returns the paths written; the dataset card gets the
    export's `name` and the `source` of the build's examples.

    Raises:
        InputError: nothing to export (no accepted record).  UnknownNameError: unknown format.
    """
    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise UnknownNameError("export format", fmt, EXPORT_FORMATS)
    chosen = [r for r in records if r.status == "accepted" or not accepted_only]
    if not chosen:
        raise InputError("nothing to export: no record is accepted (accept some, or export all with a status)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = training_rows(chosen, with_status=not accepted_only)
    written = [write_atomic(out / "README.md", dataset_card(chosen, accepted_only, name, source))]
    if "jsonl" in formats:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        written.append(write_atomic(out / "rationales.jsonl", text))
    if "parquet" in formats:
        import pandas as pd

        buffer = io.BytesIO()
        pd.DataFrame(rows).to_parquet(buffer, index=False)
        written.append(write_atomic(out / "rationales.parquet", buffer.getvalue()))
    if "hf" in formats:
        import datasets

        with replacing_folder(out / "hf_dataset") as tmp:
            datasets.Dataset.from_list(rows).save_to_disk(str(tmp))
        written.append(out / "hf_dataset")
    return written


def export_build(
    workspace: Workspace | str | Path | None,
    build: str,
    name: str,
    formats: Sequence[str] = EXPORT_FORMATS,
    accepted_only: bool = True,
) -> list[Path]:
    """Exports build `build` of the workspace into its export folder `name` (<workspace>/builds/<build>/exports/
    <name>, replaced if it exists); returns the paths written.

    Raises:
        InputError: no format, an unsafe name, no such build, nothing accepted.  UnknownNameError: unknown format.
    """
    if not formats:
        raise InputError(f"choose at least one export format: {', '.join(EXPORT_FORMATS)}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    out = ws.export_dir(build, name)
    store = open_build(ws, build)
    return export_records(
        store.records(), out, list(formats), accepted_only, name=f"{build}/{out.name}", source=store.info.source
    )


def push_to_hub(export_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Uploads an exported `hf_dataset` folder to the Hugging Face hub; returns the dataset's URL.

    Raises:
        InputError: not an owner/name, no export there, not logged in, or the hub cannot be reached.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", (repo_id or "").strip()):
        raise InputError("give the hub dataset as owner/name")
    import datasets
    from huggingface_hub import get_token

    repo_id = repo_id.strip()
    folder = Path(export_dir) / "hf_dataset"
    if not folder.exists():
        raise InputError(f"no Hugging Face dataset export in {export_dir}: export with the 'hf' format first")
    if not get_token():
        raise InputError("not logged in to the Hugging Face hub: run `hf auth login` (or set HF_TOKEN) first")
    try:
        datasets.load_from_disk(str(folder)).push_to_hub(repo_id, private=private)
    except Exception as exc:
        raise InputError(f"push to {repo_id!r} failed: {str(exc).splitlines()[0][:200]}") from exc
    return f"https://huggingface.co/datasets/{repo_id}"
