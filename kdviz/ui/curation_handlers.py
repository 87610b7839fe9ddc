"""The Rationales panel's curation: toggle a record's words, edit its rationale text, accept, reject or reset one
record or every record that passes the filters. Each change is saved at once (`CurationStore`), so a restarted app
shows the same state. They return the record's new view (`curation_views.RecordView`) or a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdviz.errors import InputError, UnknownNameError
from kdviz.rationales.curation import CurationStore, open_build
from kdviz.workspace import Workspace

from .curation_filters import filtered_records
from .curation_views import RecordView, record_view

ACTIONS = {"accept": "accepted", "reject": "rejected", "reset": None}  # reset: back to the rule's words, pending


def _store(workspace: str | Path, build: str) -> CurationStore:
    return open_build(Workspace(workspace), build)


def _need_record(record_id: str | None) -> str:
    if not record_id:
        raise InputError("pick a record first")
    return record_id


def toggle_word(workspace: str | Path, build: str, record_id: str, index: int) -> RecordView:
    """Adds word `index` of the record's prompt to its rationale, or removes it (saved at once); returns the view."""
    _store(workspace, build).toggle_word(_need_record(record_id), int(index))
    return record_view(workspace, build, record_id)


def save_text(workspace: str | Path, build: str, record_id: str, text: str) -> RecordView:
    """Replaces the record's rationale text, the words training uses (saved at once); returns the view."""
    if not (text or "").strip():
        raise InputError("the rationale text is empty; reset the record to get the rule's words back")
    _store(workspace, build).set_text(_need_record(record_id), text)
    return record_view(workspace, build, record_id)


def _apply(store: CurationStore, ids: list[str], action: str) -> None:
    if action not in ACTIONS:
        raise UnknownNameError("action", action, ACTIONS)
    status = ACTIONS[action]
    if status:
        store.set_status(ids, status)
    else:
        store.reset(ids)


def record_action(workspace: str | Path, build: str, record_id: str, action: str) -> RecordView:
    """Accepts, rejects or resets one record (saved at once); returns its view."""
    _apply(_store(workspace, build), [_need_record(record_id)], action)
    return record_view(workspace, build, record_id)


def bulk_action(workspace: str | Path, build: str, action: str, *filters: Any, **named: Any) -> str:
    """Accepts, rejects or resets every record that passes the filters (`filtered_records`'s, by position or
    name) in one save; returns a message."""
    store = _store(workspace, build)
    ids = [r.id for r in filtered_records(store.records(), *filters, **named)]
    if not ids:
        raise InputError("no record passes the filters")
    _apply(store, ids, action)
    return f"{(ACTIONS[action] or 'reset').capitalize()} {len(ids)} record{'s' * (len(ids) != 1)}."
