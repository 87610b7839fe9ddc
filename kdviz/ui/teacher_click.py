"""What a Teacher click costs and what it reuses (no gradio; `handlers.run_attribution` calls it): the cost note shown
before a click, the progress line during it, and the attributions computed before, in this app's memory or by a
rationale build on disk, so that a re-click, or a click on an example a build attributed, needs no model run.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import kdviz
from kdviz.attribution.catalog import METHOD_LABELS
from kdviz.attribution.cost import cost_passes, relative_cost
from kdviz.attribution.passes import CHUNK_UNITS
from kdviz.attribution.words import word_spans
from kdviz.errors import KdvizError
from kdviz.format import duration
from kdviz.rationales.build import cached_attribution
from kdviz.records import Example, ProgressEvent, TokenAttribution

StageProgress = Callable[[float, str], None]  # (fraction done, what is happening)
MAX_EXAMPLES = 1000  # as the picker lists (handlers.MAX_EXAMPLES)
CACHE_SIZE = 64  # clicks remembered; a record is 10-100 kB, so a few MB at most
FROM_MEMORY = "_Shown from memory: computed by an earlier click with the same settings._"
FROM_BUILD = "_Shown from a rationale build's cache (the same teacher, method and settings attributed this example)._"
_paces: dict[str, float] = {}  # model name -> seconds of one saliency-click unit, measured at its last computed click


@dataclasses.dataclass(frozen=True)
class Click:
    """The settings that decide a Teacher click's attribution: the in-memory cache's key."""

    model: str  # the loaded model's name (an entry is also tied to the model object: see ClickCache)
    method: str
    example: Example
    fmt: str
    target: str | None  # a custom target, forced
    target_mode: str | None  # None when the target or a contrast decides it
    contrast: str | None
    steps: int | None  # integration steps; None for the methods that take none
    predict: str  # the resolved prediction mode
    per_token: bool = True  # the panel shows output-token rows


class ClickCache:
    """The last `size` clicks' attributions. An entry counts only for the model object it was computed with, so a
    model loaded again (a retrained folder, a reload after eviction) is attributed again."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._entries: OrderedDict[Click, tuple[weakref.ref, TokenAttribution]] = OrderedDict()
        self._lock = threading.Lock()  # clicks of several sessions run in parallel threads

    def get(self, click: Click, model) -> TokenAttribution | None:
        with self._lock:
            entry = self._entries.get(click)
            if entry is None or entry[0]() is not model:
                return None
            self._entries.move_to_end(click)
            return entry[1]

    def put(self, click: Click, model, attr: TokenAttribution) -> None:
        with self._lock:
            self._entries[click] = (weakref.ref(model), attr)
            self._entries.move_to_end(click)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


CLICKS = ClickCache()


def progress_line(method: str, event: ProgressEvent) -> str:
    """Returns "Integrated gradients: 12/20 steps (60%), about 40.0 s left" for a progress event of an attribution."""
    line = f"{METHOD_LABELS.get(method, method)}: {event.done}/{event.total} {event.stage} ({event.fraction:.0%})"
    if event.eta_s is not None and event.done < event.total:
        line += f", about {duration(event.eta_s)} left"
    return line


def cost_note(method: str, prompt: str, choices_text: str, steps: int, model: str) -> str:
    """Returns the line shown under the method menu before a click: the method's expected cost relative to saliency
    for this prompt, and in seconds where a click has timed the model."""
    n_words = len(word_spans(prompt or "")) + len(word_spans(choices_text or ""))  # the choices are in the prompt
    steps = max(int(steps or 1), 1)
    cost = relative_cost(method, n_words, steps)
    times = f"{cost:.1f}".rstrip("0").rstrip(".")  # 20, 3.5, 0.5
    note = f"Expected cost: {times}× a saliency click ({cost_passes(method, n_words, steps)})"
    pace = _paces.get((model or "").strip())
    if pace is not None:
        note += f"; about {duration(cost * pace)} on {model.strip()} at its last click's pace"
    return note


def attribute_click(
    loaded, click: Click, picked: Example | None, report: StageProgress
) -> tuple[TokenAttribution, str]:
    """Returns the click's attribution and a note saying where it came from ("" when computed now): from memory,
    from the build cache for `picked` (the dataset example the panel shows, if it still does), else computed."""
    attr = CLICKS.get(click, loaded.model)
    if attr is not None:
        return attr, FROM_MEMORY
    attr, note = _from_build(loaded, click, picked), FROM_BUILD
    if attr is None:
        attr, note = _compute(loaded, click, report), ""
    CLICKS.put(click, loaded.model, attr)
    return attr, note


def picked_example(dataset: str, example_id: str) -> Example | None:
    """Returns the example the panel's picker shows (None when none is picked or the file lacks it)."""
    if not (dataset and example_id):
        return None
    try:  # a file gone or changed costs the click only the build's cache
        return next((ex for ex in kdviz.load_examples(dataset, limit=MAX_EXAMPLES) if ex.id == example_id), None)
    except KdvizError:
        return None


def _from_build(loaded, click: Click, picked: Example | None) -> TokenAttribution | None:
    """A build renders the example in its own format and attributes the predicted or gold choice, whole: only such a
    click of the example unchanged can reuse it (and only with a one-token target: see `cached_attribution`)."""
    if picked is None or click.target is not None or click.contrast or click.target_mode not in ("choice", "gold"):
        return None
    shown = dataclasses.replace(click.example, id=picked.id, human_rationale=picked.human_rationale)
    if click.fmt != picked.task or shown.task_dict() != picked.task_dict():  # the fields a model reads
        return None
    steps = click.steps or 1
    return cached_attribution(loaded, picked, click.method, click.target_mode, steps, click.predict, per_token=True)


def _compute(loaded, click: Click, report: StageProgress) -> TokenAttribution:
    shown = CHUNK_UNITS.get(click.method, "examples")  # the finest unit the method reports
    last: list[ProgressEvent] = []

    def follow(event: ProgressEvent) -> None:
        if event.stage == shown:  # the panel's bar: half for loading and prediction, half for the attribution
            report(0.5 + 0.5 * event.fraction, progress_line(click.method, event))
        last[:] = [event]

    attr = kdviz.attribute(
        loaded, click.example, click.target, click.method, target_mode=click.target_mode, fmt=click.fmt,
        steps=click.steps or 1, predict=click.predict, contrast=click.contrast, on_progress=follow,
    )  # fmt: skip
    if last and last[0].elapsed_s:  # the attribution's own time, without loading and prediction
        _paces[click.model] = last[0].elapsed_s / relative_cost(click.method, len(attr.words), click.steps or 1)
    return attr
