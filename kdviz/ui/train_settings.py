"""The Train panel's settings: what a method needs (asked of its `Method`), free run names, and the TrainConfig
of the panel's fields. Plain typed functions of widget values; they raise KdvizError like the library."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from kdviz.config import TrainConfig
from kdviz.data import absolute_source
from kdviz.distill.methods import METHODS, get_method
from kdviz.distill.runs import holds_run
from kdviz.distill.tracking import REPORT_TO as REPORT_TO  # the tab's choices
from kdviz.distill.tracking import check_tracker
from kdviz.errors import InputError
from kdviz.workspace import Workspace

from .fields import number

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
METHOD_NAMES = tuple(METHODS)
NUMBER_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {  # the panel's label of each number field and its range:
    # TrainConfig checks the ranges again; checked here, the message names the field the user sees, with the value
    "max_steps": ("Max steps", {"whole": True, "minimum": 1}),
    "batch_size": ("Batch size", {"whole": True, "minimum": 1}),
    "lr": ("Learning rate", {"above": 0}),
    "seed": ("Seed", {"whole": True}),
    "eval_every": ("Eval every (0: at the end)", {"whole": True, "minimum": 0}),
    "eval_size": ("Eval size", {"whole": True, "minimum": 1}),
    "alpha": ("α (weight of the answer loss)", {"minimum": 0, "maximum": 1}),
    "temperature": ("Temperature", {"above": 0}),
    "dpo_beta": ("β", {"above": 0}),  # one β field in the panel: DPO's, or GKD's
    "gkd_beta": ("β", {"minimum": 0, "maximum": 1}),
    "gkd_lmbda": ("λ (share of on-policy steps)", {"minimum": 0, "maximum": 1}),
    "lora_r": ("LoRA rank", {"whole": True, "minimum": 1}),
}


class MethodView(NamedTuple):
    """What the panel shows and hides for a method."""

    summary: str  # Markdown: what it does and what it needs
    uses_alpha: bool
    uses_teacher: bool  # runs the teacher model during training


class MethodSettings(NamedTuple):
    """Which of the panel's method fields a method reads: KD loss and temperature, β (its default; None: no β),
    λ, and the rationale in DPO's preferred answer."""

    kd: bool
    beta: float | None
    lmbda: bool
    rationale: bool


def method_info(method: str) -> MethodView:
    """Returns the method's description and which of the panel's settings it uses."""
    m = get_method(method)
    notes = [
        (m.needs_rationale, "needs the teacher's rationales: a Rationales export or build, or the dataset's"),
        (m.needs_teacher_answer, "needs the teacher's answers: a Rationales export or build, or the dataset's"),
        (m.needs_teacher_model, "runs the teacher during training (teacher and student must share a vocabulary)"),
        (m.teacher_at_test_time, "at test time, every new input needs the teacher's rationale first"),
        (m.via_trl, "trained by TRL's trainer: decoder-only students"),
    ]
    text = f"**{m.name}**: {m.summary}" + "".join(f"  \n· {note}" for needed, note in notes if needed)
    return MethodView(text, m.uses_alpha, m.needs_teacher_model)


def method_settings(method: str) -> MethodSettings:
    """Returns which of the panel's method-specific settings the method reads (its `Method.own_settings`)."""
    own = get_method(method).own_settings
    beta = next((DEFAULTS[f] for f in ("dpo_beta", "gkd_beta") if f in own), None)
    return MethodSettings("kd_loss" in own, beta, "gkd_lmbda" in own, "dpo_rationale" in own)


def suggest_run_name(workspace: str | Path, method: str, student: str) -> str:
    """Returns a free run name "<method>-<student>-<n>" (the student's last path part, made a plain name)."""
    return Workspace(workspace).new_run_name(method, student)


def next_run_name(workspace: str | Path, method: str, student: str, name: str) -> str:
    """Returns `name` while no run has it, else a fresh suggestion (after a launch used it)."""
    try:
        taken = not name or holds_run(Workspace(workspace).run_dir(name))
    except InputError:  # not a valid name: keep it, the next launch says why
        taken = False
    return suggest_run_name(workspace, method, student) if taken else name


def checked(field: str, value: Any) -> Any:
    """Returns the value of the panel's number field `field` (see NUMBER_FIELDS), checked: an InputError names
    the field as the panel labels it."""
    label, bounds = NUMBER_FIELDS[field]
    return number(value, label, **bounds)


def make_config(
    workspace: str | Path, student: str, dataset: str, method: str,
    max_steps: int, batch_size: int, lr: float, seed: int, eval_every: int, eval_size: int,
    alpha: float, kd_loss: str, temperature: float, teacher: str, lora: bool, lora_r: int,
    beta: float, lmbda: float, dpo_rationale: bool, report_to: str, name: str,
    rationale_source: str = "build", label_source: str = "build",
) -> TrainConfig:  # fmt: skip
    """Returns the TrainConfig of the panel's fields, its run folder <workspace>/runs/<name>. Settings a method
    does not use (`Method.settings`) keep their defaults, so the config (and the CLI command) holds only what matters.

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
    out = Workspace(workspace).run_dir(name)
    if holds_run(out):
        raise InputError(f"a run named {name!r} exists already; choose another run name")
    extra = {"alpha": checked("alpha", alpha)} if m.uses_alpha else {}
    extra |= {"teacher": teacher} if m.needs_teacher_model else {}
    panel = dict(kd_loss=kd_loss, temperature=temperature, dpo_beta=beta, gkd_beta=beta, gkd_lmbda=lmbda)
    panel |= dict(dpo_rationale=bool(dpo_rationale), rationale_source=rationale_source, label_source=label_source)
    extra |= {f: checked(f, panel[f]) if f in NUMBER_FIELDS else panel[f] for f in m.settings}
    check_tracker(report_to or "none")  # now, not once the run has started: the message names the package
    if lora:
        extra |= {"lora": True, "lora_r": checked("lora_r", lora_r)}
    try:
        return TrainConfig(
            data=absolute_source(dataset),
            out=str(out),
            student=student,
            method=method,
            max_steps=checked("max_steps", max_steps),
            batch_size=checked("batch_size", batch_size),
            lr=checked("lr", lr),
            seed=checked("seed", seed),
            eval_every=checked("eval_every", eval_every),
            eval_size=checked("eval_size", eval_size),
            report_to=report_to or "none",
            **extra,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from exc
