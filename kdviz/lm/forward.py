"""Batched teacher-forced forward passes: log-probabilities of target tokens given prompts.

Shared by choice scoring, attribution and training. Batches are right-padded: with causal attention, padding after
a sequence cannot change it, so default position ids stay exact and batched results equal one-by-one results.

Every forward holds the model's lock (`model_lock`): loaded models are shared between threads (a Compare job and a
Teacher click on the same model), and a caller that changes a model for one call (attention's eager switch) holds
the same lock, so no other thread runs that model while it is changed.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from dataclasses import dataclass

import torch

Item = tuple[tuple[int, ...], tuple[int, ...]]  # (prompt ids, target ids)


@dataclass
class Batch:
    """Right-padded tensors for a list of (prompt ids, target ids) pairs.

    Decoder-only: `input_ids` [B, L] holds prompt + target. Encoder-decoder: `input_ids` holds the prompt and
    `decoder_input_ids` [B, T] the shifted target. `target_ids`/`target_mask` are [B, T].
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_ids: torch.Tensor
    target_mask: torch.Tensor
    prompt_lengths: list[int]
    decoder_input_ids: torch.Tensor | None = None


def make_batch(loaded, items: list[Item]) -> Batch:
    """Returns the padded batch for `items` on the model's device."""
    pad = loaded.tokenizer.pad_token_id
    enc_dec = loaded.is_encoder_decoder
    seqs = [list(p) if enc_dec else list(p) + list(t) for p, t in items]
    width = max(map(len, seqs))
    t_width = max(len(t) for _, t in items)
    input_ids = torch.full((len(items), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    target_ids = torch.full((len(items), t_width), pad, dtype=torch.long)
    target_mask = torch.zeros((len(items), t_width), dtype=torch.long)
    for b, (seq, (_, target)) in enumerate(zip(seqs, items, strict=False)):
        input_ids[b, : len(seq)] = torch.tensor(seq)
        attention_mask[b, : len(seq)] = 1
        target_ids[b, : len(target)] = torch.tensor(target)
        target_mask[b, : len(target)] = 1
    decoder_input_ids = None
    if enc_dec:
        start = loaded.config.decoder_start_token_id
        start = pad if start is None else start
        decoder_input_ids = torch.cat([torch.full((len(items), 1), start), target_ids[:, :-1]], dim=1)
        decoder_input_ids = decoder_input_ids.to(loaded.device)
    dev = loaded.device
    return Batch(
        input_ids.to(dev),
        attention_mask.to(dev),
        target_ids.to(dev),
        target_mask.to(dev),
        [len(p) for p, _ in items],
        decoder_input_ids,
    )


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(loaded) -> threading.RLock:
    """Returns the lock of `loaded`'s model (the same object for every LoadedModel of one model).

    Hold it while running the model, or while changing it for a call; it is re-entrant, so a holder can run the
    forwards of this module inside.
    """
    model = getattr(loaded.model, "module", loaded.model)  # DistributedDataParallel wraps the model in .module
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def embed(loaded, input_ids: torch.Tensor) -> torch.Tensor:
    """Returns the input embeddings [B, L, D] exactly as the model computes them (scaling included)."""
    return loaded.model.get_input_embeddings()(input_ids)


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def target_logits(loaded, batch: Batch, inputs_embeds: torch.Tensor | None = None, output_attentions: bool = False):
    """Returns (logits [B', T, V] at the target positions, the model outputs): position t predicts target token t.

    `inputs_embeds` [B', L, D] may repeat the batch (B' = k·B, e.g. integrated-gradient steps).
    """
    model = loaded.model
    reps = 1 if inputs_embeds is None else inputs_embeds.shape[0] // batch.input_ids.shape[0]

    def rep(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.repeat(reps, *([1] * (t.dim() - 1)))

    kwargs = dict(attention_mask=rep(batch.attention_mask), output_attentions=output_attentions)
    if inputs_embeds is None:
        kwargs["input_ids"] = batch.input_ids
    else:
        kwargs["inputs_embeds"] = inputs_embeds
    if loaded.is_encoder_decoder:
        with model_lock(loaded):
            out = model(decoder_input_ids=rep(batch.decoder_input_ids), use_cache=False, **kwargs)
        return out.logits, out
    # Only the logits at target positions are needed; with a 150k vocabulary the rest dominate memory.
    first = min(batch.prompt_lengths) - 1
    keep = batch.input_ids.shape[1] - first
    with model_lock(loaded):
        if _accepts_logits_to_keep(model):
            out = model(logits_to_keep=keep, use_cache=False, **kwargs)
            logits = out.logits[:, -keep:]
        else:
            out = model(use_cache=False, **kwargs)
            logits = out.logits[:, first:]
    index = torch.tensor(batch.prompt_lengths, device=logits.device).repeat(reps) - 1 - first
    index = index[:, None] + torch.arange(batch.target_ids.shape[1], device=logits.device)[None, :]
    index = index.clamp(max=logits.shape[1] - 1)
    return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1])), out


def target_logprobs(loaded, batch: Batch, inputs_embeds: torch.Tensor | None = None, output_attentions: bool = False):
    """Returns (log p(target token) [B, T] with zeros at padding, the model outputs).

    `inputs_embeds` [B', L, D] may repeat the batch (B' = k·B, e.g. integrated-gradient steps): the result is
    then [B', T].
    """
    logits, out = target_logits(loaded, batch, inputs_embeds, output_attentions)
    reps = logits.shape[0] // batch.target_ids.shape[0]
    target_ids, target_mask = batch.target_ids.repeat(reps, 1), batch.target_mask.repeat(reps, 1)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target_ids[..., None]).squeeze(-1)
    return logp * target_mask, out
