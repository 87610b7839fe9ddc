"""The Rationales panel's record filters: the panel's labels ("any", "yes", "no"; a status; share bounds; a search)
made into `kdviz.rationales.curation.filter_records`."""

from __future__ import annotations

from collections.abc import Sequence

from kdviz.errors import InputError, UnknownNameError
from kdviz.rationale_records import STATUSES, RationaleRecord
from kdviz.rationales.curation import filter_records

from .fields import number

YES_NO_ANY = ("any", "yes", "no")
STATUS_FILTERS = ("any", *STATUSES)
SHARE_DIGITS = 3
SHARE_HALF_STEP = 0.5 * 10**-SHARE_DIGITS
SHARE_LABELS = {"share_min": "Share ≥", "share_max": "Share ≤"}  # the bounds' fields: 0 to 1, empty for none


def _share(value: float | None, field: str, empty: float) -> float:
    return empty if value is None or value == "" else number(value, SHARE_LABELS[field], minimum=0, maximum=1)


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
    low, high = _share(share_min, "share_min", 0.0), _share(share_max, "share_max", 1.0)
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
