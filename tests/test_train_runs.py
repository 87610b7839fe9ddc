"""Student fine-tuning runs: run folders, config.yaml, cancel and resume, out of memory and failures, the CLI."""

import dataclasses
import hashlib
import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file
from yaml import safe_load as yaml_load

from kdviz import InputError, KdvizError, load_model
from kdviz.cli.main import build_parser, main
from kdviz.cli.train import _config as cli_config
from kdviz.config import TrainConfig
from kdviz.data import demo_path
from kdviz.distill.loop import finetune
from kdviz.distill.metrics import EvalRow, FinalMetrics, Sample, StepRow, TrainResult
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

from .conftest import train_config


def test_cancel_keeps_the_partial_run_marked_cancelled(rationale_export, tmp_path):
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 2

    result = finetune(
        train_config(rationale_export, tmp_path / "c", max_steps=50, eval_every=0), should_stop=should_stop
    )
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


def test_an_existing_run_is_never_overwritten(rationale_export, tmp_path):
    finetune(train_config(rationale_export, tmp_path / "r", max_steps=1))
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(InputError, match="already holds a run"):
        finetune(train_config(rationale_export, tmp_path / "r", max_steps=1))
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before


def test_a_folder_with_other_files_is_refused_and_left_as_it_was(rationale_export, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an empty folder"):
        finetune(train_config(rationale_export, tmp_path / "mine", max_steps=1))
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
        finetune(train_config(rationale_export, tmp_path / "o"))
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
        finetune(train_config(rationale_export, tmp_path / "r", student=str(tmp_path / "no-such-student")))
    assert not (tmp_path / "r").exists()

    def oom(self, indices):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:  # out of memory at the first step: nothing trained, nothing kept
        patch.setattr(train_module._Loop, "step", oom)
        with pytest.raises(KdvizError, match="try batch size 2"):
            finetune(train_config(rationale_export, tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    assert finetune(train_config(rationale_export, tmp_path / "r", max_steps=1)).status == "completed"


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
    whole = finetune(train_config(rationale_export, tmp_path / "whole", **settings))
    assert not (tmp_path / "whole" / "resume").exists()  # a completed run drops its resume point
    polls = []
    config = train_config(rationale_export, tmp_path / "cut", **settings)
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

    config = train_config(rationale_export, tmp_path / "r", max_steps=7, save_every=2, eval_every=0)
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
        finetune(train_config(rationale_export, tmp_path / "none"), resume=True)
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "none"), "--lr", "0.1"]) == 2
    assert "--lr cannot change it" in capsys.readouterr().err
    with pytest.raises(InputError, match="save_every must be 0 or more"):
        train_config(rationale_export, tmp_path / "x", save_every=-1)


def test_a_run_killed_before_its_first_resume_point_starts_again_and_logs_each_step_once(rationale_export, tmp_path):
    config = train_config(rationale_export, tmp_path / "k", max_steps=3, save_every=0, eval_every=0)
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
