"""The Train panel's job: fine-tune a student in a worker thread while its metrics stream to the page, and cancel
it. Settings are in `train_settings`, what a run looks like in `run_views`.

`launch` is a generator that yields a new view whenever the run has logged new metrics rows. It raises KdvizError
like the library; the tab turns that into `gr.Error` with `ui_errors`. Runs live in <workspace>/runs/<name>
(`kdviz.workspace.Workspace`), so nothing is written outside that folder.

One run trains at a time per process, whichever session started it: runs would share the device's memory and the
CPU cores. For the same reason Cancel stops that run from any session, so a reloaded page can still stop it.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdviz.config import TrainConfig
from kdviz.distill.loop import finetune
from kdviz.distill.metrics import MetricsRow
from kdviz.errors import KdvizError
from kdviz.workspace import DATA_SUFFIXES as DATA_SUFFIXES  # the upload widget's file types
from kdviz.workspace import Workspace

from .jobs import BusyError as BusyError  # the tab catches it from here
from .jobs import Job, JobSlot
from .run_views import RunView, live_view, run_view
from .train_settings import make_config

POLL_S = 0.5  # how often the page is updated while a run trains (when it has logged something new)


@dataclasses.dataclass
class _Training(Job):
    """The run in progress: its config and the metrics rows its thread queues (`result`: its TrainResult)."""

    config: TrainConfig
    rows: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)

    @property
    def name(self) -> str:
        return Path(self.config.out).name


JOBS = JobSlot("train")


def runs_root(workspace: str | Path) -> Path:
    """Returns <workspace>/runs, where the panel's runs go."""
    return Workspace(workspace).runs


def list_datasets(workspace: str | Path) -> list[tuple[str, str]]:
    """Returns (label, path) of the training data in the workspace: builds' exports and curated records, uploads."""
    return Workspace(workspace).list_datasets()


def add_upload(workspace: str | Path, file: str | Path) -> str:
    """Copies an uploaded data file into <workspace>/uploads (a free name) and returns the copy's path."""
    return str(Workspace(workspace).add_upload(file))


def cancel_run() -> str:
    """Asks the run training now to stop after its current step (it is kept, marked cancelled); returns a message."""
    training = JOBS.cancel()
    if training is None:
        return "No training is running."
    return f"Cancelling **{training.name}** after the current step…"


def _start(config: TrainConfig) -> _Training:
    training = _Training(config)
    work = functools.partial(finetune, config, on_metrics=training.rows.put, should_stop=training.stop.is_set)
    busy = "busy: a training run ({}) is in progress; wait or cancel it"
    return JOBS.start(training, training.name, work, lambda active: busy.format(active.name))


def _drain(rows: queue.SimpleQueue) -> list[MetricsRow]:
    out = []
    while True:
        try:
            out.append(rows.get_nowait())
        except queue.Empty:
            return out


def launch(workspace: str | Path, *fields: Any, poll_s: float = POLL_S) -> Iterator[RunView]:
    """Trains a student in a worker thread; yields a RunView (status, curves, sample rows, CLI markdown) as it goes.

    `fields` are those of `make_config` after the workspace. The first view comes at once, the next ones whenever
    the run has logged new metrics (checked every `poll_s` seconds), the last one is read from the run folder. If
    the page goes away the run goes on: Cancel (from any session) stops it, and the runs list shows it.

    Raises:
        BusyError: another run is training.  KdvizError: bad settings (before anything starts), or the run
            failed (bad data, a vocabulary mismatch, out of memory, ...): a run that failed before its first step
            leaves no folder, a later failure keeps it, marked failed. Any other error is re-raised as it is.
    """
    config = make_config(workspace, *fields)
    training = _start(config)
    name, rows = training.name, []
    yield live_view(name, "running", rows, config)
    while not training.done.wait(poll_s):
        new = _drain(training.rows)
        if new:
            rows += new
            yield live_view(name, "running", rows, config)
    rows += _drain(training.rows)
    exc = training.error
    if exc is None:
        yield run_view(workspace, name)
        return
    message = str(exc) if isinstance(exc, KdvizError) else f"the run failed ({type(exc).__name__}: {exc})"
    yield live_view(name, "failed", rows, config, message)
    raise exc
