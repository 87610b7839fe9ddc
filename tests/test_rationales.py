import dataclasses

import pytest

from kdviz import InputError, TokenAttribution, UnknownNameError
from kdviz.rationales.select import (
    SelectionRule,
    gold_overlap,
    normalize,
    plausibility,
    select_rationale,
    word_roles,
)

PROMPT = "Question: Where would you keep milk cold?\nChoices:\nA) cupboard\nB) refrigerator\nAnswer:"
#          Question: Where would you keep milk cold? Choices: A)   cupboard B)  refrigerator Answer:
SCORES = [9.0, 0.5, 3.0, 2.0, 0.1, 4.0, 5.0, 8.0, 7.0, 1.0, 6.0, 0.9, -2.0]
TEMPLATE = [True, False, False, False, False, False, False, True, True, False, True, False, True]


def hand_made(scores=SCORES) -> TokenAttribution:
    words = PROMPT.split()
    offsets, at = [], 0
    for w in words:
        at = PROMPT.index(w, at)
        offsets.append((at, at + len(w)))
        at += len(w)
    return TokenAttribution(
        model_name="hand",
        method="input_x_gradient",
        prompt=PROMPT,
        target="refrigerator",
        target_mode="choice",
        input_tokens=(),
        input_offsets=(),
        output_tokens=(),
        token_scores=(),
        seq_scores=(),
        words=tuple(words),
        word_offsets=tuple(offsets),
        word_scores=tuple(scores),
        word_is_template=tuple(TEMPLATE),
    )


def chosen(rule: SelectionRule) -> list[str]:
    attr = hand_made()
    return [attr.words[i] for i in select_rationale(attr, rule)]


def test_top_k_skips_template_stopwords_and_letters_and_keeps_input_order():
    # by score: Question:(9,template) Choices:(8,template) A)(7,template) B)(6,template) cold?(5) milk(4)
    # would(3,stop) you(2,stop) cupboard(1) refrigerator(0.9)
    assert chosen(SelectionRule(top_k=3, span="all")) == ["milk", "cold?", "cupboard"]


def test_exclusions_can_be_switched_off():
    rule = SelectionRule(top_k=3, exclude_template=False, exclude_choice_letters=False, span="all")
    assert chosen(rule) == ["Question:", "Choices:", "B)"]  # "A)" is also the stopword "a"
    assert chosen(SelectionRule(top_k=3, exclude_stopwords=False, span="all")) == ["would", "milk", "cold?"]


def test_mass_threshold_keeps_the_best_words_until_the_share_is_reached():
    # candidates ("where" is a stopword): keep .1, milk 4, cold? 5, cupboard 1, refrigerator .9 (total 11)
    assert chosen(SelectionRule(top_k=None, mass=0.5, span="all")) == ["milk", "cold?"]  # 5 < 5.5 <= 9
    assert chosen(SelectionRule(top_k=None, mass=1.0, span="all")) == [
        "keep",
        "milk",
        "cold?",
        "cupboard",
        "refrigerator",
    ]


def test_z_threshold_keeps_outliers():
    # mean 2.2, std 1.93: only cold? (5) is above mean + 1 std; with z=0.5, milk (4 > 3.17) too
    assert chosen(SelectionRule(top_k=None, z=1.0, span="all")) == ["cold?"]
    assert chosen(SelectionRule(top_k=None, z=0.5, span="all")) == ["milk", "cold?"]


def test_a_rule_needs_exactly_one_criterion():
    for bad in (dict(top_k=3, mass=0.5), dict(top_k=None), dict(top_k=None, mass=1.5), dict(top_k=0)):
        with pytest.raises(InputError):  # a kdviz error: the CLI and the app show it as a message
            SelectionRule(**bad)


def test_a_rule_of_a_kind_and_a_number_as_a_form_gives_them():
    assert SelectionRule.of("top_k", 5.0) == SelectionRule(top_k=5)
    assert SelectionRule.of("mass", 0.5, exclude_template=False) == SelectionRule(
        top_k=None, mass=0.5, exclude_template=False
    )
    assert SelectionRule.of("z", 1).kind == "z" and SelectionRule(top_k=2).kind == "top_k"
    with pytest.raises(InputError, match="give the top-k rule a whole number"):
        SelectionRule.of("top_k", 2.5)
    with pytest.raises(InputError, match="give the mass rule a number"):
        SelectionRule.of("mass", None)
    with pytest.raises(InputError, match=r"mass must be in \(0, 1\]"):
        SelectionRule.of("mass", 1.5)
    with pytest.raises(UnknownNameError, match="unknown selection rule 'median'"):
        SelectionRule.of("median", 1)
    with pytest.raises(UnknownNameError, match="unknown exclusion 'exclude_vowels'"):
        SelectionRule.of("top_k", 1, exclude_vowels=True)


def test_gold_overlap_statistics():
    assert gold_overlap(["milk", "Refrigerator,"], "refrigerator") == (True, 0.5)
    assert gold_overlap(["milk", "cold?"], "refrigerator") == (False, 0.0)
    assert gold_overlap([], "refrigerator") == (False, 0.0)
    assert normalize("“Cold?”") == "cold"


def test_plausibility_against_a_human_rationale():
    p = plausibility(["milk", "cold?", "cupboard"], "keep milk cold")
    assert (p.precision, p.recall) == pytest.approx((2 / 3, 2 / 3))
    assert p.f1 == pytest.approx(2 / 3) and p.iou == pytest.approx(2 / 4)
    assert plausibility([], "x") == plausibility(["y"], "")


def test_word_roles_come_from_the_format_words_and_the_choice_labels():
    roles = word_roles(hand_made())
    assert roles == ("template",) + ("question",) * 6 + ("template",) * 2 + (
        "choice",
        "template",
        "choice",
        "template",
    )
    typed = "Pick one, I. think: A) green tea (B) coffee"  # no format words: "A)" typed, "I." ends a sentence
    n = len(typed.split())
    attr = dataclasses.replace(hand_made(), prompt=typed, words=tuple(typed.split()), word_offsets=((0, 0),) * n,
                               word_scores=(0.0,) * n, word_is_template=(False,) * n)  # fmt: skip
    assert word_roles(attr) == ("question",) * 4 + ("choice",) * 5


def test_a_question_span_leaves_the_listed_choices_out():
    assert chosen(SelectionRule(top_k=3, span="question")) == ["keep", "milk", "cold?"]  # not "cupboard"
    no_exclusions = dict(exclude_template=False, exclude_choice_letters=False, exclude_stopwords=False)
    everything = chosen(SelectionRule(top_k=20, span="question", **no_exclusions))
    assert everything == ["Where", "would", "you", "keep", "milk", "cold?"]  # never the format's words either
    rule = SelectionRule.of("top_k", 3, "question")
    assert rule.span == "question" and rule.describe().startswith("top-3, question words only, excluding")
    assert SelectionRule(top_k=3).span == "question"  # the default (docs/rationale_quality.md)
    assert "question" not in SelectionRule(top_k=3, span="all").describe()
    with pytest.raises(UnknownNameError, match="unknown rationale span 'choices'"):
        SelectionRule(top_k=3, span="choices")
