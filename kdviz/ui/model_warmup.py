"""Loading the app's teacher in the background, so that its first use (a GGUF conversion: ~2 minutes, ~9 GB for the
default teacher) does not block the Teacher panel: the panel polls `status_line`, and until the teacher is ready a
click on it is answered by its fast stand-in, with a note saying so (`model_for_click`), or waits, as the user picks.
No gradio here: `warmup_status` and the Teacher tab wire these functions to widgets."""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time

from kdviz.errors import KdvizError
from kdviz.format import duration
from kdviz.lm import models
from kdviz.lm.embedded import EMBEDDED
from kdviz.records import ProgressEvent

from .jobs import Job, JobSlot
from .teacher_click import StageProgress

logger = logging.getLogger(__name__)

FALLBACKS = {"embedded-teacher": "embedded-teacher-fast"}  # a default teacher -> the fast one that stands in for it
FIRST_USE = {"embedded-teacher": "first use, ~2 min, ~9 GB"}  # what its one-time conversion costs (issue 16)
FAST_NOTE = "_Answered by the fast teacher ({fast}) while {slow} {verb}; click again when it is ready._"
POLL_S = 1.0  # how often a waiting click and the panel's status line look at the warm-up
STAGES = {"assembling": "assembling the GGUF parts", "dequantising": "dequantising", "saving": "saving the weights"}


@dataclasses.dataclass(kw_only=True)
class Warmup(Job):
    """A background load of one model spec, and where it stands."""

    spec: str
    fallback: str | None  # the fast model that answers clicks meanwhile; None when it has none (or it failed)
    converting: bool  # the spec needed its one-time conversion when the warm-up started
    loading: str = ""  # the spec being loaded now (the fallback first, when it needs converting too)
    event: ProgressEvent | None = None  # the load's latest progress


SLOT = JobSlot("warmup")
_started: dict[str, Warmup] = {}  # spec -> its warm-up, kept once it ends, so that no spec warms up twice
_guard = threading.Lock()
_fallback_load = threading.Lock()  # two clicks during a warm-up load the fast model once


def start(spec: str) -> Warmup | None:
    """Starts loading `spec` in the background, once per process (and first its fallback, where that needs its
    conversion too); returns its warm-up, or None while another spec warms up (one at a time: they share memory)."""
    spec = (spec or "").strip()
    with _guard:
        if not spec or spec in _started:
            return _started.get(spec)
        if SLOT.active is not None:
            return None
        job = Warmup(spec=spec, fallback=FALLBACKS.get(spec), converting=not models.is_cached(spec))
        _started[spec] = job
        return SLOT.start(job, spec, functools.partial(_warm, job), busy=lambda other: "")


def _warm(job: Warmup) -> None:
    def follow(event: ProgressEvent) -> None:
        job.event = event

    if job.fallback and not models.is_cached(job.fallback):  # minutes sooner ready than the default, so first
        job.loading = job.fallback
        try:
            models.load_model(job.fallback, on_progress=follow)
        except KdvizError as exc:  # the default teacher still loads; clicks then wait for it
            logger.warning("the fast teacher %s did not load (%s); clicks wait for %s", job.fallback, exc, job.spec)
            job.fallback = None
    job.loading, job.event = job.spec, None
    models.load_model(job.spec, on_progress=follow)  # now in the models cache: a click gets this very object
    job.loading = ""


def warming(spec: str) -> Warmup | None:
    job = _started.get((spec or "").strip())
    return job if job is not None and not job.done.is_set() else None


def status_line(spec: str) -> str:
    """Returns the line under the Model menu: what the warm-up of `spec` does now ("Converting ... (first use, ~2 min,
    ~9 GB): dequantising… 40%, about 1 min 10 s left"), why it failed, or "" (none, or done)."""
    job = _started.get((spec or "").strip())
    if job is None or (job.done.is_set() and job.error is None):
        return ""
    if job.error is not None:
        reason = str(job.error).strip().splitlines()[0] if str(job.error).strip() else type(job.error).__name__
        return f"Loading {_title(job.spec)} in the background failed ({reason}); a click tries again."
    if job.loading and job.loading == job.fallback:
        what = f"Preparing the fast teacher, {_title(job.fallback)}, first (converting it once)"
    elif job.converting:
        what = f"Converting {_title(job.spec)} ({FIRST_USE.get(job.spec, 'first use, once')})"
    else:
        what = f"Loading {_title(job.spec)}"
    event = job.event
    if event is None or event.total <= 1:  # a stage without a count: how long it has taken so far
        stage = STAGES.get(event.stage, event.stage) if event else "starting"
        line = f"{what}: {stage}… {duration(time.monotonic() - job.started)} so far"
    else:
        line = f"{what}: {STAGES.get(event.stage, event.stage)}… {event.fraction:.0%}"
        if event.eta_s is not None:
            line += f", about {duration(event.eta_s)} left"
    if _fallback_ready(job):
        line += f". Until then {_title(job.fallback)} answers clicks (untick the box below to wait)."
    return line


def model_load_note(model_spec: str, use_fast: bool = True) -> str | None:
    """Returns the message shown as a click starts when its model is slow to come (warming up, converting), or None."""
    spec = (model_spec or "").strip()
    job = warming(spec)
    if job is not None:
        if use_fast and _fallback_ready(job):
            return f"{_title(spec)} is still loading: {_title(job.fallback)} answers this click."
        return f"Waiting for {_title(spec)} to finish loading (the line under Model shows how far it is)."
    if spec and not models.is_cached(spec):
        return f"First load of {spec}: converting its weights once (0.5-2.5 minutes); later loads take seconds."
    return None


def model_for_click(spec: str, use_fast: bool, report: StageProgress) -> tuple[models.LoadedModel, str]:
    """Returns the model that answers a click on `spec`, and a note when another one does: while `spec` warms up, its
    fast stand-in when `use_fast` and that is ready or quick to load, else `spec` once its warm-up ends (never a
    second load of it beside the warm-up's)."""
    spec = spec.strip()
    job = warming(spec)
    if job is not None and use_fast and _fallback_ready(job):
        report(0.1, f"loading the fast teacher {job.fallback} while {spec} loads")
        with _fallback_load:
            loaded = models.load_model(job.fallback)
        verb = "converts" if job.converting else "loads"
        return loaded, FAST_NOTE.format(fast=_title(job.fallback), slow=_title(spec), verb=verb)
    while job is not None and not job.done.wait(POLL_S):
        report(0.05, status_line(spec) or f"waiting for {spec}")
    report(0.1, f"loading {spec}")
    return models.load_model(spec), ""


def _fallback_ready(job: Warmup) -> bool:
    """Whether the fast stand-in can answer now: converted (seconds to load), and not the model the warm-up loads."""
    return bool(job.fallback) and job.loading != job.fallback and models.is_cached(job.fallback)


def _title(spec: str) -> str:
    """Returns "Qwen2.5-Coder-1.5B-Instruct" for "embedded-teacher"; other specs as they are."""
    return EMBEDDED[spec].name.split(" (")[0] if spec in EMBEDDED else spec
