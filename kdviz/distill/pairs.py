"""Training pairs for a student: the held-out split, their token ids, and the check that logit-level methods need
(teacher and student share a vocabulary). Read by kdviz's own loop and by the TRL methods."""

from __future__ import annotations

from collections.abc import Sequence

from kdviz.data import hold_out
from kdviz.errors import InputError
from kdviz.lm.models import LoadedModel
from kdviz.lm.prompts import encode, encode_target
from kdviz.records import TrainExample


def split_train_eval(
    items: Sequence[TrainExample], eval_size: int, seed: int
) -> tuple[list[TrainExample], list[TrainExample]]:
    """Returns (train, eval): a seeded draw (`kdviz.data.hold_out`) of min(eval_size, half the data) held-out
    examples."""
    if len(items) < 2:
        raise InputError(f"training needs at least 2 examples (1 to train, 1 to evaluate); the data has {len(items)}")
    return hold_out(items, max(1, min(eval_size, len(items) // 2)), seed)


def check_same_vocabulary(student: LoadedModel, teacher: LoadedModel, method: str = "logit_kd") -> None:
    """Raises InputError unless both tokenizers map the same strings to the same ids (logit KD compares them)."""
    s_vocab, t_vocab = student.tokenizer.get_vocab(), teacher.tokenizer.get_vocab()
    if s_vocab != t_vocab:
        differ = len(set(s_vocab.items()) ^ set(t_vocab.items()))
        raise InputError(
            f"{method} needs teacher and student to share a vocabulary: {teacher.name} has {len(t_vocab)} tokens, "
            f"{student.name} has {len(s_vocab)} ({differ} entries differ). Use teacher_label, rationale_input or "
            "multitask instead, or a teacher of the student's family."
        )


def encode_pairs(loaded: LoadedModel, pairs: Sequence[tuple[str, str]], max_length: int):
    """Returns (prompt ids, target ids + eos) per pair; over-long prompts keep their end (the question's cue)."""
    eos = loaded.tokenizer.eos_token_id
    items, truncated = [], 0
    for prompt, target in pairs:
        encoded = encode(loaded, prompt)
        target_ids = encode_target(loaded, encoded, target) + ((eos,) if eos is not None else ())
        target_ids = target_ids[: max_length // 2] if len(target_ids) > max_length // 2 else target_ids
        room = max_length - len(target_ids)
        prompt_ids = encoded.ids
        if len(prompt_ids) > room:
            prompt_ids, truncated = prompt_ids[-room:], truncated + 1
        items.append((tuple(prompt_ids), tuple(target_ids)))
    return items, truncated
