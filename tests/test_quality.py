"""The rationale-quality table (issue #12): known values on hand-built records through an injected scorer, the
shared scoring, and `kdviz quality` on a tiny build (its Markdown table and its JSON cells)."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

import kdviz.lm.models
from kdviz.attribution.catalog import RATIONALE_METHOD
from kdviz.cli.main import main
from kdviz.data import demo_path
from kdviz.errors import InputError
from kdviz.lm.models import load_model
from kdviz.rationale_records import Faithfulness
from kdviz.rationales.curation import open_build
from kdviz.rationales.faithfulness import edit_prompt
from kdviz.rationales.quality import QualityCell, ScoreMemo, faithfulness_measure, quality_table, settings
from kdviz.rationales.select import SelectionRule, rule_of
from kdviz.viz.quality import QUALITY_COLUMNS, quality_markdown

from .test_faithfulness import EXAMPLE, PROMPT, FakeScorer, record

#      Question: Where would you keep milk cold? Choices: A) cupboard B) refrigerator Answer:
SCORES = (0.0, 0.0, 0.0, 0.0, 2.0, 4.0, 1.0, 0.0, 0.0, 3.0, 0.0, 5.0, 0.0)
RULES = settings(ks=(3, 5), spans=("question", "all"))


def records(scores=SCORES, method="input_x_gradient"):
    """One measurable record with a human rationale, one whose prediction cannot be measured (no choice)."""
    example = dataclasses.replace(EXAMPLE, human_rationale="milk cold")
    rec = dataclasses.replace(record(method=method), word_scores=scores, example=example)
    unmeasurable = dataclasses.replace(rec, example=dataclasses.replace(example, id="none"), predicted=None)
    return [rec, unmeasurable]


def test_settings_are_span_major_keep_the_base_exclusions_and_need_a_k_and_a_span():
    base = SelectionRule(top_k=None, mass=0.5, exclude_stopwords=False)
    rules = settings(base, ks=(3, 5, 10))
    assert [(r.top_k, r.span) for r in rules] == [(3, "question"), (5, "question"), (10, "question"),
                                                  (3, "all"), (5, "all"), (10, "all")]  # fmt: skip
    assert all(r.mass is None and r.z is None and not r.exclude_stopwords for r in rules)
    for ks, spans in (((), ("all",)), ((3,), ())):
        with pytest.raises(InputError, match="give at least one k and one span"):
            settings(ks=ks, spans=spans)
    with pytest.raises(InputError, match="top_k must be at least 1"):
        settings(ks=(0,))


def test_each_cell_holds_the_values_its_rationales_imply(tmp_path):
    progress = []
    measure = faithfulness_measure(SimpleNamespace(name="fake"), memo=ScoreMemo(FakeScorer()), cache_dir=tmp_path)
    cells = quality_table(records(), RULES, measure, on_progress=lambda d, t: progress.append((d, t)))
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    by = {(c.k, c.span): c for c in cells}
    assert [(c.method, c.k, c.span, c.n, c.measured) for c in cells] == [
        ("input_x_gradient", 3, "question", 2, 1), ("input_x_gradient", 5, "question", 2, 1),
        ("input_x_gradient", 3, "all", 2, 1), ("input_x_gradient", 5, "all", 2, 1),
    ]  # fmt: skip
    # question span: the candidates are keep, milk, cold? (3 words even for k=5); all: refrigerator, milk, cupboard
    assert [by[k, "question"].words for k in (3, 5)] == [3.0, 3.0] and by[5, "all"].words == 5.0
    q3, a3, a5 = by[3, "question"], by[3, "all"], by[5, "all"]
    assert (q3.gold_overlap, q3.distractor_overlap, q3.question_overlap) == (0.0, 0.0, 1.0)
    assert (a3.gold_overlap, a3.distractor_overlap, a3.question_overlap) == (1.0, 1.0, 1.0)
    assert q3.plausibility_f1 == pytest.approx(0.8)  # {keep, milk, cold} against {milk, cold}
    assert a3.plausibility_f1 == pytest.approx(0.4) and a5.plausibility_f1 == pytest.approx(4 / 7)
    for cell in cells:  # every rationale holds "milk", the word the fake teacher's prediction rests on
        assert cell.comprehensiveness == pytest.approx(0.6) and cell.sufficiency == pytest.approx(0.0)
    # all the candidates: the random words are the rationale's own, so neither beats random
    assert q3.random_comprehensiveness == pytest.approx(0.6) and a5.comprehensiveness_gain == pytest.approx(0.0)
    assert q3.sufficiency_gain == pytest.approx(0.0)
    assert q3.comprehensiveness_gain_ci == pytest.approx((0.0, 0.0))  # one measured record: its own gain
    assert QualityCell.from_dict(json.loads(json.dumps(a3.to_dict()))) == a3


def test_the_gain_intervals_resample_the_measured_records():
    gains = [0.1, 0.3, 0.5, 0.7]
    faith = [Faithfulness(0.9, 0.2 + g, 0.1, 0.2, 0.1 + g, rationale=(5,)) for g in gains]
    recs = [dataclasses.replace(record(), rationale=(5,), faithfulness=f) for f in faith]
    cell = quality_cell_of(recs)
    assert cell.comprehensiveness_gain == pytest.approx(0.4) and cell.sufficiency_gain == pytest.approx(0.4)
    low, high = cell.comprehensiveness_gain_ci
    assert 0.1 <= low < 0.4 < high <= 0.7 and cell.sufficiency_gain_ci == pytest.approx((low, high))
    stale = [dataclasses.replace(r, rationale=(4,)) for r in recs]  # edited since measured: not counted
    assert quality_cell_of(stale).comprehensiveness_gain_ci is None


def quality_cell_of(recs):
    from kdviz.rationales.quality import quality_cell

    return quality_cell("input_x_gradient", SelectionRule(top_k=1), recs)


def test_the_memo_scores_each_prompt_once_across_settings_and_methods(tmp_path):
    first = FakeScorer()
    memo = ScoreMemo(first)
    quality_table(records(), RULES, faithfulness_measure(SimpleNamespace(name="fake"), memo=memo, cache_dir=tmp_path))
    scored = [p for prompts, _ in first.calls for p in prompts]
    assert len(scored) == len(set(scored)) == memo.scored < 5 * len(RULES)  # 5 prompts a setting, most shared
    assert scored.count(PROMPT) == 1
    second = FakeScorer()
    memo.score = second  # a second method over the same questions: only its own rationales are new
    other = (0.0, 0.0, 0.0, 0.0, 3.0, 2.0, 5.0, 0.0, 0.0, 1.0, 0.0, 4.0, 0.0)  # cold? refrigerator keep milk cupboard
    measure = faithfulness_measure(SimpleNamespace(name="fake"), memo=memo, cache_dir=tmp_path / "other")
    cells = quality_table(records(other, "saliency"), RULES, measure)
    # Its k=3 "all" rationale (keep cold? refrigerator) is the one new set of words: scored without and alone; the
    # full prompt and the random words (drawn per question and setting, whatever the method) come from the memo.
    rec = records()[0]
    everything, frame = set(range(len(rec.words))), {0, 7, 8, 10, 12}
    new = [edit_prompt(PROMPT, rec.word_offsets, everything - {4, 6, 11}),
           edit_prompt(PROMPT, rec.word_offsets, frame | {4, 6, 11})]  # fmt: skip
    assert cells[0].method == "saliency" and [p for prompts, _ in second.calls for p in prompts] == new


def test_without_a_measure_no_cell_reports_faithfulness_even_where_records_carry_one():
    measured = [dataclasses.replace(r, faithfulness=Faithfulness(0.8, 0.6, 0.0, 0.2, 0.4, rationale=(5,)))
                for r in records()]  # fmt: skip
    (cell,) = quality_table(measured, settings(ks=(1,), spans=("all",)))  # top-1 is "refrigerator"
    assert cell.measured == 0 and cell.comprehensiveness is None and cell.random_sufficiency is None
    with pytest.raises(InputError, match="no rationale records to measure"):
        quality_table([], RULES)


# -- kdviz quality ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with build "b": 3 demo questions attributed by the tiny teacher (top-2)."""
    root = tmp_path_factory.mktemp("quality")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDVIZ_CACHE", str(root / "cache"))
        args = ["--teacher", "tiny", "--data", str(demo_path()), "--limit", "3", "--top-k", "2", "--no-faithfulness"]
        assert main(["rationales", *args, "--workspace", str(root / "ws"), "--name", "b"]) == 0
        yield root / "ws"


def rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.strip().splitlines()]


def test_the_command_prints_one_row_per_setting_and_json_cells(workspace, capsys):
    assert main(["quality", "--workspace", str(workspace), "--name", "b"]) == 0
    out, err = capsys.readouterr()
    header, _, *table = rows(out)
    assert header == QUALITY_COLUMNS and "build b: 3 records, 6 settings, faithfulness on tiny" in err
    assert [(r[0], r[1], r[2]) for r in table] == [(RATIONALE_METHOD, k, s) for s in ("question", "all")
                                                   for k in ("3", "5", "10")]  # fmt: skip
    assert all(r[8] != "— (—)" for r in table)  # measured on the teacher
    assert main(["quality", "--workspace", str(workspace), "--name", "b", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cells = [QualityCell.from_dict(d) for d in data]
    assert [c.to_dict() for c in cells] == data and quality_markdown(cells) == out.strip()
    records = open_build(workspace, "b").records()
    assert all(c.n == 3 and c.measured == 3 for c in cells)
    direct = quality_table(records, settings(rule_of(records[0])), faithfulness_measure(load_model("tiny")))
    assert cells == direct  # what the library computes (the command read its measurements back from the cache)


def test_without_faithfulness_no_model_is_loaded(workspace, capsys, monkeypatch):
    def refuse(spec):
        raise AssertionError(f"loaded {spec}")

    monkeypatch.setattr(kdviz.lm.models, "load_model", refuse)
    argv = ["quality", "--workspace", str(workspace), "--name", "b", "--no-faithfulness", "--ks", "2", "4"]
    assert main([*argv, "--spans", "all"]) == 0
    _, _, *table = rows(capsys.readouterr().out)
    assert [(r[1], r[2], r[8]) for r in table] == [("2", "all", "— (—)"), ("4", "all", "— (—)")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "nope"], "error: no rationale build in "),
        (["--name", "../b"], "is not a valid name"),
        (["--name", "b", "--ks", "0"], "error: top_k must be at least 1"),
        (["--name", "b", "--spans", "choices"], "invalid choice: 'choices'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workspace, capsys, args, message):
    assert main(["quality", "--workspace", str(workspace), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
