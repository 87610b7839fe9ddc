"""Training run folders: `runs/<name>/` with config.yaml, metrics.jsonl, samples.jsonl, status.json, checkpoint/
and, until the run completes, resume/ (see `kdviz.distill.checkpoints`).

The config and status are replaced atomically; metrics and samples are append-only logs flushed line by line, so
a crash or a cancel keeps everything up to the last step, and the Train panel can read a run while it is written.
A resumed run first cuts the logs back to its resume point, so each step stays logged once.

config.yaml holds the `TrainConfig` and, under `data_files`, the absolute path and sha256 of each file the data
was read from: rerunning the config warns when they changed (`data_change`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kdviz.config import TrainConfig
from kdviz.errors import InputError
from kdviz.files import write_atomic
from kdviz.lm.models import RUN_CHECKPOINT
from kdviz.records import Record
from kdviz.workspace import command_line

from .metrics import FinalMetrics, MetricsRow, Sample, row_from_dict

CONFIG, METRICS, SAMPLES, STATUS = "config.yaml", "metrics.jsonl", "samples.jsonl", "status.json"
RunState = Literal["running", "completed", "cancelled", "failed", "interrupted"]
RUN_STATUSES: tuple[RunState, ...] = ("running", "completed", "cancelled", "failed", "interrupted")


@dataclass(frozen=True)
class RunStatus(Record):
    """What status.json says: where a run is, rewritten as it goes (a running run whose `pid` is gone was killed)."""

    status: RunState = "running"
    step: int = 0  # the last finished optimizer step
    started_at: float | None = None
    elapsed_s: float = 0.0
    n_train: int | None = None
    n_eval: int | None = None
    truncated: int | None = None  # training sequences whose prompt lost its start to max_length
    device: str | None = None
    teacher_at_test_time: bool = False
    final: FinalMetrics = field(default_factory=FinalMetrics)
    error: str | None = None
    updated_at: float | None = None
    pid: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "final", FinalMetrics.coerce(self.final))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "final": self.final.to_dict()}


@dataclass(frozen=True)
class RunInfo(Record):
    """What the run list shows about one run."""

    name: str
    path: str
    status: RunState
    method: str
    student: str
    step: int
    max_steps: int
    elapsed_s: float
    final: FinalMetrics = field(default_factory=FinalMetrics)  # last losses and eval accuracy
    error: str | None = None
    has_checkpoint: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "final", FinalMetrics.coerce(self.final))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "final": self.final.to_dict()}


def holds_run(folder: str | Path) -> bool:
    """Returns whether a folder already holds a run (its config or status was written)."""
    folder = Path(folder).expanduser()
    return (folder / CONFIG).exists() or (folder / STATUS).exists()


def create_run(out: str | Path, config_yaml: str) -> Path:
    """Creates the run folder and writes its config; refuses a folder that already holds a run.

    Raises:
        InputError: the folder already holds a run, or other files (nothing in it is touched: a run that fails
            before its first step removes its folder, which must therefore hold nothing but the run).
    """
    folder = Path(out).expanduser()
    if holds_run(folder):
        raise InputError(f"{folder} already holds a run; choose another run name or output folder")
    if folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise InputError(f"{folder} is not an empty folder; give a new folder for the run")
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / CONFIG, config_yaml)
    return folder


def reopen_run(out: str | Path) -> Path:
    """Returns the folder of a run to resume: one that was cancelled, failed or killed.

    Raises:
        InputError: no run there, or a run that is still running or has completed.
    """
    folder = Path(out).expanduser()
    if not holds_run(folder):
        raise InputError(f"{folder} holds no run to resume")
    info = run_info(folder)
    if info.status == "running":
        pid = read_status(folder).pid  # type: ignore[union-attr]  (running: status.json was read)
        raise InputError(f"{folder} is still running (process {pid}); cancel it before resuming")
    if info.status == "completed":
        raise InputError(f"{folder} has completed its {info.max_steps} steps; there is nothing to resume")
    return folder


def trim_logs(folder: Path, step: int) -> list[MetricsRow]:
    """Cuts metrics.jsonl and samples.jsonl back to the rows of steps up to `step` (where a resumed run goes on
    from); returns the metrics rows kept."""
    for name in (METRICS, SAMPLES):
        kept = [row for row in _lines(folder / name) if isinstance(row.get("step"), int) and row["step"] <= step]
        if (folder / name).exists():
            write_atomic(folder / name, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept))
    return read_rows(folder)


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    """Appends JSON lines and flushes them to disk (a crash loses at most the line being written)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        handle.flush()
        os.fsync(handle.fileno())


def log_row(folder: Path, row: MetricsRow) -> None:
    """Appends a step or evaluation row to the run's metrics.jsonl."""
    _append(folder / METRICS, [row.to_dict()])


def log_samples(folder: Path, step: int, samples: tuple[Sample, ...]) -> None:
    """Appends an evaluation's sample predictions to samples.jsonl, each line a Sample with its "step"."""
    _append(folder / SAMPLES, [{"step": step, **s.to_dict()} for s in samples])


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the line a crash cut short
            continue
    return rows


def read_rows(folder: str | Path) -> list[MetricsRow]:
    """Returns the rows of a run's metrics.jsonl; a half-written last line is skipped."""
    rows = []
    for data in _lines(Path(folder) / METRICS):
        try:
            rows.append(row_from_dict(data))
        except (TypeError, ValueError):
            continue
    return rows


def read_samples(folder: str | Path) -> list[tuple[int, Sample]]:
    """Returns (step, sample) for each line of a run's samples.jsonl."""
    return [(int(d.pop("step")), Sample.from_dict(d)) for d in _lines(Path(folder) / SAMPLES) if "step" in d]


def write_status(folder: Path, **changes: Any) -> RunStatus:
    """Updates status.json with `changes` (read, replace, atomic write) and returns the new status."""
    status = dataclasses.replace(
        read_status(folder) or RunStatus(), **changes, updated_at=time.time(), pid=os.getpid()
    )
    write_atomic(folder / STATUS, json.dumps(status.to_dict(), indent=1))
    return status


def read_status(folder: str | Path) -> RunStatus | None:
    """Returns a run's status.json (None when it is missing or unreadable)."""
    try:
        data = json.loads((Path(folder) / STATUS).read_text(encoding="utf-8"))
        return RunStatus.from_dict(data)
    except (OSError, json.JSONDecodeError, TypeError, ValueError, AttributeError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_info(folder: str | Path) -> RunInfo:
    """Returns what is known of a run; a "running" run whose process is gone reads as "interrupted"."""
    import yaml

    folder = Path(folder)
    try:
        config = yaml.safe_load((folder / CONFIG).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    status = read_status(folder)
    state = status.status if status else "interrupted"
    if state == "running" and not _alive(status.pid if status else None):
        state = "interrupted"
    return RunInfo(
        name=folder.name,
        path=str(folder),
        status=state,
        method=str(config.get("method", "?")),
        student=str(config.get("student", "?")),
        step=status.step if status else 0,
        max_steps=int(config.get("max_steps", 0)),
        elapsed_s=status.elapsed_s if status else 0.0,
        final=status.final if status else FinalMetrics(),
        error=status.error if status else None,
        has_checkpoint=(folder / RUN_CHECKPOINT / "config.json").is_file(),
    )


def list_runs(root: str | Path) -> list[RunInfo]:
    """Returns the runs under `root` (folders with a config.yaml), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if (p / CONFIG).is_file()]
    folders.sort(key=lambda p: (p / CONFIG).stat().st_mtime, reverse=True)
    return [run_info(p) for p in folders]


def read_config(folder: str | Path) -> TrainConfig:
    """Returns the TrainConfig a run was started with (its config.yaml).

    Raises:
        InputError: no readable, valid config.yaml in the folder.
    """
    path = Path(folder) / CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror or exc})") from exc
    return TrainConfig.from_yaml(text)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def data_files(data: str) -> list[dict[str, str]]:
    """Returns {"path", "sha256"} of each file of the data: the file, or every file in the folder (hidden ones
    aside: locks and temporary files); none for a hub dataset or data that does not exist."""
    path = Path(data).expanduser()
    if data.startswith("hf:") or not path.exists():
        return []
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file() and not _hidden(f, path))
    return [{"path": str(f.resolve()), "sha256": _sha256(f)} for f in files]


def run_config_yaml(config: TrainConfig) -> str:
    """Returns the text of a run's config.yaml: the config, then what its data files were (`data_files`)."""
    import yaml

    return config.to_yaml() + yaml.safe_dump({"data_files": data_files(config.data)}, sort_keys=False)


def data_change(config_yaml: str, data: str) -> str | None:
    """Returns a one-line warning when `data` is not what the run of `config_yaml` read (None when it is, or when
    the config recorded no data files: a hub dataset, or a run from before kdviz recorded them)."""
    import yaml

    try:
        recorded = (yaml.safe_load(config_yaml) or {}).get("data_files") or []
        then = {str(d["path"]): str(d["sha256"]) for d in recorded}
    except (yaml.YAMLError, AttributeError, TypeError, KeyError):
        return None
    now = {d["path"]: d["sha256"] for d in data_files(data)}
    if not then or then == now:
        return None
    changed = [p for p in then if p in now and now[p] != then[p]]
    if changed:
        what = f"{changed[0]} changed (sha256 {then[changed[0]][:12]}... then, {now[changed[0]][:12]}... now)"
    elif set(then) - set(now):
        gone = sorted(set(then) - set(now))[0]
        what = f"{gone} is gone" if not now else f"{data} now reads {sorted(now)[0]}, not {gone}"
    else:
        what = f"{sorted(set(now) - set(then))[0]} was added"
    return (
        f"the data differs from what the run read: {what}. This will not repeat the run; a run keeps only its "
        "data's hashes, so the old data cannot be restored from it"
    )


_ALWAYS = ("data", "out", "student", "method")  # shown even at their defaults: they say what the run is


def train_command(config: TrainConfig) -> str:
    """Returns the `kdviz train ...` command line that runs `config`: its data, output, model, method and every
    other field that differs from the default."""
    options: list[tuple[str, object]] = []
    for f in dataclasses.fields(TrainConfig):
        value, default = getattr(config, f.name), f.default
        if value is None or (f.name not in _ALWAYS and value == default):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            options.append((flag if value else "--no-" + flag[2:], True))
        else:
            options.append((flag, value))
    return command_line(["kdviz", "train"], options)


def rerun_command(folder: str | Path) -> str:
    """Returns the command that reruns a run's saved config.yaml into `<folder>-rerun`."""
    folder = Path(folder)
    return command_line(["kdviz", "train"], [("--config", folder / CONFIG), ("--out", f"{folder}-rerun")])


def out_of_memory_message(config: TrainConfig) -> str:
    """Returns what a run that ran out of memory says (in its status and its error), having given the accelerator's
    cached memory back: the next batch size to try, a shorter max length or LoRA."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return (
        f"out of memory at batch size {config.batch_size}, max length {config.max_length}: try batch size "
        f"{max(1, config.batch_size // 2)}, a shorter max length or LoRA"
    )
