"""`--report-to`: a run's losses, learning rate, evaluation accuracy and sample predictions reach the tracker."""

import importlib.util
import json

import pytest

from kdviz import InputError
from kdviz.cli.main import main
from kdviz.config import TrainConfig
from kdviz.distill import tracking
from kdviz.distill.loop import finetune
from kdviz.distill.metrics import EvalRow, StepRow
from kdviz.distill.runs import read_rows
from kdviz.ui import train_settings as ts

METHODS = [
    "standard",
    pytest.param("dpo", marks=pytest.mark.skipif(not importlib.util.find_spec("trl"), reason="trl")),
]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


@pytest.mark.parametrize("method", METHODS)
def test_report_to_tensorboard_writes_an_event_file_tensorboard_reads(rationale_export, tmp_path, capsys, method):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    args = ["train", "--data", str(rationale_export), "--student", "tiny-student", "--method", method, "--max-steps",
            "3", "--batch-size", "4", "--eval-every", "2", "--eval-size", "8", "--report-to", "tensorboard",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "completed"
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events, rows = _events(out / "tensorboard"), read_rows(out)
    steps, evals = [r for r in rows if isinstance(r, StepRow)], [r for r in rows if isinstance(r, EvalRow)]

    def scalars(tag):
        return [(e.step, e.value) for e in events.Scalars(tag)]

    assert scalars("train/loss") == [(r.step, pytest.approx(r.loss, rel=1e-6)) for r in steps]  # metrics.jsonl's
    assert scalars("train/loss_answer") == [(r.step, pytest.approx(r.loss_answer, rel=1e-6)) for r in steps]
    assert scalars("train/learning_rate") == [(r.step, pytest.approx(r.lr, rel=1e-6)) for r in steps]
    assert scalars("eval/accuracy") == [(r.step, pytest.approx(r.eval_accuracy)) for r in evals]
    assert [r.step for r in evals] == [0, 2, 3]
    samples = [e for e in events.Tensors("eval/samples/text_summary")]
    assert [e.step for e in samples] == [0, 2, 3]
    table = samples[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| id | question | gold | predicted | correct |") and evals[-1].samples[0].id in table
    if method == "dpo":  # the TRL trainer's own scalars come along
        assert [step for step, _ in scalars("train/rewards/margins")] == [1, 2, 3]


def test_a_tracker_that_is_not_installed_is_named_before_anything_starts(rationale_export, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    config = TrainConfig(data=str(rationale_export), out=str(tmp_path / "run"), student="tiny-student",
                         report_to="wandb")  # fmt: skip
    for method in ("standard", "dpo"):
        with pytest.raises(InputError, match="--report-to wandb needs the wandb package: pip install wandb"):
            finetune(TrainConfig(**{**config.__dict__, "method": method}))
        assert not (tmp_path / "run").exists()
    panel = dict(
        student="tiny-student", dataset=str(rationale_export), method="standard", max_steps=3, batch_size=2, lr=1e-3,
        seed=0, eval_every=2, eval_size=4, alpha=0.5, kd_loss="kl", temperature=2.0, teacher="tiny", lora=False,
        lora_r=16, beta=0.1, lmbda=0.5, dpo_rationale=False, report_to="wandb", name="",
    )  # fmt: skip
    with pytest.raises(InputError, match="pip install wandb"):
        ts.make_config(tmp_path / "ws", **panel)
    assert ts.make_config(tmp_path / "ws", **{**panel, "report_to": "tensorboard"}).report_to == "tensorboard"
    with pytest.raises(InputError, match="report_to must be none or trackio or tensorboard or wandb, not 'mlflow'"):
        TrainConfig(data="d", out="o", report_to="mlflow")
