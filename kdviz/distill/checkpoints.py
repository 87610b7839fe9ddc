"""What a run writes to disk besides its logs: the model (`checkpoint/`) and the point it can resume from (`resume/`).

`checkpoint/` is the fine-tuned model that `load_model("runs/<name>")` reads (LoRA merged into the weights), written
when a run completes or is cancelled. `resume/` is everything `kdviz train --resume` needs to continue exactly where
the run was: the trained weights (with LoRA, the unmerged adapters), the optimizer's and the scheduler's state, the
random state, the data order still to come and the step. A run writes it every `save_every` steps and when it is
cancelled, and drops it when it completes (the optimizer's state alone is twice the model).

Both folders are replaced as a whole (`kdviz.files.replacing_folder`), so a kill while one is written leaves the
previous one. They hold tensors and JSON only: safetensors, and `torch.load(weights_only=True)` for the optimizer
and random state, so resuming a run folder from elsewhere cannot run its code.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from kdviz.config import TrainConfig
from kdviz.errors import InputError
from kdviz.files import replacing_folder
from kdviz.lm.models import RUN_CHECKPOINT, RUN_META, LoadedModel
from kdviz.records import Record

from .methods import Method


class Trainer(Protocol):
    """What a checkpoint reads of a training run, and restores (kdviz.distill.loop's and the TRL runs' state)."""

    accelerator: Any  # accelerate.Accelerator
    config: TrainConfig
    folder: Path
    generator: torch.Generator
    method: Method
    model: Any
    optimizer: torch.optim.Optimizer
    order: list[int]
    scheduler: Any  # a torch LR scheduler
    student: LoadedModel


RESUME = "resume"
_POINT, _WEIGHTS, _STATE = "point.json", "weights.safetensors", "state.pt"


@dataclass(frozen=True)
class ResumePoint(Record):
    """Where a saved run stands: its last finished step, the time it had run, and the data order still to come."""

    step: int
    elapsed_s: float
    order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", tuple(self.order))


def save_model(loop: Trainer) -> Path:
    """Writes the checkpoint (LoRA merged into the weights) and how to prompt it; returns its folder.

    With LoRA the merge changes the model in place: call this last, after any `save_resume_point`."""
    model = loop.accelerator.unwrap_model(loop.model)
    if loop.config.lora:
        model = model.merge_and_unload()
    meta = {
        "method": loop.method.name,
        "student": loop.config.student,
        "chat": loop.student.chat,
        "teacher_at_test_time": loop.method.teacher_at_test_time,
        "teacher": loop.config.teacher,
    }
    with replacing_folder(loop.folder / RUN_CHECKPOINT) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        loop.student.tokenizer.save_pretrained(tmp)
        (tmp / RUN_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return loop.folder / RUN_CHECKPOINT


def _trainable(loop: Trainer) -> dict[str, torch.Tensor]:
    """Returns the trained parameters by name (tied weights once; with LoRA, the adapters only)."""
    model = loop.accelerator.unwrap_model(loop.model)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_resume_point(loop: Trainer, point: ResumePoint) -> None:
    """Writes `resume/`: the state of the run after step `point.step`."""
    from safetensors.torch import save_file

    weights = {name: p.detach().cpu().contiguous() for name, p in _trainable(loop).items()}
    state = {
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "generator": loop.generator.get_state(),  # the data order's epochs to come
        "rng": torch.get_rng_state(),  # dropout
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with replacing_folder(loop.folder / RESUME) as tmp:
        save_file(weights, str(tmp / _WEIGHTS))
        torch.save(state, tmp / _STATE)
        (tmp / _POINT).write_text(json.dumps(point.to_dict()), encoding="utf-8")


def _saved(folder: Path) -> Path | None:
    # A kill between replacing_folder's two renames leaves the previous state under .resume.old, and no resume/.
    for candidate in (folder / RESUME, folder / f".{RESUME}.old"):
        if (candidate / _POINT).is_file():
            return candidate
    return None


def resume_step(folder: str | Path) -> int:
    """Returns the step a run resumes from (0: no resume point saved, it starts again)."""
    saved = _saved(Path(folder))
    try:
        return ResumePoint.from_dict(json.loads((saved / _POINT).read_text(encoding="utf-8"))).step if saved else 0
    except (OSError, ValueError, TypeError):
        return 0


def restore(loop: Trainer) -> ResumePoint | None:
    """Puts the run's saved state into a freshly built loop; returns where it stands (None: nothing saved).

    Raises:
        InputError: the saved state is unreadable, or was written by another model or LoRA setting.
    """
    from safetensors.torch import load_file

    saved = _saved(loop.folder)
    if saved is None:
        return None
    try:
        point = ResumePoint.from_dict(json.loads((saved / _POINT).read_text(encoding="utf-8")))
        weights = load_file(str(saved / _WEIGHTS))
        state = torch.load(saved / _STATE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise InputError(f"cannot resume {loop.folder}: its saved state is unreadable ({exc})") from exc
    params = _trainable(loop)
    if set(weights) != set(params) or any(weights[n].shape != p.shape for n, p in params.items()):
        raise InputError(f"cannot resume {loop.folder}: its saved weights are not those of {loop.config.student}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name])
    loop.optimizer.load_state_dict(state["optimizer"])  # moves the state to each parameter's device
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.generator.set_state(state["generator"])
    loop.order = list(point.order)
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return point


def discard_resume_point(folder: Path) -> None:
    """Removes `resume/` (a completed run does not need it)."""
    for path in (folder / RESUME, folder / f".{RESUME}.old", folder / f".{RESUME}.tmp"):
        shutil.rmtree(path, ignore_errors=True)
