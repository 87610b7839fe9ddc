"""The Rationales panel's curation and export events: the gradio side (record picker, messages, downloads) of
`curation_handlers`, `curation_views` and `export_handlers`, which `curation_tab` wires.

The handlers take the record filters by name (`curation_filters.filtered_records`'s parameters, wired with
`inputs_kwargs`), so the API endpoints name them too: correct, overlaps_gold, status, share_min, share_max, search.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from . import curation_handlers as ch
from . import curation_views as cv
from . import export_handlers as eh
from .downloads import served
from .errors import ui_errors


def _changed(shown: cv.RecordView, workspace: str, build: str, record_id: str, filters: dict) -> tuple:
    return (*shown, *_view(workspace, build, record_id, filters, keep=True))


def _view(workspace: str, build: str, record_id: str | None, filters: dict, keep: bool = False) -> tuple:
    """Returns the build's outputs (counts, statistics, figure, records, record picker); `keep` keeps the picked
    record even when the filters hide it (it was just changed)."""
    view = cv.curation_view(workspace, build, **filters)
    picked = record_id if keep or record_id in view.ids else None
    return view.counts, view.stats, view.figure, view.rows, gr.Dropdown(choices=view.ids, value=picked)


@ui_errors
def show(workspace: str, build: str, record_id: str | None, **filters: Any) -> tuple:
    return _view(workspace, build, record_id, filters)


@ui_errors
def show_opened(workspace: str, build: str, **filters: Any) -> tuple:  # a build was opened: no record is picked
    return _view(workspace, build, None, filters)


def pick_row(evt: gr.SelectData) -> str:
    return evt.row_value[0]


@ui_errors
def toggle(evt: gr.SelectData, workspace: str, build: str, record_id: str, **filters: Any) -> tuple:
    return _changed(ch.toggle_word(workspace, build, record_id, evt.index), workspace, build, record_id, filters)


@ui_errors
def save_text(workspace: str, build: str, record_id: str, text: str, **filters: Any) -> tuple:
    return _changed(ch.save_text(workspace, build, record_id, text), workspace, build, record_id, filters)


def record_action(action: str):
    @ui_errors
    def act(workspace: str, build: str, record_id: str, **filters: Any) -> tuple:
        return _changed(ch.record_action(workspace, build, record_id, action), workspace, build, record_id, filters)

    return act


def bulk_action(action: str):
    @ui_errors
    def act(workspace: str, build: str, record_id: str, **filters: Any) -> tuple:
        gr.Info(ch.bulk_action(workspace, build, action, **filters))
        return _changed(cv.record_view(workspace, build, record_id), workspace, build, record_id, filters)

    return act


@ui_errors
def export(workspace: str, build: str, name: str, formats: list[str], accepted_only: bool) -> tuple[str, list[str]]:
    paths = eh.export(workspace, build, name, formats, accepted_only)
    files = served(p for p in paths if p.endswith((".jsonl", ".parquet")))
    return "Written:\n" + "\n".join(f"- `{p}`" for p in paths), files
