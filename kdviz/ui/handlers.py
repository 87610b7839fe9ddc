"""The app's handlers: plain typed functions of widget values that call the library and return widget values.

They raise KdvizError like the library, so they are tested without a browser; `ui_errors` turns that into
`gr.Error` once, at the edge where the tabs wire them to events. No gradio import here except inside it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kdviz
from kdviz.attribution.catalog import check_method
from kdviz.attribution.targets import default_target_mode
from kdviz.errors import InputError, KdvizError, UnknownNameError
from kdviz.lm.models import is_cached
from kdviz.lm.prompts import FORMATS
from kdviz.viz.attribution import top_words_table

TARGET_MODES = ("choice", "generate", "gold", "custom")  # "custom" attributes the string the user typed
FORMAT_CHOICES = ("auto",) + FORMATS  # auto: mcqa when choices are given, else raw
MAX_EXAMPLES = 1000  # a dropdown of more is unusable; the rest of a file is not read
TOP_K = 10
TOP_K_HEADERS = ["rank", "word", "score"]

StageProgress = Callable[[float, str], None]  # (fraction done, what is happening)


def ui_errors(fn: Callable) -> Callable:
    """Returns `fn` with KdvizError and ValueError (bad user input) re-raised as `gr.Error`, the app's message box.

    A generator function (a streaming handler) stays one, so gradio still streams it, and an error raised between
    two of its updates is converted too.
    """

    def convert(exc: Exception) -> Exception:
        import gradio as gr

        return gr.Error(str(exc))

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (KdvizError, ValueError) as exc:
                raise convert(exc) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (KdvizError, ValueError) as exc:
            raise convert(exc) from exc

    return wrapper


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


def example_fields(path: str | Path, example_id: str) -> tuple[str, str, str, str, str]:
    """Returns (prompt, choices_text, gold, fmt, target_mode) that show example `example_id` of a JSONL file.

    A context (an NLI premise) goes before the question, separated by a blank line, as `run_attribution` reads it.
    The target mode is the library's default for the example: "choice" where it has choices, else "generate".
    """
    examples = {ex.id: ex for ex in kdviz.load_examples(path, limit=MAX_EXAMPLES)}
    if example_id not in examples:
        raise InputError(f"no example with id {example_id!r} in {Path(path).name}")
    ex = examples[example_id]
    prompt = f"{ex.context}\n\n{ex.question}" if ex.context else ex.question
    return prompt, "\n".join(ex.choices), ex.answer or "", ex.task, default_target_mode(ex)


def to_example(prompt: str, choices_text: str, gold: str, fmt: str) -> tuple[kdviz.Example, str]:
    """Returns the Example the fields describe and its resolved format (auto: mcqa with choices, else raw).

    For qa, mcqa and nli, text before the prompt's last blank line is the context (the NLI premise).

    Raises:
        InputError: empty or over-long prompt, a gold answer that is not a choice, too few choices for mcqa.
        UnknownNameError: unknown format.
    """
    if fmt not in FORMAT_CHOICES:
        raise UnknownNameError("prompt format", fmt, FORMAT_CHOICES)
    choices = tuple(line.strip() for line in (choices_text or "").splitlines() if line.strip())
    gold = (gold or "").strip() or None
    if gold and choices and gold not in choices:
        raise InputError(f"the gold answer {gold!r} is not one of the choices: {', '.join(choices)}")
    fmt = ("mcqa" if choices else "raw") if fmt == "auto" else fmt
    text, context = (prompt or "").strip(), None
    if fmt != "raw" and "\n\n" in text:
        context, text = (part.strip() for part in text.rsplit("\n\n", 1))
    task = fmt if fmt in ("mcqa", "nli") else "qa"
    example = kdviz.Example("prompt", task, text, choices, gold, context or None)
    kdviz.render(example, fmt)  # validates (empty, too long, missing premise) before any slow model load
    return example, fmt


def model_load_note(model_spec: str) -> str | None:
    """Returns a message to show before a slow first load of the model (GGUF conversion), else None."""
    if model_spec and not is_cached(model_spec.strip()):
        return f"First load of {model_spec}: converting its weights once (20-70 s); later loads take seconds."
    return None


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
) -> tuple[str, str, Any, list[list], dict]:
    """Returns (answer markdown, word-highlighted HTML, plotly heatmap, top-k rows, record dict) for one prompt.

    Raises:
        KdvizError: bad input (checked before the model loads), unknown model, method, mode or format.
    """
    report = on_progress or (lambda fraction, desc: None)
    check_method(method)
    if target_mode not in TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, TARGET_MODES)
    if not (model_spec or "").strip():
        raise InputError("choose a model, or type a hub id or local path")
    example, fmt = to_example(prompt, choices_text, gold, fmt)
    target = None
    if target_mode == "custom":
        target = (custom_target or "").strip()
        if not target:
            raise InputError("type the custom target to attribute, or pick another target mode")
    report(0.1, f"loading {model_spec}")
    loaded = kdviz.load_model(model_spec.strip())
    report(0.5, f"attributing with {method}")
    attr = kdviz.attribute(
        loaded, example, target, method, target_mode=None if target else target_mode, fmt=fmt, steps=int(steps)
    )
    return (
        answer_markdown(attr, example.answer),
        kdviz.attribution_html(attr),
        kdviz.attribution_heatmap(attr),
        top_words_table(attr, TOP_K),
        attr.to_dict(),
    )


def answer_markdown(attr: kdviz.TokenAttribution, gold: str | None = None) -> str:
    """Returns Markdown of what was attributed: target, mode, prediction and correctness, choice scores."""
    meta = attr.meta
    gold = meta.get("gold", gold)
    paragraphs = [f"**Target** ({attr.target_mode}): `{attr.target}`"]
    if "predicted" in meta:
        verdict = ""
        if "correct" in meta:
            verdict = " — correct" if meta["correct"] else f" — wrong (gold: `{gold}`)"
        paragraphs.append(f"**Prediction**: `{meta['predicted']}`{verdict}")
    elif gold:
        paragraphs.append(f"**Gold answer**: `{gold}`")
    if meta.get("choices"):
        rows = ["| choice | score (mean log-prob) |", "|---|---|"]
        for choice, score in zip(meta["choices"], meta["choice_scores"], strict=True):
            marks = " ← predicted" if choice == meta.get("predicted") else ""
            marks += " (gold)" if choice == gold else ""
            rows.append(f"| {_cell(choice)}{marks} | {score:.4f} |")
        paragraphs.append("\n".join(rows))
    return "\n\n".join(paragraphs)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
