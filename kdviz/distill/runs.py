"""Training run folders: `runs/<name>/` with config.yaml, metrics.jsonl, samples.jsonl, status.json, checkpoint/.

The config and status are replaced atomically; metrics and samples are append-only logs flushed line by line, so
a crash or a cancel keeps everything up to the last step, and the Train panel can read a run while it is written.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdviz.errors import InputError
from kdviz.lm.models import RUN_CHECKPOINT
from kdviz.records import Record, write_atomic

CONFIG, METRICS, SAMPLES, STATUS = "config.yaml", "metrics.jsonl", "samples.jsonl", "status.json"
RUN_STATUSES = ("running", "completed", "cancelled", "failed", "interrupted")


@dataclass(frozen=True)
class RunInfo(Record):
    """What the run list shows about one run."""

    name: str
    path: str
    status: str
    method: str
    student: str
    step: int
    max_steps: int
    elapsed_s: float
    final: dict[str, Any] = field(default_factory=dict)  # last losses and eval accuracy
    error: str | None = None
    has_checkpoint: bool = False


def create_run(out: str | Path, config_yaml: str) -> Path:
    """Creates the run folder and writes its config; refuses a folder that already holds a run.

    Raises:
        InputError: the folder already holds a run (nothing in it is touched).
    """
    folder = Path(out).expanduser()
    if (folder / CONFIG).exists() or (folder / STATUS).exists():
        raise InputError(f"{folder} already holds a run; choose another run name or output folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / CONFIG, config_yaml)
    return folder


def append_row(path: Path, row: dict) -> None:
    """Appends one JSON line and flushes it to disk (a crash loses at most the line being written)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_status(folder: Path, **fields: Any) -> dict:
    """Updates status.json with `fields` (read, merge, atomic replace) and returns the new status."""
    status = read_status(folder)
    status.update(fields, updated_at=time.time(), pid=os.getpid())
    write_atomic(folder / STATUS, json.dumps(status, indent=1))
    return status


def read_status(folder: str | Path) -> dict:
    path = Path(folder) / STATUS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def read_rows(folder: str | Path, name: str = METRICS) -> list[dict]:
    """Returns the rows of a run's metrics.jsonl (or samples.jsonl); a half-written last line is skipped."""
    path = Path(folder) / name
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


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
    state = status.get("status", "interrupted")
    if state == "running" and not _alive(status.get("pid")):
        state = "interrupted"
    return RunInfo(
        name=folder.name,
        path=str(folder),
        status=state,
        method=str(config.get("method", "?")),
        student=str(config.get("student", "?")),
        step=int(status.get("step", 0)),
        max_steps=int(config.get("max_steps", 0)),
        elapsed_s=float(status.get("elapsed_s", 0.0)),
        final=status.get("final", {}),
        error=status.get("error"),
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
