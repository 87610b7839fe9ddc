"""Grading answers: a safe evaluator of arithmetic expressions, free-form answers graded by value, others by text.

SVAMP's gold answers are equations ("( 84.0 / 2.0 )") and a model may answer "84 / 2" or "The answer is (84 / 2).";
they are graded by value, not by string. The evaluator parses with Python's `ast` and walks only numbers, + - * /,
unary signs and parentheses: anything else (names, calls, attributes, powers, comparisons) is refused, so no text
from a dataset or a model is ever run as code.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import string

MAX_EXPRESSION_CHARS = 200  # longer "expressions" are prose or an attack (deep nesting), not an answer
REL_TOLERANCE = 1e-6  # answers equal within this relative difference match (0.1 + 0.2 == 0.3)
ABS_TOLERANCE = 1e-9  # and within this absolute one, for a gold value of 0

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
# A run of arithmetic characters holding a digit: a candidate answer inside generated prose.
_EXPRESSION_RUN = re.compile(r"[\d.+\-*/() ]*\d[\d.+\-*/() ]*")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # "1,000" -> "1000"
_ANSWER_CUE = re.compile(r"answer is", re.IGNORECASE)


def _value(node: ast.AST) -> float:
    """Returns the value of an allowed node; raises ValueError for any other node."""
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, complex or str
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def evaluate_arithmetic(text: str | None) -> float | None:
    """Returns the value of an arithmetic expression ("( 84.0 / 2.0 )" -> 42.0), or None for anything else.

    Numbers (integers, decimals), + - * /, unary minus and plus, and parentheses only: powers, names, calls and
    every other syntax give None, as do division by zero, an infinite or undefined result, and text over
    `MAX_EXPRESSION_CHARS` characters.
    """
    text = (text or "").strip()
    if not text or len(text) > MAX_EXPRESSION_CHARS:
        return None
    try:
        value = _value(ast.parse(text, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError, MemoryError):
        return None
    return value if math.isfinite(value) else None


def _trimmed(run: str) -> str:
    """Returns a candidate without the sentence around it: spaces, a final full stop, unmatched parentheses and
    dangling operators at its ends ("(84 / 2)." -> "(84 / 2)", "3-" -> "3")."""
    run = run.strip()
    previous = None
    while run != previous:
        previous = run
        run = run.strip(" ").rstrip(".").rstrip("+-*/ ").lstrip("*/ ")
        if run.startswith("(") and run.count("(") > run.count(")"):
            run = run[1:]
        if run.endswith(")") and run.count(")") > run.count("("):
            run = run[:-1]
    return run


def numeric_value(text: str | None) -> float | None:
    """Returns the number an answer gives: the whole text as an expression ("84 / 2"), else the expression after
    its last "answer is" ("The answer is (84 / 2)."), else its last expression or number (None: it has none)."""
    text = _THOUSANDS.sub("", (text or "").strip())
    whole = evaluate_arithmetic(_trimmed(text))
    if whole is not None:
        return whole
    cues = list(_ANSWER_CUE.finditer(text))
    if cues:
        after = _EXPRESSION_RUN.search(text, cues[-1].end())
        if after is not None:
            value = evaluate_arithmetic(_trimmed(after.group()))
            if value is not None:
                return value
    for run in reversed(_EXPRESSION_RUN.findall(text)):
        value = evaluate_arithmetic(_trimmed(run))
        if value is not None:
            return value
    return None


def is_numeric_answer(gold: str | None) -> bool:
    """Returns whether a gold answer is graded by value: it is an arithmetic expression or a number."""
    return evaluate_arithmetic(gold) is not None


def numeric_match(prediction: str | None, gold: str | float | None) -> bool:
    """Returns whether a prediction's value (`numeric_value`) equals the gold answer's (an expression or a number)
    within `REL_TOLERANCE` relative (`ABS_TOLERANCE` near 0); False when either has no value."""
    wanted = gold if isinstance(gold, (int, float)) and not isinstance(gold, bool) else evaluate_arithmetic(gold)
    got = numeric_value(prediction)
    if wanted is None or got is None:
        return False
    return math.isclose(got, float(wanted), rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


def normalize_answer(text: str | None) -> str:
    """Lower-cases, drops punctuation, articles and extra spaces (SQuAD's answer normalisation)."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def is_correct(predicted: str | None, gold: str | None) -> bool | None:
    """Returns whether a prediction matches the gold answer (None when there is no gold answer): by value when the
    gold answer is an arithmetic expression or a number (`numeric_match`: "84 / 2" and "The answer is (84 / 2)."
    both match "( 84.0 / 2.0 )"), else after normalisation (`normalize_answer`)."""
    if gold is None:
        return None
    if is_numeric_answer(gold):
        return numeric_match(predicted, gold)
    return normalize_answer(predicted) == normalize_answer(gold)
