import pytest

from kdviz import Example
from kdviz.rationales.stats import overlap_of, summarize

CAKE = Example(
    "1",
    "mcqa",
    "What do you bake a birthday cake in?",
    ("oven", "fridge", "birthday party"),
    "oven",
    human_rationale="bake a birthday cake",
)


def test_one_example_overlaps():
    figures = overlap_of(["bake", "Oven", "cake"], CAKE)
    assert figures["gold_overlap"] is True and figures["gold_word_fraction"] == pytest.approx(1 / 3)
    assert figures["choice_overlap"] == [True, False, False] and figures["distractor_overlap"] == 0.0
    assert figures["plausibility"]["precision"] == pytest.approx(2 / 3)
    assert overlap_of(["birthday"], CAKE)["distractor_overlap"] == 0.5  # "birthday party", not "fridge"


def test_summary_rates_split_by_correctness():
    items = [
        (["oven"], CAKE, True),  # overlaps gold
        (["cake"], CAKE, True),  # does not
        (["birthday"], CAKE, False),  # only a distractor
        (["oven", "bake"], CAKE, False),  # overlaps gold, half its words
    ]
    s = summarize(items)
    assert s["n"] == 4 and s["accuracy"] == 0.5
    assert s["gold_overlap"] == 0.5 and s["gold_word_fraction"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert s["by_correctness"]["correct"]["gold_overlap"] == 0.5
    assert s["by_correctness"]["incorrect"]["gold_overlap"] == 0.5
    assert s["by_correctness"]["incorrect"]["distractor_overlap"] == 0.25
    assert s["choice_overlap_by_position"] == [0.5, 0.0, 0.25]
    assert s["plausibility"]["n"] == 4


def test_examples_without_gold_or_human_rationale_are_left_out_of_those_rates():
    bare = Example("2", "qa", "Say something")
    s = summarize([(["x"], bare, None)])
    assert s["gold_overlap"] is None and s["plausibility"] is None and s["accuracy"] is None
