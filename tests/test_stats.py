import json

import pytest

from kdviz import Example
from kdviz.rationale_records import Faithfulness
from kdviz.rationales.stats import (
    ByCorrectness,
    FaithfulnessMeans,
    OverlapStats,
    PlausibilityMeans,
    RationaleStats,
    overlap_of,
    summarize,
)

CAKE = Example(
    "1",
    "mcqa",
    "What do you bake a birthday cake in?",
    ("oven", "fridge", "birthday party"),
    "oven",
    human_rationale="bake a birthday cake",
)
ITEMS = [
    (["oven"], CAKE, True),  # overlaps gold
    (["cake"], CAKE, True),  # does not
    (["birthday"], CAKE, False),  # only a distractor
    (["oven", "bake"], CAKE, False),  # overlaps gold, half its words
]


def test_one_example_overlaps():
    figures = overlap_of(["bake", "Oven", "cake"], CAKE)
    assert figures.gold_overlap is True and figures.gold_word_fraction == pytest.approx(1 / 3)
    assert figures.choice_overlap == (True, False, False) and figures.distractor_overlap == 0.0
    assert figures.plausibility.precision == pytest.approx(2 / 3)
    assert overlap_of(["birthday"], CAKE).distractor_overlap == 0.5  # "birthday party", not "fridge"


def test_summary_rates_split_by_correctness():
    s = summarize(ITEMS)
    assert s.n == 4 and s.accuracy == 0.5
    assert s.gold_overlap == 0.5 and s.gold_word_fraction == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert s.by_correctness.correct.gold_overlap == 0.5 and s.by_correctness.correct.n == 2
    assert s.by_correctness.incorrect.gold_overlap == 0.5
    assert s.by_correctness.incorrect.distractor_overlap == 0.25
    assert s.choice_overlap_by_position == (0.5, 0.0, 0.25)
    assert s.plausibility.n == 4 and s.by_correctness.incorrect.plausibility.n == 2


def test_examples_without_gold_or_human_rationale_are_left_out_of_those_rates():
    bare = Example("2", "qa", "Say something")
    s = summarize([(["x"], bare, None)])
    assert s.n == 1 and s.gold_overlap is None and s.plausibility is None and s.accuracy is None
    assert s.by_correctness.correct.n == s.by_correctness.incorrect.n == 0  # ungraded: in neither group
    assert s.choice_overlap_by_position == ()


def test_stats_round_trip_through_json_with_the_dict_layout_of_before():
    s = summarize(ITEMS)
    data = json.loads(json.dumps(s.to_dict()))  # what `kdviz rationales` prints and report.json stores
    assert list(data) == [
        "n",
        "gold_overlap",
        "gold_word_fraction",
        "distractor_overlap",
        "plausibility",
        "question_overlap",  # issue #12
        "faithfulness",  # issue #12: None here, nothing was measured
        "accuracy",
        "by_correctness",
        "choice_overlap_by_position",
    ]
    assert data["by_correctness"]["incorrect"]["distractor_overlap"] == 0.25
    assert list(data["plausibility"]) == ["n", "precision", "recall", "f1", "iou"]
    back = RationaleStats.from_dict(data)
    assert back == s and isinstance(back.by_correctness, ByCorrectness)
    assert isinstance(back.by_correctness.correct, OverlapStats) and isinstance(back.plausibility, PlausibilityMeans)
    empty = summarize([])
    assert RationaleStats.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty
    before = {k: v for k, v in data.items() if k not in ("question_overlap", "faithfulness")}
    old = RationaleStats.from_dict(before)  # stats stored before issue #12 (report.json) still read
    assert old.question_overlap is None and old.faithfulness is None and old.gold_overlap == s.gold_overlap


def test_question_overlap_counts_rationales_with_a_question_or_context_word():
    s = summarize(ITEMS)  # "cake", "birthday" and "bake" are question words; "oven" is not
    assert s.question_overlap == 0.75 and s.by_correctness.correct.question_overlap == 0.5
    with_context = Example("3", "nli", "A person rests.", ("entailment",), context="A man sleeps.")
    assert overlap_of(["Sleeps"], with_context).question_overlap is True
    assert overlap_of(["oven"], CAKE).question_overlap is False


def test_nli_labels_are_not_words_a_rationale_could_overlap():
    # "neutral" is in the hypothesis, so a word-level overlap would count a hit that says nothing of the answer.
    pair = Example("4", "nli", "The neutral party wins.", ("entailment", "neutral", "contradiction"), "neutral",
                   "A party wins.", human_rationale="party wins")  # fmt: skip
    row = overlap_of(["neutral", "party"], pair)
    assert (row.gold_overlap, row.gold_word_fraction, row.choice_overlap, row.distractor_overlap) == (
        None,
        None,
        (),
        None,
    )
    assert row.question_overlap is True and row.plausibility.precision == 0.5
    s = summarize([(["neutral", "party"], pair, True)])
    assert s.gold_overlap is None and s.distractor_overlap is None and s.choice_overlap_by_position == (None,) * 3


def test_faithfulness_means_over_the_measured_records_by_correctness():
    f = [Faithfulness(0.9, 0.5, 0.1, 0.2, 0.3), None, Faithfulness(0.7, 0.3, 0.3, 0.0, 0.5), None]
    s = summarize(ITEMS, f)
    assert s.faithfulness == FaithfulnessMeans(2, 0.8, 0.4, 0.2, 0.1, 0.4)
    assert s.by_correctness.correct.faithfulness.n == 1 and s.by_correctness.incorrect.faithfulness.p_full == 0.7
    assert RationaleStats.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert summarize(ITEMS).faithfulness is None
    with pytest.raises(ValueError, match="2 faithfulness entries for 4 items"):
        summarize(ITEMS, f[:2])
