"""What the Train panel shows of a run, live or past: a status line, curves, sample predictions, the runs table
and the equivalent command. Built from the typed rows and records of `kdviz.distill.runs`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from kdviz.config import TrainConfig
from kdviz.distill.metrics import EvalRow, MetricsRow, StepRow
from kdviz.distill.runs import holds_run, list_runs, read_config, read_rows, rerun_command, run_info, train_command
from kdviz.errors import InputError, KdvizError
from kdviz.format import duration, number
from kdviz.viz.training import training_curves
from kdviz.workspace import Workspace

RUN_COLUMNS = ["name", "status", "method", "student", "steps", "eval accuracy", "final loss", "elapsed"]
SAMPLE_COLUMNS = ["step", "question", "gold", "predicted", "correct"]
SAMPLE_WIDTHS = ["12%", "32%", "18%", "20%", "18%"]
MAX_SAMPLE_ROWS = 40


class RunView(NamedTuple):
    """The four outputs that show a run."""

    status: str  # Markdown
    curves: Any  # a plotly Figure, or None
    samples: list[list]  # rows under SAMPLE_COLUMNS
    command: str  # Markdown


def status_text(name: str, state: str, rows: Sequence[MetricsRow], max_steps: int, error: str | None = None) -> str:
    """Returns the one-line Markdown status of a run from its metrics rows: step, time, loss, eval accuracy."""
    steps = [r for r in rows if isinstance(r, StepRow)]
    evals = [r for r in rows if isinstance(r, EvalRow) and r.eval_accuracy is not None]
    parts = [f"**{name}**", state, f"step {steps[-1].step if steps else 0}/{max_steps}"]
    if steps:
        last = steps[-1]
        parts.append(f"{duration(last.elapsed_s)} elapsed")
        if state == "running":
            parts += [f"ETA {duration(last.eta_s)}", f"{number(last.samples_per_s, 1)} samples/s"]
        parts.append(f"loss {number(last.loss, 4)}")
    elif state == "running":
        parts.append("loading the student and the data…" if not rows else "evaluating the untrained student…")
    if evals:
        parts.append(f"eval accuracy {number(evals[-1].eval_accuracy)} at step {evals[-1].step}")
    text = " · ".join(parts)
    return f"{text}  \n**Error:** {error}" if error else text


def sample_rows(rows: Sequence[MetricsRow]) -> list[list]:
    """Returns the sample predictions of the evaluations, newest first, as rows under SAMPLE_COLUMNS."""
    out = []
    for row in reversed([r for r in rows if isinstance(r, EvalRow)]):
        for s in row.samples:
            correct = "" if s.correct is None else "yes" if s.correct else "no"
            out.append([row.step, s.question, s.gold or "", s.predicted or "", correct])
    return out[:MAX_SAMPLE_ROWS]


def live_view(
    name: str, state: str, rows: Sequence[MetricsRow], config: TrainConfig, error: str | None = None
) -> RunView:
    """Returns the view of a run from the rows streamed so far (the run folder may be gone after a failed start)."""
    status = status_text(name, state, rows, config.max_steps, error)
    return RunView(status, training_curves(rows), sample_rows(rows), command_block(config))


def command_block(config: TrainConfig) -> str:
    """Returns Markdown with the `kdviz train` command that runs `config`."""
    return f"**Same run from the command line:**\n```\n{train_command(config)}\n```"


def command_markdown(folder: str | Path) -> str:
    """Returns Markdown with the CLI command of a run and how to rerun its saved config.yaml."""
    try:
        command = train_command(read_config(folder))
    except KdvizError:
        command = "(the run's config.yaml could not be read)"
    rerun = rerun_command(folder)
    return f"**Same run from the command line:**\n```\n{command}\n```\nor rerun its saved config:\n```\n{rerun}\n```"


def run_rows(workspace: str | Path) -> list[list]:
    """Returns one row per run in the workspace (newest first) under RUN_COLUMNS."""
    return [
        [
            info.name,
            info.status,
            info.method,
            info.student,
            f"{info.step}/{info.max_steps}",
            number(info.final.eval_accuracy),
            number(info.final.loss, 4),
            duration(info.elapsed_s),
        ]
        for info in list_runs(Workspace(workspace).runs)
    ]


def run_names(rows: list[list]) -> list[str]:
    """Returns the run names of `run_rows` (their first column)."""
    return [row[0] for row in rows]


def run_view(workspace: str | Path, name: str) -> RunView:
    """Returns the view of run `name`, read from its folder (also mid-run)."""
    if not name:
        return RunView("Pick a run.", None, [], "")
    folder = Workspace(workspace).run_dir(name)
    if not holds_run(folder):
        raise InputError(f"no run named {name!r} in {Workspace(workspace).runs}")
    info, rows = run_info(folder), read_rows(folder)
    status = status_text(name, info.status, rows, info.max_steps, info.error)
    return RunView(status, training_curves(rows), sample_rows(rows), command_markdown(folder))
