"""Panel 3, Train: fine-tune a student on the Rationales panel's data with a distillation method, watch its curves
and sample predictions live, cancel it, and open past runs. Components and wiring only (see `train_handlers`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

import kdviz

from . import run_views as rv
from . import train_handlers as th
from . import train_settings as ts
from .errors import ui_errors
from .fields import Slider
from .train_sources import source_fields

D, L = ts.DEFAULTS, ts.NUMBER_FIELDS  # L: the number fields' labels (and ranges, which the handler checks)
STUDENT = "embedded-student"


@ui_errors
@functools.wraps(ts.make_config, assigned=())  # the API's parameters take the names of make_config's fields
def launch(workspace: str, *fields: Any):
    try:
        yield from th.launch(workspace, *fields)
    except th.BusyError as exc:  # a warning, not an error: the app and the run in progress are fine
        gr.Warning(str(exc))
        yield str(exc), gr.skip(), gr.skip(), gr.skip()


@ui_errors
def method_changed(method: str, workspace: str, student: str) -> tuple:
    info, own = ts.method_info(method), ts.method_settings(method)
    shown = [info.uses_alpha, info.uses_teacher, own.kd, own.kd, own.beta is not None, own.lmbda, own.rationale]
    beta = gr.skip() if own.beta is None else own.beta  # its default for the method: DPO's and GKD's β differ
    return info.summary, *(gr.update(visible=v) for v in shown), beta, ts.suggest_run_name(workspace, method, student)


@ui_errors
def refresh(workspace: str, dataset: str | None) -> tuple:
    rows, choices = rv.run_rows(workspace), th.list_datasets(workspace)
    data = gr.Dropdown(choices=choices, value=dataset or (choices[0][1] if choices else None))
    return data, rows, gr.Dropdown(choices=rv.run_names(rows))


@ui_errors
def after_run(workspace: str, method: str, student: str, name: str) -> tuple:
    rows = rv.run_rows(workspace)
    return rows, gr.Dropdown(choices=rv.run_names(rows)), ts.next_run_name(workspace, method, student, name)


@ui_errors
def upload(workspace: str, file: str) -> gr.Dropdown:
    path = th.add_upload(workspace, file)
    return gr.Dropdown(choices=th.list_datasets(workspace), value=path)


def pick_run(evt: gr.SelectData) -> str:
    return evt.row_value[0]


def render(teacher: str, workspace: Path, tab: gr.Tab | None = None) -> None:
    """Adds the Train panel's components and events to the enclosing Blocks; `tab` (the panel's tab) refreshes
    the data and runs lists when it is opened."""
    specs, ws = kdviz.list_model_specs(), gr.State(str(workspace))
    datasets, runs_now = th.list_datasets(workspace), rv.run_rows(workspace)
    (summary_now, alpha_now, teacher_now), own_now = ts.method_info(D["method"]), ts.method_settings(D["method"])
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            student = gr.Dropdown(
                specs, value=STUDENT, label="Student", allow_custom_value=True, info="a spec, hub id or local folder"
            )
            with gr.Row():
                dataset = gr.Dropdown(
                    datasets, value=datasets[0][1] if datasets else None, label="Training data", scale=4,
                    allow_custom_value=True, info="Rationales exports and builds; or a path, or hf:name",
                )  # fmt: skip
                reload = gr.Button("↻", scale=1, min_width=40)
            uploaded = gr.File(label="Upload training data", file_types=list(th.DATA_SUFFIXES), height=110)
            method = gr.Dropdown(list(ts.METHOD_NAMES), value=D["method"], label="Method")
            summary = gr.Markdown(summary_now)
            sources = source_fields()  # rationale and label sources: a build's, or the dataset's own teacher's
        with gr.Column(scale=1, min_width=320):
            numbers = {}  # max_steps, batch_size, lr, seed, eval_every, eval_size: make_config's order
            for row in (("max_steps", "batch_size", "lr"), ("seed", "eval_every", "eval_size")):
                with gr.Row():
                    for f in row:
                        numbers[f] = gr.Number(D[f], label=L[f][0], precision=None if f == "lr" else 0)
            alpha = Slider(0, 1, D["alpha"], step=0.05, label=L["alpha"][0], visible=alpha_now)
            with gr.Row(visible=teacher_now) as kd_row:
                kd_loss = gr.Radio(["kl", "jsd"], value=D["kd_loss"], label="KD loss", visible=own_now.kd)
                temperature = gr.Number(D["temperature"], label=L["temperature"][0], min_width=100, visible=own_now.kd)
                kd_teacher = gr.Dropdown(specs if teacher in specs else [teacher, *specs], value=teacher,
                                         label="Teacher", allow_custom_value=True)  # fmt: skip
            with gr.Row(visible=own_now.beta is not None) as trl_row:
                beta = gr.Number(own_now.beta or D["dpo_beta"], label=L["dpo_beta"][0], min_width=80)
                lmbda = gr.Number(D["gkd_lmbda"], label=L["gkd_lmbda"][0], min_width=80, visible=own_now.lmbda)
                dpo_rationale = gr.Checkbox(D["dpo_rationale"], label="With the rationale", visible=own_now.rationale,
                                            info="the preferred answer also gives the teacher's rationale")  # fmt: skip
            with gr.Row():
                lora = gr.Checkbox(D["lora"], label="LoRA (train adapters only)")
                lora_r = gr.Number(D["lora_r"], label=L["lora_r"][0], precision=0)
                report_to = gr.Dropdown(list(ts.REPORT_TO), value=D["report_to"], label="Report to", min_width=100)
            name = gr.Textbox(ts.suggest_run_name(workspace, D["method"], STUDENT), label="Run name",
                              info=f"a folder in {th.runs_root(workspace)}")  # fmt: skip
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                stop = gr.Button("Cancel", variant="stop")
    status = gr.Markdown(elem_id="kdviz-train-status")
    with gr.Row():
        curves = gr.Plot(label="Curves", scale=3, elem_id="kdviz-train-curves")
        samples = gr.Dataframe(
            headers=rv.SAMPLE_COLUMNS, label="Sample predictions (newest first)", interactive=False, wrap=True,
            max_height=360, scale=2, column_widths=rv.SAMPLE_WIDTHS,
        )  # fmt: skip
    command = gr.Markdown()
    with gr.Accordion("Past runs", open=True):
        runs = gr.Dataframe(
            runs_now, headers=rv.RUN_COLUMNS, interactive=False, label="Runs (click a row)", elem_id="kdviz-runs"
        )
        run = gr.Dropdown(rv.run_names(runs_now), value=None, label="Run", allow_custom_value=True)
        past_status = gr.Markdown()
        with gr.Row():
            past_curves = gr.Plot(label="Curves", scale=3, elem_id="kdviz-run-curves")
            past_samples = gr.Dataframe(
                headers=rv.SAMPLE_COLUMNS, label="Sample predictions", interactive=False, wrap=True, scale=2,
                column_widths=rv.SAMPLE_WIDTHS,
            )  # fmt: skip
        past_command = gr.Markdown()

    fields = [student, dataset, method, *numbers.values(), alpha, kd_loss, temperature, kd_teacher, lora, lora_r]
    fields += [beta, lmbda, dpo_rationale, report_to, name, *sources]  # make_config's order
    # No concurrency limit: a second launch must get the busy message now, not wait in the queue for this run.
    start.click(
        launch, [ws, *fields], [status, curves, samples, command], api_name="train", concurrency_limit=None
    ).then(after_run, [ws, method, student, name], [runs, run, name], api_name="after_train")
    stop.click(ui_errors(th.cancel_run), None, status, api_name="cancel_training")
    method_fields = [alpha, kd_row, kd_loss, temperature, trl_row, lmbda, dpo_rationale, beta]
    gr.on([method.input, student.input], method_changed, [method, ws, student], [summary, *method_fields, name],
          api_name="method_info")  # fmt: skip
    triggers = [reload.click] + ([tab.select] if tab is not None else [])
    gr.on(triggers, refresh, [ws, dataset], [dataset, runs, run], api_name="refresh_train")
    uploaded.upload(upload, [ws, uploaded], dataset, api_name="upload_train_data")
    runs.select(pick_run, None, run, api_name="pick_run")
    past = [past_status, past_curves, past_samples, past_command]
    run.change(ui_errors(rv.run_view), [ws, run], past, api_name="show_run")
