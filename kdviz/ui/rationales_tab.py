"""Panel 2, Rationales: build a rationale dataset with a teacher, or open or import one. Components and wiring only;
the statistics, curation and export sections are in `curation_tab`."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

import kdviz

from . import curation_tab
from . import rationale_handlers as rh
from .handlers import ui_errors

# The Cancel button's flag for the build running in each browser session, keyed by gradio's session hash: a
# threading.Event cannot live in gr.State (whose values are deep-copied per session).
_STOP: dict[str, threading.Event] = {}


@ui_errors
def build(
    workspace: str,
    model: str,
    dataset: str,
    columns: str,
    limit: int,
    method: str,
    target_mode: str,
    rule: str,
    rule_value: float,
    exclude: list[str],
    batch_size: int,
    name: str,
    request: gr.Request,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (gradio injects the tracker by this default)
) -> tuple[str, gr.Dropdown, str]:
    stop = _STOP[request.session_hash] = threading.Event()
    try:
        built, message = rh.build(
            workspace,
            model,
            dataset,
            columns,
            limit,
            method,
            target_mode,
            rule,
            rule_value,
            exclude,
            batch_size,
            name,
            on_progress=lambda done, total: progress((done, total), desc="attributing", unit="examples"),
            should_stop=stop.is_set,
        )
    finally:
        _STOP.pop(request.session_hash, None)
    return built, gr.Dropdown(choices=rh.list_builds(workspace), value=built or None), message


def cancel(request: gr.Request) -> str:
    stop = _STOP.get(request.session_hash)
    if stop is None:
        return "No build is running."
    stop.set()
    return "Cancelling after the current batch…"


@ui_errors
def open_existing(workspace: str, name: str) -> tuple[str, str]:
    rh.open_build(workspace, name)
    return name, f"Opened build **{name}**."


@ui_errors
def import_file(workspace: str, file: str, name: str) -> tuple[str, gr.Dropdown, str]:
    built, message = rh.import_records(workspace, file, name)
    return built, gr.Dropdown(choices=rh.list_builds(workspace), value=built), message


def set_dataset(file: str) -> tuple[str, str]:
    return file, f"Examples: `{Path(file).name}`"


def render(teacher: str, examples_path: str | Path, workspace: Path) -> None:
    """Adds the Rationales panel's components and events to the enclosing Blocks."""
    specs = kdviz.list_model_specs()
    ws = gr.State(str(workspace))
    current = gr.State("")  # this session's open build: a folder name in the workspace
    dataset = gr.State(str(examples_path))
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(
                specs if teacher in specs else [teacher, *specs],
                value=teacher,
                label="Teacher",
                allow_custom_value=True,
            )
            method = gr.Dropdown(kdviz.list_attribution_methods(), value="input_x_gradient", label="Method")
            target_mode = gr.Radio(list(rh.BUILD_TARGET_MODES), value="choice", label="Attribute")
            with gr.Row():
                rule = gr.Radio(list(rh.RULES), value="top-k", label="Rationale rule", scale=2)
                rule_value = gr.Number(5, label="k / mass / z", minimum=0, scale=1)
            exclude = gr.CheckboxGroup(list(rh.EXCLUSIONS), value=list(rh.EXCLUSIONS), label="Exclude")
            with gr.Row():
                limit = gr.Number(20, label="Examples (first N)", precision=0, minimum=1)
                batch_size = gr.Number(4, label="Batch size", precision=0, minimum=1)
        with gr.Column(scale=1, min_width=300):
            data_note = gr.Markdown(f"Examples: `{Path(examples_path).name}`")
            upload = gr.File(label="Examples file (JSONL, CSV, Parquet)", file_types=[".jsonl", ".csv", ".parquet"])
            columns = gr.Textbox("", label="Column mapping", placeholder="question=prompt,answer=label (optional)")
            name = gr.Textbox("", label="Build name", placeholder="default: <data>-<method>-<time>")
            with gr.Row():
                run = gr.Button("Build", variant="primary")
                stop = gr.Button("Cancel", variant="stop")
            message = gr.Markdown(elem_id="kdviz-build-message")
        with gr.Column(scale=1, min_width=300):
            with gr.Row():
                builds = gr.Dropdown(
                    rh.list_builds(workspace), value=None, label="Open build", info=f"in {workspace}", scale=4
                )
                refresh = gr.Button("↻", scale=1, min_width=40)
            imported = gr.File(label="Import records JSONL (kdviz rationales --out)", file_types=[".jsonl"])
    curation_tab.render(ws, current)

    settings = [model, dataset, columns, limit, method, target_mode, rule, rule_value, exclude, batch_size, name]
    run.click(build, [ws, *settings], [current, builds, message], api_name="build")
    stop.click(cancel, None, message, api_name="cancel")
    builds.input(open_existing, [ws, builds], [current, message], api_name="open_build")
    refresh.click(lambda w: gr.Dropdown(choices=rh.list_builds(w)), ws, builds, api_name="list_builds")
    imported.upload(import_file, [ws, imported, name], [current, builds, message], api_name="import_records")
    upload.upload(set_dataset, upload, [dataset, data_note], api_name="set_dataset")
    rule.input(lambda r: {"top-k": 5, "mass": 0.5, "z": 1.0}[r], rule, rule_value, api_name="rule_default")
