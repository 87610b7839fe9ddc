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
from contextlib import contextmanager
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


@contextmanager
def eager_attention(loaded):
    """Runs the block with the model on eager attention (SDPA returns no attention weights) and the model's lock
    held, so no other thread runs the model while it is switched; switches back on exit."""
    model = loaded.model
    with model_lock(loaded):
        previous = model.config._attn_implementation
        if previous != "eager":
            model.set_attn_implementation("eager")
        try:
            yield
        finally:
            if previous != "eager":
                model.set_attn_implementation(previous)


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


# Shared-prefix scoring: the choices of one prompt share the prompt, so the prompt runs once and its key/value cache
# is copied to each choice's row. Exact for caches that keep every key (full attention); other caches (a sliding
# window shorter than the sequence, linear attention) are refused and the caller scores pairs one row each.


def _cache_kwarg(model) -> str:
    # transformers 5.x renamed `past_key_values` to `cache` (the old name is deprecated until 5.40)
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_keeps_every_key(cache, length: int) -> bool:
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    if not isinstance(cache, DynamicCache):
        return False
    for layer in cache.layers:
        if type(layer) is DynamicSlidingWindowLayer and layer.sliding_window > length:
            continue  # the window never drops a key of a sequence this short
        if type(layer) is not DynamicLayer:
            return False
    return True


def shared_prefix_logprobs(loaded, prompts: list[tuple[int, ...]], targets: list[list[tuple[int, ...]]]):
    """Returns log p(target token) [N, T] (zeros at padding) for every target of every prompt, rows prompt-major,
    in two forwards: the prompts once (right-padded, with a cache), then every target as a batch continuing from
    its prompt's cache. Returns None when the model's cache would not make that exact (see above).

    Decoder-only models. The last target token is never fed (nothing reads its prediction), and the first
    target token is predicted by the prompt's last position, so the forwards see sum(P) + sum(len(target) - 1)
    tokens against sum over pairs of P + len(target) for `target_logprobs`.
    """
    model, dev, pad = loaded.model, loaded.device, loaded.tokenizer.pad_token_id
    prefix = make_batch(loaded, [(p, ()) for p in prompts])
    lengths = torch.tensor(prefix.prompt_lengths, device=dev)
    owner = torch.tensor([k for k, options in enumerate(targets) for _ in options], device=dev)
    rows = [t for options in targets for t in options]
    width, t_width = max(len(t) for t in rows) - 1, max(len(t) for t in rows)
    cache_name = _cache_kwarg(model)
    last = lengths - 1  # the position whose logits predict each prompt's first target token
    with model_lock(loaded):
        keep = torch.unique(last) if _accepts_logits_to_keep(model) else None
        kwargs = {} if keep is None else {"logits_to_keep": keep}
        out = model(input_ids=prefix.input_ids, attention_mask=prefix.attention_mask, use_cache=True, **kwargs)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if not _cache_keeps_every_key(cache, prefix.input_ids.shape[1] + width + 1):
            return None
        column = last if keep is None else torch.searchsorted(keep, last)
        first = out.logits[torch.arange(len(prompts), device=dev), column][owner]  # [N, V]
        target_ids = torch.full((len(rows), t_width), pad, dtype=torch.long)
        target_mask = torch.zeros((len(rows), t_width), dtype=torch.long)
        for r, t in enumerate(rows):
            target_ids[r, : len(t)] = torch.tensor(t)
            target_mask[r, : len(t)] = 1
        target_ids, target_mask = target_ids.to(dev), target_mask.to(dev)
        logits = [first[:, None]]
        if width > 0:  # some target has a second token: feed every target but its last token
            cache.reorder_cache(owner)  # row r gets a copy of its prompt's keys and values
            mask = torch.cat([prefix.attention_mask[owner], target_mask[:, :width]], dim=1)
            positions = lengths[owner][:, None] + torch.arange(width, device=dev)[None, :]
            out = model(
                input_ids=target_ids[:, :width],
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{cache_name: cache},
            )
            logits.append(out.logits)
    logits = torch.cat(logits, dim=1)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target_ids[..., None]).squeeze(-1)
    return logp * target_mask


@contextmanager
def counting_forward_tokens(loaded):
    """Yields a dict {"forwards", "tokens"} that counts the model's forward calls and the token positions fed to
    them (padding included: it costs as much as a real token) while the block runs."""
    counts = {"forwards": 0, "tokens": 0}

    def count(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        counts["forwards"] += 1
        counts["tokens"] += int(ids.numel()) if ids is not None else int(kwargs["inputs_embeds"].shape[:2].numel())

    handle = loaded.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()
