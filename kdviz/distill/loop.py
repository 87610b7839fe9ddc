"""Fine-tune a student with one of the distillation methods: the library face of the Train panel.

One loop for every method (see `METHODS`): it tokenises the method's (prompt, target) pairs once, masks the
prompt out of the loss, and steps AdamW through `accelerate` (bf16 and a fused optimizer on a GPU, plain fp32 on
a CPU; several GPUs under `accelerate launch -m kdviz train ...`). Each run writes `runs/<name>/` (see
`kdviz.distill.runs`): its config, a metrics log per step, sample predictions at each evaluation and a
safetensors checkpoint that `load_model("runs/<name>")` reads back. Every `save_every` steps it saves a point to
resume from (`kdviz.distill.checkpoints`): `finetune(config, resume=True)` continues a cancelled, failed or killed
run from there, as if it had never stopped. A run that fails before its first optimizer step (the student does not
load, the data does not encode, out of memory...) removes its folder, so the corrected command can use the same
name; one that has trained keeps it, marked failed. `--report-to` also sends the rows to a tracker
(`kdviz.distill.tracking`). `dpo` and `gkd` are trained by TRL's trainers instead (`kdviz.distill.trl_methods`),
around the same run folder, rows, evaluation and checkpoint.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from kdviz.config import ModelSpec, TrainConfig
from kdviz.errors import InputError, KdvizError, ResourceError, is_out_of_memory
from kdviz.lm.forward import make_batch, target_logits
from kdviz.lm.models import load_model, load_trainable, select_device
from kdviz.records import TrainExample

from . import losses
from .checkpoints import ResumePoint, discard_resume_point, restore, save_model, save_resume_point
from .data import train_examples, usable
from .evaluation import accuracy, is_correct, predict_answers
from .methods import METHODS, Method, get_method
from .metrics import EvalRow, FinalMetrics, MetricsRow, Sample, StepRow, TrainResult, final_of
from .pairs import check_same_vocabulary, encode_pairs, split_train_eval
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

__all__ = ["METHODS", "TrainResult", "finetune", "check_same_vocabulary", "split_train_eval"]

OnMetrics = Callable[[MetricsRow], None]


def _accelerator(device: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not distributed:  # a new run in the same process (the app) may pick another device or precision
        AcceleratorState._reset_state(reset_partial_state=True)
    resolved = select_device(device)
    bf16 = resolved.startswith("cuda") and torch.cuda.is_bf16_supported()
    return Accelerator(cpu=resolved == "cpu", mixed_precision="bf16" if bf16 else "no")


def _with_lora(model, config: TrainConfig, enc_dec: bool):
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type=TaskType.SEQ_2_SEQ_LM if enc_dec else TaskType.CAUSAL_LM,
    )
    return get_peft_model(model, lora)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Returns transformers' linear warm-up (from 0 at the first step) then linear decay to zero at max_steps."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)


class _Loop:
    """The state of one run: tokenised data, model, optimizer, teacher (logit_kd) and the run folder."""

    def __init__(self, config: TrainConfig, method: Method, train: list[TrainExample], folder: Path):
        self.config, self.method, self.train_items, self.folder = config, method, train, folder
        self.accelerator = _accelerator(config.device)
        student = load_trainable(ModelSpec(config.student, device="cpu"))
        model = student.model
        if config.lora:
            model = _with_lora(model, config, student.is_encoder_decoder)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        fused = self.accelerator.device.type == "cuda"
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
        self.scheduler = _scheduler(optimizer, config)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.student = replace(student, model=self.model, device=str(self.accelerator.device))
        self.teacher = None
        if method.needs_teacher_model:
            if not config.teacher:
                raise InputError("logit_kd needs a teacher model (--teacher)")
            self.teacher = load_model(config.teacher)
            check_same_vocabulary(self.student, self.teacher)
        pairs = [method.pairs(t) for t in train]
        self.items, self.truncated = {}, 0
        for task in method.tasks:
            self.items[task], cut = encode_pairs(self.student, [p[task] for p in pairs], config.max_length)
            self.truncated += cut
        if self.teacher is not None:
            t_items, _ = encode_pairs(self.teacher, [p["answer"] for p in pairs], config.max_length)
            # The teacher reads its own rendering of the prompt but scores the student's target tokens.
            self.teacher_items = [(tp, s[1]) for (tp, _), s in zip(t_items, self.items["answer"], strict=True)]
        self.generator = torch.Generator().manual_seed(config.seed)
        self.order: list[int] = []

    def next_batch(self) -> list[int]:
        """Returns this process's indices for the next step: seeded epochs, each a fresh permutation."""
        world = self.accelerator.num_processes
        need = self.config.batch_size * world
        while len(self.order) < need:
            self.order += torch.randperm(len(self.train_items), generator=self.generator).tolist()
        chosen, self.order = self.order[:need], self.order[need:]
        rank = self.accelerator.process_index
        return chosen[rank * self.config.batch_size : (rank + 1) * self.config.batch_size]

    def losses(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Returns the loss components and their weighted total ("loss") for one batch."""
        out: dict[str, torch.Tensor] = {}
        logits_by_task = {}
        for task, items in self.items.items():
            batch = make_batch(self.student, [items[i] for i in indices])
            with self.accelerator.autocast():
                logits, _ = target_logits(self.student, batch)
            out[f"loss_{task}"] = losses.masked_cross_entropy(logits, batch.target_ids, batch.target_mask)
            logits_by_task[task] = (logits, batch)
        total = out["loss_answer"]
        if "loss_rationale" in out:
            total = losses.mix(self.config.alpha, out["loss_answer"], out["loss_rationale"])
        if self.teacher is not None:
            logits, batch = logits_by_task["answer"]
            with torch.no_grad():
                t_batch = make_batch(self.teacher, [self.teacher_items[i] for i in indices])
                t_logits, _ = target_logits(self.teacher, t_batch)
            vocab = min(logits.shape[-1], t_logits.shape[-1])  # embedding rows past the tokenizer are never used
            out["loss_kd"] = losses.kd_divergence(
                self.config.kd_loss,
                logits[..., :vocab],
                t_logits[..., :vocab].to(logits.device),
                batch.target_mask,
                self.config.temperature,
            )
            total = losses.mix(self.config.alpha, out["loss_answer"], out["loss_kd"])
        out["loss"] = total
        return out

    def step(self, indices: list[int]) -> dict[str, float]:
        lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
        parts = self.losses(indices)
        self.accelerator.backward(parts["loss"])
        self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        # Under several processes each saw its own shard: log the mean over processes.
        row = {k: float(self.accelerator.reduce(v.detach(), "mean")) for k, v in parts.items()}
        if not all(math.isfinite(v) for v in row.values()):
            raise KdvizError(f"the loss became {row['loss']} (diverged): lower the learning rate ({self.config.lr})")
        return {**row, "lr": lr}

    def evaluate(self, items: Sequence[TrainExample]) -> tuple[float | None, tuple[Sample, ...]]:
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        try:
            with torch.no_grad(), self.accelerator.autocast():
                predicted = predict_answers(
                    replace(self.student, model=model), items, self.method, predict=self.config.predict
                )
        finally:
            model.train()
        samples = tuple(
            Sample(t.example.id, t.example.question, t.example.answer, p, is_correct(p, t.example.answer))
            for t, p in zip(items[: self.config.n_samples], predicted, strict=False)
        )
        return accuracy(predicted, items), samples


def finetune(
    config: TrainConfig,
    on_metrics: OnMetrics | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Trains `config.student` on `config.data` with `config.method`; writes the run folder `config.out`.

    `on_metrics` receives every row written to metrics.jsonl (a `StepRow` or an `EvalRow`); `should_stop` is
    polled before each step: when it returns True the run stops, keeps its checkpoint and is marked cancelled.
    `resume=True` continues the cancelled, failed or killed run in `config.out` (its own config: see
    `runs.read_config`) from its last resume point, or from the start when it saved none.

    Raises:
        InputError: bad data or config (nothing is created), or no run to resume.  KdvizError: out of memory or
        divergence. Any failure before the first optimizer step finished removes the run folder (a resumed one
        is kept), so the corrected command can reuse it; after that the partial run is kept and marked failed.
    """
    method = get_method(config.method)
    if method.via_trl:  # dpo and gkd: TRL's trainers, around the same run folder, logs and checkpoint
        from .trl_methods import finetune_trl

        return finetune_trl(config, on_metrics, should_stop, resume)
    check_tracker(config.report_to)
    items = usable(train_examples(config), method)
    train, held_out = split_train_eval(items, config.eval_size, config.seed)
    from accelerate.utils import set_seed

    set_seed(config.seed)
    # Under `accelerate launch` every process runs this function; only the first writes the run folder.
    main = int(os.environ.get("RANK", "0")) == 0
    if not main:
        folder = Path(config.out)
    else:
        folder = reopen_run(config.out) if resume else create_run(config.out, run_config_yaml(config))

    def status(**changes: Any) -> None:
        if main:
            write_status(folder, **changes)

    started = time.time()
    emit = on_metrics or (lambda row: None)
    trained, final = 0, FinalMetrics()  # `trained`: optimizer steps finished
    tracking: Tracking | None = None
    try:
        fresh = {} if resume else {"step": 0, "started_at": started, "elapsed_s": 0.0}  # resumed: keeps its start
        status(status="running", error=None, **fresh)
        loop = _Loop(config, method, train, folder)
        tracking = start_tracking(config, folder, main)
        point = restore(loop) if resume else None
        saved = trained = point.step if point else 0  # `saved`: the step of the last resume point
        started -= point.elapsed_s if point else 0.0
        rows = trim_logs(folder, trained) if resume and main else []  # each step stays logged once
        final = final_of(rows)
        status(
            step=trained,
            elapsed_s=time.time() - started,
            n_train=len(train),
            n_eval=len(held_out),
            truncated=loop.truncated,
            device=str(loop.accelerator.device),
            teacher_at_test_time=method.teacher_at_test_time,
        )

        def log(row: MetricsRow) -> None:
            if main:
                log_row(folder, row)
                tracking.log(row)
                emit(row)

        def evaluate() -> None:
            nonlocal final
            if not main:
                return
            acc, samples = loop.evaluate(held_out)
            final = replace(final, eval_accuracy=acc)
            log_samples(folder, trained, samples)
            elapsed = round(time.time() - started, 3)
            log(EvalRow(step=trained, eval_accuracy=acc, eval_n=len(held_out), elapsed_s=elapsed, samples=samples))

        if trained == 0 and not any(isinstance(r, EvalRow) for r in rows):
            evaluate()  # step 0: where the student starts
        train_started, first = time.time(), trained
        state: Literal["completed", "cancelled"] = "completed"
        for step in range(first + 1, config.max_steps + 1):
            if should_stop is not None and should_stop():
                state = "cancelled"
                break
            parts = loop.step(loop.next_batch())
            trained = step
            per_step = (time.time() - train_started) / (step - first)
            row = StepRow(
                step=step,
                **{k: round(v, 6) for k, v in parts.items() if k != "lr"},
                lr=parts["lr"],
                elapsed_s=round(time.time() - started, 3),
                eta_s=round(per_step * (config.max_steps - step), 1),
                samples_per_s=round(config.batch_size * loop.accelerator.num_processes / per_step, 3),
            )
            final = final.after_step(row)
            log(row)
            status(step=step, elapsed_s=time.time() - started, final=final)
            if (config.eval_every and step % config.eval_every == 0) or step == config.max_steps:
                evaluate()
            if main and config.save_every and step % config.save_every == 0 and step < config.max_steps:
                save_resume_point(loop, ResumePoint(step, time.time() - started, tuple(loop.order)))
                saved = step
        loop.accelerator.wait_for_everyone()
        if main:
            if state == "cancelled" and trained > saved:  # resume exactly where the cancel stopped
                save_resume_point(loop, ResumePoint(trained, time.time() - started, tuple(loop.order)))
            save_model(loop)  # last: with LoRA it merges the adapters into the model
        status(status=state, step=trained, elapsed_s=time.time() - started, final=final)
        if main and state == "completed":
            discard_resume_point(folder)
    except BaseException as exc:
        message = str(exc)
        if is_out_of_memory(exc):
            message = out_of_memory_message(config)
        if trained == 0 and not resume:  # the setup failed (or the first step): no run to keep, free the name
            if main:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            status(
                status="failed" if not isinstance(exc, KeyboardInterrupt) else "cancelled",
                step=trained,
                elapsed_s=time.time() - started,
                final=final,
                error=message,
            )
        if is_out_of_memory(exc):
            raise ResourceError(message) from exc
        raise
    finally:
        if tracking is not None:
            tracking.close()
    elapsed = round(time.time() - started, 3)
    return TrainResult(str(folder), state, trained, elapsed, final, method.teacher_at_test_time)
