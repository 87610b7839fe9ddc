"""Panel 2, Rationales: build a rationale dataset with a teacher, or open or import one, and see the command that
rebuilds it, and measure the open build's rationales for each top-k and span ("Quality by k and span", a background
job in `quality_handlers`). Components and wiring only; statistics, curation and export are in `curation_tab`.

The build runs as the app's one background build (`build_job`, launched and followed by `build_events`): any
session can cancel it, and a page loaded while it runs follows it to its end."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import kdviz
from kdviz.lm.prompts import predict_help
from kdviz.viz.quality import QUALITY_COLUMNS, QUALITY_NOTE

from . import build_events as be
from . import build_handlers as bh
from . import build_job as bj
from . import curation_tab
from . import quality_handlers as qh
from . import rationale_handlers as rh
from .errors import ui_errors


@ui_errors
def open_existing(workspace: str, name: str) -> rh.OpenedBuild:
    return rh.open_existing(workspace, name)


@ui_errors
def import_file(workspace: str, file: str, name: str) -> tuple[str, gr.Dropdown, str, str]:
    opened = rh.import_records(workspace, file, name)
    return opened.build, gr.Dropdown(choices=rh.list_builds(workspace), value=opened.build), *opened[1:]


@ui_errors
def measure_quality(
    workspace: str,
    build: str,
    ks: list[str],
    spans: list[str],
    faithfulness: bool,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (gradio injects the tracker by this default)
):
    try:
        for view in qh.launch(workspace, build, ks, spans, faithfulness):
            if view.running and view.progress is not None:
                progress((view.progress.done, view.progress.total), desc="settings measured", unit="settings")
            yield (view.message, gr.skip(), gr.skip(), gr.skip()) if view.running else (view.message, *view[1:4])
    except qh.BusyError as exc:  # a warning: the app and the measurement in progress are fine
        gr.Warning(str(exc))
        yield str(exc), gr.skip(), gr.skip(), gr.skip()


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
            method = gr.Dropdown(kdviz.list_attribution_methods(), value=bh.RATIONALE_METHOD, label="Method")
            target_mode = gr.Radio(list(bh.BUILD_TARGET_MODES), value="choice", label="Attribute")
            predict = gr.Dropdown(
                list(bh.PREDICT_CHOICES), value="default", label="Prediction mode",
                info=predict_help(),
            )  # fmt: skip
            with gr.Row():
                rule = gr.Radio(list(bh.RULES), value="top-k", label="Rationale rule", scale=2)
                rule_value = gr.Number(
                    bh.RULE_DEFAULTS["top-k"], label="k / mass / z", scale=1
                )  # the rule checks its range
            exclude = gr.CheckboxGroup(list(bh.EXCLUSIONS), value=list(bh.EXCLUSIONS), label="Exclude")
            with gr.Row():
                span = gr.Radio(list(bh.SPANS), value=bh.DEFAULT_SPAN, label="Rationale words from", scale=2)
                faithfulness = gr.Checkbox(True, label="Measure faithfulness", scale=1)
            with gr.Row():
                limit = gr.Number(20, label=bh.LABELS["limit"], precision=0)
                batch_size = gr.Number(4, label=bh.LABELS["batch_size"], precision=0)
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
    command = gr.Markdown(elem_id="kdviz-build-command")
    curation_tab.render(ws, current)
    with gr.Accordion("Quality by k and span", open=False):
        with gr.Row():
            ks = gr.CheckboxGroup(list(qh.K_CHOICES), value=list(qh.DEFAULT_K_CHOICES), label="k (rationale words)")
            spans = gr.CheckboxGroup(list(bh.SPANS), value=list(bh.SPANS), label="Rationale words from")
            quality_faith = gr.Checkbox(True, label="Faithfulness on the build's teacher")
            with gr.Column(min_width=160):
                measure = gr.Button("Measure quality", variant="primary")
                stop_quality = gr.Button("Cancel", variant="stop", size="sm")
        quality_message = gr.Markdown()
        quality = gr.Dataframe(headers=QUALITY_COLUMNS, interactive=False, label="Rationale quality")
        gr.Markdown(QUALITY_NOTE)
        quality_plot = gr.Plot(label="Quality against random words")
        quality_command = gr.Markdown()

    settings = [model, dataset, columns, limit, method, target_mode, rule, rule_value, exclude, batch_size, name,
                span, faithfulness, predict]  # fmt: skip
    shown = [current, builds, message, command]
    # No concurrency limit: a second launch must get the busy message now, not wait in the queue for this build.
    run.click(be.build, [ws, *settings], shown, api_name="build", concurrency_limit=None)
    gr.on(None, be.follower(str(workspace)), None, shown, api_name="follow_build", concurrency_limit=None)  # page load
    stop.click(bj.cancel_build, None, message, api_name="cancel")
    builds.input(open_existing, [ws, builds], [current, message, command], api_name="open_build")
    refresh.click(lambda w: gr.Dropdown(choices=rh.list_builds(w)), ws, builds, api_name="list_builds")
    imported.upload(import_file, [ws, imported, name], shown, api_name="import_records")
    upload.upload(set_dataset, upload, [dataset, data_note], api_name="set_dataset")
    rule.input(ui_errors(bh.rule_default), rule, rule_value, api_name="rule_default")
    measured = [quality_message, quality, quality_plot, quality_command]
    # No concurrency limit: a second launch must get the busy message now, not wait in the queue.
    quality_inputs = [ws, current, ks, spans, quality_faith]
    measure.click(measure_quality, quality_inputs, measured, api_name="measure_quality", concurrency_limit=None)
    stop_quality.click(qh.cancel, None, quality_message, api_name="cancel_quality")
    current.change(lambda: ("", None, None, ""), None, measured, api_name="clear_quality")  # another build: clear
