"""The Rationales panel's build as the app's one background build (`kdviz.ui.jobs`): progress, busy refusal, cancel.

One build runs at a time per process, whichever session started it (builds share the device and the CPU cores);
Cancel stops it from any session, and a reloaded page follows it through `attach`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path

from kdviz.records import ProgressEvent

from .build_handlers import BuildView, build
from .jobs import BusyError as BusyError  # the tab catches it from here
from .jobs import Job, JobSlot

POLL_S = 0.2  # how often a following page checks the build's progress


@dataclasses.dataclass
class _Building(Job):
    """The build in progress (`result`: its final BuildView); `progress` is updated by the worker thread."""

    name: str
    progress: ProgressEvent | None = None

    def report(self, done: int, total: int) -> None:
        self.progress = ProgressEvent("attributing", done, total)

    def report_faithfulness(self, done: int, total: int) -> None:
        self.progress = ProgressEvent("faithfulness", done, total)


JOBS = JobSlot("build")


def progress_message(progress: ProgressEvent | None) -> str:
    if progress is None:
        return "Building: loading the teacher and the examples…"
    what = "measured for faithfulness" if progress.stage == "faithfulness" else "attributed"
    return f"Building: {progress.done} of {progress.total} examples {what} ({progress.fraction:.0%})…"


def launch(workspace: str | Path, *fields, poll_s: float = POLL_S) -> Iterator[BuildView]:
    """Runs `build(workspace, *fields)` as the app's background build; yields its progress, then its result.

    Raises:
        BusyError: another build runs.  KdvizError: bad settings or data (the build's own error).
    """
    given = inspect.signature(build).bind_partial(workspace, *fields).arguments.get("name")
    building = _Building(name=(given or "").strip() or "new build")

    def work() -> BuildView:
        return build(
            workspace, *fields, on_progress=building.report, should_stop=building.stop.is_set,
            on_faithfulness=building.report_faithfulness,
        )  # fmt: skip

    busy = "busy: a rationale build ({}) is running; wait for it or cancel it"
    JOBS.start(building, "rationales", work, lambda active: busy.format(active.name))
    yield from _follow(building, poll_s)


def attach(poll_s: float = POLL_S) -> Iterator[BuildView]:
    """Follows the build running now (started from any page), as `launch` does; yields nothing when none runs."""
    building = JOBS.active
    if isinstance(building, _Building):
        yield from _follow(building, poll_s)


def _follow(building: _Building, poll_s: float) -> Iterator[BuildView]:
    seen = building.progress
    yield BuildView("", progress_message(seen), progress=seen, running=True)
    while not building.done.wait(poll_s):
        if building.progress != seen:
            seen = building.progress
            yield BuildView("", progress_message(seen), progress=seen, running=True)
    if building.error is not None:
        raise building.error  # a KdvizError is the user's message; anything else, a bug the app logs
    yield building.result


def cancel_build() -> str:
    """Asks the running build to stop after its current batch (from any session); returns a message."""
    return "No build is running." if JOBS.cancel() is None else "Cancelling after the current batch…"
