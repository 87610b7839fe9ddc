"""The Teacher panel's handlers: plain typed functions of widget values that call the library and return views.

They raise KdvizError like the library, so they are tested without a browser; `ui_errors` (kdviz.ui.errors) turns
that into `gr.Error` once, at the edge where the tabs wire them to events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import kdviz
from kdviz.attribution.catalog import check_contrastive, check_method
from kdviz.attribution.targets import default_target_mode, predict_mode
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.prompts import FORMATS, prompt_example, prompt_text
from kdviz.records import CONTRAST_MODES, PREDICT_MODES
from kdviz.viz.attribution import prediction_markdown, top_words_table

from .errors import ui_errors  # noqa: F401  (the other panels' tabs import it from here until they switch)
from .fields import number
from .model_warmup import model_for_click, model_load_note  # noqa: F401  (the tab shows the note before a click)
from .teacher_click import Click, StageProgress, attribute_click, picked_example

TARGET_MODES = ("choice", "generate", "gold", "custom")  # "custom" attributes the string the user typed
FORMAT_CHOICES = ("auto",) + FORMATS  # auto: the library's default, mcqa when choices are given, else raw
PREDICT_CHOICES = ("default",) + PREDICT_MODES  # default: the model's measured best mode
CONTRAST_CHOICES = ("none",) + CONTRAST_MODES  # a contrast sets the target: the prediction, or the gold answer
MAX_EXAMPLES = 1000  # a dropdown of more is unusable; the rest of a file is not read
TOP_K = 10
STEPS_LABEL, MAX_STEPS = "Steps (integrated gradients)", 256  # the steps slider, from 1; slow on a CPU
TOP_K_HEADERS = ["rank", "word", "score"]


class ExampleFields(NamedTuple):
    """The Teacher panel's fields that show one example."""

    prompt: str
    choices_text: str  # one choice a line
    gold: str
    fmt: str
    target_mode: str


class AttributionView(NamedTuple):
    """What the Teacher panel shows for one attribution."""

    answer: str  # Markdown: target, prediction, choice scores
    html: str  # the prompt, word-highlighted
    heatmap: Any  # plotly Figure: output tokens x input words
    top_words: list[list]  # rows of TOP_K_HEADERS
    record: dict  # TokenAttribution.to_dict()


def load_dataset_examples(path: str | Path) -> list[tuple[str, str]]:
    """Returns (label, example id) pairs of a JSONL file of examples, for the example picker.

    Raises:
        InputError: missing, empty or malformed file, or two examples with the same id.
    """
    examples = kdviz.load_examples(path, limit=MAX_EXAMPLES)
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise InputError(f"{Path(path).name}: example id {ex.id!r} appears twice; ids must be unique")
        seen.add(ex.id)
    return [(f"{ex.id}: {_shorten(ex.question, 70)}", ex.id) for ex in examples]


def example_fields(path: str | Path, example_id: str) -> ExampleFields:
    """Returns the fields that show example `example_id` of a JSONL file, its target mode the library's default."""
    examples = {ex.id: ex for ex in kdviz.load_examples(path, limit=MAX_EXAMPLES)}
    if example_id not in examples:
        raise InputError(f"no example with id {example_id!r} in {Path(path).name}")
    ex = examples[example_id]
    return ExampleFields(prompt_text(ex), "\n".join(ex.choices), ex.answer or "", ex.task, default_target_mode(ex))


def run_attribution(
    model_spec: str,
    method: str,
    target_mode: str,
    prompt: str,
    choices_text: str,
    gold: str,
    custom_target: str,
    fmt: str,
    steps: int,
    on_progress: StageProgress | None = None,
    predict: str = "default",
    contrast: str = "none",
    dataset: str = "",
    example_id: str = "",
    use_fast: bool = True,
) -> AttributionView:
    """Returns the view of one prompt's attribution; a contrast other than "none" replaces the target mode's target.
    An attribution computed before (same model, settings and prompt) is reused, as is a rationale build's for the
    example `example_id` of `dataset` when the fields still show it (see `teacher_click`). While `model_spec` loads in
    the background, its fast stand-in answers when `use_fast`, with a note saying so (see `model_warmup`).

    Raises:
        KdvizError: bad input (checked before the model loads), unknown model, method, mode or format.
    """
    report = on_progress or (lambda fraction, desc: None)
    check_method(method)
    if target_mode not in TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, TARGET_MODES)
    if predict not in PREDICT_CHOICES:
        raise UnknownNameError("prediction mode", predict, PREDICT_CHOICES)
    if contrast not in CONTRAST_CHOICES:
        raise UnknownNameError("contrast", contrast, CONTRAST_CHOICES)
    contrasted = None if contrast == "none" else contrast
    steps = number(steps, STEPS_LABEL, whole=True, minimum=1, maximum=MAX_STEPS)
    check_contrastive(method, contrasted)
    if not (model_spec or "").strip():
        raise InputError("choose a model, or type a hub id or local path")
    if fmt not in FORMAT_CHOICES:
        raise UnknownNameError("prompt format", fmt, FORMAT_CHOICES)
    example, fmt = prompt_example(prompt, (choices_text or "").splitlines(), gold, None if fmt == "auto" else fmt)
    target = None
    if target_mode == "custom" and not contrasted:
        target = (custom_target or "").strip()
        if not target:
            raise InputError("type the custom target to attribute, or pick another target mode")
    loaded, stand_in = model_for_click(model_spec, use_fast, report)
    report(0.5, f"predicting, then attributing with {method}")
    mode, picked = predict_mode(loaded, None if predict == "default" else predict), picked_example(dataset, example_id)
    click = Click(
        loaded.name, method, example, fmt, target, None if target or contrasted else target_mode, contrasted,
        steps if method == "integrated_gradients" else None, mode,
    )  # fmt: skip
    attr, note = attribute_click(loaded, click, picked, report)
    return AttributionView(
        "\n\n".join(part for part in (prediction_markdown(attr, example.answer), stand_in, note) if part),
        kdviz.attribution_html(attr),
        kdviz.attribution_heatmap(attr),
        top_words_table(attr, TOP_K),
        attr.to_dict(),
    )


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
