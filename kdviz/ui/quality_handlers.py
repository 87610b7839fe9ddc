"""The Rationales panel's "Quality by k and span" (issue #12): the open build's attributions chosen again with top-k
for each k and span and measured (`kdviz.rationales.quality`), as the app's one background quality job
(`kdviz.ui.jobs`: progress, busy refusal, cancel), with the `kdviz quality` command that prints the same table.

Faithfulness is scored on the build's teacher through `kdviz.load_model`, whose cache holds the model the build
job (or the Teacher panel) loaded for the same spec: no second copy is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import kdviz
from kdviz.errors import InputError, UnknownNameError
from kdviz.rationales.curation import open_build
from kdviz.rationales.quality import DEFAULT_KS, faithfulness_measure, quality_table, settings
from kdviz.rationales.select import SPANS, rule_of
from kdviz.records import ProgressEvent
from kdviz.viz.quality import quality_figure, quality_rows
from kdviz.workspace import Workspace, command_line

from .jobs import BusyError as BusyError  # the tab catches it from here
from .jobs import Job, JobSlot

K_CHOICES = ("1", "2", "3", "5", "10", "20")  # the panel's k checkboxes (strings: gradio's choice values)
DEFAULT_K_CHOICES = tuple(str(k) for k in DEFAULT_KS)
POLL_S = 0.2  # how often the page checks the job's progress


class QualityView(NamedTuple):
    """What the panel shows: a Markdown message, the table's rows (`QUALITY_COLUMNS`), the plotly figure, the
    equivalent command (Markdown); while the job runs, where it stands (rows and figure empty)."""

    message: str
    rows: list[list[str]]
    figure: Any = None
    command: str = ""
    progress: ProgressEvent | None = None
    running: bool = False


def quality_command(workspace: str | Path, build: str, ks: Sequence[int], spans: Sequence[str], faith: bool) -> str:
    """Returns the `kdviz quality` command that prints the same table (on the build's teacher, its default)."""
    program = ["kdviz", "quality", "--workspace", str(Workspace(workspace).root), "--name", build]
    program += ["--ks", *map(str, ks), "--spans", *spans]  # one flag, several values (argparse nargs="+")
    return command_line(program, [("--no-faithfulness", not faith)])


def measure(
    workspace: str | Path,
    build: str,
    ks: Sequence[int | str] = DEFAULT_KS,
    spans: Sequence[str] = SPANS,
    faithfulness: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> QualityView:
    """Measures build `build` with top-k for each k over each span (faithfulness on its teacher unless off).

    Raises:
        KdvizError: no build open or no such build, no k or span, a k below 1, a teacher that cannot load.
    """
    store = open_build(Workspace(workspace), build)
    records = store.records()
    ks = sorted({int(k) for k in ks})
    for span in spans:
        if span not in SPANS:
            raise UnknownNameError("rationale span", span, SPANS)
    spans = [s for s in SPANS if s in spans]  # the table's order, whatever order the boxes were ticked in
    rules = settings(rule_of(records[0]) if records else None, ks, spans)  # checked before the model loads
    measure_faith = None
    if faithfulness and records:
        teacher = records[0].provenance.teacher or store.info.teacher
        if not teacher:
            raise InputError(f"build {build} does not name its teacher: measure it without faithfulness")
        measure_faith = faithfulness_measure(kdviz.load_model(teacher), should_stop=should_stop)
    cells = quality_table(records, rules, measure_faith, on_progress=on_progress)
    command = quality_command(workspace, build, ks, spans, faithfulness)
    shown = f"**Same table from the command line:**\n```\n{command}\n```"
    if should_stop and should_stop():
        message = "Cancelled: finished measurements are cached, so measuring again resumes."
        return QualityView(message, [], None, shown)
    message = f"Build **{build}**: {len(records)} records, {len(cells)} setting{'s' * (len(cells) != 1)}."
    return QualityView(message, quality_rows(cells), quality_figure(cells), shown)


@dataclasses.dataclass
class _Measuring(Job):
    """The measurement in progress (`result`: its final QualityView); `progress` is set by the worker thread."""

    build: str
    progress: ProgressEvent | None = None

    def report(self, done: int, total: int) -> None:
        self.progress = ProgressEvent("settings", done, total)


JOBS = JobSlot("quality")


def progress_message(progress: ProgressEvent | None) -> str:
    if progress is None:
        return "Measuring: loading the build and its teacher…"
    return f"Measuring: {progress.done} of {progress.total} settings done ({progress.fraction:.0%})…"


def launch(workspace: str | Path, build: str, *fields, poll_s: float = POLL_S) -> Iterator[QualityView]:
    """Runs `measure(workspace, build, *fields)` as the app's background quality job; yields its progress, then
    its result.

    Raises:
        BusyError: another measurement runs.  KdvizError: the measurement's own error.
    """
    if not (build or "").strip():
        raise InputError("no build is open: build rationales, or open or import a build first")
    job = _Measuring(build=build)

    def work() -> QualityView:
        return measure(workspace, build, *fields, on_progress=job.report, should_stop=job.stop.is_set)

    busy = "busy: the quality of build {} is being measured; wait for it or cancel it"
    JOBS.start(job, "quality", work, lambda active: busy.format(active.build))
    seen = job.progress
    yield QualityView(progress_message(seen), [], progress=seen, running=True)
    while not job.done.wait(poll_s):
        if job.progress != seen:
            seen = job.progress
            yield QualityView(progress_message(seen), [], progress=seen, running=True)
    if job.error is not None:
        raise job.error
    yield job.result


def cancel() -> str:
    """Asks the running measurement to stop after its current batch (from any session); returns a message."""
    return "No quality measurement is running." if JOBS.cancel() is None else "Cancelling after the current batch…"
