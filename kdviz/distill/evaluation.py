"""A student's answers on held-out examples, prompted exactly as it was trained (shared by Train and Compare).

Examples with choices (multiple choice, NLI) are answered by scoring each choice as the continuation of the
student's prompt (which lists the choices: "choice-text"), or in another prediction mode when asked (issue #12):
"letter" reads the next-token letter after the student's lettered choices (an NLI prompt letters its labels for
it), "cloze" scores each choice after the student's prompt without the list. Free-form questions are answered by
greedy generation, compared by value where the gold answer is arithmetic (SVAMP's equations), else after
normalisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from kdviz.answers import is_correct, normalize_answer  # the grading rule; re-exported for distill and compare
from kdviz.lm.inference import generate_batch, score_prompts
from kdviz.lm.prompts import answer_choices, check_predict_mode, render_prediction
from kdviz.records import PredictMode, TrainExample

from .methods import BASELINE, Method

Progress = Callable[[int, int], None]
__all__ = ["accuracy", "is_correct", "normalize_answer", "predict_answers", "student_prompt"]


def student_prompt(method: Method, item: TrainExample, predict: PredictMode | None = None) -> str:
    """Returns the prompt a student answers `item` on in prediction mode `predict`: the prompt `method` trains on
    (a multiple-choice one lists the choices lettered, so it serves "letter" and "choice-text", and None, the same
    as "choice-text"), for "letter" on an NLI item that prompt with its labels lettered (as the teacher's letter
    prompt: `render_prediction`), or for "cloze" on a multiple-choice item the same prompt without the list of
    choices. Like "cloze", NLI's "letter" asks in a format the student did not train on: it trained to answer with
    the label's words, so the letter it reads measures how the student transfers to the lettered format.
    """
    example = item.example
    if predict is not None:
        check_predict_mode(predict)
    if predict == "letter" and example.task == "nli":  # the method's own additions (rationale line, prefix) kept
        return method.render(item, base=render_prediction(example, "letter")).text
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


def accuracy(predicted: Sequence[str], items: Sequence[TrainExample]) -> float | None:
    """Returns the share of correct answers among items with a gold answer (None if there are none)."""
    marks = [is_correct(p, t.example.answer) for p, t in zip(predicted, items, strict=True)]
    graded = [m for m in marks if m is not None]
    return sum(graded) / len(graded) if graded else None
