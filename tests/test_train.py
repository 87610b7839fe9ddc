"""Student fine-tuning: every method on both model kinds, run folders, cancel, reproducibility, clear errors."""

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import subprocess
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from yaml import safe_load as yaml_load

from kdviz import InputError, KdvizError, load_model
from kdviz.cli.main import build_parser, main
from kdviz.cli.train import _config as cli_config
from kdviz.config import TrainConfig
from kdviz.data import demo_path, load_examples
from kdviz.distill.data import load_train_examples, train_examples, usable
from kdviz.distill.evaluation import accuracy, normalize_answer, predict_answers
from kdviz.distill.loop import _scheduler, finetune
from kdviz.distill.losses import masked_cross_entropy
from kdviz.distill.methods import METHODS, get_method
from kdviz.distill.metrics import EvalRow, FinalMetrics, Sample, StepRow, TrainResult
from kdviz.distill.pairs import check_same_vocabulary, encode_pairs, split_train_eval
from kdviz.distill.runs import (
    RunInfo,
    RunStatus,
    list_runs,
    log_row,
    log_samples,
    read_rows,
    read_samples,
    read_status,
    rerun_command,
    train_command,
    write_status,
)
from kdviz.lm.forward import make_batch, target_logits
from kdviz.lm.tiny import build_tiny
from kdviz.rationales.build import build_rationales
from kdviz.records import save_jsonl

from .conftest import CQA_TRAIN

STUDENTS = ["tiny-student", "tiny-t5"]


def _config(export, out, **kw) -> TrainConfig:
    base = dict(data=str(export), out=str(out), student="tiny-student", teacher="tiny", max_steps=3, batch_size=4,
                eval_every=2, eval_size=8)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("student", STUDENTS)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_both_model_kinds_and_the_checkpoint_reloads(rationale_export, tmp_path, method, student):
    if METHODS[method].via_trl and student == "tiny-t5":
        pytest.skip("TRL's DPO and GKD trainers take decoder-only students (tests/test_trl_methods.py)")
    rows = []
    result = finetune(_config(rationale_export, tmp_path / "run", student=student, method=method), rows.append)
    assert result.status == "completed" and result.steps == 3
    assert read_rows(result.run_dir) == rows  # what on_metrics received is what metrics.jsonl holds
    steps = [r for r in rows if isinstance(r, StepRow)]
    assert [r.step for r in steps] == [1, 2, 3]
    expected = {"loss", "loss_answer"} | {"multitask": {"loss_rationale"}, "logit_kd": {"loss_kd"}}.get(method, set())
    first_line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1])
    assert first_line["kind"] == "step" and {k for k in first_line if k.startswith("loss")} == expected
    assert {"loss", *(f"loss_{p}" for p in steps[0].parts)} == expected
    assert all(math.isfinite(v) for r in steps for v in (r.loss, *r.parts.values()))
    evals = [r for r in rows if isinstance(r, EvalRow)]
    assert [r.step for r in evals] == [0, 2, 3] and evals[-1].samples
    assert read_samples(result.run_dir) == [(r.step, s) for r in evals for s in r.samples]
    assert result.final.loss == steps[-1].loss and result.final.eval_accuracy == evals[-1].eval_accuracy

    trained = load_file(str(tmp_path / "run" / "checkpoint" / "model.safetensors"))
    initial = build_tiny(student)[0].state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in trained if k in initial)

    reloaded = load_model(str(tmp_path / "run"))
    assert reloaded.is_encoder_decoder == (student == "tiny-t5")
    items = load_train_examples(rationale_export)[:3]
    answers = predict_answers(reloaded, items, get_method(method))
    assert all(a in item.example.choices for a, item in zip(answers, items, strict=True))
    assert result.teacher_at_test_time == (method == "rationale_input")
    assert json.loads((tmp_path / "run" / "checkpoint" / "kdviz.json").read_text())["method"] == method


def test_lora_trains_adapters_and_saves_a_merged_plain_model(rationale_export, tmp_path):
    result = finetune(_config(rationale_export, tmp_path / "lora", lora=True, lora_r=4, method="multitask"))
    assert result.status == "completed"
    trained = load_file(str(tmp_path / "lora" / "checkpoint" / "model.safetensors"))
    assert not any("lora" in k for k in trained)  # merged: loads without peft
    initial = build_tiny("tiny-student")[0].state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in trained if k in initial)
    assert type(load_model(str(tmp_path / "lora")).model).__name__ == "LlamaForCausalLM"


@pytest.mark.parametrize("student", STUDENTS)
def test_the_loss_is_the_answer_tokens_likelihood_with_the_prompt_masked(rationale_export, student):
    loaded = load_model(student)
    item = load_train_examples(rationale_export)[0]
    items, _ = encode_pairs(loaded, [get_method("standard").pairs(item)["answer"]], max_length=256)
    prompt, target = items[0]
    assert target[-1] == loaded.tokenizer.eos_token_id
    batch = make_batch(loaded, items)
    with torch.no_grad():
        ours = masked_cross_entropy(target_logits(loaded, batch)[0], batch.target_ids, batch.target_mask)
        if loaded.is_encoder_decoder:
            hf = loaded.model(input_ids=batch.input_ids, labels=batch.target_ids).loss
        else:  # transformers' convention: label -100 is ignored, so the prompt does not count
            labels = torch.tensor([[-100] * len(prompt) + list(target)])
            hf = loaded.model(input_ids=batch.input_ids, labels=labels).loss
    assert ours.item() == pytest.approx(hf.item(), rel=1e-5)


def test_long_prompts_keep_their_end_within_max_length(tiny):
    items, truncated = encode_pairs(tiny, [("word " * 300 + "Answer:", "yes")], max_length=64)
    prompt, target = items[0]
    assert truncated == 1 and len(prompt) + len(target) == 64
    assert tiny.tokenizer.decode(prompt).endswith("<|assistant|>\n")  # the answer cue survives


def test_cancel_keeps_the_partial_run_marked_cancelled(rationale_export, tmp_path):
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 2

    result = finetune(_config(rationale_export, tmp_path / "c", max_steps=50, eval_every=0), should_stop=should_stop)
    assert (result.status, result.steps) == ("cancelled", 2)
    assert read_status(tmp_path / "c").status == "cancelled"
    assert (tmp_path / "c" / "checkpoint" / "model.safetensors").exists()
    info = list_runs(tmp_path)[0]
    assert (info.status, info.step, info.has_checkpoint) == ("cancelled", 2, True)


def test_runs_are_reproducible_from_config_yaml(rationale_export, tmp_path, capsys):
    args = ["train", "--student", "tiny-student", "--data", str(rationale_export), "--method", "multitask",
            "--max-steps", "3", "--batch-size", "4", "--eval-size", "8", "--out", str(tmp_path / "a")]  # fmt: skip
    assert main(args) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["status"] == "completed" and final["steps"] == 3 and "loss_rationale" in final["final"]
    config = TrainConfig.from_yaml((tmp_path / "a" / "config.yaml").read_text())
    assert TrainConfig.from_yaml(config.to_yaml()) == config
    assert main(["train", "--config", str(tmp_path / "a" / "config.yaml")]) == 2  # the folder holds a run
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b")]) == 0

    def losses(run):
        return [(r.loss, r.parts) for r in read_rows(run) if isinstance(r, StepRow)]

    assert len(losses(tmp_path / "a")) == 3 and losses(tmp_path / "a") == losses(tmp_path / "b")


def test_logit_kd_checks_the_vocabulary_up_front(rationale_export, tmp_path):
    student, teacher = load_model("tiny-student"), load_model("tiny")
    check_same_vocabulary(student, teacher)  # the tiny models share one tokenizer
    other = SimpleNamespace(name="other", tokenizer=SimpleNamespace(get_vocab=lambda: {"a": 0, "b": 1}))
    with pytest.raises(InputError, match="share a vocabulary"):
        check_same_vocabulary(student, other)
    with pytest.raises(InputError, match="needs a teacher"):
        finetune(_config(rationale_export, tmp_path / "kd", method="logit_kd", teacher=None))
    assert not (tmp_path / "kd").exists()  # a setup error leaves no half-made run behind


def test_plain_data_trains_the_standard_method(tmp_path):
    result = finetune(TrainConfig(data=str(demo_path()), out=str(tmp_path / "s"), student="tiny-student",
                                  max_steps=2, eval_size=4))  # fmt: skip
    assert result.status == "completed"  # standard needs only gold answers


def test_an_existing_run_is_never_overwritten(rationale_export, tmp_path):
    finetune(_config(rationale_export, tmp_path / "r", max_steps=1))
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(InputError, match="already holds a run"):
        finetune(_config(rationale_export, tmp_path / "r", max_steps=1))
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before


def test_a_folder_with_other_files_is_refused_and_left_as_it_was(rationale_export, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an empty folder"):
        finetune(_config(rationale_export, tmp_path / "mine", max_steps=1))
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # a failed setup deletes nothing of it
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_out_of_memory_becomes_a_smaller_batch_message_and_keeps_a_run_that_trained(
    rationale_export, tmp_path, monkeypatch
):
    import kdviz.distill.loop as train_module

    real_step, calls = train_module._Loop.step, []

    def oom_at_step_2(self, indices):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, indices)

    monkeypatch.setattr(train_module._Loop, "step", oom_at_step_2)
    with pytest.raises(KdvizError, match="try batch size 2"):
        finetune(_config(rationale_export, tmp_path / "o"))
    status = read_status(tmp_path / "o")
    assert (status.status, status.step) == ("failed", 1) and "out of memory" in status.error
    rows = read_rows(tmp_path / "o")  # what was logged before the failure stays
    assert [(type(r), r.step) for r in rows] == [(EvalRow, 0), (StepRow, 1)]
    assert status.final.loss == rows[1].loss


def test_a_failure_before_the_first_step_removes_the_run_so_the_corrected_command_runs(
    rationale_export, tmp_path, monkeypatch
):
    import kdviz.distill.loop as train_module

    with pytest.raises(KdvizError, match="could not load model"):
        finetune(_config(rationale_export, tmp_path / "r", student=str(tmp_path / "no-such-student")))
    assert not (tmp_path / "r").exists()

    def oom(self, indices):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:  # out of memory at the first step: nothing trained, nothing kept
        patch.setattr(train_module._Loop, "step", oom)
        with pytest.raises(KdvizError, match="try batch size 2"):
            finetune(_config(rationale_export, tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    assert finetune(_config(rationale_export, tmp_path / "r", max_steps=1)).status == "completed"


def test_the_learning_rate_warms_up_then_decays_linearly_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    scheduler = _scheduler(optimizer, TrainConfig(data="d", out="o", lr=1e-3, warmup_steps=2, max_steps=6))
    rates = []
    for _ in range(6):
        rates.append(scheduler.get_last_lr()[0])  # the rate the step uses, as the loop logs it
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4])
    no_warmup = _scheduler(torch.optim.AdamW([param], lr=1e-3), TrainConfig(data="d", out="o", lr=1e-3, max_steps=4))
    assert no_warmup.get_last_lr() == pytest.approx([1e-3])


def test_training_data_from_every_kdviz_output(rationale_export, tmp_path):
    from_folder = load_train_examples(rationale_export)
    assert len(from_folder) == 40 and all(t.rationale and t.teacher_answer for t in from_folder)
    assert load_train_examples(rationale_export / "rationales.parquet") == from_folder
    plain = load_train_examples(demo_path())
    # the same examples; an export keeps the build's teacher outputs, not the dataset's (`kdviz.records.DATA_EXTRAS`)
    assert [t.example.task_dict() for t in plain] == [t.example.task_dict() for t in from_folder]
    # The demo set, like the CommonsenseQA file, carries a teacher's chain of thought: a rationale source too.
    assert plain[0].rationale.startswith(("The answer", "A ", "The "))
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "q?", "choices": ["a", "b"], "answer": "a"}) + "\n")
    with pytest.raises(InputError, match="Rationales panel"):
        finetune(TrainConfig(data=str(questions), out=str(tmp_path / "m"), student="tiny-student", method="multitask"))
    assert not (tmp_path / "m").exists()
    with pytest.raises(InputError, match="no rationale export"):
        load_train_examples(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        load_train_examples(tmp_path / "bad.jsonl")


def test_student_prompts_per_method(rationale_export):
    item = load_train_examples(rationale_export)[0]
    plain = get_method("standard").prompt(item)
    assert get_method("rationale_input").prompt(item).endswith(f"\nRationale: {item.rationale}\nAnswer:")
    assert get_method("multitask").prompt(item) == "[label] " + plain
    pairs = get_method("multitask").pairs(item)
    assert pairs["rationale"] == ("[rationale] " + plain, item.rationale)
    assert get_method("teacher_label").pairs(item)["answer"][1] == item.teacher_answer


def test_split_and_answer_normalisation(rationale_export):
    items = load_train_examples(rationale_export)
    train, held = split_train_eval(items, eval_size=8, seed=3)
    assert len(held) == 8 and len(train) == 32 and not {t.example.id for t in held} & {t.example.id for t in train}
    assert split_train_eval(items, 8, 3) == (train, held)
    # The held-out examples of a seed are those runs have always used: the first 8 of torch's seeded permutation.
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3)).tolist()
    assert [t.example.id for t in held] == [items[i].example.id for i in sorted(order[:8])]
    assert len(split_train_eval(items[:6], eval_size=50, seed=0)[1]) == 3  # at most half the data
    assert normalize_answer("The  Refrigerator!") == "refrigerator"
    assert accuracy([held[0].example.answer, "nonsense"], held[:2]) == 0.5
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(data="d", out="o", alpha=2.0)
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_yaml("data: d\nout: o\nlearning_rate: 1\n")


@pytest.mark.parametrize(
    "line, message",
    [
        ("max_steps: ten", "max_steps must be a whole number, not 'ten'"),
        ("max_steps: 2.5", "max_steps must be a whole number, not 2.5"),
        ("lr: fast", "lr must be a number, not 'fast'"),
        ("lora: maybe", "lora must be true or false, not 'maybe'"),
        ("kd_loss: reverse", "kd_loss must be kl or jsd, not 'reverse'"),
        ("teacher: [a, b]", "teacher must be text, not ['a', 'b']"),
        ("max_steps: [", "must be valid YAML"),
    ],
)
def test_a_config_of_the_wrong_type_is_an_input_error_naming_the_field(tmp_path, capsys, line, message):
    with pytest.raises(InputError, match=re.escape(message)):
        TrainConfig.from_yaml(f"data: d\nout: o\n{line}\n")
    (tmp_path / "c.yaml").write_text(f"data: d\nout: {tmp_path / 'o'}\n{line}\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_data_parallel_training_with_two_processes(rationale_export, tmp_path):
    """The launch path of `accelerate launch`/`torchrun` on several devices, here two CPU processes (gloo)."""
    import shutil
    import subprocess

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    out = tmp_path / "ddp"
    args = [torchrun, "--nproc_per_node", "2", "-m", "kdviz", "train", "--student", "tiny-student", "--data",
            str(rationale_export), "--max-steps", "2", "--eval-size", "8", "--batch-size", "2", "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and results[0]["status"] == "completed"  # one result line, from the first process
    steps = [r for r in read_rows(out) if isinstance(r, StepRow)]
    assert [r.step for r in steps] == [1, 2] and steps[0].samples_per_s > 0
    assert (out / "checkpoint" / "model.safetensors").exists()


def _records():
    sample = Sample("q1", "Where is milk kept?", "fridge", "oven", False)
    step = StepRow(step=1, loss_answer=1.25, loss_kd=0.5, loss=0.875, lr=1e-4, elapsed_s=2.5, eta_s=3.0,
                   samples_per_s=4.0)  # fmt: skip
    evaluation = EvalRow(step=2, eval_accuracy=0.5, eval_n=8, elapsed_s=3.0, samples=(sample,))
    final = FinalMetrics().after_step(step)
    return sample, step, evaluation, final


def test_metrics_rows_and_samples_round_trip_through_the_run_folder(tmp_path):
    sample, step, evaluation, _ = _records()
    unjudged = EvalRow(
        step=0, eval_accuracy=None, eval_n=8, elapsed_s=1.0, samples=(Sample("q2", "?", None, "", None),)
    )
    for row in (unjudged, step, evaluation):
        log_row(tmp_path, row)
        if isinstance(row, EvalRow):
            log_samples(tmp_path, row.step, row.samples)
    assert read_rows(tmp_path) == [unjudged, step, evaluation]
    assert read_samples(tmp_path) == [(0, unjudged.samples[0]), (2, sample)]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[1] == {"kind": "step", "step": 1, "loss_answer": 1.25, "loss_kd": 0.5, "loss": 0.875, "lr": 1e-4,
                        "elapsed_s": 2.5, "eta_s": 3.0, "samples_per_s": 4.0}  # fmt: skip
    assert lines[2]["kind"] == "eval" and lines[2]["samples"] == [sample.to_dict()]
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind": "step", "step": 3, "lo')  # a line a crash cut short is skipped
    assert len(read_rows(tmp_path)) == 3
    assert step.parts == {"answer": 1.25, "kd": 0.5}


def test_results_status_and_run_info_round_trip(tmp_path):
    _, step, _, final = _records()
    assert final.to_dict() == {"loss": 0.875, "loss_answer": 1.25, "loss_kd": 0.5}  # parts not logged are absent
    result = TrainResult(str(tmp_path), "completed", 3, 1.5, final, True)
    assert TrainResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    info = RunInfo("r", str(tmp_path), "failed", "logit_kd", "tiny", 1, 3, 2.0, final, "boom", False)
    assert RunInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert read_status(tmp_path) is None
    first = write_status(tmp_path, status="running", started_at=1.0)
    written = write_status(tmp_path, step=1, final=final, n_train=32, device="cpu")
    assert (written.status, written.started_at, written.step, written.pid) == ("running", 1.0, 1, os.getpid())
    assert read_status(tmp_path) == written and written.updated_at >= first.updated_at
    assert RunStatus.from_dict({"status": "failed"}).final == FinalMetrics()  # a status file from another writer


def test_train_config_round_trips_through_yaml_and_the_equivalent_command(tmp_path):
    config = TrainConfig(data="d.jsonl", out=str(tmp_path / "run"), method="logit_kd", teacher="tiny", lr=3e-4,
                         kd_loss="jsd", lora=True, limit=10, alpha=1)  # fmt: skip
    assert isinstance(config.alpha, float) and TrainConfig.from_yaml(config.to_yaml()) == config
    command = train_command(config)
    assert command == (
        f"kdviz train --data d.jsonl --out {tmp_path / 'run'} --student embedded-student --method logit_kd "
        "--teacher tiny --lr 0.0003 --limit 10 --alpha 1.0 --kd-loss jsd --lora"
    )
    assert cli_config(build_parser().parse_args(command.split()[1:])) == config
    assert rerun_command(tmp_path / "run") == (
        f"kdviz train --config {tmp_path / 'run' / 'config.yaml'} --out {tmp_path / 'run'}-rerun"
    )


def test_the_cli_puts_a_named_run_in_the_workspace_and_every_flag_shows_its_default(tmp_path, monkeypatch, capsys):
    parse = build_parser().parse_args
    base = ["train", "--data", "d.jsonl"]
    named = cli_config(parse([*base, "--workspace", str(tmp_path / "ws"), "--name", "mine"]))
    assert named.out == str(tmp_path / "ws" / "runs" / "mine")
    auto = cli_config(parse([*base, "--workspace", str(tmp_path / "ws"), "--student", "tiny-student"]))
    assert auto.out == str(tmp_path / "ws" / "runs" / "standard-tiny-student-1")
    monkeypatch.setenv("KDVIZ_WORKSPACE", str(tmp_path / "env"))
    assert cli_config(parse([*base, "--name", "n1"])).out == str(tmp_path / "env" / "runs" / "n1")
    with pytest.raises(InputError, match="not both"):
        cli_config(parse([*base, "--name", "n1", "--out", "o"]))
    with pytest.raises(InputError, match="not a valid name"):
        cli_config(parse([*base, "--name", "../up"]))
    assert main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        shown = "(required unless" if f.default is dataclasses.MISSING else f"(default {f.default})"
        assert flag in help_text and f"{f.metadata['help']} {shown.replace('None', 'none')}" in help_text, flag


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def _steps(run) -> list[tuple[str, int, float | None]]:
    """Each metrics row's kind, step and loss (or accuracy): what a resumed run must log exactly as a whole one."""
    return [
        ("step", r.step, r.loss) if isinstance(r, StepRow) else ("eval", r.step, r.eval_accuracy)
        for r in read_rows(run)
    ]


@pytest.mark.parametrize("lora", [False, True])
def test_a_cancelled_run_resumes_to_what_an_uninterrupted_run_gives(rationale_export, tmp_path, lora):
    settings = dict(max_steps=6, save_every=4, eval_every=2, lora=lora, lr=1e-3)
    whole = finetune(_config(rationale_export, tmp_path / "whole", **settings))
    assert not (tmp_path / "whole" / "resume").exists()  # a completed run drops its resume point
    polls = []
    config = _config(rationale_export, tmp_path / "cut", **settings)
    cut = finetune(config, should_stop=lambda: polls.append(1) or len(polls) > 3)  # cancelled after step 3
    assert (cut.status, cut.steps, read_status(tmp_path / "cut").status) == ("cancelled", 3, "cancelled")
    assert (tmp_path / "cut" / "resume" / "point.json").exists()
    rows = []
    resumed = finetune(config, on_metrics=rows.append, resume=True)
    assert (resumed.status, resumed.steps) == ("completed", 6)
    assert [r.step for r in rows] == [4, 4, 5, 6, 6]  # steps 4-6 and their evaluations, nothing before again
    assert _steps(tmp_path / "cut") == _steps(tmp_path / "whole")  # each step once, with the same losses
    assert resumed.final == whole.final and read_status(tmp_path / "cut").status == "completed"
    cut_weights, whole_weights = _weights(tmp_path / "cut"), _weights(tmp_path / "whole")
    assert all(torch.equal(cut_weights[k], whole_weights[k]) for k in whole_weights)
    assert not (tmp_path / "cut" / "resume").exists()
    with pytest.raises(InputError, match="nothing to resume"):
        finetune(config, resume=True)


def test_a_failure_while_saving_keeps_the_last_resume_point_and_the_run_resumes(
    rationale_export, tmp_path, monkeypatch
):
    import kdviz.distill.checkpoints as checkpoints

    real_save, saves = torch.save, []

    def fail_on_second_save(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:  # half of resume/ written when the process "dies"
            raise KeyboardInterrupt
        return real_save(obj, path, *args, **kwargs)

    config = _config(rationale_export, tmp_path / "r", max_steps=7, save_every=2, eval_every=0)
    monkeypatch.setattr(checkpoints.torch, "save", fail_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        finetune(config)
    monkeypatch.undo()
    assert read_status(tmp_path / "r").step == 4
    saved = [p.name for p in (tmp_path / "r").iterdir() if "resume" in p.name]
    assert saved == ["resume"]  # the half-written one is gone, the one of step 2 is whole
    assert json.loads((tmp_path / "r" / "resume" / "point.json").read_text())["step"] == 2
    result = finetune(config, resume=True)
    assert (result.status, result.steps) == ("completed", 7)
    assert [s for kind, s, _ in _steps(tmp_path / "r") if kind == "step"] == list(range(1, 8))
    assert [s for s, _ in read_samples(tmp_path / "r")][-1] == 7 and load_model(str(tmp_path / "r")) is not None


def test_resume_refuses_what_it_cannot_continue(rationale_export, tmp_path, capsys):
    with pytest.raises(InputError, match="holds no run to resume"):
        finetune(_config(rationale_export, tmp_path / "none"), resume=True)
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "none"), "--lr", "0.1"]) == 2
    assert "--lr cannot change it" in capsys.readouterr().err
    with pytest.raises(InputError, match="save_every must be 0 or more"):
        _config(rationale_export, tmp_path / "x", save_every=-1)


def test_a_run_killed_before_its_first_resume_point_starts_again_and_logs_each_step_once(rationale_export, tmp_path):
    config = _config(rationale_export, tmp_path / "k", max_steps=3, save_every=0, eval_every=0)
    finetune(config)
    # What a kill at step 2 leaves: a running status of a dead process, two steps logged, a half-written line.
    dead = subprocess.Popen(["true"])  # a process id that is gone
    dead.wait()
    status = {**json.loads((tmp_path / "k" / "status.json").read_text()), "status": "running", "pid": dead.pid}
    (tmp_path / "k" / "status.json").write_text(json.dumps({**status, "step": 2}))
    rows = (tmp_path / "k" / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "k" / "metrics.jsonl").write_text("\n".join(rows[:3]) + '\n{"kind": "st')
    (tmp_path / "k" / "checkpoint").rename(tmp_path / "k" / ".checkpoint.tmp")  # killed while saving
    assert list_runs(tmp_path)[0].status == "interrupted"
    result = finetune(config, resume=True)
    assert (result.status, result.steps) == ("completed", 3) and (tmp_path / "k" / "checkpoint").is_dir()
    assert [(kind, s) for kind, s, _ in _steps(tmp_path / "k")] == [("eval", 0), ("step", 1), ("step", 2),
                                                                     ("step", 3), ("eval", 3)]  # fmt: skip


def test_config_yaml_records_its_data_and_a_rerun_warns_when_it_changed(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_bytes(demo_path().read_bytes())
    args = ["train", "--student", "tiny-student", "--data", str(data), "--max-steps", "1", "--eval-size", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    recorded = yaml_load((tmp_path / "a" / "config.yaml").read_text())["data_files"]
    assert recorded == [{"path": str(data.resolve()), "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}]
    config = str(tmp_path / "a" / "config.yaml")
    capsys.readouterr()
    assert main(["train", "--config", config, "--out", str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().err  # the same data: no warning
    data.write_text("\n".join(data.read_text().splitlines()[:-1]) + "\n")  # one question fewer
    assert main(["train", "--config", config, "--out", str(tmp_path / "c")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and f"{data.resolve()} changed" in warnings[0]
    assert "cannot be restored" in warnings[0]
    assert TrainConfig.from_yaml((tmp_path / "a" / "config.yaml").read_text()).data == str(data)


def _shared_rows(name: str, n: int, path):
    """Writes the first `n` rows of a shared dataset to `path` (skips the test when the data is not here)."""
    source = CQA_TRAIN.parent.parent / name / "train.jsonl"
    if not source.exists():
        pytest.skip(f"shared {name} data not present")
    with source.open(encoding="utf-8") as handle:
        path.write_text("".join(itertools.islice(handle, n)), encoding="utf-8")
    return path, [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_rationale_and_label_sources_of_a_build(rationale_export, tmp_path):
    cqa, rows = _shared_rows("cqa", 6, tmp_path / "cqa.jsonl")
    built = build_rationales("tiny", load_examples(cqa), cache_dir=tmp_path / "cache")
    records = save_jsonl(built.records, tmp_path / "records.jsonl")
    from_build = load_train_examples(records)
    assert [t.rationale for t in from_build] == [r.rationale_text or None for r in built.records]
    from_data = load_train_examples(records, rationale_source="data", label_source="data")
    assert [t.rationale for t in from_data] == [r["teacher_rationale"] for r in rows]  # the 540B chain of thought
    assert [t.teacher_answer for t in from_data] == [r["teacher_answer"] for r in rows]
    assert [t.example for t in from_data] == [t.example for t in from_build]  # the same examples, other signals
    pairs = get_method("multitask").pairs(from_data[0])
    assert pairs["rationale"][1] == rows[0]["teacher_rationale"] and pairs["answer"][1] == "math problem"
    # row 2: the teacher answered "train station" where the gold answer is "bridge"
    assert get_method("teacher_label").pairs(from_data[1])["answer"][1] == "train station"
    with pytest.raises(
        InputError, match="--rationale-source data needs a 'teacher_rationale' field; rationales.jsonl"
    ):
        load_train_examples(rationale_export, rationale_source="data")  # an export keeps only the build's
    with pytest.raises(InputError, match="--label-source must be build or data, not 'teacher'"):
        load_train_examples(records, label_source="teacher")


def test_a_tiny_run_trains_on_the_datas_chain_of_thought_and_answers(tmp_path):
    svamp, rows = _shared_rows("svamp", 12, tmp_path / "svamp.jsonl")
    base = ["train", "--student", "tiny-student", "--data", str(svamp), "--max-steps", "2", "--batch-size", "2",
            "--eval-size", "2", "--eval-every", "0"]  # fmt: skip
    assert main([*base, "--method", "multitask", "--rationale-source", "data", "--out", str(tmp_path / "mt")]) == 0
    config = TrainConfig.from_yaml((tmp_path / "mt" / "config.yaml").read_text())
    assert (config.rationale_source, config.label_source) == ("data", "build")
    assert "--rationale-source data" in train_command(config)
    items = train_examples(config)
    assert [get_method("multitask").pairs(t)["rationale"][1] for t in items] == [r["teacher_rationale"] for r in rows]
    assert read_status(tmp_path / "mt").status == "completed"
    assert main([*base, "--method", "teacher_label", "--label-source", "data", "--out", str(tmp_path / "tl")]) == 0
    config = TrainConfig.from_yaml((tmp_path / "tl" / "config.yaml").read_text())
    targets = [
        get_method("teacher_label").target(t) for t in usable(train_examples(config), get_method("teacher_label"))
    ]
    assert targets == [r["teacher_answer"] for r in rows if r["teacher_answer"]]  # "84 / 2", not "( 84.0 / 2.0 )"
    assert targets[0] == "84 / 2"
