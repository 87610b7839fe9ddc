"""The one way kdviz shows numbers in tables, cards and status lines: a missing value is "—"."""

from __future__ import annotations

MISSING = "—"


def number(value: float | int | None, digits: int = 3) -> str:
    """Returns a float with `digits` decimals, an int as it is, None as "—"."""
    if value is None:
        return MISSING
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def percent(value: float | None, sd: float | None = None, digits: int = 1) -> str:
    """Returns a share as a percentage ("42.0%"), with "± sd" (in points) when `sd` is given; None as "—"."""
    if value is None:
        return MISSING
    return f"{100 * value:.{digits}f}%" + (f" ± {100 * sd:.{digits}f}" if sd is not None else "")


def duration(seconds: float | None) -> str:
    """Returns "12.3 s" under a minute, else "4 min 05 s"; None as "—"."""
    if seconds is None:
        return MISSING
    seconds = float(seconds)
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
