"""Panel 1, Teacher: attribute a teacher's answer to the words of a prompt. Components and wiring only."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import kdviz
from kdviz.attribution.catalog import DEFAULT_STEPS
from kdviz.lm.prompts import MAX_PROMPT_CHARS, predict_help

from . import handlers, model_warmup, teacher_click, warmup_status
from .errors import ui_errors
from .fields import Slider


@ui_errors
def attribute(
    model: str,
    method: str,
    target_mode: str,
    prompt: str,
    choices: str,
    gold: str,
    custom_target: str,
    fmt: str,
    steps: int,
    predict: str = "default",
    contrast: str = "none",
    example_id: str | None = None,
    dataset: str = "",
    use_fast: bool = True,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (gradio injects the tracker by this default)
) -> handlers.AttributionView:
    note = model_warmup.model_load_note(model, use_fast)
    if note:
        gr.Info(note)
    return handlers.run_attribution(
        model, method, target_mode, prompt, choices, gold, custom_target, fmt, steps,
        on_progress=lambda fraction, desc: progress(fraction, desc=desc), predict=predict, contrast=contrast,
        dataset=dataset, example_id=example_id or "", use_fast=use_fast,
    )  # fmt: skip


cost_note = ui_errors(teacher_click.cost_note)  # the line under the method menu


@ui_errors
def pick_example(dataset: str, example_id: str) -> handlers.ExampleFields:
    return handlers.example_fields(dataset, example_id)


@ui_errors
def load_dataset(file: str) -> tuple[gr.Dropdown, str]:
    choices = handlers.load_dataset_examples(file)
    gr.Info(f"{len(choices)} examples loaded from {Path(file).name}")
    return gr.Dropdown(choices=choices, value=None), file


def render(teacher: str, examples_path: str | Path) -> None:
    """Adds the Teacher panel's components and events to the enclosing Blocks."""
    specs = kdviz.list_model_specs()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            model = gr.Dropdown(
                specs if teacher in specs else [teacher, *specs],
                value=teacher,
                label="Model",
                allow_custom_value=True,
                info="a listed spec, or type a hub id, local folder or .gguf file",
            )
            use_fast = warmup_status.render(teacher, model)
            method = gr.Dropdown(kdviz.list_attribution_methods(), value="input_x_gradient", label="Method")
            cost = gr.Markdown(teacher_click.cost_note("input_x_gradient", "", "", 20, teacher))
            target_mode = gr.Radio(
                list(handlers.TARGET_MODES),
                value="generate",
                label="Target mode",
                info="choice: best-scoring choice · generate: free answer · gold: the gold answer · custom: typed",
            )
            custom_target = gr.Textbox(label="Custom target", placeholder="attributed when Target mode is custom")
            predict = gr.Dropdown(
                list(handlers.PREDICT_CHOICES),
                value="default",
                label="Prediction mode",
                info=predict_help(),
            )
            contrast = gr.Radio(
                list(handlers.CONTRAST_CHOICES),
                value="none",
                label="Contrast",
                info="runner-up: why the prediction and not the runner-up · gold: why the gold answer and not the "
                "prediction (sets the target)",
            )
            fmt = gr.Dropdown(
                list(handlers.FORMAT_CHOICES),
                value="auto",
                label="Format",
                info="auto: mcqa when choices are given, else the raw prompt",
            )
            steps = Slider(1, handlers.MAX_STEPS, value=DEFAULT_STEPS, step=1, label=handlers.STEPS_LABEL)
        with gr.Column(scale=2):
            dataset = gr.State(str(examples_path))
            with gr.Row():
                example = gr.Dropdown(
                    handlers.load_dataset_examples(examples_path),
                    value=None,
                    label="Example",
                    scale=3,
                    info=f"from {Path(examples_path).name}; upload a JSONL file to pick from another set",
                )
                upload = gr.File(label="Examples file (JSONL)", file_types=[".jsonl"], scale=1, height=120)
            prompt = gr.Textbox(
                label="Prompt",
                lines=3,
                max_lines=12,
                placeholder="type a question, or pick an example",
                info=f"up to {MAX_PROMPT_CHARS} characters; for nli: the premise, a blank line, the hypothesis",
            )
            with gr.Row():
                choices = gr.Textbox(label="Choices (one per line)", lines=5, max_lines=10)
                gold = gr.Textbox(label="Gold answer", info="one of the choices; optional")
            run = gr.Button("Attribute", variant="primary")
    with gr.Row():
        answer = gr.Markdown(label="Answer", scale=1)
        highlighted = gr.HTML(label="Word attribution", scale=2, padding=True)
    with gr.Row():
        heatmap = gr.Plot(label="Output tokens × input words", scale=3)
        top_k = gr.Dataframe(
            headers=handlers.TOP_K_HEADERS,
            datatype=["number", "str", "number"],
            label="Top words",
            interactive=False,
            scale=1,
        )
    with gr.Accordion("Record (TokenAttribution.to_dict())", open=False):
        record = gr.JSON(label="Record")

    # The picked example (and its file) go along, so a click can reuse a rationale build's attribution of it.
    fields = [model, method, target_mode, prompt, choices, gold, custom_target, fmt, steps, predict, contrast, example]
    clicked = run.click(
        attribute, [*fields, dataset, use_fast], [answer, highlighted, heatmap, top_k, record], api_name="attribute"
    )
    cost_inputs = [method, prompt, choices, steps, model]
    gr.on([method.change, steps.change, prompt.change, choices.change, model.change], cost_note, cost_inputs, cost,
          api_name="cost_note", show_progress="hidden")  # fmt: skip
    clicked.then(cost_note, cost_inputs, cost, api_name="cost_after", show_progress="hidden")  # with the pace in s
    example.input(pick_example, [dataset, example], [prompt, choices, gold, fmt, target_mode], api_name="pick_example")
    upload.upload(load_dataset, upload, [example, dataset], api_name="load_dataset")
