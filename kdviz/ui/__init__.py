"""The kdviz workbench, a Gradio app over the library. Importing it imports gradio; `import kdviz` does not."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from kdviz.data import demo_path

from . import compare_tab, model_warmup, rationales_tab, teacher_tab, train_tab
from .downloads import DELETE_CACHE
from .errors import guard_events
from .rationale_handlers import workspace_root

INTRO = """# kdviz: attribution-guided knowledge distillation
See which words of a prompt a teacher model's answer rests on. **Teacher**: pick an example or type a prompt,
choose a model, an attribution method and what to attribute (the predicted choice, a free answer, the gold answer
or your own target), then press **Attribute**. Red words support the target, blue words count against it.
**Rationales**: run the teacher over a dataset, keep each example's most-attributed words as its rationale, check
the statistics, curate the records (click a word to add or remove it) and export them for training.
**Train**: fine-tune a student on an export with a distillation method (plain fine-tuning, the teacher's labels,
rationales as input, multitask with rationales, or logit KD), watch its loss and accuracy live, cancel it, compare
past runs, and copy the `kdviz train` command that reruns it.
**Compare**: run the teacher and students (trained runs or any model) on the same examples: accuracy with intervals,
paired tests, charts, the examples they disagree on with every model's attribution map, a downloadable report, and
the `kdviz compare` command that writes it."""


def build_app(
    teacher: str = "embedded-teacher",
    examples_path: str | Path | None = None,
    workspace: str | Path | None = None,
    confine: bool = False,
    data_dirs: Sequence[str | Path] = (),
) -> gr.Blocks:
    """Returns the workbench app; nothing is loaded until the first click.

    Args:
        teacher: the model spec preselected in the Teacher, Rationales and Compare panels and as the Train panel's
            logit KD teacher ("embedded-teacher", "tiny", ...).
        examples_path: the JSONL file of examples to pick from; default: the bundled CommonsenseQA demo set.
        workspace: the folder rationale builds are kept in, one subfolder each, training runs in its runs/
            subfolder and comparisons in comparisons/; default: $KDVIZ_WORKSPACE, else ./kdviz_workspace.
        confine: the paths typed in the app (data, models, checkpoints) must lie in the workspace, the demo
            assets, `examples_path`, `data_dirs` or the app's uploads (`launch` sets it for an app that other
            machines can reach); otherwise any file the server can read may be named.
    """
    readable = None
    if confine:
        own = [workspace_root(workspace), demo_path().parent, examples_path or demo_path(), get_upload_folder()]
        readable = [*own, *data_dirs]
    # Every handler sits behind the error boundary (and the confinement), however its tab wired it.
    with gr.Blocks(title="kdviz", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Teacher"):
                teacher_tab.render(teacher, examples_path or demo_path())
            with gr.Tab("Rationales"):
                rationales_tab.render(teacher, examples_path or demo_path(), workspace_root(workspace))
            with gr.Tab("Train") as train:
                train_tab.render(teacher, workspace_root(workspace), train)
            with gr.Tab("Compare") as compare:
                compare_tab.render(teacher, examples_path or demo_path(), workspace_root(workspace), compare)
    guard_events(demo, readable)
    return demo


def serves_others(host: str, share: bool) -> bool:
    """Returns whether an app served on `host` (with a gradio.live link when `share`) is reachable from other
    machines: anything but a loopback address ("127.0.0.1", "localhost", "::1")."""
    if share:
        return True
    if host.strip().lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return True


def launch(
    teacher: str = "embedded-teacher",
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    workspace: str | Path | None = None,
    data_dirs: Sequence[str | Path] = (),
    **kw: Any,
) -> gr.Blocks:
    """Builds the app and serves it on http://host:port; returns it (blocks unless `prevent_thread_lock=True`).

    `workspace` is where rationale builds are kept (see `build_app`). Served to other machines (`share`, or a
    host other than this machine's loopback), the app's path fields read only the workspace, the demo assets and
    `data_dirs`. The teacher starts loading in the background (see `model_warmup`). Extra keyword arguments go to `build_app` (examples_path) or to `gr.Blocks.launch`.
    """
    confine = serves_others(host, share)
    demo = build_app(teacher, kw.pop("examples_path", None), workspace, confine, data_dirs)
    model_warmup.start(teacher)  # the first click need not wait for the teacher's load (or one-time conversion)
    demo.launch(server_name=host, server_port=port, share=share, **kw)
    return demo
