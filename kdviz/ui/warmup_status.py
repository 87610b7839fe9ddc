"""The Teacher panel's warm-up widgets: the status line under the Model menu, polled while the teacher loads in the
background, and the box that lets the fast teacher answer meanwhile (the logic is in `model_warmup`)."""

from __future__ import annotations

import gradio as gr

from . import model_warmup
from .errors import ui_errors


@ui_errors
def warm_status(model: str) -> tuple[str, gr.Timer]:
    """The line under the Model menu; picking a default teacher (one with a fast stand-in) starts its warm-up."""
    if (model or "").strip() in model_warmup.FALLBACKS:
        model_warmup.start(model)
    return model_warmup.status_line(model), gr.Timer(active=model_warmup.warming(model) is not None)


def render(teacher: str, model: gr.Dropdown) -> gr.Checkbox:
    """Adds the status line and the fast-teacher box under `model`; returns the box (a click's input)."""
    warm, timer = gr.Markdown(model_warmup.status_line(teacher)), gr.Timer(model_warmup.POLL_S)
    use_fast = gr.Checkbox(True, label="Use the fast teacher while the default one loads")
    gr.on(
        [timer.tick, model.change], warm_status, model, [warm, timer], show_progress="hidden", api_name="warm_status"
    )
    return use_fast
