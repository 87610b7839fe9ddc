"""The Rationales panel's build events: launching the background build (`build_job`) from the panel's settings and
following it, from this page or a reloaded one, as progress, then the build opened, the builds list, a message and
the equivalent command. Gradio-side (progress, warnings); the build itself is in `build_handlers`."""

from __future__ import annotations

import gradio as gr

from . import build_handlers as bh
from . import build_job as bj
from . import rationale_handlers as rh
from .errors import ui_errors


def _shown(workspace: str, view: bh.BuildView, progress: gr.Progress) -> tuple:
    """Returns the build outputs of a view: while the build runs, its progress only; when it ends, the build opened
    in this session (none when nothing was saved), the builds list, its message and its command."""
    if view.running:
        if view.progress is not None:
            progress((view.progress.done, view.progress.total), desc=view.progress.stage, unit="examples")
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
    span: str = bh.DEFAULT_SPAN,
    faithfulness: bool = True,
    predict: str = "default",
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (gradio injects the tracker by this default)
):
    settings = (model, dataset, columns, limit, method, target_mode, rule, rule_value, exclude, batch_size, name,
                span, faithfulness, predict)  # fmt: skip
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
