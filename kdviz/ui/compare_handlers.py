"""The Compare panel's handlers: compare a teacher with students (the workspace's training runs or any model spec)
on the same examples in a worker thread, with progress, Cancel, and the report written at the end. The fields are
read by `compare_settings`; browsing a result, new or reopened, is `saved_comparisons`. Plain typed functions of
widget values over `kdviz.compare` that raise KdvizError like the library (the tab turns it into `gr.Error`).

A comparison is written as the workspace's comparison <name>, under the library's rule (`kdviz.compare.report`):
a finished one is never overwritten, a cancelled one is resumed under its name. One comparison runs at a time per
process, whichever session started it, as training does (both would share the device and the CPU cores); Cancel
stops it from any session.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdviz.compare.report import write_report
from kdviz.compare.run import Comparison, compare, with_names
from kdviz.distill.data import load_train_examples
from kdviz.errors import KdvizError
from kdviz.format import duration
from kdviz.records import Example, ProgressEvent

from .compare_settings import Settings, make_settings
from .jobs import BusyError as BusyError  # the tab catches it from here
from .jobs import Job, JobSlot
from .saved_comparisons import View, command_markdown, comparison_view, empty_view

POLL_S = 0.5  # how often a comparison with no news is checked for having ended


@dataclasses.dataclass
class _Comparing(Job):
    """The comparison in progress: its settings and the progress events its thread queues (`result`: its
    Comparison). Every event is shown, so a model that finishes between two looks still appears."""

    settings: Settings
    events: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)


JOBS = JobSlot("compare")


def cancel_comparison() -> str:
    """Asks the running comparison to stop after its current batch (finished models are kept); returns a message."""
    job = JOBS.cancel()
    if job is None:
        return "No comparison is running."
    return f"Cancelling **{job.settings.name}** after the current batch…"


def _work(job: _Comparing, examples: list[Example]) -> Comparison:
    s = job.settings
    return compare(
        s.teacher, s.students, examples, method=s.method, top_k=s.top_k, batch_size=s.batch_size,
        on_progress=job.events.put, should_stop=job.stop.is_set, predict=s.predict, target_mode=s.target_mode,
    )  # fmt: skip


def progress_text(job: _Comparing, event: ProgressEvent | None) -> str:
    """Returns the Markdown status of a running comparison: the model at work, its examples done, time."""
    s = job.settings
    parts = [f"**{s.name}**", "running"]
    if event is None:
        parts.append(f"loading the teacher {s.labels[s.teacher]}…")
    else:
        models = [s.teacher, *s.students]
        order = models.index(event.model) + 1 if event.model in models else 0
        shown = s.labels.get(event.model or "", event.model)
        parts += [f"{event.stage} {shown}: {event.done}/{event.total} examples", f"model {order}/{len(models)}"]
    parts.append(f"{duration(time.monotonic() - job.started)} elapsed")
    return " · ".join(parts)


def _events(job: _Comparing, poll_s: float) -> Iterator[ProgressEvent]:
    """Yields every progress event of the job, in order, until it has ended and all are read."""
    while True:
        ended = job.done.is_set()  # read first: every event was queued before the job ended
        try:
            yield job.events.get(block=not ended, timeout=poll_s)
        except queue.Empty:
            if ended:
                return


def launch(workspace: str | Path, *fields: Any, poll_s: float = POLL_S) -> Iterator[View]:
    """Compares in a worker thread; yields the panel's view at once, on every progress event, then the result.

    `fields` are those of `make_settings` after the workspace. If the page goes away the comparison goes on and
    its report is written; Cancel (from any session) stops it after the current batch, keeping finished models.

    Raises:
        BusyError: another comparison runs.  KdvizError: bad settings or data (before anything starts), or the
            comparison failed (no gold answers, an unknown model, ...). Any other error of the comparison (a bug)
            is raised as it is, after the view that names it.
    """
    settings = make_settings(workspace, *fields)
    examples = [t.example for t in load_train_examples(settings.data, settings.limit)]  # as `kdviz compare` reads
    job = _Comparing(settings=settings)
    busy = "busy: a comparison ({}) is running; wait or cancel it"
    JOBS.start(job, settings.name, lambda: _work(job, examples), lambda active: busy.format(active.settings.name))
    command = command_markdown(settings.command)
    yield empty_view(progress_text(job, None), command, settings.name)
    for event in _events(job, poll_s):
        yield empty_view(progress_text(job, event), command, settings.name)
    took = f" · {duration(time.monotonic() - job.started)}"
    if job.error is not None:
        exc = job.error
        message = str(exc) if isinstance(exc, KdvizError) else f"the comparison failed ({type(exc).__name__}: {exc})"
        yield empty_view(f"**{settings.name}** · failed{took}  \n**Error:** {message}", command, settings.name)
        raise exc  # a KdvizError is the user's to fix; anything else is a bug, which `ui_errors` logs as one
    comparison = with_names(job.result, settings.labels, data=settings.data, limit=settings.limit,
                            command=settings.command)  # fmt: skip
    if not comparison.examples:
        yield empty_view(f"**{settings.name}** · cancelled before any example was finished: nothing was saved.",
                         command, settings.name)  # fmt: skip
        return
    write_report(comparison, settings.folder)
    yield comparison_view(workspace, settings.name, "all", took)
