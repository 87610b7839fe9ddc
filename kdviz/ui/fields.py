"""The panels' number fields, checked by kdviz rather than by gradio, so that an out-of-range value gets a message
naming the field as the panel labels it, and the value given: "Top-k rationale words must be at least 1, not 0".

Why not the widgets' own bounds: gradio checks `minimum=`/`maximum=` on the server, in `Number.preprocess` and
`Slider.preprocess`, for every call, from the page and from gradio_client alike (a client does not get round them),
and its message names no field: "Value 0 is less than minimum value 1.". So the panels' number boxes declare no
bounds, the handlers call `number` with them, and sliders (which need their bounds to draw) are `Slider` below.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

from kdviz.errors import InputError


def _range(minimum: float | None, maximum: float | None, above: float | None) -> str:
    low = f"above {above}" if above is not None else f"at least {minimum}" if minimum is not None else ""
    if maximum is None:
        return low
    if minimum is not None and above is None:
        return f"between {minimum} and {maximum}"
    return f"{low} and at most {maximum}" if low else f"at most {maximum}"


def number(
    value: Any,
    label: str,
    *,
    whole: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Any:
    """Returns the field's value as a float, or an int when `whole`, within `minimum`..`maximum` (inclusive) and
    strictly `above` a bound when one is given.

    Raises:
        InputError: the field is empty, not a (whole) number or out of range; the message names `label`.
    """
    kind = "a whole number" if whole else "a number"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{label} is empty: give {kind}")
    try:
        real = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be {kind}, not {value!r}") from None
    if not math.isfinite(real) or (whole and not real.is_integer()):
        raise InputError(f"{label} must be {kind}, not {value}")
    shown = int(real) if real.is_integer() else real  # "not 0", not "not 0.0"
    out_of_range = (
        (minimum is not None and real < minimum)
        or (maximum is not None and real > maximum)
        or (above is not None and real <= above)
    )
    if out_of_range:
        raise InputError(f"{label} must be {_range(minimum, maximum, above)}, not {shown}")
    return int(real) if whole else real


class Slider(gr.Slider):
    """A gr.Slider whose range its handler checks with `number` (see the module docstring): gradio's own check
    would answer an out-of-range API call with a message that names no field."""

    is_template = True  # drawn by gradio's own slider

    def preprocess(self, payload: float | None) -> float | None:
        return None if payload is None else gr.Number.round_to_precision(payload, self.precision)
