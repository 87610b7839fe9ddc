"""The Compare panel's handlers: compare a teacher with students (the workspace's training runs or any model spec)
on the same examples in a worker thread, with progress, Cancel, and the report written at the end. Browsing a
result, new or reopened, is `saved_comparisons`. Plain typed functions of widget values over `kdviz.compare` that
raise KdvizError like the library (the tab turns it into `gr.Error` with `ui_errors`).

A comparison is the folder <workspace>/comparisons/<name>; names go through `safe_child`. A finished comparison is
never overwritten; a cancelled one is replaced when Compare is pressed again under its name, which resumes it from
the attribution cache, so Cancel then Compare completes the same report instead of scattering partial ones.
Model specs are read relative to the workspace first ("runs/<name>" is a training run): the tables show short names,
and the `kdviz compare` command shown, run in the workspace folder, writes the same report.

One comparison runs at a time per process, whichever session started it, as training does (both would share the
device and the CPU cores); Cancel stops it from any session.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kdviz.attribution.catalog import check_method
from kdviz.compare.report import write_report
from kdviz.compare.run import Comparison, compare
from kdviz.distill.data import load_train_examples
from kdviz.distill.runs import list_runs
from kdviz.errors import InputError, KdvizError
from kdviz.lm.models import list_model_specs
from kdviz.rationales.curation import safe_child
from kdviz.records import Example

from .jobs import BusyError as BusyError  # the tab catches it from here
from .jobs import Job, JobSlot
from .saved_comparisons import (
    COMPARISONS_FOLDER,
    View,
    command_markdown,
    comparison_view,
    comparisons_root,
    empty_view,
    load_comparison_file,
)
from .train_handlers import RUNS_FOLDER as RUNS
from .train_handlers import list_datasets, runs_root

STUDENT_RUN_STATUSES = ("completed", "cancelled")  # a failed or interrupted run's checkpoint may be half-written
_COMPARE_PARAMETERS = inspect.signature(compare).parameters
DEFAULTS = {  # compare()'s own defaults, so the panel and `kdviz compare` agree; a first look at a few examples
    **{name: _COMPARE_PARAMETERS[name].default for name in ("method", "top_k", "batch_size")}, "limit": 20,
}  # fmt: skip
POLL_S = 0.5  # how often a running comparison's progress is checked


@dataclasses.dataclass(frozen=True)
class Settings:
    """A comparison the panel's fields describe: model specs as `compare` loads them, and as they are shown."""

    name: str
    folder: Path
    teacher: str
    students: tuple[str, ...]
    labels: dict[str, str]  # spec -> shown name, which is also its `kdviz compare` argument in the workspace
    data: str
    limit: int
    method: str
    top_k: int
    batch_size: int


@dataclasses.dataclass
class _Comparing(Job):
    """The comparison in progress: its settings and latest (stage, done, total) (`result`: its Comparison)."""

    settings: Settings
    progress: tuple[str, int, int] | None = None


JOBS = JobSlot("compare")


def list_students(workspace: str | Path) -> list[tuple[str, str]]:
    """Returns (label, spec) of the candidate students: the workspace's finished or cancelled runs that saved a
    checkpoint ("runs/<name>", newest first), then the model specs that work offline."""
    runs = [
        (f"{RUNS}/{info.name} ({info.method}, {info.status})", f"{RUNS}/{info.name}")
        for info in list_runs(runs_root(workspace))
        if info.status in STUDENT_RUN_STATUSES and info.has_checkpoint
    ]
    return runs + [(spec, spec) for spec in list_model_specs()]


def list_data(workspace: str | Path, examples_path: str | Path | None = None) -> list[tuple[str, str]]:
    """Returns (label, path) of the data to compare on: the app's examples file, then the Train panel's data
    (Rationales exports and builds, uploads)."""
    own = [(f"{Path(examples_path).name} (the app's examples)", str(examples_path))] if examples_path else []
    return own + list_datasets(workspace)


def suggest_name(workspace: str | Path) -> str:
    """Returns a free comparison name "comparison-<n>"."""
    n = 1
    while (comparisons_root(workspace) / f"comparison-{n}").exists():
        n += 1
    return f"comparison-{n}"


def next_name(workspace: str | Path, name: str) -> str:
    """Returns `name` while it is free or holds a cancelled comparison (Compare resumes it), else a fresh one."""
    try:
        free = bool(name) and _may_write(safe_child(comparisons_root(workspace), name.strip()))
    except InputError:
        free = False
    return name if free else suggest_name(workspace)


def _may_write(folder: Path) -> bool:
    report = folder / "report.json"
    try:
        return not report.exists() or load_comparison_file(report).cancelled
    except InputError:  # an unreadable report is kept for a person to look at
        return False


def parse_specs(text: str | None) -> list[str]:
    """Returns the model specs in free text, separated by commas or new lines."""
    return [s.strip() for s in re.split(r"[,\n]", text or "") if s.strip()]


def _resolve(workspace: str | Path, spec: str) -> tuple[str, str]:
    """Returns (spec for `compare`, shown name): a path inside the workspace stays relative in the shown name, any
    other existing local path becomes absolute, anything else (a hub id, "tiny") is kept as typed."""
    inside = Path(workspace) / spec
    if not Path(spec).is_absolute() and inside.exists():
        return str(inside.resolve()), spec.rstrip("/")
    local = Path(spec).expanduser()
    if local.exists():
        return str(local.resolve()), str(local.resolve())
    return spec, spec


def _count(value: Any, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"give the {what} as a whole number") from None
    if not number.is_integer() or number < 1:
        raise InputError(f"the {what} must be a whole number of at least 1")
    return int(number)


def make_settings(
    workspace: str | Path,
    teacher: str,
    students: Sequence[str] | None,
    extra_students: str,
    dataset: str,
    limit: int,
    method: str,
    top_k: int,
    batch_size: int,
    name: str,
) -> Settings:
    """Returns the comparison the panel's fields describe, its report folder <workspace>/comparisons/<name>.

    Raises:
        InputError: no teacher, student or data; a bad number; a bad name, or one of a finished comparison.
        UnknownNameError: unknown attribution method.
    """
    check_method(method)
    teacher = (teacher or "").strip()
    if not teacher:
        raise InputError("choose a teacher model, or type a hub id or local path")
    chosen = list(dict.fromkeys([s.strip() for s in students or [] if s and s.strip()] + parse_specs(extra_students)))
    if not chosen:
        raise InputError("pick at least one student: a training run, a model spec, or type a hub id or local path")
    dataset = (dataset or "").strip()
    if not dataset:
        raise InputError("choose the data to compare on: the app's examples, a Rationales export, or a path")
    name = (name or "").strip() or suggest_name(workspace)
    folder = safe_child(comparisons_root(workspace), name)
    if not _may_write(folder):
        raise InputError(f"a comparison named {name!r} exists already; choose another name (only a cancelled one is "
                         "resumed under its name)")  # fmt: skip
    resolved = [_resolve(workspace, s) for s in [teacher, *chosen]]
    return Settings(
        name=name,
        folder=folder,
        teacher=resolved[0][0],
        students=tuple(spec for spec, _ in resolved[1:]),
        labels=dict(resolved),
        data=dataset if dataset.startswith("hf:") else str(Path(dataset).expanduser().resolve()),
        limit=_count(limit, "number of examples"),
        method=method,
        top_k=_count(top_k, "top-k"),
        batch_size=_count(batch_size, "batch size"),
    )


def cli_command(settings: Settings) -> str:
    """Returns the `kdviz compare ...` command that writes the same report when run in the workspace folder."""
    parts = ["kdviz", "compare", "--teacher", settings.labels[settings.teacher]]
    for spec in settings.students:
        parts += ["--student", settings.labels[spec]]
    parts += ["--data", settings.data, "--limit", str(settings.limit), "--out", f"{COMPARISONS_FOLDER}/{settings.name}",
              "--method", settings.method, "--top-k", str(settings.top_k), "--batch-size", str(settings.batch_size)]  # fmt: skip
    return shlex.join(parts)


def _examples(data: str, limit: int) -> list[Example]:
    examples = [t.example for t in load_train_examples(data, limit)]  # as `kdviz compare --data --limit` reads them
    if not any(ex.answer for ex in examples):
        raise InputError(f"{Path(data).name}: no example has a gold answer (an 'answer' field); accuracy needs one")
    return examples


def _shown(comparison: Comparison, settings: Settings) -> Comparison:
    """Returns the comparison with the models under their shown names, and its data and command in its settings (so
    a reopened comparison still shows them)."""
    label = settings.labels.get
    models = tuple(dataclasses.replace(m, name=label(m.name, m.name)) for m in comparison.models)
    summary = {label(k, k): v for k, v in comparison.summary.items()}
    pairwise = tuple({**p, "a": label(p["a"], p["a"]), "b": label(p["b"], p["b"])} for p in comparison.pairwise)
    extra = {"teacher": label(settings.teacher), "students": [label(s) for s in settings.students],
             "data": settings.data, "limit": settings.limit, "command": cli_command(settings)}  # fmt: skip
    return dataclasses.replace(comparison, models=models, summary=summary, pairwise=pairwise,
                               settings={**comparison.settings, **extra})  # fmt: skip


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
        on_progress=lambda stage, done, total: setattr(job, "progress", (stage, done, total)),
        should_stop=job.stop.is_set,
    )  # fmt: skip


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} min {int(value % 60):02d} s"


def progress_text(job: _Comparing) -> str:
    """Returns the Markdown status of a running comparison: the model at work, its examples done, time."""
    s = job.settings
    parts = [f"**{s.name}**", "running"]
    if job.progress is None:
        parts.append(f"loading the teacher {s.labels[s.teacher]}…")
    else:
        stage, done, total = job.progress
        role, spec = stage.split(" ", 1)
        order = [s.teacher, *s.students].index(spec) + 1 if spec in [s.teacher, *s.students] else 0
        parts += [f"{role} {s.labels.get(spec, spec)}: {done}/{total} examples", f"model {order}/{len(s.labels)}"]
    parts.append(f"{_seconds(time.monotonic() - job.started)} elapsed")
    return " · ".join(parts)


def launch(workspace: str | Path, *fields: Any, poll_s: float = POLL_S) -> Iterator[View]:
    """Compares in a worker thread; yields the panel's view whenever the progress moves, then the saved result.

    `fields` are those of `make_settings` after the workspace. If the page goes away the comparison goes on and
    its report is written; Cancel (from any session) stops it after the current batch, keeping finished models.

    Raises:
        BusyError: another comparison runs.  KdvizError: bad settings or data (before anything starts), or the
            comparison failed (an unknown model, a model that cannot answer the examples, ...).
    """
    settings = make_settings(workspace, *fields)
    examples = _examples(settings.data, settings.limit)
    job = _Comparing(settings)
    busy = "busy: a comparison ({}) is running; wait or cancel it"
    JOBS.start(job, settings.name, lambda: _work(job, examples), lambda active: busy.format(active.settings.name))
    command, shown = command_markdown(workspace, cli_command(settings)), job.progress
    yield empty_view(progress_text(job), command, settings.name)
    while not job.done.wait(poll_s):
        if job.progress != shown:
            shown = job.progress
            yield empty_view(progress_text(job), command, settings.name)
    took = f" · {_seconds(time.monotonic() - job.started)}"
    if job.error is not None:
        exc = job.error
        message = str(exc) if isinstance(exc, KdvizError) else f"the comparison failed ({type(exc).__name__}: {exc})"
        yield empty_view(f"**{settings.name}** · failed{took}  \n**Error:** {message}", command, settings.name)
        if isinstance(exc, KdvizError):
            raise exc
        raise KdvizError(message) from exc
    comparison = _shown(job.result, settings)
    if not comparison.examples:
        yield empty_view(f"**{settings.name}** · cancelled before any example was finished: nothing was saved.",
                          command, settings.name)  # fmt: skip
        return
    write_report(comparison, settings.folder)
    yield comparison_view(workspace, settings.name, "all", took)
