"""Comparing a teacher and students: statistics with known answers, word alignment across tokenizers, the
comparison on tiny models (identical models, rationale_input students, cancel and resume), reports and the CLI."""

import dataclasses
import json
import shlex
import shutil

import pytest

from kdviz import InputError, load_model
from kdviz.attribution.targets import attribute
from kdviz.cli.main import build_parser, main
from kdviz.compare.records import AttributionAgreement, Comparison, ComparisonSettings, ModelSummary, PairwiseTest
from kdviz.compare.report import check_may_write, compare_command, load_report, may_write, write_report
from kdviz.compare.run import compare, with_names
from kdviz.compare.stats import (
    agreement,
    align_words,
    attribution_agreement,
    bootstrap_ci,
    mcnemar,
    sign_flip_p,
)
from kdviz.compare.viz import SUMMARY_COLUMNS, example_html, filter_examples, summary_rows
from kdviz.config import ModelSpec, TrainConfig
from kdviz.data import demo_path, load_examples
from kdviz.distill.loop import finetune
from kdviz.lm.models import LoadedModel
from kdviz.records import ProgressEvent
from kdviz.workspace import Workspace

EXAMPLES = load_examples(demo_path())[:8]


def test_bootstrap_interval_contains_the_estimate_and_collapses_when_certain():
    correct = [True] * 30 + [False] * 20
    low, high = bootstrap_ci(correct)
    assert low < 0.6 < high and 0.4 < low and high < 0.8
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    assert bootstrap_ci([]) is None
    assert bootstrap_ci(correct, seed=1) == bootstrap_ci(correct, seed=1)


def test_bootstrap_interval_is_the_binomial_quantiles_of_the_resampled_accuracy():
    # A resample of n marks with k right has Binomial(n, k/n) right answers, so the percentile interval's ends are
    # that distribution's 2.5% and 97.5% quantiles (over n), up to the Monte Carlo noise of 2000 resamples: about a
    # third of an example at these sizes, so 1.5 examples is a bound several standard deviations wide.
    from scipy.stats import binom

    for n, k in [(100, 42), (50, 24), (50, 30), (20, 3), (7, 5)]:
        low, high = bootstrap_ci([True] * k + [False] * (n - k))
        assert low == pytest.approx(binom.ppf(0.025, n, k / n) / n, abs=1.5 / n), (n, k)
        assert high == pytest.approx(binom.ppf(0.975, n, k / n) / n, abs=1.5 / n), (n, k)
    # docs/results.md: the teacher right on 42 of 100 test questions, "95% CI 32.0%–52.0%" (the former resampler,
    # on the report's order of marks). Both ends lie where the binomial CDF crosses 2.5% and 97.5% within 0.3
    # points, so a resampler lands one question either side by Monte Carlo noise alone (this one: 33%–51%).
    assert bootstrap_ci([True] * 42 + [False] * 58) == pytest.approx((0.32, 0.52), abs=0.0101)
    assert bootstrap_ci([0.5]) == (0.5, 0.5)  # one value: every resample is that value


def test_sign_flip_test_is_the_sign_test_on_plus_minus_one_differences():
    from scipy.stats import binomtest

    # Up to 13 non-zero differences every sign pattern is counted (zeros change nothing): the exact sign test.
    for plus, minus in [(10, 0), (9, 3), (7, 6), (3, 1), (0, 2)]:
        differences = [1.0] * plus + [-1.0] * minus + [0.0] * 5
        assert sign_flip_p(differences) == pytest.approx(binomtest(plus, plus + minus).pvalue, rel=1e-9)
    # More, and 10,000 random patterns are drawn: the p-value's Monte Carlo sd is at most 0.005.
    for plus, minus in [(30, 20), (40, 22), (12, 12)]:
        assert sign_flip_p([1.0] * plus + [-1.0] * minus) == pytest.approx(
            binomtest(plus, plus + minus).pvalue, abs=0.02
        )
    assert sign_flip_p([0.0] * 4) == sign_flip_p([]) == sign_flip_p([0.0, 0.5]) == 1.0
    assert sign_flip_p([0.5, 1.0, -1 / 3, 2 / 3] * 8, seed=3) == sign_flip_p([0.5, 1.0, -1 / 3, 2 / 3] * 8, seed=3)


def test_mcnemar_on_a_known_table():
    # 10 examples only A gets right, 2 only B: exact two-sided binomial p = 2 * P(X <= 2 | n=12, 1/2) = 0.03857.
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    test = mcnemar(a, b)
    assert (test.a_only, test.b_only, test.n) == (10, 2, 20)
    assert test.p_value == pytest.approx(0.038574, abs=1e-5)
    assert mcnemar(a, a).p_value == 1.0
    assert agreement(["x", "y"], ["x", "z"]) == 0.5
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_attribution_agreement_limits():
    pairs = [(i, i) for i in range(6)]
    scores = [0.9, 0.1, 0.5, -0.2, 0.3, 0.0]
    same = attribution_agreement(scores, scores, pairs, k=3)
    assert same.top_k_overlap == 1.0 and same.spearman == pytest.approx(1.0) and same.kendall == pytest.approx(1.0)
    assert same.n_words == 6
    reverse = attribution_agreement(scores, [-s for s in scores], pairs, k=3)
    assert reverse.top_k_overlap == 0.0 and reverse.spearman == pytest.approx(-1.0)
    assert reverse.kendall == pytest.approx(-1.0)
    assert attribution_agreement(scores, [1.0] * 6, pairs).spearman is None  # constant: undefined
    assert attribution_agreement(scores, scores, []) == AttributionAgreement(n_words=0)


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
    # The same prediction mode for both, so both prompts list the choices (the default differs: tiny has a chat
    # template, so it predicts by letter; the other model has none, so it scores the question alone).
    ours = attribute(tiny, example, target=example.answer, predict="choice-text")
    theirs = attribute(_other_tokenizer_model(), example, target=example.answer, predict="choice-text")
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
    events: list[ProgressEvent] = []
    result = compare("tiny", [tiny_copy], EXAMPLES, cache_dir=tmp_path, on_progress=events.append)
    # Progress: each model's events in turn, from none done (nothing cached) to all 8.
    teacher_events = [e for e in events if e.stage == "teacher"]
    student_events = [e for e in events if e.stage == "student"]
    faithfulness = [e for e in events if e.stage == "faithfulness"]  # each model's rationales, after its answers
    assert [e.model for e in faithfulness if e.done == 0] == ["tiny", tiny_copy]
    assert [e for e in events if e.stage != "faithfulness"] == teacher_events + student_events
    assert len(teacher_events) >= 2 and len(student_events) >= 2
    assert {e.model for e in teacher_events} == {"tiny"} and {e.model for e in student_events} == {tiny_copy}
    for stage in (teacher_events, student_events):
        assert (stage[0].done, stage[-1].done) == (0, 8) and {e.total for e in stage} == {8}
        assert [e.done for e in stage] == sorted(e.done for e in stage)
    student = result.summary[tiny_copy]
    assert student.agreement_with_teacher == 1.0
    assert student.accuracy == result.summary["tiny"].accuracy
    assert student.attribution_vs_teacher.top_k_overlap == pytest.approx(1.0)
    assert student.attribution_vs_teacher.spearman == pytest.approx(1.0)
    (pair,) = result.pairwise
    assert (pair.a, pair.b, pair.a_only, pair.b_only, pair.n, pair.p_value) == ("tiny", tiny_copy, 0, 0, 8, 1.0)
    assert pair.agreement == 1.0
    assert student.ci_low <= student.accuracy <= student.ci_high


def test_rationale_input_students_get_the_teachers_rationales(rationale_export, tmp_path):
    run = tmp_path / "ri"
    finetune(TrainConfig(data=str(rationale_export), out=str(run), student="tiny-student",
                         method="rationale_input", max_steps=2, eval_size=4))  # fmt: skip
    result = compare("tiny", [str(run)], EXAMPLES, cache_dir=tmp_path / "cache")
    teacher, student = result.models
    assert student.method == "rationale_input" and student.teacher_at_test_time
    assert all(f"\nRationale: {t.rationale_text}\nAnswer:" in s.prompt
               for t, s in zip(teacher.records, student.records, strict=True))  # fmt: skip
    assert result.summary[str(run)].accuracy_no_rationale is not None and len(student.predicted_no_rationale) == 8
    assert result.summary["tiny"].accuracy_no_rationale is None
    assert all("Rationale" not in s.rationale_text for s in student.records)  # the inserted line is format


@pytest.mark.parametrize("stop_at", [("student", 0), ("teacher", 4)])
def test_cancel_keeps_finished_models_and_a_rerun_resumes(tmp_path, stop_at):
    """Cancels at a known point of the progress: when the student starts (the teacher and its faithfulness are
    done), or after the teacher's first batch of 4; never by timing or by counting should_stop's polls (each stage
    added to a comparison adds polls)."""
    seen: list[tuple[str, int]] = []
    partial = compare(
        "tiny", ["tiny-student"], EXAMPLES, cache_dir=tmp_path, batch_size=4,
        on_progress=lambda e: seen.append((e.stage, e.done)), should_stop=lambda: stop_at in seen,
    )  # fmt: skip
    finished, measured = (8, True) if stop_at[0] == "student" else (4, False)
    assert partial.cancelled and [m.name for m in partial.models] == ["tiny"]
    assert [ex.id for ex in partial.examples] == [ex.id for ex in EXAMPLES[:finished]]
    assert all((r.faithfulness is not None) == measured for r in partial.models[0].records)
    resumed: list[ProgressEvent] = []
    full = compare("tiny", ["tiny-student"], EXAMPLES, cache_dir=tmp_path, batch_size=4, on_progress=resumed.append)
    assert not full.cancelled and len(full.models[0].records) == 8
    # The rerun starts from the cache: the finished attributions (and faithfulness measurements) are not redone.
    first = {stage: next(e.done for e in resumed if e.stage == stage) for stage in ("teacher", "faithfulness")}
    assert first == {"teacher": finished, "faithfulness": 8 if measured else 0}

    def comparable(records):  # "created" is when each run made its records; unmeasured faithfulness is not compared
        return [dataclasses.replace(r, provenance=dataclasses.replace(r.provenance, created=None),
                                    faithfulness=r.faithfulness if measured else None) for r in records]  # fmt: skip

    assert comparable(full.models[0].records[:finished]) == comparable(partial.models[0].records)


def test_bad_comparisons_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="at least one student"):
        compare("tiny", [], EXAMPLES)
    with pytest.raises(InputError, match="only once"):
        compare("tiny", ["tiny"], EXAMPLES)
    with pytest.raises(InputError, match="no examples"):
        compare("tiny", ["tiny-student"], [])
    ungraded = [dataclasses.replace(ex, answer=None) for ex in EXAMPLES]
    with pytest.raises(InputError, match="no example has a gold answer"):  # before any model is loaded
        compare("no-such/model", ["tiny-student"], ungraded)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Comparison:
    """The tiny teacher against two students of other kinds on the 8 examples."""
    return compare("tiny", ["tiny-student", "tiny-t5"], EXAMPLES, cache_dir=tmp_path_factory.mktemp("cache"))


def test_report_files_views_and_filters(compared, tmp_path):
    result = compared
    paths = write_report(result, tmp_path / "report")
    assert load_report(tmp_path / "report") == result
    # report.json keeps its shape: the summary by model name, flat pairwise rows, then the rest.
    stored = json.loads(paths["json"].read_text())
    assert list(stored) == ["summary", "pairwise", "settings", "examples", "models", "cancelled"]
    assert list(stored["summary"]) == ["tiny", "tiny-student", "tiny-t5"]
    assert {"role", "method", "teacher_at_test_time", "n", "accuracy", "ci_low", "ci_high", "agreement_with_teacher",
            "overlap", "accuracy_no_rationale", "attribution_vs_teacher"} == set(stored["summary"]["tiny"])  # fmt: skip
    assert stored["summary"]["tiny-t5"]["overlap"]["by_correctness"]["correct"]["n"] >= 0
    assert [set(p) for p in stored["pairwise"]] == [{"a", "b", "a_only", "b_only", "n", "p_value", "agreement"}] * 3
    assert stored["settings"]["students"] == ["tiny-student", "tiny-t5"] and stored["settings"]["n"] == 8
    page = paths["html"].read_text()
    assert page.count("<script") >= 3 and "McNemar" in page and EXAMPLES[0].question in page
    csv_text = paths["csv"].read_text().splitlines()
    assert len(csv_text) == 9 and "tiny-student correct" in csv_text[0]
    assert [row[0] for row in summary_rows(result)] == ["tiny", "tiny-student", "tiny-t5"]
    comp, suff = SUMMARY_COLUMNS.index("comprehensiveness"), SUMMARY_COLUMNS.index("sufficiency")
    for row, s in zip(summary_rows(result), result.summary.values(), strict=True):  # each model's own rationales
        faith = s.overlap.faithfulness
        assert row[comp] == (f"{faith.comprehensiveness:.3f} (random {faith.random_comprehensiveness:.3f})"
                             if faith else "—")  # fmt: skip
        assert row[suff] == (f"{faith.sufficiency:.3f} (random {faith.random_sufficiency:.3f})" if faith else "—")
    teacher, students = result.models[0], result.models[1:]
    assert filter_examples(result, "all_wrong") == [
        i for i in range(8) if all(m.correct[i] is False for m in result.models)
    ]
    assert filter_examples(result, "teacher_right_student_wrong") == [
        i for i in range(8) if teacher.correct[i] is True and any(s.correct[i] is False for s in students)
    ]
    assert filter_examples(result, "all") == list(range(8))
    with pytest.raises(ValueError, match="unknown filter"):
        filter_examples(result, "magic")
    assert example_html(result, 0).count("kdviz-word") > 10


def test_summary_rows_pairwise_tests_and_settings_round_trip(compared):
    def through_json(record):
        return type(record).from_dict(json.loads(json.dumps(record.to_dict())))

    assert all(isinstance(row, ModelSummary) and through_json(row) == row for row in compared.summary.values())
    assert all(isinstance(test, PairwiseTest) and through_json(test) == test for test in compared.pairwise)
    assert isinstance(compared.settings, ComparisonSettings) and through_json(compared.settings) == compared.settings
    assert through_json(compared) == compared
    assert [(p.a, p.b) for p in compared.pairwise] == [
        ("tiny", "tiny-student"), ("tiny", "tiny-t5"), ("tiny-student", "tiny-t5")
    ]  # fmt: skip
    for test in compared.pairwise:  # the pair's counts agree with the models' correctness marks
        a, b = (next(m for m in compared.models if m.name == name) for name in (test.a, test.b))
        assert test.a_only == sum(x is True and y is False for x, y in zip(a.correct, b.correct, strict=True))
        assert test.b_only == sum(x is False and y is True for x, y in zip(a.correct, b.correct, strict=True))
        assert test.agreement == agreement(a.predicted, b.predicted)


def test_reports_written_before_the_records_read_back(compared, tmp_path):
    old = compared.to_dict()  # less what the records added: the null rows, the recorded command and mode
    for row in old["summary"].values():
        for key in ("accuracy_no_rationale", "attribution_vs_teacher"):
            if row[key] is None:
                del row[key]
        if row.get("attribution_vs_teacher"):
            del row["attribution_vs_teacher"]["n_words"]
    for key in ("data", "limit", "command", "predict", "target_mode"):
        del old["settings"][key]
    (tmp_path / "report.json").write_text(json.dumps(old))
    before_modes = dataclasses.replace(compared.settings, target_mode=None)  # they attributed the predicted choice
    assert compared.settings.target_mode == "choice" and load_report(tmp_path) == dataclasses.replace(
        compared, settings=before_modes
    )
    (tmp_path / "report.json").write_text(json.dumps({**old, "models": [{"name": "x"}]}))
    with pytest.raises(InputError, match="report.json cannot be read as a comparison report"):
        load_report(tmp_path)
    with pytest.raises(InputError, match="no comparison report at"):
        load_report(tmp_path / "missing.json")


def test_a_finished_comparison_is_kept_and_a_cancelled_one_resumed(compared, tmp_path):
    folder = tmp_path / "c"
    assert may_write(folder) and check_may_write(folder) == folder  # nothing there yet
    write_report(dataclasses.replace(compared, cancelled=True), folder)
    assert may_write(folder)  # cancelled: a new comparison under this name resumes it
    write_report(compared, folder)
    assert not may_write(folder)
    with pytest.raises(InputError, match="a comparison named 'c' exists already"):
        check_may_write(folder)
    (folder / "report.json").write_text("{")
    assert not may_write(folder)  # unreadable: kept for a person to look at


def test_shown_names_and_the_equivalent_command(compared):
    shown = with_names(compared, {"tiny-t5": "t5"}, data="d.jsonl", limit=8, command="kdviz compare ...")
    assert [m.name for m in shown.models] == ["tiny", "tiny-student", "t5"] and list(shown.summary)[2] == "t5"
    assert [(p.a, p.b) for p in shown.pairwise][1:] == [("tiny", "t5"), ("tiny-student", "t5")]
    assert shown.settings.students == ("tiny-student", "t5") and shown.settings.limit == 8
    assert shown.summary["t5"] == compared.summary["tiny-t5"]
    command = compare_command("tiny", ["runs/a b", "x"], "/d/e.jsonl", limit=3, method="saliency", top_k=2,
                              batch_size=1, workspace="/w s", name="n")  # fmt: skip
    assert command == ("kdviz compare --teacher tiny --student 'runs/a b' --student x --data /d/e.jsonl --limit 3 "
                       "--workspace '/w s' --name n --method saliency --top-k 2 --batch-size 1")  # fmt: skip
    assert compare_command("t", ["s"], "d", method="saliency", top_k=2, batch_size=1, out="o", predict="cloze") == (
        "kdviz compare --teacher t --student s --data d --out o --method saliency --top-k 2 --predict cloze "
        "--batch-size 1"
    )
    assert compared.settings.predict is None  # each model's default
    with pytest.raises(ValueError, match="predict must be one of"):
        dataclasses.replace(compared.settings, predict="magic")


def test_cli_writes_the_three_files_and_prints_the_summary(tmp_path, capsys):
    args = ["compare", "--teacher", "tiny", "--student", "tiny-student", "--data", str(demo_path()), "--limit", "6",
            "--out", str(tmp_path / "cmp"), "--cache-dir", str(tmp_path / "cache"), "--predict", "cloze"]  # fmt: skip
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["summary"]) == {"tiny", "tiny-student"} and last["pairwise"][0]["n"] == 6
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"report.json", "examples.csv", "report.html"}
    settings = load_report(tmp_path / "cmp").settings  # the mode reached compare() and the recorded command
    assert settings.predict == "cloze" and " --predict cloze " in settings.command
    assert main(["compare", "--student", "tiny-student", "--data", "nowhere.jsonl", "--out", str(tmp_path)]) == 2
    assert "no such data file" in capsys.readouterr().err


def test_cli_writes_a_workspace_comparison_the_app_lists_and_never_overwrites(tiny_copy, tmp_path, capsys):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(tiny_copy, ws.root / "models" / "copy")  # a model folder inside the workspace
    args = ["compare", "--teacher", "tiny", "--student", "models/copy", "--data", str(demo_path()), "--limit", "4",
            "--workspace", str(ws.root), "--name", "cli", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(args) == 0
    assert ws.list_comparisons() == ["cli"]
    saved = load_report(ws.comparison_dir("cli"))
    assert [m.name for m in saved.models] == ["tiny", "models/copy"]  # read from the workspace, shown as typed
    assert (saved.settings.data, saved.settings.limit) == (str(demo_path()), 4)
    parsed = build_parser().parse_args(shlex.split(saved.settings.command)[1:])
    assert (parsed.workspace, parsed.name, parsed.student, parsed.limit) == (str(ws.root), "cli", ["models/copy"], 4)
    capsys.readouterr()
    assert main(args) == 2 and "a comparison named 'cli' exists already" in capsys.readouterr().err
    assert main([*args[:-4], "--name", "../x"]) == 2 and "not a valid name" in capsys.readouterr().err


SVAMP_STYLE = [  # free-form math as SVAMP has it: no choices, an arithmetic gold answer graded by its value
    {"id": "s0", "question": "Luke scored 84 points in 2 rounds. How many points did he score per round?",
     "answer": "( 84.0 / 2.0 )"},
    {"id": "s1", "question": "Faye has 7 rows with 30 crayons in each row. How many crayons does she have?",
     "answer": "( 7.0 * 30.0 )"},
    {"id": "s2", "question": "Jack had 5 apples and bought 3 more. How many apples does he have?",
     "answer": "( 5.0 + 3.0 )"},
]  # fmt: skip
STUDENT_SAYS = "The answer is (84 / 2)."


def test_free_form_math_is_generated_graded_by_value_and_round_trips(tmp_path, monkeypatch, capsys):
    import kdviz.attribution.targets
    import kdviz.compare.run
    from kdviz.answers import is_correct
    from kdviz.distill.data import load_train_examples
    from kdviz.records import Generation

    data = tmp_path / "svamp.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in SVAMP_STYLE))
    examples = [t.example for t in load_train_examples(data)]
    real = kdviz.attribution.targets.generate_batch

    def generate(loaded, prompts, *args, **kwargs):  # the student always says 42; the teacher generates
        if loaded.name != "tiny-student":
            return real(loaded, prompts, *args, **kwargs)
        return [Generation(loaded.name, prompt, STUDENT_SAYS) for prompt in prompts]

    for module in (kdviz.attribution.targets, kdviz.compare.run):
        monkeypatch.setattr(module, "generate_batch", generate)
    with pytest.raises(InputError, match="3 of 3 examples have no choices"):
        compare("tiny", ["tiny-student"], examples, cache_dir=tmp_path / "cache", target_mode="choice")
    result = compare("tiny", ["tiny-student"], examples, cache_dir=tmp_path / "cache")  # default: "generate"
    assert result.settings.target_mode == "generate" and not result.cancelled
    teacher, student = result.models
    # Each model's record holds its own generation, attributed as the target and graded by value against the gold.
    said = [("generate", STUDENT_SAYS, STUDENT_SAYS)] * 3
    assert [(r.target_mode, r.target, r.predicted) for r in student.records] == said
    assert student.correct == [True, False, False]  # 84 / 2 = 42 = ( 84.0 / 2.0 ), not 210 or 8
    assert result.summary["tiny-student"].accuracy == pytest.approx(1 / 3)
    assert all(r.predicted and r.target == r.predicted for r in teacher.records)
    assert teacher.correct == [
        is_correct(r.predicted, ex.answer) for r, ex in zip(teacher.records, examples, strict=True)
    ]
    assert result.summary["tiny"].overlap.n == 3 and result.pairwise[0].n == 3
    assert through_report(result, tmp_path / "report") == result

    gold = compare("tiny", ["tiny-student"], examples, cache_dir=tmp_path / "cache", target_mode="gold")
    # The gold answer is attributed; the answers are still each model's generation, graded as before.
    assert [r.target for r in gold.models[1].records] == [row["answer"] for row in SVAMP_STYLE]
    assert [m.predicted for m in gold.models] == [m.predicted for m in result.models]
    assert [m.correct for m in gold.models] == [m.correct for m in result.models]
    assert gold.settings.target_mode == "gold" and through_report(gold, tmp_path / "gold") == gold

    args = ["compare", "--teacher", "tiny", "--student", "tiny-student", "--data", str(data), "--target-mode", "gold",
            "--out", str(tmp_path / "cli"), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(args) == 0
    saved = load_report(tmp_path / "cli")
    assert saved.settings.target_mode == "gold" and saved.models[1].correct == [True, False, False]
    assert build_parser().parse_args(shlex.split(saved.settings.command)[1:]).target_mode == "gold"
    capsys.readouterr()
    assert main([*args[:7], "--target-mode", "choice", "--out", str(tmp_path / "no")]) == 2
    assert "have no choices" in capsys.readouterr().err


def through_report(comparison: Comparison, folder) -> Comparison:
    write_report(comparison, folder)
    return load_report(folder)
