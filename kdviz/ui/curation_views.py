"""What the Rationales panel shows of an open build: its counts, statistics, the records that pass the panel's
filters, and one record's words. Read-only; the changes are in `curation_handlers`.

Plain typed functions of widget values over `kdviz.rationales.curation`; they raise KdvizError like the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from kdviz.rationale_records import STATUSES, RationaleRecord
from kdviz.rationales.curation import open_build, rationale_share
from kdviz.rationales.select import gold_overlap
from kdviz.rationales.stats import current_faithfulness, rationale_stats
from kdviz.viz.attribution import rationale_html
from kdviz.viz.rationales import faithfulness_markdown, rationale_stats_figure, rationale_stats_table
from kdviz.workspace import Workspace

from .curation_filters import SHARE_DIGITS, filtered_records
from .curation_filters import STATUS_FILTERS as STATUS_FILTERS  # the tab's choices
from .curation_filters import YES_NO_ANY as YES_NO_ANY

RECORD_COLUMNS = ["id", "status", "teacher correct", "overlaps gold", "share", "question", "rationale"]
NO_RECORD_HTML = '<div class="kdviz-rationale-view"><i>Pick a record to see its words.</i></div>'


class CurationView(NamedTuple):
    """A build as the panel shows it: counts (Markdown), statistics rows (under `viz.rationales.STATS_COLUMNS`),
    the statistics figure, the filtered records' rows (under RECORD_COLUMNS) and their ids."""

    counts: str
    stats: list[list[str]]
    figure: Any
    rows: list[list]
    ids: list[str]


class RecordView(NamedTuple):
    """One record: its prompt as clickable highlighted HTML, its rationale text, a Markdown summary."""

    html: str
    text: str
    summary: str


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


def curation_view(workspace: str | Path, build: str, *filters: Any, **named: Any) -> CurationView:
    """Returns the view of a build: the statistics cover all records (split by the teacher's correctness) and the
    accepted ones; `filters` (by position) and `named` are those of `filtered_records`. With no build open,
    returns an empty view."""
    if not build:
        return CurationView("No build open.", [], None, [], [])
    records = open_build(Workspace(workspace), build).records()
    shown = filtered_records(records, *filters, **named)
    stats = rationale_stats(records)
    accepted = rationale_stats([r for r in records if r.status == "accepted"])
    return CurationView(
        f"**{build}** · {counts_text(records)} · {len(shown)} shown",
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
    lines.append(faithfulness_markdown(rec.faithfulness, current_faithfulness(rec) is not None))
    return "  \n".join(lines)


def record_view(workspace: str | Path, build: str, record_id: str | None) -> RecordView:
    """Returns the view of one record of the build (an empty one when no record is picked)."""
    if not record_id:
        return RecordView(NO_RECORD_HTML, "", "")
    rec = open_build(Workspace(workspace), build).get(record_id)
    return RecordView(rationale_html(rec), rec.rationale_text, _record_markdown(rec))
