"""The Rationales panel's handlers: build, open and import rationale builds, then curate and export them.

Plain typed functions of widget values over `kdviz.builder`, `kdviz.curation` and `kdviz.export`. They raise
KdvizError like the library; the tabs turn that into `gr.Error` with `ui_errors`. A build is a folder of the
workspace (records.jsonl + build.json, written by CurationStore), and its exports go to <build>/exports/<name>:
every folder name goes through `safe_child`, so nothing is read or written outside the workspace.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kdviz.attribution.catalog import check_method
from kdviz.data import load_examples
from kdviz.errors import InputError, UnknownNameError
from kdviz.rationales.build import build_rationales
from kdviz.rationales.curation import CurationStore, filter_records, rationale_share, safe_child
from kdviz.rationales.export import EXPORT_FORMATS, export_records, push_to_hub
from kdviz.rationales.select import SelectionRule, gold_overlap
from kdviz.rationales.stats import rationale_stats
from kdviz.records import STATUSES, RationaleRecord, load_jsonl
from kdviz.viz.attribution import rationale_html
from kdviz.viz.rationales import rationale_stats_figure, rationale_stats_table

WORKSPACE_ENV = "KDVIZ_WORKSPACE"
DEFAULT_WORKSPACE = "kdviz_workspace"  # relative to the folder the app is started in
BUILD_TARGET_MODES = ("choice", "gold", "generate")
RULES = {"top-k": "top_k", "mass": "mass", "z": "z"}  # the app's names -> SelectionRule fields
EXCLUSIONS = {  # the app's names -> SelectionRule switches
    "stopwords": "exclude_stopwords",
    "punctuation": "exclude_punctuation",
    "choice letters": "exclude_choice_letters",
    "template words": "exclude_template",
}
YES_NO_ANY = ("any", "yes", "no")
STATUS_FILTERS = ("any", *STATUSES)
ACTIONS = {"accept": "accepted", "reject": "rejected", "reset": None}  # reset: back to the rule's words, pending
SHARE_DIGITS = 3
SHARE_HALF_STEP = 0.5 * 10**-SHARE_DIGITS
RECORD_COLUMNS = ["id", "status", "teacher correct", "overlaps gold", "share", "question", "rationale"]
NO_RECORD_HTML = '<div class="kdviz-rationale-view"><i>Pick a record to see its words.</i></div>'

Progress = Callable[[int, int], None]
RecordView = tuple[str, str, str]  # (highlighted prompt HTML, rationale text, record markdown)


def workspace_root(workspace: str | Path | None = None) -> Path:
    """Returns the absolute workspace folder: `workspace`, else $KDVIZ_WORKSPACE, else ./kdviz_workspace."""
    return Path(workspace or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).resolve()


def list_builds(workspace: str | Path) -> list[str]:
    """Returns the names of the builds in the workspace, newest first."""
    root = Path(workspace)
    found = [d for d in root.iterdir() if (d / "records.jsonl").is_file()] if root.is_dir() else []
    stamp = {
        d: (d / "build.json" if (d / "build.json").exists() else d / "records.jsonl").stat().st_mtime for d in found
    }
    return [d.name for d in sorted(found, key=lambda d: (-stamp[d], d.name))]


def open_build(workspace: str | Path, build: str) -> CurationStore:
    """Returns the curation store of build `build` of the workspace.

    Raises:
        InputError: no build is open, the name is not a plain folder name, or the folder holds no build.
    """
    if not build:
        raise InputError("no build is open: build rationales, or open or import a build first")
    return CurationStore(safe_child(workspace, build))


def parse_columns(text: str) -> dict[str, str] | None:
    """Returns the column mapping of "question=prompt,answer=label" (kdviz field = the file's column), or None."""
    mapping = {}
    for pair in (p.strip() for p in (text or "").split(",")):
        if not pair:
            continue
        ours, sep, theirs = (part.strip() for part in pair.partition("="))
        if not (sep and ours and theirs):
            raise InputError(f"column mapping {pair!r}: write kdviz_field=file_column, e.g. question=prompt")
        mapping[ours] = theirs
    return mapping or None


def selection_rule(rule: str, value: float, exclude: Sequence[str] = tuple(EXCLUSIONS)) -> SelectionRule:
    """Returns the SelectionRule of the panel's fields: "top-k" (value = k words), "mass" (value = share of the
    positive attribution) or "z" (value = std devs above the mean), with the named exclusions switched on."""
    if rule not in RULES:
        raise UnknownNameError("selection rule", rule, RULES)
    for name in exclude:
        if name not in EXCLUSIONS:
            raise UnknownNameError("exclusion", name, EXCLUSIONS)
    if value is None or (rule == "top-k" and float(value) != int(value)):
        raise InputError(f"give the {rule} rule a {'whole ' if rule == 'top-k' else ''}number")
    threshold = {"top_k": None, RULES[rule]: int(value) if rule == "top-k" else float(value)}
    try:
        return SelectionRule(**threshold, **{field: name in exclude for name, field in EXCLUSIONS.items()})
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def default_build_name(workspace: str | Path, dataset: str, method: str) -> str:
    """Returns a free build name made of the dataset's name, the method and the time."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(dataset).removeprefix("hf:")).stem)
    stem = re.sub(r"^[^A-Za-z0-9]+", "", stem)[:40] or "data"
    name = base = f"{stem}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while (Path(workspace) / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def build(
    workspace: str | Path,
    model_spec: str,
    dataset: str,
    columns: str,
    limit: int,
    method: str,
    target_mode: str,
    rule: str,
    rule_value: float,
    exclude: Sequence[str],
    batch_size: int,
    name: str = "",
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[str, str]:
    """Builds rationales for the first `limit` examples of `dataset` into a new build; returns (its name, a message).

    Finished attributions are cached (kdviz's cache folder), so a cancelled build keeps the records done so far and
    a rerun recomputes nothing. Returns ("", message) when cancelled before any example was finished.

    Raises:
        KdvizError: bad settings (checked before the model loads), an existing build name, unreadable data.
    """
    check_method(method)
    if target_mode not in BUILD_TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, BUILD_TARGET_MODES)
    chosen = selection_rule(rule, rule_value, exclude)
    if not (model_spec or "").strip():
        raise InputError("choose a teacher model, or type a hub id or local path")
    if not limit or int(limit) < 1 or not batch_size or int(batch_size) < 1:
        raise InputError("the number of examples and the batch size must be at least 1")
    name = (name or "").strip() or default_build_name(workspace, dataset, method)
    folder = safe_child(workspace, name)
    if (folder / "records.jsonl").exists():
        raise InputError(f"a build named {name!r} exists already; choose another name")
    examples = load_examples(dataset, limit=int(limit), columns=parse_columns(columns))
    if len({ex.id for ex in examples}) != len(examples):  # curation finds records by id
        raise InputError(f"{Path(str(dataset)).name}: example ids must be unique (map another column to id)")
    result = build_rationales(
        model_spec.strip(),
        examples,
        method,
        chosen,
        target_mode=target_mode,
        batch_size=int(batch_size),
        on_progress=on_progress,
        should_stop=should_stop,
    )
    if not result.records:
        return "", "Cancelled before any example was finished: nothing was saved."
    source = str(dataset) if str(dataset).startswith("hf:") else Path(dataset).name
    info = {
        "name": name,
        "source": source,
        "columns": parse_columns(columns),
        "teacher": model_spec.strip(),
        "method": method,
        "target_mode": target_mode,
        "rule": chosen.describe(),
        "examples": len(examples),
        "cancelled": result.cancelled,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    CurationStore.create(folder, result.records, info)
    done = (
        f"{len(result.records)} of {len(examples)} examples" if result.cancelled else f"{len(result.records)} records"
    )
    message = f"Build **{name}**: {done} ({result.from_cache} from the cache)."
    if result.cancelled:
        message = f"Cancelled. {message} Build again to resume: finished examples come from the cache."
    return name, message


def import_records(workspace: str | Path, path: str | Path, name: str = "") -> tuple[str, str]:
    """Creates a build from a JSONL file of rationale records (`kdviz rationales --out`); returns (name, message)."""
    try:
        records = load_jsonl(path, RationaleRecord)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"{Path(path).name} is not a file of rationale records ({type(exc).__name__}: {exc})"
        ) from exc
    if not records:
        raise InputError(f"{Path(path).name} holds no rationale records")
    if len({r.id for r in records}) != len(records):
        raise InputError(f"{Path(path).name}: record ids must be unique")
    name = (name or "").strip() or default_build_name(workspace, Path(path).stem, "imported")
    folder = safe_child(workspace, name)
    CurationStore.create(folder, records, {"name": name, "source": Path(path).name, "imported": True})
    return name, f"Build **{name}**: {len(records)} records imported from {Path(path).name}."


def _yes_no(value: str) -> bool | None:
    if value not in YES_NO_ANY:
        raise UnknownNameError("filter value", value, YES_NO_ANY)
    return {"any": None, "yes": True, "no": False}[value]


def filtered_records(
    records: Sequence[RationaleRecord],
    correct: str = "any",
    overlaps_gold: str = "any",
    status: str = "any",
    share_min: float = 0.0,
    share_max: float = 1.0,
    search: str = "",
) -> list[RationaleRecord]:
    """Returns the records that pass the panel's filters ("any", "yes" or "no"; a status or "any")."""
    if status not in STATUS_FILTERS:
        raise UnknownNameError("status", status, STATUS_FILTERS)
    low, high = float(share_min or 0.0), float(1.0 if share_max is None else share_max)
    if low > high:
        raise InputError("the lowest rationale share is above the highest")
    return filter_records(
        records,
        _yes_no(correct),
        _yes_no(overlaps_gold),
        None if status == "any" else status,
        # the table shows shares to SHARE_DIGITS decimals: a bound typed from it must include that row
        (low - SHARE_HALF_STEP, high + SHARE_HALF_STEP),
        search or "",
    )


def _verdict(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def record_rows(records: Sequence[RationaleRecord]) -> list[list]:
    """Returns one table row per record under RECORD_COLUMNS."""
    return [
        [
            r.id,
            r.status,
            _verdict(r.correct),
            _verdict(gold_overlap(r.rationale_words, r.example.answer)[0] if r.example.answer else None),
            round(rationale_share(r), SHARE_DIGITS),
            " ".join(r.example.question.split()),
            r.rationale_text,
        ]
        for r in records
    ]


def counts_text(records: Sequence[RationaleRecord]) -> str:
    """Returns "N records: p pending · a accepted · r rejected"."""
    counts = {s: sum(r.status == s for r in records) for s in STATUSES}
    return f"{len(records)} records: " + " · ".join(f"{counts[s]} {s}" for s in STATUSES)


def curation_view(
    workspace: str | Path, build: str, *filters: Any
) -> tuple[str, list[list], Any, list[list], list[str]]:
    """Returns (counts, statistics rows, statistics figure, filtered record rows, filtered record ids) of a build.

    The statistics cover all records (split by the teacher's correctness) and the accepted ones; `filters` are
    those of `filtered_records`. With no build open, returns an empty view.
    """
    if not build:
        return "No build open.", [], None, [], []
    store = open_build(workspace, build)
    records = store.records()
    shown = filtered_records(records, *filters)
    stats = rationale_stats(records)
    accepted = rationale_stats([r for r in records if r.status == "accepted"])
    title = f"**{build}** · {counts_text(records)} · {len(shown)} shown"
    return (
        title,
        rationale_stats_table(stats, accepted),
        rationale_stats_figure(stats),
        record_rows(shown),
        [r.id for r in shown],
    )


def _record_markdown(rec: RationaleRecord) -> str:
    answer = rec.predicted if rec.predicted is not None else rec.target
    verdict = {True: "correct", False: "wrong", None: "not scored"}[rec.correct]
    lines = [
        f"**{rec.id}** · status **{rec.status}** · rationale share {rationale_share(rec):.2f}",
        f"Teacher ({rec.target_mode}): `{answer}` ({verdict}) · gold: `{rec.example.answer or 'n/a'}`",
    ]
    if rec.example.human_rationale:
        lines.append(f"Human rationale: _{rec.example.human_rationale}_")
    return "  \n".join(lines)


def record_view(workspace: str | Path, build: str, record_id: str | None) -> RecordView:
    """Returns (the prompt as clickable highlighted HTML, the rationale text, a markdown summary) of one record."""
    if not record_id:
        return NO_RECORD_HTML, "", ""
    rec = open_build(workspace, build).get(record_id)
    return rationale_html(rec), rec.rationale_text, _record_markdown(rec)


def _need_record(record_id: str | None) -> str:
    if not record_id:
        raise InputError("pick a record first")
    return record_id


def toggle_word(workspace: str | Path, build: str, record_id: str, index: int) -> RecordView:
    """Adds word `index` of the record's prompt to its rationale, or removes it (saved at once); returns the view."""
    open_build(workspace, build).toggle_word(_need_record(record_id), int(index))
    return record_view(workspace, build, record_id)


def save_text(workspace: str | Path, build: str, record_id: str, text: str) -> RecordView:
    """Replaces the record's rationale text, the words training uses (saved at once); returns the view."""
    if not (text or "").strip():
        raise InputError("the rationale text is empty; reset the record to get the rule's words back")
    open_build(workspace, build).set_text(_need_record(record_id), text)
    return record_view(workspace, build, record_id)


def _apply(store: CurationStore, ids: list[str], action: str) -> None:
    if action not in ACTIONS:
        raise UnknownNameError("action", action, ACTIONS)
    if ACTIONS[action]:
        store.set_status(ids, ACTIONS[action])
    else:
        store.reset(ids)


def record_action(workspace: str | Path, build: str, record_id: str, action: str) -> RecordView:
    """Accepts, rejects or resets one record (saved at once); returns its view."""
    _apply(open_build(workspace, build), [_need_record(record_id)], action)
    return record_view(workspace, build, record_id)


def bulk_action(workspace: str | Path, build: str, action: str, *filters: Any) -> str:
    """Accepts, rejects or resets every record that passes the filters (one save); returns a message."""
    store = open_build(workspace, build)
    ids = [r.id for r in filtered_records(store.records(), *filters)]
    if not ids:
        raise InputError("no record passes the filters")
    _apply(store, ids, action)
    return f"{(ACTIONS[action] or 'reset').capitalize()} {len(ids)} record{'s' * (len(ids) != 1)}."


def export_dir(workspace: str | Path, build: str, name: str) -> Path:
    """Returns <workspace>/<build>/exports/<name>, refusing names that would leave it."""
    return safe_child(safe_child(workspace, build) / "exports", (name or "").strip())


def export(
    workspace: str | Path, build: str, name: str, formats: Sequence[str], accepted_only: bool = True
) -> list[str]:
    """Writes the build's records (accepted only, or all with a status column) in `formats`; returns the paths.

    Raises:
        InputError: no format, a bad export name, nothing accepted.  UnknownNameError: unknown format.
    """
    if not formats:
        raise InputError(f"choose at least one export format: {', '.join(EXPORT_FORMATS)}")
    store = open_build(workspace, build)
    out = export_dir(workspace, build, name)
    info = {"name": f"{build}/{out.name}", "source": store.info.get("source", "n/a")}
    return [str(p) for p in export_records(store.records(), out, list(formats), accepted_only, info)]


def push(workspace: str | Path, build: str, name: str, repo_id: str) -> str:
    """Pushes export `name` (its `hf` format) to the Hugging Face hub as a private dataset; returns a message."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", (repo_id or "").strip()):
        raise InputError("give the hub dataset as owner/name")
    url = push_to_hub(export_dir(workspace, build, name), repo_id.strip())
    return f"Pushed to [{url}]({url}) (private)."
