"""dpo and gkd through TRL's trainers: kdviz's run folder, rows, evaluation, checkpoint, cancel, resume, reruns.

Tiny student and teacher (one tokenizer), a few steps each: seconds per run.
"""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("trl")

from kdviz import InputError, load_model  # noqa: E402
from kdviz.cli.main import build_parser, main  # noqa: E402
from kdviz.cli.train import _config as cli_config  # noqa: E402
from kdviz.config import TrainConfig  # noqa: E402
from kdviz.distill.checkpoints import resume_step  # noqa: E402
from kdviz.distill.data import load_train_examples  # noqa: E402
from kdviz.distill.evaluation import normalize_answer, predict_answers  # noqa: E402
from kdviz.distill.loop import finetune  # noqa: E402
from kdviz.distill.methods import get_method  # noqa: E402
from kdviz.distill.metrics import EvalRow, StepRow  # noqa: E402
from kdviz.distill.runs import read_config, read_rows, read_status  # noqa: E402
from kdviz.distill.trl_data import check_gkd_teacher, dpo_rows, gkd_rows, preference_pairs  # noqa: E402
from kdviz.lm.tiny import build_tiny  # noqa: E402

from .conftest import train_config


def _config(export, out, **kw) -> TrainConfig:
    return train_config(export, out, **{"lr": 1e-3, **kw})  # three steps must move the tiny student measurably


def _losses(run) -> list[tuple[int, float]]:
    return [(r.step, r.loss) for r in read_rows(run) if isinstance(r, StepRow)]


@pytest.mark.parametrize("method", ["dpo", "gkd"])
def test_dpo_and_gkd_train_log_evaluate_and_save_a_checkpoint_compare_loads(rationale_export, tmp_path, method):
    rows = []
    result = finetune(_config(rationale_export, tmp_path / "run", method=method), rows.append)
    assert (result.status, result.steps) == ("completed", 3)
    assert read_rows(result.run_dir) == rows  # what on_metrics received is what metrics.jsonl holds
    steps = [r for r in rows if isinstance(r, StepRow)]
    assert [r.step for r in steps] == [1, 2, 3] and all(r.loss == r.loss_answer for r in steps)
    assert all(math.isfinite(r.loss) and r.loss >= 0 for r in steps)
    assert [r.lr for r in steps] == pytest.approx([1e-3, 1e-3 * 2 / 3, 1e-3 / 3])  # linear decay, as the loop's
    if method == "dpo":  # the policy starts as its reference, so the sigmoid loss starts at log 2
        assert steps[0].loss == pytest.approx(math.log(2), abs=1e-5)
    evals = [r for r in rows if isinstance(r, EvalRow)]
    assert [r.step for r in evals] == [0, 2, 3] and evals[-1].samples and evals[-1].eval_n == 8
    status = read_status(result.run_dir)
    assert status.status == "completed" and status.final.eval_accuracy == evals[-1].eval_accuracy
    assert status.n_train == 32 and not (tmp_path / "run" / "resume").exists()

    trained = load_file(str(tmp_path / "run" / "checkpoint" / "model.safetensors"))
    initial = build_tiny("tiny-student")[0].state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in trained if k in initial)
    meta = json.loads((tmp_path / "run" / "checkpoint" / "kdviz.json").read_text())
    assert meta["method"] == method and meta["student"] == "tiny-student" and meta["chat"] is True
    reloaded = load_model(str(tmp_path / "run"))
    items = load_train_examples(rationale_export)[:3]
    answers = predict_answers(reloaded, items, get_method(method))
    assert all(a in item.example.choices for a, item in zip(answers, items, strict=True))


def test_preference_pairs_prefer_the_teachers_answer_over_a_wrong_one(rationale_export, tmp_path):
    items = load_train_examples(rationale_export)[:12]
    student, dpo = load_model("tiny-student"), get_method("dpo")
    config = _config(rationale_export, tmp_path / "x", method="dpo", dpo_rationale=True)
    pairs = preference_pairs(student, items, dpo, config)
    assert len(pairs) == len(items)  # every item has choices: a wrong one is always there
    own = predict_answers(student, items, dpo)
    for pair, item, answer in zip(pairs, items, own, strict=True):
        assert pair.chosen == f"{item.teacher_answer}\nRationale: {item.rationale}" and pair.prompt == dpo.prompt(item)
        assert normalize_answer(pair.rejected) != normalize_answer(item.teacher_answer)
        assert pair.rejected_from == ("student" if normalize_answer(answer) != normalize_answer(item.teacher_answer)
                                      else "choice")  # fmt: skip
        assert pair.rejected in item.example.choices
    assert preference_pairs(student, items, dpo, config) == pairs  # the wrong choices are drawn seeded
    row = dpo_rows(student, pairs[:1])[0]  # a chat student: TRL applies its chat template
    assert row["prompt"][-1] == {"role": "user", "content": pairs[0].prompt}
    assert row["rejected"] == [{"role": "assistant", "content": pairs[0].rejected}]
    (gkd_row,), truncated = gkd_rows(student, items[:1], get_method("gkd"), 256)
    answer_ids = [i for i, m in zip(gkd_row["input_ids"], gkd_row["completion_mask"], strict=True) if m]
    assert truncated == 0 and student.tokenizer.decode(answer_ids) == f"{items[0].teacher_answer}<eos>"


def test_cancel_keeps_a_resume_point_and_resuming_gives_the_uninterrupted_run(rationale_export, tmp_path):
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 2  # polled before each step, as the loop polls: stops before step 3

    config = _config(rationale_export, tmp_path / "c", method="gkd", max_steps=4, eval_every=0, save_every=0)
    result = finetune(config, should_stop=should_stop)
    assert (result.status, result.steps) == ("cancelled", 2) and resume_step(tmp_path / "c") == 2
    assert read_status(tmp_path / "c").status == "cancelled" and (tmp_path / "c" / "checkpoint").is_dir()
    assert finetune(read_config(tmp_path / "c"), resume=True).status == "completed"
    assert [r.step for r in read_rows(tmp_path / "c")] == [0, 1, 2, 3, 4, 4]  # each step logged once
    finetune(_config(rationale_export, tmp_path / "whole", method="gkd", max_steps=4, eval_every=0))
    assert _losses(tmp_path / "c") == _losses(tmp_path / "whole")  # on-policy draws included


def test_the_config_yaml_reruns_the_same_dpo_run(rationale_export, tmp_path, capsys):
    args = ["train", "--data", str(rationale_export), "--student", "tiny-student", "--method", "dpo", "--dpo-beta",
            "0.2", "--max-steps", "2", "--batch-size", "4", "--eval-size", "8", "--out", str(tmp_path / "a")]  # fmt: skip
    assert main(args) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # stdout: the result line only
    assert final["status"] == "completed" and final["steps"] == 2
    assert read_config(tmp_path / "a").dpo_beta == 0.2
    assert main(["train", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b")]) == 0
    assert len(_losses(tmp_path / "a")) == 2 and _losses(tmp_path / "a") == _losses(tmp_path / "b")
    parsed = cli_config(build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--method", "gkd", "--gkd-beta", "0.2", "--gkd-lmbda", "1"]
    ))  # fmt: skip
    assert (parsed.gkd_beta, parsed.gkd_lmbda, parsed.dpo_rationale) == (0.2, 1.0, False)
    with pytest.raises(InputError, match="gkd_lmbda must be between 0 and 1"):
        _config(rationale_export, tmp_path / "x", method="gkd", gkd_lmbda=1.5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"method": "gkd", "teacher": None}, "gkd needs a teacher model"),
        ({"method": "dpo", "student": "tiny-t5"}, "dpo trains decoder-only students"),
        ({"method": "gkd", "teacher": "tiny-t5"}, "gkd needs a decoder-only teacher"),
    ],
)
def test_what_trl_cannot_train_is_refused_and_leaves_no_run(rationale_export, tmp_path, settings, message):
    with pytest.raises(InputError, match=message):
        finetune(_config(rationale_export, tmp_path / "run", **settings))
    assert not (tmp_path / "run").exists()  # the name is free for the corrected command


def test_gkd_needs_one_vocabulary(tiny):
    other = SimpleNamespace(
        name="other", is_encoder_decoder=False, tokenizer=SimpleNamespace(get_vocab=lambda: {"a": 0}), config=None
    )
    with pytest.raises(InputError, match="gkd needs teacher and student to share a vocabulary: other has 1 tokens"):
        check_gkd_teacher(tiny, other)
