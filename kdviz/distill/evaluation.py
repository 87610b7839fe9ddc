"""A student's answers on held-out examples, prompted exactly as it was trained (shared by Train and Compare).

Examples with choices (multiple choice, NLI) are answered by scoring each choice as the continuation of the
student's prompt; free-form questions by greedy generation, compared after normalisation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

from kdviz.lm.inference import generate_batch, score_choices_batch
from kdviz.lm.prompts import answer_choices
from kdviz.records import TrainExample

from .methods import BASELINE, Method

Progress = Callable[[int, int], None]


def normalize_answer(text: str | None) -> str:
    """Lower-cases, drops punctuation, articles and extra spaces (SQuAD's answer normalisation)."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def predict_answers(
    loaded,
    items: Sequence[TrainExample],
    method: Method = BASELINE,
    batch_size: int = 16,
    on_progress: Progress | None = None,
) -> list[str]:
    """Returns the model's answer to each item, with the prompt that `method` trains on."""
    answers: list[str | None] = [None] * len(items)
    scored = [i for i, t in enumerate(items) if answer_choices(t.example)]
    free = [i for i, t in enumerate(items) if not answer_choices(t.example)]
    if scored:
        results = score_choices_batch(
            loaded,
            [method.prompt(items[i]) for i in scored],
            [answer_choices(items[i].example) for i in scored],
            batch_size=batch_size,
            on_progress=on_progress,
        )
        for i, result in zip(scored, results, strict=True):
            answers[i] = result.predicted
    if free:
        gens = generate_batch(loaded, [method.prompt(items[i]) for i in free], batch_size=batch_size)
        for i, gen in zip(free, gens, strict=True):
            answers[i] = gen.completion
    return [a or "" for a in answers]


def is_correct(predicted: str, gold: str | None) -> bool | None:
    """Returns whether a prediction matches the gold answer (None when there is no gold answer)."""
    return None if gold is None else normalize_answer(predicted) == normalize_answer(gold)


def accuracy(predicted: Sequence[str], items: Sequence[TrainExample]) -> float | None:
    """Returns the share of correct answers among items with a gold answer (None if there are none)."""
    marks = [is_correct(p, t.example.answer) for p, t in zip(predicted, items, strict=True)]
    graded = [m for m in marks if m is not None]
    return sum(graded) / len(graded) if graded else None
