"""The training rows TRL's trainers take (`kdviz.distill.trl_methods`), built from kdviz records without trl.

- `preference_pairs` / `dpo_rows`: DPO's (prompt, chosen, rejected). The preferred answer is the teacher's where
  the data has one, else the gold one (with `dpo_rationale`, followed by the teacher's rationale words); the rejected
  one is the untrained student's own answer where it differs, else a seeded draw among the other choices (a
  free-form question the student already answers right gives no pair).
- `gkd_rows`: the student's prompt and the teacher's (else the gold) answer, tokenised as kdviz's loop tokenises
  them, for GKD's collator; `check_gkd_teacher` says when a teacher cannot be compared token by token.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kdviz.answers import is_correct
from kdviz.config import TrainConfig
from kdviz.errors import InputError
from kdviz.lm.models import LoadedModel
from kdviz.lm.prompts import SYSTEM_PROMPT, answer_choices, encode
from kdviz.records import Record, TrainExample

from .evaluation import normalize_answer, predict_answers
from .methods import Method
from .pairs import check_same_vocabulary, encode_pairs


@dataclass(frozen=True)
class PreferencePair(Record):
    """One DPO example: the student's prompt, the preferred answer, the rejected one and where that came from."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    rejected_from: Literal["student", "choice"]  # the untrained student's own answer, or a drawn wrong choice


def preference_pairs(
    student: LoadedModel, items: Sequence[TrainExample], method: Method, config: TrainConfig
) -> list[PreferencePair]:
    """Returns the DPO pairs of the items that give one (see the module's docstring); predicts with `student`."""
    own_answers = predict_answers(student, items, method, predict=config.predict)
    draw = random.Random(config.seed)
    pairs = []
    for item, own in zip(items, own_answers, strict=True):
        chosen = method.target(item)
        if not chosen:
            continue
        if own.strip() and not is_correct(own, chosen):  # by value for arithmetic answers
            rejected, source = own, "student"
        else:
            wrong = [c for c in answer_choices(item.example) if normalize_answer(c) != normalize_answer(chosen)]
            if not wrong:
                continue
            rejected, source = draw.choice(wrong), "choice"
        if config.dpo_rationale and item.rationale:
            chosen = f"{chosen}\nRationale: {item.rationale.strip()}"
        pairs.append(PreferencePair(item.example.id, method.prompt(item), chosen, rejected, source))
    return pairs


def chat_turns(student: LoadedModel, prompt: str) -> list[dict[str, str]]:
    """Returns the prompt as the chat turns kdviz gives a chat model (`kdviz.lm.prompts.encode`)."""
    turns = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    try:
        student.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    except Exception:  # as encode: some templates (Gemma's) refuse a system turn
        return turns[1:]
    return turns


def dpo_rows(student: LoadedModel, pairs: Sequence[PreferencePair]) -> list[dict[str, Any]]:
    """Returns TRL's preference rows: conversational for a chat student (TRL applies its template), else text."""
    if student.chat:
        answer = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
        return [{"prompt": chat_turns(student, p.prompt), "chosen": answer(p.chosen), "rejected": answer(p.rejected)}
                for p in pairs]  # fmt: skip
    rows = []
    for p in pairs:
        prefix = encode(student, p.prompt).target_prefix  # the space kdviz puts between prompt and answer
        rows.append({"prompt": p.prompt, "chosen": prefix + p.chosen, "rejected": prefix + p.rejected})
    return rows


def gkd_rows(student: LoadedModel, items: Sequence[TrainExample], method: Method, max_length: int):
    """Returns (rows, truncated): the prompt and the target answer, tokenised as kdviz's loop does (GKD's collator
    takes token ids, with `completion_mask` marking the answer)."""
    pairs = [(method.prompt(t), str(method.target(t))) for t in items]
    encoded, truncated = encode_pairs(student, pairs, max_length)
    rows = [
        {"prompt": text, "input_ids": [*p, *a], "attention_mask": [1] * (len(p) + len(a)),
         "completion_mask": [0] * len(p) + [1] * len(a)}
        for (text, _), (p, a) in zip(pairs, encoded, strict=True)
    ]  # fmt: skip
    return rows, truncated


def check_gkd_teacher(student: LoadedModel, teacher: LoadedModel) -> None:
    """Raises InputError unless GKD can compare the two models' next-token distributions position by position."""
    if teacher.is_encoder_decoder:
        raise InputError(f"gkd needs a decoder-only teacher; {teacher.name} is encoder-decoder")
    check_same_vocabulary(student, teacher, "gkd")
    sizes = (student.config.get_text_config().vocab_size, teacher.config.get_text_config().vocab_size)
    if sizes[0] != sizes[1]:
        raise InputError(
            f"gkd compares whole next-token distributions, so the output layers must match: {student.name} has "
            f"{sizes[0]} rows, {teacher.name} {sizes[1]}. Use teacher_label or a teacher of the student's family."
        )
