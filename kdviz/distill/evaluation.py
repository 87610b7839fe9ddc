"""A student's answers on held-out examples, prompted exactly as it was trained (shared by Train and Compare).

Examples with choices (multiple choice, NLI) are answered by scoring each choice as the continuation of the
student's prompt (which lists the choices: "choice-text"), or in another prediction mode when asked (issue #12):
"letter" reads the next-token letter after the student's lettered choices, "cloze" scores each choice after the
student's prompt without the list. Free-form questions are answered by greedy generation, compared after
normalisation.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Sequence

from kdviz.errors import InputError
from kdviz.lm.inference import generate_batch, score_prompts
from kdviz.lm.prompts import answer_choices, check_predict_mode
from kdviz.records import PredictMode, TrainExample

from .methods import BASELINE, Method

Progress = Callable[[int, int], None]


def normalize_answer(text: str | None) -> str:
    """Lower-cases, drops punctuation, articles and extra spaces (SQuAD's answer normalisation)."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def student_prompt(method: Method, item: TrainExample, predict: PredictMode | None = None) -> str:
    """Returns the prompt a student answers `item` on in prediction mode `predict`: the prompt `method` trains on
    (it lists the choices lettered, so it serves "letter" and "choice-text", and None, the same as "choice-text"),
    or for "cloze" on a multiple-choice item the same prompt without the list of choices.

    Raises:
        InputError: "letter" for an NLI item (a student's NLI prompt does not letter its labels).
    """
    example = item.example
    if predict is not None:
        check_predict_mode(predict)
    if predict == "letter" and answer_choices(example) and example.task != "mcqa":
        raise InputError(
            f"example {example.id!r}: letter mode reads the choice letters, and a student's {example.task} prompt "
            "does not letter its labels; use choice-text or cloze"
        )
    if predict == "cloze" and example.task == "mcqa":  # the method's own additions (rationale line, prefix) kept
        return method.prompt(dataclasses.replace(item, example=dataclasses.replace(example, task="qa", choices=())))
    return method.prompt(item)


def predict_answers(
    loaded,
    items: Sequence[TrainExample],
    method: Method = BASELINE,
    batch_size: int = 16,
    on_progress: Progress | None = None,
    predict: PredictMode | None = None,
) -> list[str]:
    """Returns the model's answer to each item, with the prompt that `method` trains on.

    `predict`: None (each choice's text after the student's prompt, as students have always been evaluated; the
    same as "choice-text"), "letter" or "cloze" (see `student_prompt`).
    """
    answers: list[str | None] = [None] * len(items)
    scored = [i for i, t in enumerate(items) if answer_choices(t.example)]
    free = [i for i, t in enumerate(items) if not answer_choices(t.example)]
    if scored:
        results = score_prompts(
            loaded,
            [student_prompt(method, items[i], predict) for i in scored],
            [answer_choices(items[i].example) for i in scored],
            letters=predict == "letter",
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
