"""The Train panel's handlers: choose data and settings, fine-tune a student in a worker thread while its metrics
stream to the page, cancel it, list past runs and show any of them.

Plain typed functions of widget values over `kdviz.train.finetune` and `kdviz.runs`; `launch` is a generator that
yields a new view whenever the run has logged new metrics rows. They raise KdvizError like the library; the tab
turns that into `gr.Error` with `ui_errors`. Runs live in <workspace>/runs/<name>, and every name goes through
`safe_child`, so nothing is written outside that folder.

One run trains at a time per process, whichever session started it: runs would share the device's memory and the
CPU cores. For the same reason Cancel stops that run from any session, so a reloaded page can still stop it.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdviz.config import TrainConfig
from kdviz.distill.loop import finetune
from kdviz.distill.methods import METHODS, get_method
from kdviz.distill.runs import CONFIG, list_runs, read_rows, run_info
from kdviz.errors import InputError, KdvizError
from kdviz.rationales.curation import safe_child
from kdviz.viz.training import training_curves

from .jobs import BusyError as BusyError  # the tab catches it from here
from .jobs import Job, JobSlot
from .rationale_handlers import list_builds

RUNS_FOLDER = "runs"
UPLOADS_FOLDER = "train_data"  # uploads are copied here, so a run's config.yaml keeps pointing at its data
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
EXPORT_FILES = ("rationales.jsonl", "rationales.parquet", "hf_dataset")
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
METHOD_NAMES = tuple(METHODS)
RUN_COLUMNS = ["name", "status", "method", "student", "steps", "eval accuracy", "final loss", "elapsed"]
SAMPLE_COLUMNS = ["step", "question", "gold", "predicted", "correct"]
SAMPLE_WIDTHS = ["12%", "32%", "18%", "20%", "18%"]
MAX_SAMPLE_ROWS = 40
POLL_S = 0.5  # how often the page is updated while a run trains (when it has logged something new)

RunView = tuple[str, Any, list[list], str]  # (status markdown, curves figure, sample rows, CLI markdown)


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
    """Returns <workspace>/runs, the folder of the panel's runs."""
    return Path(workspace) / RUNS_FOLDER


def list_datasets(workspace: str | Path) -> list[tuple[str, str]]:
    """Returns (label, path) of the training data in the workspace: each build's exports (newest first) and its
    curated records (rejected ones are skipped in training), then the uploaded files."""
    found = []
    for build in list_builds(workspace):
        folder = Path(workspace) / build
        exports = folder / "exports"
        done = (
            [d for d in exports.iterdir() if any((d / f).exists() for f in EXPORT_FILES)] if exports.is_dir() else []
        )
        for export in sorted(done, key=lambda d: -d.stat().st_mtime):
            found.append((f"{build}/{export.name} (export)", str(export)))
        found.append((f"{build} (curated records)", str(folder / "records.jsonl")))
    uploads = Path(workspace) / UPLOADS_FOLDER
    if uploads.is_dir():
        found += [(f"{p.name} (uploaded)", str(p)) for p in sorted(uploads.iterdir()) if p.is_file()]
    return found


def add_upload(workspace: str | Path, file: str | Path) -> str:
    """Copies an uploaded data file into <workspace>/train_data (a free name) and returns the copy's path."""
    src = Path(file)
    if src.suffix.lower() not in DATA_SUFFIXES:
        raise InputError(f"{src.name}: upload a {', '.join(DATA_SUFFIXES)} file (a rationale export or a dataset)")
    stem = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_-]+", "-", src.stem))[:60] or "data"
    folder, n = Path(workspace) / UPLOADS_FOLDER, 1
    dest = safe_child(folder, stem + src.suffix.lower())
    while dest.exists() and dest.read_bytes() != src.read_bytes():
        n += 1
        dest = safe_child(folder, f"{stem}-{n}{src.suffix.lower()}")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return str(dest)


def method_info(method: str) -> tuple[str, bool, bool]:
    """Returns (markdown on the method: what it does and needs, whether it uses α, whether it runs a teacher)."""
    m = get_method(method)
    notes = [
        (m.needs_rationale, "needs the teacher's rationales: train on a Rationales export or build"),
        (m.needs_teacher_answer, "needs the teacher's answers: train on a Rationales export or build"),
        (m.needs_teacher_model, "runs the teacher during training (teacher and student must share a vocabulary)"),
        (m.teacher_at_test_time, "at test time, every new input needs the teacher's rationale first"),
    ]
    text = f"**{m.name}**: {m.summary}" + "".join(f"  \n· {note}" for needed, note in notes if needed)
    return text, m.uses_alpha, m.needs_teacher_model


def suggest_run_name(workspace: str | Path, method: str, student: str) -> str:
    """Returns a free run name "<method>-<student>-<n>" (the student's last path part, made a plain name)."""
    last = Path(str(student or "student").strip().rstrip("/")).name.removesuffix(".gguf")
    student = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]+", "-", last))[:50] or "student"
    base, n = f"{method}-{student}", 1
    while (runs_root(workspace) / f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


def next_run_name(workspace: str | Path, method: str, student: str, name: str) -> str:
    """Returns `name` while no run has it, else a fresh suggestion (after a launch used it)."""
    taken = not name or (runs_root(workspace) / name.strip() / CONFIG).exists()
    return suggest_run_name(workspace, method, student) if taken else name


def _real(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"give the {what} as a number") from None


def _whole(value: Any, what: str) -> int:
    number = _real(value, what)
    if not number.is_integer():
        raise InputError(f"give the {what} as a whole number")
    return int(number)


def make_config(
    workspace: str | Path,
    student: str,
    dataset: str,
    method: str,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    eval_every: int,
    eval_size: int,
    alpha: float,
    kd_loss: str,
    temperature: float,
    teacher: str,
    lora: bool,
    lora_r: int,
    name: str,
) -> TrainConfig:
    """Returns the TrainConfig of the panel's fields, its run folder <workspace>/runs/<name>. Settings a method
    does not use keep their defaults, so the config (and the CLI command) holds only what matters.

    Raises:
        InputError: an empty model, data or teacher field, a bad or taken run name, an out-of-range value.
        UnknownNameError: unknown method.
    """
    m = get_method(method)
    student, dataset, teacher = ((v or "").strip() for v in (student, dataset, teacher))
    if not student:
        raise InputError("choose a student model, or type a hub id or local path")
    if not dataset:
        raise InputError("choose the training data: an export of the Rationales panel, an upload, or a path")
    if m.needs_teacher_model and not teacher:
        raise InputError(f"{method} needs a teacher model (its logits are the targets)")
    name = (name or "").strip() or suggest_run_name(workspace, method, student)
    out = safe_child(runs_root(workspace), name)
    if (out / CONFIG).exists():
        raise InputError(f"a run named {name!r} exists already; choose another run name")
    data = dataset if dataset.startswith("hf:") else str(Path(dataset).expanduser().resolve())
    extra = {"alpha": _real(alpha, "α")} if m.uses_alpha else {}
    if m.needs_teacher_model:
        extra |= {"teacher": teacher, "kd_loss": kd_loss, "temperature": _real(temperature, "temperature")}
    if lora:
        extra |= {"lora": True, "lora_r": _whole(lora_r, "LoRA rank")}
    try:
        return TrainConfig(
            data=data,
            out=str(out),
            student=student,
            method=method,
            max_steps=_whole(max_steps, "max steps"),
            batch_size=_whole(batch_size, "batch size"),
            lr=_real(lr, "learning rate"),
            seed=_whole(seed, "seed"),
            eval_every=_whole(eval_every, "evaluation interval"),
            eval_size=_whole(eval_size, "evaluation size"),
            **extra,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from exc


def cli_command(config: TrainConfig) -> str:
    """Returns the `kdviz train ...` command line that runs `config`: its data, output, model, method and every
    other field that differs from the default."""
    parts = ["kdviz", "train"]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if value is None or (f.name not in ("data", "out", "student", "method") and value == DEFAULTS.get(f.name)):
            continue
        flag = "--" + f.name.replace("_", "-")
        parts += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return shlex.join(parts)


def command_markdown(folder: str | Path) -> str:
    """Returns Markdown with the CLI command of a run and how to rerun its saved config.yaml."""
    path = Path(folder) / CONFIG
    try:
        command = cli_command(TrainConfig.from_yaml(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        command = "(the run's config.yaml could not be read)"
    rerun = shlex.join(["kdviz", "train", "--config", str(path), "--out", f"{folder}-rerun"])
    return f"**Same run from the command line:**\n```\n{command}\n```\nor rerun its saved config:\n```\n{rerun}\n```"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def status_text(name: str, state: str, rows: list[dict], max_steps: int, error: str | None = None) -> str:
    """Returns the one-line Markdown status of a run from its metrics rows: step, time, loss, eval accuracy."""
    steps = [r for r in rows if r.get("kind") == "step"]
    evals = [r for r in rows if r.get("kind") == "eval" and r.get("eval_accuracy") is not None]
    parts = [f"**{name}**", state, f"step {steps[-1]['step'] if steps else 0}/{max_steps}"]
    if steps:
        last = steps[-1]
        parts.append(f"{_duration(last['elapsed_s'])} elapsed")
        if state == "running":
            parts += [f"ETA {_duration(last['eta_s'])}", f"{last['samples_per_s']:.1f} samples/s"]
        parts.append(f"loss {last['loss']:.4f}")
    elif state == "running":
        parts.append("loading the student and the data…" if not rows else "evaluating the untrained student…")
    if evals:
        parts.append(f"eval accuracy {evals[-1]['eval_accuracy']:.3f} at step {evals[-1]['step']}")
    text = " · ".join(parts)
    return f"{text}  \n**Error:** {error}" if error else text


def sample_rows(rows: list[dict]) -> list[list]:
    """Returns the sample predictions of the evaluations, newest first, as rows under SAMPLE_COLUMNS."""
    out = []
    for row in reversed([r for r in rows if r.get("kind") == "eval"]):
        for s in row.get("samples", []):
            correct = "" if s.get("correct") is None else "yes" if s["correct"] else "no"
            out.append([row["step"], s.get("question", ""), s.get("gold") or "", s.get("predicted") or "", correct])
    return out[:MAX_SAMPLE_ROWS]


def run_rows(workspace: str | Path) -> list[list]:
    """Returns one row per run in <workspace>/runs (newest first) under RUN_COLUMNS."""
    return [
        [
            info.name,
            info.status,
            info.method,
            info.student,
            f"{info.step}/{info.max_steps}",
            _number(info.final.get("eval_accuracy")),
            _number(info.final.get("loss"), 4),
            _duration(info.elapsed_s),
        ]
        for info in list_runs(runs_root(workspace))
    ]


def run_view(workspace: str | Path, name: str) -> RunView:
    """Returns (status, curves, sample rows, CLI markdown) of run `name`, read from its folder (also mid-run)."""
    if not name:
        return "Pick a run.", None, [], ""
    folder = safe_child(runs_root(workspace), name)
    if not (folder / CONFIG).is_file():
        raise InputError(f"no run named {name!r} in {runs_root(workspace)}")
    info, rows = run_info(folder), read_rows(folder)
    return (
        status_text(name, info.status, rows, info.max_steps, info.error),
        training_curves(rows),
        sample_rows(rows),
        command_markdown(folder),
    )


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


def _drain(rows: queue.SimpleQueue) -> list[dict]:
    out = []
    while True:
        try:
            out.append(rows.get_nowait())
        except queue.Empty:
            return out


def launch(workspace: str | Path, *fields: Any, poll_s: float = POLL_S) -> Iterator[RunView]:
    """Trains a student in a worker thread; yields (status, curves, sample rows, CLI markdown) as it goes.

    `fields` are those of `make_config` after the workspace. The first view comes at once, the next ones whenever
    the run has logged new metrics (checked every `poll_s` seconds), the last one is read from the run folder. If
    the page goes away the run goes on: Cancel (from any session) stops it, and the runs list shows it.

    Raises:
        BusyError: another run is training.  KdvizError: bad settings (before anything starts), or the run
            failed (bad data, a vocabulary mismatch, out of memory, ...); a failed run's folder is kept, marked.
    """
    config = make_config(workspace, *fields)
    training = _start(config)
    name, rows = training.name, []
    command = f"**Same run from the command line:**\n```\n{cli_command(config)}\n```"
    yield status_text(name, "running", rows, config.max_steps), training_curves(rows), [], command
    while not training.done.wait(poll_s):
        new = _drain(training.rows)
        if new:
            rows += new
            yield (
                status_text(name, "running", rows, config.max_steps),
                training_curves(rows),
                sample_rows(rows),
                command,
            )
    rows += _drain(training.rows)
    exc = training.error
    if exc is None:
        yield run_view(workspace, name)
        return
    message = str(exc) if isinstance(exc, KdvizError) else f"the run failed ({type(exc).__name__}: {exc})"
    yield (
        status_text(name, "failed", rows, config.max_steps, message),
        training_curves(rows),
        sample_rows(rows),
        command,
    )
    if isinstance(exc, KdvizError):
        raise exc
    raise KdvizError(message) from exc
