"""Sends a run's metrics to an experiment tracker (`--report-to`): TensorBoard, trackio or Weights & Biases.

kdviz's own loop and the TRL methods (`kdviz.distill.trl_methods`) log the same rows (`kdviz.distill.metrics`)
under the same names, so runs of every method sit side by side on one dashboard: train/loss and train/loss_<part>,
train/learning_rate, train/samples_per_s, eval/accuracy and eval/samples (the sample predictions: a text table in
TensorBoard, a Table in trackio and W&B). The TRL trainers' own scalars (DPO's rewards/margins, ...) go under
train/ too. Both go through accelerate's tracker classes, not `Accelerator(log_with=...)`, because the TRL methods'
Trainer builds its own Accelerator: one tracker object serves both paths.

TensorBoard writes <run>/tensorboard/. trackio keeps its local database (offline), W&B its project; both under the
project "kdviz", each run named after its folder (W&B offline with WANDB_MODE=offline).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdviz.config import TrainConfig
from kdviz.errors import InputError

from .metrics import EvalRow, MetricsRow, Sample, StepRow

REPORT_TO = ("none", "trackio", "tensorboard", "wandb")
PROJECT = "kdviz"  # trackio's and W&B's project
TENSORBOARD_DIR = "tensorboard"  # in the run folder
SAMPLE_COLUMNS = ["id", "question", "gold", "predicted", "correct"]


def check_tracker(report_to: str) -> None:
    """Raises InputError when the tracker's package is not installed (before a run starts)."""
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        raise InputError(f"--report-to {report_to} needs the {report_to} package: pip install {report_to}")


def _tracker(report_to: str, folder: Path, config: TrainConfig):
    from accelerate import tracking

    settings = {k: ("none" if v is None else v) for k, v in vars(config).items()}
    if report_to == "tensorboard":  # accelerate writes to <logging_dir>/<run_name>
        return tracking.TensorBoardTracker(TENSORBOARD_DIR, logging_dir=folder)
    if report_to == "trackio":
        return tracking.TrackioTracker(PROJECT, name=folder.name, config=settings)
    return tracking.WandBTracker(PROJECT, name=folder.name, dir=str(folder), config=settings)


def _samples_table(report_to: str, samples: tuple[Sample, ...]) -> Any:
    rows = [[s.id, s.question, s.gold, s.predicted, s.correct] for s in samples]
    if report_to != "tensorboard":  # trackio.Table and wandb.Table take the same arguments
        return importlib.import_module(report_to).Table(columns=SAMPLE_COLUMNS, data=rows)
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    lines = [SAMPLE_COLUMNS, ["---"] * len(SAMPLE_COLUMNS), *cells]  # TensorBoard's text plugin reads Markdown
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


class Tracking:
    """A run's tracker (none when `report_to` is "none" or on a process other than the first)."""

    def __init__(self, report_to: str, folder: Path, config: TrainConfig, main: bool = True):
        self.report_to = report_to
        self.tracker = _tracker(report_to, folder, config) if report_to != "none" and main else None
        if self.tracker is not None:
            self.tracker.start()
            if report_to == "tensorboard":
                self.tracker.log({"config": "    " + config.to_yaml().replace("\n", "\n    ")}, step=0)

    def log(self, row: MetricsRow, extra: Mapping[str, float] | None = None) -> None:
        """Logs a metrics row at its step; `extra`: more scalars of the step (a TRL trainer's own), under train/."""
        if self.tracker is None:
            return
        values: dict[str, Any] = {}
        if isinstance(row, StepRow):
            values = {"train/loss": row.loss, **{f"train/loss_{k}": v for k, v in row.parts.items()}}
            values |= {"train/learning_rate": row.lr, "train/samples_per_s": row.samples_per_s}
            values |= {f"train/{k}": float(v) for k, v in (extra or {}).items()}
        elif isinstance(row, EvalRow):
            if row.eval_accuracy is not None:
                values["eval/accuracy"] = row.eval_accuracy
            if row.samples:
                values["eval/samples"] = _samples_table(self.report_to, row.samples)
        if values:
            self.tracker.log(values, step=row.step)

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.finish()
            self.tracker = None


def start_tracking(config: TrainConfig, folder: Path, main: bool = True) -> Tracking:
    """Returns the run's tracking, started (`config.report_to`; only the first process logs).

    Raises:
        InputError: the tracker's package is not installed.
    """
    check_tracker(config.report_to)
    return Tracking(config.report_to, Path(folder), config, main)
