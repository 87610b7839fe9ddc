"""The two methods that TRL's trainers train rather than kdviz's loop: `dpo` (DPOTrainer) and `gkd` (GKDTrainer).

The only importer of trl. Around the trainer, a run is what every kdviz run is (`kdviz.distill.loop`): its folder
and config.yaml, a metrics.jsonl row and status.json update per step, kdviz's held-out evaluation at the same
points, cancel, resume, tracking (`--report-to`), and a checkpoint/ in kdviz's format that Compare loads.

- dpo: DPO on preference pairs (`kdviz.distill.trl_data`): the teacher's (or gold) answer over the untrained
  student's own wrong answer or a wrong choice, relative to the untrained student (the reference model).
- gkd: on a share λ of steps the student generates its own answer, and the generalised JSD (interpolation β) pulls
  its token distributions towards the teacher's on it; on the others, on the teacher's (or gold) answer. Teacher
  and student must share a vocabulary.

TRL 1.16's trainers take decoder-only models (its DPO dropped encoder-decoder support, GKD runs causal LMs), so an
encoder-decoder student gets an InputError. Each step logs one loss, DPO's or GKD's, as the answer loss. Resuming
uses the Trainer's own checkpoints (weights, optimizer, scheduler, random state, data position) in
<run>/resume/checkpoint-<step>/, beside the point.json that `checkpoints.resume_step` reads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from transformers import TrainerCallback

from kdviz.config import ModelSpec, TrainConfig
from kdviz.errors import InputError, KdvizError, ResourceError, is_out_of_memory
from kdviz.lm.models import LoadedModel, load_model, load_trainable, select_device
from kdviz.records import TrainExample

from .checkpoints import _POINT, RESUME, ResumePoint, discard_resume_point, save_model
from .data import train_examples, usable
from .evaluation import accuracy, is_correct, predict_answers
from .methods import Method, get_method
from .metrics import EvalRow, FinalMetrics, MetricsRow, Sample, StepRow, TrainResult, final_of
from .pairs import split_train_eval
from .runs import (
    create_run,
    log_row,
    log_samples,
    out_of_memory_message,
    reopen_run,
    run_config_yaml,
    trim_logs,
    write_status,
)
from .tracking import Tracking, check_tracker, start_tracking
from .trl_data import check_gkd_teacher, dpo_rows, gkd_rows, preference_pairs

TRL_VERSION = "1.16.0"  # pinned in pyproject.toml: the version these trainers' arguments are written for


def _import_trl():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trl.experimental (GKD) warns that its API may change
            import trl
            from trl.experimental import gkd
    except ImportError as exc:
        raise InputError(f"dpo and gkd train through TRL: pip install trl=={TRL_VERSION} (Python 3.11+)") from exc
    return trl, gkd


class _Cancelled(Exception):
    """Cancel asked before the first step: nothing to train."""


class _RunCallback(TrainerCallback):
    """kdviz's side of a TRL run, called by the Trainer: rows, status, evaluation, tracking, cancel."""

    def __init__(self, run: _Run):
        self.run = run

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        run = self.run
        run.first, run.train_started = state.global_step, time.time()
        if state.global_step == 0 and not run.evaluated:
            run.evaluate(model, args, 0)  # step 0: where the student starts
        if run.should_stop is not None and run.should_stop():
            raise _Cancelled

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not logs or "loss" not in logs:  # the end-of-training summary ("train_loss") is not a step
            return
        run, step, config = self.run, state.global_step, self.run.config
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            raise KdvizError(f"the loss became {loss} (diverged): lower the learning rate ({config.lr})")
        run.trained = step
        per_step = (time.time() - run.train_started) / max(1, step - run.first)
        row = StepRow(
            step=step, loss_answer=round(loss, 6), loss=round(loss, 6), lr=float(logs["learning_rate"]),
            elapsed_s=round(time.time() - run.started, 3), eta_s=round(per_step * (config.max_steps - step), 1),
            samples_per_s=round(config.batch_size * args.world_size / per_step, 3),
        )  # fmt: skip
        run.final = run.final.after_step(row)
        extra = {k: v for k, v in logs.items() if k not in ("loss", "learning_rate", "epoch")}
        run.log(row, {k: v for k, v in extra.items() if isinstance(v, int | float)})
        run.status(step=step, elapsed_s=time.time() - run.started, final=run.final)
        if (config.eval_every and step % config.eval_every == 0) or step == config.max_steps:
            run.evaluate(model, args, step)
        if step < config.max_steps and run.should_stop is not None and run.should_stop():
            run.state = "cancelled"
            control.should_training_stop = True
            control.should_save = True  # a resume point exactly where the cancel stopped

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # `checkpoints.resume_step` reads the step from here
            point = ResumePoint(state.global_step, time.time() - self.run.started)
            (self.run.folder / RESUME / _POINT).write_text(json.dumps(point.to_dict()), encoding="utf-8")


@dataclass(eq=False)
class _Run:
    """The state of one TRL run that kdviz keeps: where it writes, what it has logged, how it ends."""

    config: TrainConfig
    method: Method
    folder: Path
    main: bool
    started: float
    on_metrics: Callable[[MetricsRow], None]
    should_stop: Callable[[], bool] | None
    held_out: Sequence[TrainExample] = ()
    student: LoadedModel | None = None
    tracking: Tracking | None = None
    final: FinalMetrics = FinalMetrics()
    trained: int = 0  # optimizer steps finished
    first: int = 0  # the step training (re)started from
    train_started: float = 0.0
    evaluated: bool = False  # an evaluation is logged (step 0 is not repeated on resume)
    state: Literal["completed", "cancelled"] = "completed"

    def status(self, **changes: Any) -> None:
        if self.main:
            write_status(self.folder, **changes)

    def log(self, row: MetricsRow, extra: dict[str, float] | None = None) -> None:
        if self.main:
            log_row(self.folder, row)
            if self.tracking is not None:
                self.tracking.log(row, extra)
            self.on_metrics(row)

    def evaluate(self, model, args, step: int) -> None:
        """Logs kdviz's evaluation of the model being trained on the held-out examples (as the loop does)."""
        if not self.main:
            return
        model.eval()
        try:
            bf16 = torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=bool(args.bf16))
            with torch.no_grad(), bf16:
                student = replace(self.student, model=model, device=str(args.device))
                predicted = predict_answers(student, self.held_out, self.method, predict=self.config.predict)
        finally:
            model.train()
        samples = tuple(
            Sample(t.example.id, t.example.question, t.example.answer, p, is_correct(p, t.example.answer))
            for t, p in zip(self.held_out[: self.config.n_samples], predicted, strict=False)
        )
        acc = accuracy(predicted, self.held_out)
        self.final, self.evaluated = replace(self.final, eval_accuracy=acc), True
        log_samples(self.folder, step, samples)
        elapsed = round(time.time() - self.started, 3)
        self.log(EvalRow(step=step, eval_accuracy=acc, eval_n=len(self.held_out), elapsed_s=elapsed, samples=samples))


def _arguments(config: TrainConfig, folder: Path, device: str) -> dict[str, Any]:
    """Returns the TrainingArguments both trainers share, set as kdviz's loop trains."""
    return dict(
        output_dir=str(folder / RESUME),  # only the Trainer's resume checkpoints go there
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        seed=config.seed,
        logging_steps=1,
        save_strategy="steps" if config.save_every else "no",
        save_steps=config.save_every or 1,
        save_total_limit=1,
        eval_strategy="no",  # kdviz evaluates (`_Run.evaluate`)
        report_to="none",  # kdviz tracks (`kdviz.distill.tracking`), the same names as its own loop
        bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported(),
        use_cpu=device == "cpu",
        gradient_checkpointing=False,
        disable_tqdm=True,
        max_length=config.max_length,
    )


def _lora(config: TrainConfig):
    if not config.lora:
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05, target_modules="all-linear",
                      task_type=TaskType.CAUSAL_LM)  # fmt: skip


@contextlib.contextmanager
def _no_progress_bars():
    """Silences the progress bars of TRL's dataset preparation (kdviz reports progress through its rows)."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    shown = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            enable_progress_bar()


def _dpo_trainer(run: _Run, student: LoadedModel, train: Sequence[TrainExample], arguments: dict, common: dict):
    trl, _ = _import_trl()
    pairs = preference_pairs(student, train, run.method, run.config)
    if not pairs:
        raise InputError("dpo found no preference pairs: it needs choices, or answers the student gets wrong")
    reference = None if run.config.lora else copy.deepcopy(student.model)  # with LoRA, the base model is it
    args = trl.DPOConfig(**arguments, beta=run.config.dpo_beta)
    data = Dataset.from_list(dpo_rows(student, pairs))
    return trl.DPOTrainer(student.model, reference, args=args, train_dataset=data, **common), len(pairs), None


def _gkd_trainer(run: _Run, student: LoadedModel, train: Sequence[TrainExample], arguments: dict, common: dict):
    _, gkd = _import_trl()
    config = run.config
    teacher = load_model(ModelSpec(config.teacher, device=config.device))  # device auto: the app's cached teacher
    check_gkd_teacher(student, teacher)
    rows, truncated = gkd_rows(student, train, run.method, config.max_length)
    answer_tokens = max(sum(r["completion_mask"]) for r in rows)  # the student's own answers: as long as these
    args = gkd.GKDConfig(**arguments, beta=config.gkd_beta, lmbda=config.gkd_lmbda, max_new_tokens=answer_tokens)
    data = Dataset.from_list(rows)
    return gkd.GKDTrainer(student.model, teacher.model, args=args, train_dataset=data, **common), len(rows), truncated


TRAINERS = {"dpo": _dpo_trainer, "gkd": _gkd_trainer}  # method name -> (trainer, training rows, truncated prompts)


def _trainer(run: _Run, train: Sequence[TrainExample], device: str):
    """Returns (TRL trainer, training rows, truncated prompts) for the run's method; the student is loaded here."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    config, method = run.config, run.method
    student = load_trainable(ModelSpec(config.student, device="cpu"))
    if student.is_encoder_decoder:
        raise InputError(
            f"{method.name} trains decoder-only students (TRL's trainer); {config.student} is encoder-decoder: use "
            "standard, teacher_label, rationale_input, multitask or logit_kd"
        )
    student.model.to(device)
    student = run.student = replace(student, device=device)
    common = dict(processing_class=student.tokenizer, peft_config=_lora(config), callbacks=[_RunCallback(run)])
    with warnings.catch_warnings(), _no_progress_bars():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5.24 renames gradient_checkpointing
        trainer, n_rows, truncated = TRAINERS[method.name](
            run, student, train, _arguments(config, run.folder, device), common
        )
    for printer in (PrinterCallback, ProgressCallback):  # their lines would go to stdout, before the CLI's JSON
        trainer.remove_callback(printer)
    return trainer, n_rows, truncated


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    saved = folder / RESUME
    return get_last_checkpoint(str(saved)) if saved.is_dir() else None


@dataclass(frozen=True)
class _Saved:
    """What `checkpoints.save_model` reads of a run (the loop passes its `_Loop`)."""

    accelerator: Any
    model: Any
    config: TrainConfig
    method: Method
    student: LoadedModel
    folder: Path


def finetune_trl(
    config: TrainConfig,
    on_metrics: Callable[[MetricsRow], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Trains `config.student` with `config.method` ("dpo" or "gkd") through TRL; the same contract as
    `kdviz.distill.loop.finetune` (which calls this for them): run folder, rows, cancel, resume, errors."""
    method = get_method(config.method)
    check_tracker(config.report_to)
    _import_trl()
    if method.needs_teacher_model and not config.teacher:
        raise InputError(f"{method.name} needs a teacher model (--teacher)")
    items = [t for t in usable(train_examples(config), method) if method.target(t)]
    if config.dpo_rationale and method.name == "dpo" and not any(t.rationale for t in items):
        raise InputError("dpo_rationale needs the teacher's rationales: train on a Rationales export or build")
    train, held_out = split_train_eval(items, config.eval_size, config.seed)
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    set_seed(config.seed)
    main = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, only the first writes the run
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # a new run in the same process (the app) may change device
        AcceleratorState._reset_state(reset_partial_state=True)
    folder = Path(config.out)
    if main:
        folder = reopen_run(config.out) if resume else create_run(config.out, run_config_yaml(config))
    run = _Run(config, method, folder, main, time.time(), on_metrics or (lambda row: None), should_stop, held_out)
    try:
        fresh = {} if resume else {"step": 0, "started_at": run.started, "elapsed_s": 0.0}
        run.status(status="running", error=None, **fresh)
        checkpoint = _last_checkpoint(folder) if resume else None
        run.trained = int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0
        if checkpoint:
            point = json.loads((folder / RESUME / _POINT).read_text(encoding="utf-8"))
            run.started -= ResumePoint.from_dict(point).elapsed_s
        rows = trim_logs(folder, run.trained) if resume and main else []  # each step stays logged once
        run.final, run.evaluated = final_of(rows), any(isinstance(r, EvalRow) for r in rows)
        device = select_device(config.device)
        trainer, n_train, truncated = _trainer(run, train, device)
        run.tracking = start_tracking(config, folder, main)
        run.status(step=run.trained, elapsed_s=time.time() - run.started, n_train=n_train, n_eval=len(held_out),
                   truncated=truncated, device=str(trainer.args.device), teacher_at_test_time=method.teacher_at_test_time)  # fmt: skip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TRL 1.16 calls what transformers 5.24 renamed
                trainer.train(resume_from_checkpoint=checkpoint)
        except _Cancelled:
            run.state = "cancelled"
        if main:
            save_model(_Saved(trainer.accelerator, trainer.model, config, method, run.student, folder))
        run.status(status=run.state, step=run.trained, elapsed_s=time.time() - run.started, final=run.final)
        if main and run.state == "completed":
            discard_resume_point(folder)
    except BaseException as exc:
        message = str(exc)
        if is_out_of_memory(exc):
            message = out_of_memory_message(config)
        if run.trained == 0 and not resume:  # the setup failed (or the first step): no run to keep, free the name
            if main:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            run.status(status="failed" if not isinstance(exc, KeyboardInterrupt) else "cancelled", step=run.trained,
                       elapsed_s=time.time() - run.started, final=run.final, error=message)  # fmt: skip
        if is_out_of_memory(exc):
            raise ResourceError(message) from exc
        raise
    finally:
        if run.tracking is not None:
            run.tracking.close()
    elapsed = round(time.time() - run.started, 3)
    return TrainResult(str(folder), run.state, run.trained, elapsed, run.final, method.teacher_at_test_time)
