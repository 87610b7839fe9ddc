"""Teacher and student inference: free generation and multiple-choice prediction by scoring each choice."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kdviz.errors import InputError
from kdviz.records import ChoiceScores, Generation

from .forward import make_batch, model_lock, shared_prefix_logprobs, target_logits, target_logprobs
from .prompts import LETTERS, EncodedPrompt, encode, encode_target

Progress = Callable[[int, int], None]  # (done, total)

# End-of-turn markers of common chat templates: generation stops at any of them, not only at eos.
_STOP_TOKENS = ("<|im_end|>", "<|end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>")


def _stop_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in _STOP_TOKENS if t in vocab)
    return sorted(ids)


@torch.no_grad()
def generate_batch(
    loaded, prompts: Sequence[str], max_new_tokens: int = 24, batch_size: int = 8, on_progress: Progress | None = None
) -> list[Generation]:
    """Returns greedy completions of each prompt, generated `batch_size` at a time.

    Base models (no chat template) keep going past their answer, so their completion stops at the first line break.
    """
    if max_new_tokens < 1:
        raise InputError("max_new_tokens must be at least 1")
    tokenizer, model = loaded.tokenizer, loaded.model
    stops = _stop_ids(tokenizer)
    results: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        encoded = [encode(loaded, p).ids for p in chunk]
        width = max(map(len, encoded))
        # Left padding for generation: new tokens follow every prompt directly.
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for b, ids in enumerate(encoded):
            input_ids[b, width - len(ids) :] = torch.tensor(ids)
            mask[b, width - len(ids) :] = 1
        with model_lock(loaded):  # see kdviz.lm.forward: no other thread changes the model meanwhile
            out = model.generate(
                input_ids=input_ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stops,
            )
        new = out[:, 1:] if loaded.is_encoder_decoder else out[:, width:]  # drop decoder start / the prompt
        for prompt, row in zip(chunk, new.tolist(), strict=False):
            ids = _trim(loaded, row, stops)
            results.append(
                Generation(
                    model_name=loaded.name,
                    prompt=prompt,
                    completion=tokenizer.decode(ids).strip(),
                    completion_tokens=tuple(tokenizer.decode([i]) for i in ids),
                )
            )
        if on_progress:
            on_progress(len(results), len(prompts))
    return results


def _trim(loaded, ids: list[int], stops: list[int]) -> list[int]:
    kept: list[int] = []
    for i in ids:
        if i in stops or i == loaded.tokenizer.pad_token_id:
            break
        if not loaded.chat and "\n" in loaded.tokenizer.decode([i]) and loaded.tokenizer.decode(kept).strip():
            break
        kept.append(i)
    return kept


def generate(loaded, prompt: str, max_new_tokens: int = 24) -> Generation:
    """Returns the model's greedy completion of `prompt` (through its chat template when it has one)."""
    return generate_batch(loaded, [prompt], max_new_tokens=max_new_tokens)[0]


def _check_choice_lists(prompts: Sequence[str], choices: Sequence[Sequence[str]]) -> None:
    if len(prompts) != len(choices):
        raise InputError(f"{len(prompts)} prompts but {len(choices)} choice lists")
    if any(not options for options in choices):
        raise InputError("an example to score has no choices")


def _prompt_chunks(targets: Sequence[Sequence], batch_size: int) -> list[tuple[int, int]]:
    """Returns [start, stop) ranges of whole prompts holding at most `batch_size` choices (at least one prompt)."""
    chunks, start, pairs = [], 0, 0
    for n, options in enumerate(targets):
        if n > start and pairs + len(options) > batch_size:
            chunks.append((start, n))
            start, pairs = n, 0
        pairs += len(options)
    return chunks + [(start, len(targets))]


@torch.no_grad()
def score_choices_batch(
    loaded,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    batch_size: int = 16,
    on_progress: Progress | None = None,
    shared_prefix: bool = True,
) -> list[ChoiceScores]:
    """Returns, per prompt, the mean log-probability per token of each choice as the answer's continuation.

    Length normalisation keeps long choices from losing just for having more tokens. `batch_size` counts
    (prompt, choice) pairs. With `shared_prefix` (decoder-only models), each prompt runs once and its choices
    continue from its key/value cache (`kdviz.lm.forward.shared_prefix_logprobs`: the same scores to float
    rounding, the prompt not recomputed per choice); otherwise, and for encoder-decoders, each pair is one row.
    """
    _check_choice_lists(prompts, choices)
    encoded_prompts, targets = [], []
    for prompt, options in zip(prompts, choices, strict=True):
        encoded = encode(loaded, prompt)
        encoded_prompts.append(encoded.ids)
        targets.append([encode_target(loaded, encoded, option) for option in options])
    pairs = [(encoded_prompts[n], t) for n, options in enumerate(targets) for t in options]
    owners = [n for n, options in enumerate(targets) for _ in options]
    means: list[float] = []
    if shared_prefix and not loaded.is_encoder_decoder:
        for start, stop in _prompt_chunks(targets, batch_size):
            logp = shared_prefix_logprobs(loaded, encoded_prompts[start:stop], targets[start:stop])
            if logp is None:  # the model's cache cannot share a prefix exactly: the pairs from here, one row each
                break
            lengths = torch.tensor([len(t) for options in targets[start:stop] for t in options], device=logp.device)
            means += (logp.sum(1) / lengths).tolist()
            if on_progress:
                on_progress(stop, len(prompts))
    for start in range(len(means), len(pairs), batch_size):  # one row per (prompt, choice) pair
        chunk = pairs[start : start + batch_size]
        logp, _ = target_logprobs(loaded, make_batch(loaded, chunk))
        means += (logp.sum(1) / torch.tensor([len(t) for _, t in chunk], device=logp.device)).tolist()
        if on_progress:
            on_progress(owners[min(start + batch_size, len(pairs)) - 1] + 1, len(prompts))
    results, at = [], 0
    for prompt, options in zip(prompts, choices, strict=False):
        results.append(ChoiceScores(loaded.name, prompt, tuple(options), tuple(means[at : at + len(options)])))
        at += len(options)
    return results


def letter_token_ids(loaded, encoded: EncodedPrompt, n_choices: int) -> list[int]:
    """Returns the token ids of the letters A, B, ... of `n_choices` choices as the first answer token after the
    encoded prompt.

    Raises:
        InputError: more choices than letters, or a tokenizer that gives two letters one first token.
    """
    if n_choices > len(LETTERS):
        raise InputError(f"at most {len(LETTERS)} choices can be lettered, got {n_choices}")
    ids = [encode_target(loaded, encoded, letter)[0] for letter in LETTERS[:n_choices]]
    if len(set(ids)) != len(ids):
        raise InputError(f"{loaded.name}'s tokenizer does not give each choice letter its own first token")
    return ids


def letter_scores(
    loaded, prompt: str, choices: Sequence[str], next_logprobs: torch.Tensor, letter_ids: Sequence[int]
) -> ChoiceScores:
    """Returns the choices' scores read off one next-token log-distribution [V]: each letter's log-probability,
    renormalised over the letters (so the scores' exps sum to 1)."""
    over_letters = torch.log_softmax(next_logprobs.detach()[list(letter_ids)], dim=-1)
    return ChoiceScores(loaded.name, prompt, tuple(choices), tuple(over_letters.tolist()))


@torch.no_grad()
def score_letters_batch(
    loaded,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    batch_size: int = 16,
    on_progress: Progress | None = None,
) -> list[ChoiceScores]:
    """Returns, per prompt that lists its choices under the letters A, B, ..., the log-probability of each
    choice's letter as the answer's first token, renormalised over the letters (so the scores' exps sum to 1).

    One forward per prompt: the letters are read off the next-token distribution at the end of the prompt.
    """
    _check_choice_lists(prompts, choices)
    items, letter_ids = [], []
    for prompt, options in zip(prompts, choices, strict=True):
        encoded = encode(loaded, prompt)
        ids = letter_token_ids(loaded, encoded, len(options))
        items.append((encoded.ids, (ids[0],)))
        letter_ids.append(ids)
    results: list[ChoiceScores] = []
    for start in range(0, len(items), batch_size):
        logits, _ = target_logits(loaded, make_batch(loaded, items[start : start + batch_size]))
        logp = torch.log_softmax(logits[:, 0].float(), dim=-1)
        for row, n in zip(logp, range(start, min(start + batch_size, len(items))), strict=True):
            results.append(letter_scores(loaded, prompts[n], choices[n], row, letter_ids[n]))
        if on_progress:
            on_progress(len(results), len(prompts))
    return results


def score_prompts(
    loaded,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    letters: bool,
    batch_size: int = 16,
    on_progress: Progress | None = None,
) -> list[ChoiceScores]:
    """Returns the choice scores of already-rendered prompts: by the next-token letter when `letters` (the prompts
    list the choices lettered), else by each choice's text as the continuation. Faithfulness checks score edited
    prompts through this, exactly as the prediction was made."""
    score = score_letters_batch if letters else score_choices_batch
    return score(loaded, prompts, choices, batch_size=batch_size, on_progress=on_progress)


def score_choices(loaded, prompt: str, choices: Sequence[str]) -> ChoiceScores:
    """Returns the length-normalised log-likelihood of each choice; `.predicted` is the model's answer."""
    return score_choices_batch(loaded, [prompt], [choices])[0]
