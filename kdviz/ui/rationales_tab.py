"""Panel 2, Rationales: build a rationale dataset with a teacher, or open or import one, and see the command that
rebuilds it. Components and wiring only; the statistics, curation and export sections are in `curation_tab`.

The build runs as the app's one background build (`build_job`): any session can cancel it, and a page loaded while
it runs follows it to its end."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import kdviz

from . import build_handlers as bh
from . import build_job as bj
from . import curation_tab
from . import rationale_handlers as rh
from .errors import ui_errors


def _shown(workspace: str, view: bh.BuildView, progress: gr.Progress) -> tuple:
    """Returns the build outputs of a view: while the build runs, its progress only; when it ends, the build opened
    in this session (none when nothing was saved), the builds list, its message and its command."""
    if view.running:
        if view.progress is not None:
            progress((view.progress.done, view.progress.total), desc="attributing", unit="examples")
        return gr.skip(), gr.skip(), view.message, gr.skip()
    builds = gr.Dropdown(choices=rh.list_builds(workspace), value=view.build or None)
    return view.build, builds, view.message, view.command


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
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (gradio injects the tracker by this default)
):
    settings = (model, dataset, columns, limit, method, target_mode, rule, rule_value, exclude, batch_size, name)
    try:
        for view in bj.launch(workspace, *settings):
            yield _shown(workspace, view, progress)
    except bj.BusyError as exc:  # a warning, not an error: the app and the build in progress are fine
        gr.Warning(str(exc))
        yield gr.skip(), gr.skip(), str(exc), gr.skip()


def follower(workspace: str):
    """Returns the page-load handler that follows the build running now, so a reloaded page sees it end."""

    @ui_errors
    def follow(progress: gr.Progress = gr.Progress()):  # noqa: B008
        shown = False
        for view in bj.attach():
            shown = True
            yield _shown(workspace, view, progress)
        if not shown:  # no build runs: the page keeps its outputs (open build, builds list, message, command)
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()

    return follow


@ui_errors
def open_existing(workspace: str, name: str) -> rh.OpenedBuild:
    return rh.open_existing(workspace, name)


@ui_errors
def import_file(workspace: str, file: str, name: str) -> tuple[str, gr.Dropdown, str, str]:
    opened = rh.import_records(workspace, file, name)
    return opened.build, gr.Dropdown(choices=rh.list_builds(workspace), value=opened.build), *opened[1:]


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
            target_mode = gr.Radio(list(bh.BUILD_TARGET_MODES), value="choice", label="Attribute")
            with gr.Row():
                rule = gr.Radio(list(bh.RULES), value="top-k", label="Rationale rule", scale=2)
                rule_value = gr.Number(5, label="k / mass / z", minimum=0, scale=1)
            exclude = gr.CheckboxGroup(list(bh.EXCLUSIONS), value=list(bh.EXCLUSIONS), label="Exclude")
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
    command = gr.Markdown(elem_id="kdviz-build-command")
    curation_tab.render(ws, current)

    settings = [model, dataset, columns, limit, method, target_mode, rule, rule_value, exclude, batch_size, name]
    shown = [current, builds, message, command]
    # No concurrency limit: a second launch must get the busy message now, not wait in the queue for this build.
    run.click(build, [ws, *settings], shown, api_name="build", concurrency_limit=None)
    gr.on(None, follower(str(workspace)), None, shown, api_name="follow_build", concurrency_limit=None)  # page load
    stop.click(bj.cancel_build, None, message, api_name="cancel")
    builds.input(open_existing, [ws, builds], [current, message, command], api_name="open_build")
    refresh.click(lambda w: gr.Dropdown(choices=rh.list_builds(w)), ws, builds, api_name="list_builds")
    imported.upload(import_file, [ws, imported, name], shown, api_name="import_records")
    upload.upload(set_dataset, upload, [dataset, data_note], api_name="set_dataset")
    rule.input(lambda r: bh.RULE_DEFAULTS[r], rule, rule_value, api_name="rule_default")
