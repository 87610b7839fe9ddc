"""Comparing a teacher and students: statistics with known answers, word alignment across tokenizers, the
comparison on tiny models (identical models, rationale_input students, cancel and resume), reports and the CLI."""

import json

import pytest

from kdviz import InputError, load_model
from kdviz.attribution.targets import attribute
from kdviz.cli.main import main
from kdviz.compare.report import load_report, write_report
from kdviz.compare.run import compare
from kdviz.compare.stats import agreement, align_words, attribution_agreement, bootstrap_ci, mcnemar
from kdviz.compare.viz import example_html, filter_examples, summary_rows
from kdviz.config import ModelSpec, TrainConfig
from kdviz.data import demo_path, load_examples
from kdviz.distill.loop import finetune
from kdviz.lm.models import LoadedModel

EXAMPLES = load_examples(demo_path())[:8]


def test_bootstrap_interval_contains_the_estimate_and_collapses_when_certain():
    correct = [True] * 30 + [False] * 20
    low, high = bootstrap_ci(correct)
    assert low < 0.6 < high and 0.4 < low and high < 0.8
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    assert bootstrap_ci([]) is None
    assert bootstrap_ci(correct, seed=1) == bootstrap_ci(correct, seed=1)


def test_mcnemar_on_a_known_table():
    # 10 examples only A gets right, 2 only B: exact two-sided binomial p = 2 * P(X <= 2 | n=12, 1/2) = 0.03857.
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    test = mcnemar(a, b)
    assert (test["a_only"], test["b_only"], test["n"]) == (10, 2, 20)
    assert test["p_value"] == pytest.approx(0.038574, abs=1e-5)
    assert mcnemar(a, a)["p_value"] == 1.0
    assert agreement(["x", "y"], ["x", "z"]) == 0.5
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_attribution_agreement_limits():
    pairs = [(i, i) for i in range(6)]
    scores = [0.9, 0.1, 0.5, -0.2, 0.3, 0.0]
    same = attribution_agreement(scores, scores, pairs, k=3)
    assert (
        same["top_k_overlap"] == 1.0
        and same["spearman"] == pytest.approx(1.0)
        and same["kendall"] == pytest.approx(1.0)
    )
    reverse = attribution_agreement(scores, [-s for s in scores], pairs, k=3)
    assert reverse["top_k_overlap"] == 0.0 and reverse["spearman"] == pytest.approx(-1.0)
    assert attribution_agreement(scores, [1.0] * 6, pairs)["spearman"] is None  # constant: undefined
    assert attribution_agreement(scores, scores, [])["top_k_overlap"] is None


def _other_tokenizer_model() -> LoadedModel:
    """A tiny Llama with its own, coarser BPE tokenizer: same words, different tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=290, special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(["a b c the of to milk cold"], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")  # fmt: skip
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    return LoadedModel(LlamaForCausalLM(config).eval(), fast, ModelSpec("other-tokenizer"), "cpu", chat=False)


def test_words_align_across_tokenizers_and_prompt_formats(tiny):
    example = EXAMPLES[0]
    ours = attribute(tiny, example, target=example.answer)
    theirs = attribute(_other_tokenizer_model(), example, target=example.answer)
    assert ours.input_tokens != theirs.input_tokens  # the tokenizers really differ
    pairs = align_words(ours.words, ours.word_is_template, theirs.words, theirs.word_is_template)
    assert pairs and all(ours.words[i] == theirs.words[j] for i, j in pairs)
    assert len(pairs) == sum(not t for t in ours.word_is_template)
    # A task prefix and an inserted line (format words) shift positions but not the pairing.
    words_b = ["[label]", *ours.words[:3], "Rationale:", "x", *ours.words[3:]]
    template_b = [True, *ours.word_is_template[:3], True, True, *ours.word_is_template[3:]]
    shifted = align_words(ours.words, ours.word_is_template, words_b, template_b)
    assert all(ours.words[i] == words_b[j] and j == (i + 1 if i < 3 else i + 3) for i, j in shifted)


@pytest.fixture(scope="module")
def tiny_copy(tmp_path_factory):
    """The tiny teacher saved as a local folder: a different spec for the very same model."""
    folder = tmp_path_factory.mktemp("tiny_copy")
    loaded = load_model("tiny")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return str(folder)


def test_identical_models_agree_completely(tiny_copy, tmp_path):
    result = compare("tiny", [tiny_copy], EXAMPLES, cache_dir=tmp_path)
    student = result.summary[tiny_copy]
    assert student["agreement_with_teacher"] == 1.0
    assert student["accuracy"] == result.summary["tiny"]["accuracy"]
    assert student["attribution_vs_teacher"]["top_k_overlap"] == pytest.approx(1.0)
    assert student["attribution_vs_teacher"]["spearman"] == pytest.approx(1.0)
    (pair,) = result.pairwise
    assert (pair["a_only"], pair["b_only"], pair["p_value"]) == (0, 0, 1.0)
    assert student["ci_low"] <= student["accuracy"] <= student["ci_high"]


def test_rationale_input_students_get_the_teachers_rationales(rationale_export, tmp_path):
    run = tmp_path / "ri"
    finetune(TrainConfig(data=str(rationale_export), out=str(run), student="tiny-student",
                         method="rationale_input", max_steps=2, eval_size=4))  # fmt: skip
    result = compare("tiny", [str(run)], EXAMPLES, cache_dir=tmp_path / "cache")
    teacher, student = result.models
    assert student.method == "rationale_input" and student.teacher_at_test_time
    assert all(f"\nRationale: {t.rationale_text}\nAnswer:" in s.prompt
               for t, s in zip(teacher.records, student.records, strict=True))  # fmt: skip
    assert "accuracy_no_rationale" in result.summary[str(run)] and len(student.predicted_no_rationale) == 8
    assert all("Rationale" not in s.rationale_text for s in student.records)  # the inserted line is format


def test_cancel_keeps_finished_models_and_a_rerun_resumes(tmp_path):
    polls = []
    stop_after_teacher = lambda: len(polls.append(1) or polls) > 2  # noqa: E731  (teacher's 2 batches of 4)
    partial = compare("tiny", ["tiny-student"], EXAMPLES, cache_dir=tmp_path, should_stop=stop_after_teacher)
    assert partial.cancelled and [m.name for m in partial.models] == ["tiny"]
    full = compare("tiny", ["tiny-student"], EXAMPLES, cache_dir=tmp_path)
    assert not full.cancelled and full.models[0] == partial.models[0]


def test_bad_comparisons_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="at least one student"):
        compare("tiny", [], EXAMPLES)
    with pytest.raises(InputError, match="only once"):
        compare("tiny", ["tiny"], EXAMPLES)
    with pytest.raises(InputError, match="no examples"):
        compare("tiny", ["tiny-student"], [])


def test_report_files_views_and_filters(tmp_path):
    result = compare("tiny", ["tiny-student", "tiny-t5"], EXAMPLES, cache_dir=tmp_path / "cache")
    paths = write_report(result, tmp_path / "report")
    assert load_report(tmp_path / "report") == result
    page = paths["html"].read_text()
    assert page.count("<script") >= 3 and "McNemar" in page and EXAMPLES[0].question in page
    csv_text = paths["csv"].read_text().splitlines()
    assert len(csv_text) == 9 and "tiny-student correct" in csv_text[0]
    assert [row[0] for row in summary_rows(result)] == ["tiny", "tiny-student", "tiny-t5"]
    everyone_wrong = filter_examples(result, "all_wrong")
    for i in everyone_wrong:
        assert all(m.correct[i] is False for m in result.models)
    t_right = filter_examples(result, "teacher_right_student_wrong")
    assert all(result.models[0].correct[i] for i in t_right)
    assert set(filter_examples(result, "all")) == set(range(8))
    assert example_html(result, 0).count("kdviz-word") > 10


def test_cli_writes_the_three_files_and_prints_the_summary(tmp_path, capsys):
    args = ["compare", "--teacher", "tiny", "--student", "tiny-student", "--data", str(demo_path()), "--limit", "6",
            "--out", str(tmp_path / "cmp"), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["summary"]) == {"tiny", "tiny-student"} and last["pairwise"][0]["n"] == 6
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"report.json", "examples.csv", "report.html"}
    assert main(["compare", "--student", "tiny-student", "--data", "nowhere.jsonl", "--out", str(tmp_path)]) == 2
    assert "no such data file" in capsys.readouterr().err
