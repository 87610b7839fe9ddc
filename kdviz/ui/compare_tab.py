"""Panel 4, Compare: the teacher and students (training runs or any model) on the same examples: accuracy with
intervals, paired tests, charts, and every model's attribution map on one example; past comparisons reopen without
recomputing. Components and wiring only (see `compare_settings`, `compare_handlers` and `saved_comparisons`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

import kdviz
from kdviz.workspace import DATA_SUFFIXES, Workspace

from . import compare_handlers as ch
from . import compare_settings as cs
from . import reproduction_view
from . import saved_comparisons as sc
from .downloads import served
from .errors import ui_errors

D = cs.DEFAULTS


def _served(view: sc.View) -> sc.View:
    return view._replace(files=served(view.files)) if view.files else view


@ui_errors
@functools.wraps(cs.make_settings, assigned=())  # the API's parameters take the names of make_settings's fields
def launch(workspace: str, *fields: Any):
    try:
        for view in ch.launch(workspace, *fields):
            yield _served(view)
    except ch.BusyError as exc:  # a warning, not an error: the app and the comparison in progress are fine
        gr.Warning(str(exc))
        yield sc.View(str(exc), *[gr.skip()] * (len(sc.View._fields) - 1))


@ui_errors
def open_saved(workspace: str, name: str, filter_name: str) -> sc.View:
    if not name:
        raise kdviz.InputError("pick a past comparison to open")
    return _served(sc.comparison_view(workspace, name, filter_name))


def after_compare(workspace: str, name: str) -> tuple:
    return gr.Dropdown(choices=sc.list_comparisons(workspace)), cs.next_name(workspace, name)


@ui_errors
def upload(workspace: str, examples_path: str, file: str) -> gr.Dropdown:
    path = Workspace(workspace).add_upload(file)
    return gr.Dropdown(choices=cs.list_data(workspace, examples_path), value=str(path))


def refresh(workspace: str, examples_path: str, dataset: str | None) -> tuple:
    data = cs.list_data(workspace, examples_path)
    return (
        gr.Dropdown(choices=cs.list_students(workspace)),
        gr.Dropdown(choices=data, value=dataset or (data[0][1] if data else None)),
        gr.Dropdown(choices=sc.list_comparisons(workspace)),
    )


@ui_errors
def pick_example(workspace: str, name: str, evt: gr.SelectData) -> tuple[str, str]:
    return evt.row_value[0], sc.show_example(workspace, name, evt.row_value[0])


def render(teacher: str, examples_path: str | Path, workspace: Path, tab: gr.Tab | None = None) -> None:
    """Adds the Compare panel's components and events to the enclosing Blocks; `tab` (the panel's tab) refreshes
    the students, data and past comparisons when it is opened, so runs trained meanwhile appear."""
    ws, examples = gr.State(str(workspace)), gr.State(str(examples_path))
    current = gr.State("")  # the comparison shown: a folder name in <workspace>/comparisons
    data_now = cs.list_data(workspace, examples_path)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            teacher_spec = gr.Textbox(teacher, label="Teacher", info="a spec, hub id or local folder")
            students = gr.Dropdown(
                cs.list_students(workspace), value=[], multiselect=True, label="Students",
                info="training runs of the Train panel, or model specs",
            )  # fmt: skip
            extra = gr.Textbox("", label="More students", placeholder="hub ids or local folders, comma-separated")
            with gr.Row():
                dataset = gr.Dropdown(
                    data_now, value=data_now[0][1], label="Data", scale=4, allow_custom_value=True,
                    info="the app's examples, Rationales exports and builds; or a path, or hf:name",
                )  # fmt: skip
                reload = gr.Button("↻", scale=1, min_width=40)
            uploaded = gr.File(label="Upload data", file_types=list(DATA_SUFFIXES), height=110)
        with gr.Column(scale=1, min_width=320):
            with gr.Row():
                limit = gr.Number(D["limit"], label=cs.LABELS["limit"], precision=0)
                top_k = gr.Number(D["top_k"], label=cs.LABELS["top_k"], precision=0)
                batch_size = gr.Number(D["batch_size"], label=cs.LABELS["batch_size"], precision=0)
            with gr.Row():
                method = gr.Dropdown(kdviz.list_attribution_methods(), value=D["method"], label="Attribution method")
                predict = gr.Dropdown(cs.PREDICT_CHOICES, value=cs.DEFAULT_PREDICT, label="Prediction mode")
                target = gr.Dropdown(cs.TARGET_CHOICES, value=cs.DEFAULT_TARGET, label="Attributed answer")
            name = gr.Textbox(
                cs.suggest_name(workspace),
                label="Comparison name",
                info=f"a folder in {Workspace(workspace).comparisons}",
            )
            with gr.Row():
                start = gr.Button("Compare", variant="primary")
                stop = gr.Button("Cancel", variant="stop")
    status = gr.Markdown(elem_id="kdviz-compare-status")
    summary = gr.Dataframe(headers=sc.SUMMARY_HEADERS, label="Summary", interactive=False, elem_id="kdviz-summary")
    pairwise = gr.Dataframe(headers=sc.PAIRWISE_HEADERS, label="Paired tests (McNemar)", interactive=False)
    with gr.Row():
        accuracy = gr.Plot(label="Accuracy", elem_id="kdviz-compare-accuracy")
        overlap = gr.Plot(label="Rationale overlap with the gold answer")
        agreement = gr.Plot(label="Answer agreement")
    with gr.Row():
        filter_name = gr.Dropdown(sc.FILTER_CHOICES, value="all", label="Show examples", scale=3)
        example_id = gr.Textbox(label="Example id", info="click a row, or type an id and press Enter", scale=1)
    table = gr.Dataframe(
        headers=["id", "question", "gold"], label="Examples", interactive=False, wrap=True, max_height=360,
        elem_id="kdviz-compare-examples",
    )  # fmt: skip
    example = gr.HTML(sc.NO_EXAMPLE_HTML, elem_id="kdviz-compare-example")
    downloads = gr.File(label="Report files", file_count="multiple", interactive=False)
    command = gr.Markdown()
    with gr.Accordion("Past comparisons", open=True):
        with gr.Row():
            past = gr.Dropdown(sc.list_comparisons(workspace), value=None, label="Comparison", scale=4)
            reopen = gr.Button("Open", scale=1)
    reproduction_view.render()  # bench/reproduce.py's results folders: the same table and chart

    view = [status, summary, pairwise, accuracy, overlap, agreement, table, example, downloads, command, current]
    fields = [teacher_spec, students, extra, dataset, limit, method, top_k, batch_size, name, predict, target]
    # No concurrency limit: a second launch must get the busy message now, not wait in the queue for this one.
    start.click(launch, [ws, *fields], view, api_name="compare", concurrency_limit=None).then(
        after_compare, [ws, name], [past, name], api_name="after_compare"
    )
    stop.click(ch.cancel_comparison, None, status, api_name="cancel_comparison")
    reopen.click(open_saved, [ws, past, filter_name], view, api_name="open_comparison")
    triggers = [reload.click] + ([tab.select] if tab is not None else [])
    gr.on(triggers, refresh, [ws, examples, dataset], [students, dataset, past], api_name="refresh_compare")
    uploaded.upload(upload, [ws, examples, uploaded], dataset, api_name="upload_compare_data")
    filter_name.input(ui_errors(sc.examples_table), [ws, current, filter_name], table, api_name="filter_examples")
    table.select(pick_example, [ws, current], [example_id, example], api_name="pick_compared_example")
    example_id.submit(ui_errors(sc.show_example), [ws, current, example_id], example, api_name="show_example")
