"""Grading answers: the safe arithmetic evaluator, free-form answers graded by value (SVAMP), others by text."""

import pytest

from kdviz.answers import evaluate_arithmetic, is_correct, numeric_match, numeric_value
from kdviz.distill.evaluation import accuracy
from kdviz.records import Example, TrainExample


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("( 84.0 / 2.0 )", 42.0),
        ("84/2", 42.0),
        ("( ( 17.0 + 15.0 ) + 2.0 )", 34.0),
        ("-3 + 1.5", -1.5),
        ("-(2 - 5) * 4", 12.0),
        ("+7", 7.0),
        (".5 * 4", 2.0),
    ],
)
def test_arithmetic_is_evaluated(text, value):
    assert evaluate_arithmetic(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",  # a call: never run
        "__import__('os').system('true')",
        "2**100000",  # no power: it would take the machine's memory
        "2 ** 3",
        "1 / 0",  # division by zero
        "(3 - 3) and 1",
        "x + 1",
        "[1, 2]",
        "True + 1",  # booleans are not numbers here
        "1e308 * 10",  # infinite
        "3 // 2",
        "7 % 4",
        "1 < 2",
        "",
        None,
        "(" * 150 + "1" + ")" * 150,  # over the length bound (deep nesting)
    ],
)
def test_anything_but_plain_arithmetic_is_refused(text):
    assert evaluate_arithmetic(text) is None


def test_the_value_of_a_generated_answer():
    assert numeric_value("The answer is (84 / 2).") == 42.0
    # the expression after "answer is", not the last number of the reasoning before it
    assert numeric_value("84 / 2 = 42. So 7 * 36 is 252. The answer is (7 * 30).") == 210.0
    assert numeric_value("He scored 84 points in 2 rounds, so 42.") == 42.0  # the last number
    assert numeric_value("1,000 apples") == 1000.0
    assert numeric_value("no number here") is None


def test_numeric_match_compares_values_within_a_relative_tolerance():
    gold = "( 84.0 / 2.0 )"
    assert numeric_match("( 84.0 / 2.0 )", 42.0)
    assert numeric_match("84/2", gold) and numeric_match("42", gold) and numeric_match("The answer is (84 / 2).", gold)
    assert not numeric_match("84 / 3", gold) and not numeric_match("42.001", gold)
    assert numeric_match("0.1 + 0.2", "0.3")  # floating-point error is not a wrong answer
    assert not numeric_match("__import__('os')", gold) and not numeric_match("", gold)
    assert not numeric_match("1 / 0", "0") and not numeric_match("5", None)


def test_is_correct_grades_arithmetic_by_value_and_other_answers_by_text():
    assert is_correct("The answer is (84 / 2).", "( 84.0 / 2.0 )") is True
    assert is_correct("84 + 2", "( 84.0 / 2.0 )") is False
    assert is_correct("The Refrigerator!", "refrigerator") is True  # normalised exact match, as before
    assert is_correct("fridge", "refrigerator") is False
    assert is_correct("anything", None) is None


def test_student_accuracy_on_svamp_style_items_counts_equal_values():
    items = [
        TrainExample(Example("s1", "qa", "q?", answer="( 84.0 / 2.0 )", answer_value=42.0)),
        TrainExample(Example("s2", "qa", "q?", answer="( 7.0 * 30.0 )", answer_value=210.0)),
        TrainExample(Example("s3", "qa", "q?")),  # no gold answer: not graded
    ]
    assert accuracy(["84 / 2", "7 * 36", "?"], items) == 0.5


def test_a_teachers_generated_answer_to_a_math_problem_is_graded_by_value():
    from kdviz.attribution.targets import _prediction
    from kdviz.records import Example

    problem = Example("s1", "qa", "Luke scored 84 points in 2 rounds. How many per round?", answer="( 84.0 / 2.0 )")
    assert _prediction(problem, None, "The answer is (84 / 2).", "cloze").correct is True
    assert _prediction(problem, None, "He scored 40 points a round.", "cloze").correct is False
    assert _prediction(problem, None, None, "cloze").correct is None  # nothing generated: nothing to grade
