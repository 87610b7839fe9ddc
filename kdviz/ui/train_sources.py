"""The Train panel's teacher sources: whether the teacher's rationales and answers come from a Rationales build or
from the dataset itself (the 540B teacher's chain of thought of "Distilling step-by-step"). Components only."""

from __future__ import annotations

import dataclasses

import gradio as gr

from kdviz.config import TrainConfig

DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in ("rationale_source", "label_source")
}
RATIONALE_CHOICES = [("the build's attribution rationales", "build"), ("the dataset's teacher_rationale", "data")]
LABEL_CHOICES = [("the build's teacher answers", "build"), ("the dataset's teacher_answer", "data")]


def source_fields() -> list[gr.Dropdown]:
    """Adds a closed "Teacher sources" accordion to the enclosing layout; returns its two dropdowns, the rationale
    source then the label source (the last two of `make_config`'s fields)."""
    with gr.Accordion("Teacher sources", open=False):
        rationale = gr.Dropdown(
            RATIONALE_CHOICES, value=DEFAULTS["rationale_source"], label="Rationale source",
            info="what rationale_input, multitask and DPO's rationale train on",
        )  # fmt: skip
        label = gr.Dropdown(
            LABEL_CHOICES, value=DEFAULTS["label_source"], label="Label source",
            info="the teacher's answers teacher_label, dpo and gkd train on",
        )  # fmt: skip
    return [rationale, label]
