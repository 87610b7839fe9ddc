"""The Compare panel's fields: the candidate students and data of the workspace, comparison names, and the
`Settings` the fields describe. Plain typed functions of widget values; the folder layout, the resume rule and the
equivalent command are the library's (`kdviz.workspace.Workspace`, `kdviz.compare.report`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Sequence
from pathlib import Path

from kdviz.attribution.catalog import check_method
from kdviz.compare.report import check_may_write, compare_command, may_write
from kdviz.compare.run import compare, student_runs
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.models import list_model_specs
from kdviz.lm.prompts import PREDICT_MODES, check_predict_mode
from kdviz.records import SELECTABLE_TARGET_MODES
from kdviz.workspace import Workspace

from .fields import number

_COMPARE_PARAMETERS = inspect.signature(compare).parameters
DEFAULTS = {  # compare()'s own defaults, so the panel and `kdviz compare` agree; a first look at a few examples
    **{name: _COMPARE_PARAMETERS[name].default for name in ("method", "top_k", "batch_size")}, "limit": 20,
}  # fmt: skip
DEFAULT_PREDICT = "default"  # the panel's value for predict=None: each model predicts in its own default mode
PREDICT_CHOICES = [("each model's default", DEFAULT_PREDICT), *((mode, mode) for mode in PREDICT_MODES)]
DEFAULT_TARGET = "default"  # target_mode=None: choice for data with choices, else each model's generated answer
TARGET_CHOICES = [("choice, or generate if free-form", DEFAULT_TARGET), *((m, m) for m in SELECTABLE_TARGET_MODES)]
LABELS = {"limit": "Examples (first N)", "top_k": "Top-k rationale words", "batch_size": "Batch size"}  # whole, >= 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """A comparison the panel's fields describe: model specs as `compare` loads them, and as they are shown."""

    workspace: Workspace
    name: str
    folder: Path
    teacher: str
    students: tuple[str, ...]
    labels: dict[str, str]  # spec -> shown name, which is also its `kdviz compare --workspace` argument
    data: str
    limit: int
    method: str
    top_k: int
    batch_size: int
    predict: str | None = None  # the prediction mode; None: each model's default
    target_mode: str | None = None  # what attributions explain; None: the data's default (see `compare`)

    @property
    def command(self) -> str:
        """The `kdviz compare` command that writes the same report into the same workspace."""
        return compare_command(
            self.labels[self.teacher], [self.labels[s] for s in self.students], self.data, limit=self.limit,
            method=self.method, top_k=self.top_k, batch_size=self.batch_size, workspace=self.workspace.root,
            name=self.name, predict=self.predict, target_mode=self.target_mode,
        )  # fmt: skip


def list_students(workspace: str | Path) -> list[tuple[str, str]]:
    """Returns (label, spec) of the candidate students: the workspace's finished or cancelled runs that saved a
    checkpoint ("runs/<name>", newest first), then the model specs that work offline."""
    ws = Workspace(workspace)
    runs = []
    for info in student_runs(ws):
        spec = Path(info.path).relative_to(ws.root).as_posix()  # how `resolve_spec` reads it back
        runs.append((f"{spec} ({info.method}, {info.status})", spec))
    return runs + [(spec, spec) for spec in list_model_specs()]


def list_data(workspace: str | Path, examples_path: str | Path | None = None) -> list[tuple[str, str]]:
    """Returns (label, path) of the data to compare on: the app's examples file, then the workspace's data
    (Rationales exports and builds, uploads)."""
    own = [(f"{Path(examples_path).name} (the app's examples)", str(examples_path))] if examples_path else []
    return own + Workspace(workspace).list_datasets()


def suggest_name(workspace: str | Path) -> str:
    """Returns a free comparison name "comparison-<n>"."""
    return Workspace(workspace).new_comparison_name()


def next_name(workspace: str | Path, name: str) -> str:
    """Returns `name` while it is free or holds a cancelled comparison (Compare resumes it), else a fresh one."""
    try:
        free = bool(name) and may_write(Workspace(workspace).comparison_dir(name))
    except InputError:
        free = False
    return name if free else suggest_name(workspace)


def parse_specs(text: str | None) -> list[str]:
    """Returns the model specs in free text, separated by commas or new lines."""
    return [s.strip() for s in re.split(r"[,\n]", text or "") if s.strip()]


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
    predict: str | None = DEFAULT_PREDICT,
    target_mode: str | None = DEFAULT_TARGET,
) -> Settings:
    """Returns the comparison the panel's fields describe, written as the workspace's comparison `name`.

    Raises:
        InputError: no teacher, student or data; a bad number; a bad name, or one of a finished comparison.
        UnknownNameError: unknown attribution method, prediction mode or target mode.
    """
    check_method(method)
    predict = None if predict in (None, "", DEFAULT_PREDICT) else check_predict_mode(predict)
    target_mode = None if target_mode in (None, "", DEFAULT_TARGET) else target_mode
    if target_mode is not None and target_mode not in SELECTABLE_TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, SELECTABLE_TARGET_MODES)
    teacher = (teacher or "").strip()
    if not teacher:
        raise InputError("choose a teacher model, or type a hub id or local path")
    chosen = list(dict.fromkeys([s.strip() for s in students or [] if s and s.strip()] + parse_specs(extra_students)))
    if not chosen:
        raise InputError("pick at least one student: a training run, a model spec, or type a hub id or local path")
    dataset = (dataset or "").strip()
    if not dataset:
        raise InputError("choose the data to compare on: the app's examples, a Rationales export, or a path")
    ws = Workspace(workspace)
    name = (name or "").strip() or ws.new_comparison_name()
    folder = check_may_write(ws.comparison_dir(name))
    resolved = [ws.resolve_spec(s) for s in [teacher, *chosen]]
    return Settings(
        workspace=ws, name=name, folder=folder,
        teacher=resolved[0][0], students=tuple(spec for spec, _ in resolved[1:]), labels=dict(resolved),
        data=dataset if dataset.startswith("hf:") else str(Path(dataset).expanduser().resolve()),
        limit=number(limit, LABELS["limit"], whole=True, minimum=1),
        method=method,
        top_k=number(top_k, LABELS["top_k"], whole=True, minimum=1),
        batch_size=number(batch_size, LABELS["batch_size"], whole=True, minimum=1),
        predict=predict, target_mode=target_mode,
    )  # fmt: skip
