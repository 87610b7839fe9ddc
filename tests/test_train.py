"""Student fine-tuning: every method on both model kinds, the loss, data and prompts per method, the schedule."""

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

from kdviz import InputError, load_model
from kdviz.cli.main import main
from kdviz.config import TrainConfig
from kdviz.data import demo_path, load_examples
from kdviz.distill.data import load_train_examples, train_examples, usable
from kdviz.distill.evaluation import accuracy, normalize_answer, predict_answers
from kdviz.distill.loop import _scheduler, finetune
from kdviz.distill.losses import masked_cross_entropy
from kdviz.distill.methods import METHODS, get_method
from kdviz.distill.metrics import EvalRow, StepRow
from kdviz.distill.pairs import check_same_vocabulary, encode_pairs, split_train_eval
from kdviz.distill.runs import (
    read_rows,
    read_samples,
    read_status,
    train_command,
)
from kdviz.lm.forward import make_batch, target_logits
from kdviz.lm.tiny import build_tiny
from kdviz.rationales.build import build_rationales
from kdviz.records import save_jsonl

from .conftest import CQA_TRAIN, train_config

STUDENTS = ["tiny-student", "tiny-t5"]


@pytest.mark.parametrize("student", STUDENTS)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_both_model_kinds_and_the_checkpoint_reloads(rationale_export, tmp_path, method, student):
    if METHODS[method].via_trl and student == "tiny-t5":
        pytest.skip("TRL's DPO and GKD trainers take decoder-only students (tests/test_trl_methods.py)")
    rows = []
    result = finetune(train_config(rationale_export, tmp_path / "run", student=student, method=method), rows.append)
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
    result = finetune(train_config(rationale_export, tmp_path / "lora", lora=True, lora_r=4, method="multitask"))
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


def test_logit_kd_checks_the_vocabulary_up_front(rationale_export, tmp_path):
    student, teacher = load_model("tiny-student"), load_model("tiny")
    check_same_vocabulary(student, teacher)  # the tiny models share one tokenizer
    other = SimpleNamespace(name="other", tokenizer=SimpleNamespace(get_vocab=lambda: {"a": 0, "b": 1}))
    with pytest.raises(InputError, match="share a vocabulary"):
        check_same_vocabulary(student, other)
    with pytest.raises(InputError, match="needs a teacher"):
        finetune(train_config(rationale_export, tmp_path / "kd", method="logit_kd", teacher=None))
    assert not (tmp_path / "kd").exists()  # a setup error leaves no half-made run behind


def test_plain_data_trains_the_standard_method(tmp_path):
    result = finetune(TrainConfig(data=str(demo_path()), out=str(tmp_path / "s"), student="tiny-student",
                                  max_steps=2, eval_size=4))  # fmt: skip
    assert result.status == "completed"  # standard needs only gold answers


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


def _shared_rows(name: str, n: int, path):
    """Writes the first `n` rows of a shared dataset to `path` (skips the test when the data is not here)."""
    source = CQA_TRAIN.parent.parent / name / "train.jsonl"
    if not source.exists():
        pytest.skip(f"shared {name} data not present")
    with source.open(encoding="utf-8") as handle:
        path.write_text("".join(itertools.islice(handle, n)), encoding="utf-8")
    return path, [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_rationale_and_label_sources_of_a_build(tmp_path):
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
    plain = tmp_path / "plain.jsonl"  # data that ships no teacher of its own
    plain.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if not k.startswith("teacher")}) + "\n" for r in rows)
    )
    with pytest.raises(InputError, match="--rationale-source data needs a 'teacher_rationale' field; plain.jsonl"):
        load_train_examples(plain, rationale_source="data")
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
