"""How one attribution call is cut into passes: the memory budget of a pass (tokens, from free device memory), the
batches and chunks that fit it, and the progress events of the units each pass finishes.

A pass holds the activations of rows x padded length tokens until its backward, so that product is what the budget
bounds: `kdviz.attribution.methods` batches examples to it and chunks integration steps and occluded variants to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kdviz.records import ProgressEvent

Progress = Callable[[ProgressEvent], None]

# All 80 integration steps of 85 tokens at once would hold ~40 GB for the 1.5B teacher in fp32 (~6 MB a token:
# ACTIVATION_BYTES x layers x width x 4 bytes). On a CPU time, not memory, is the limit: 1024 tokens a pass keeps
# each pass a few seconds long, so progress is reported often, and was the integration-step chunk before budgets.
CPU_TOKENS_PER_PASS = 1024
ACTIVATION_BYTES = 36  # per token, layer and hidden unit, in elements: what a forward keeps for the backward
FREE_MEMORY_SHARE = 0.5  # of the device's free memory: the rest covers logits, the allocator's slack, fragmentation
MIN_TOKENS_PER_PASS = 64

# The methods that split their passes into chunks, and the unit their progress counts.
CHUNK_UNITS: dict[str, str] = {"integrated_gradients": "steps", "feature_ablation": "words"}


def default_tokens_per_pass(loaded) -> int:
    """Returns the token budget of one pass: on CUDA, what half the free device memory holds at the model's
    activation size per token (at least MIN_TOKENS_PER_PASS); elsewhere (CPU, MPS) CPU_TOKENS_PER_PASS."""
    param = next(loaded.model.parameters())
    if param.device.type != "cuda":
        return CPU_TOKENS_PER_PASS
    import torch

    free, _ = torch.cuda.mem_get_info(param.device)
    config = loaded.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    # Decoders name their depth num_hidden_layers; T5 maps that to its encoder and adds num_decoder_layers.
    layers = sum(getattr(config, k, 0) or 0 for k in ("num_hidden_layers", "num_decoder_layers")) or 1
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or 1024
    per_token = ACTIVATION_BYTES * layers * width * param.element_size()
    return max(MIN_TOKENS_PER_PASS, int(free * FREE_MEMORY_SHARE / per_token))


def rows_and_length(prompt_tokens: int, target_tokens: int, contrast_tokens: int) -> tuple[int, int]:
    """Returns (batch rows, sequence length) of one request: a contrast not read at the target's own position (both
    one token) takes a second row."""
    rows = 1 + bool(contrast_tokens and not target_tokens == 1 == contrast_tokens)
    return rows, prompt_tokens + max(target_tokens, contrast_tokens)


def split_batches(sizes: Sequence[tuple[int, int]], batch_size: int, tokens: int) -> list[list[int]]:
    """Returns the request indices, in order, cut into batches of at most `batch_size` whose padded size (rows x
    longest sequence, from `sizes`) fits `tokens`; a request over the budget gets a batch of its own."""
    batches: list[list[int]] = []
    rows = longest = 0
    for i, (r, n) in enumerate(sizes):
        if batches and len(batches[-1]) < batch_size and (rows + r) * max(longest, n) <= tokens:
            batches[-1].append(i)
            rows, longest = rows + r, max(longest, n)
        else:
            batches.append([i])
            rows, longest = r, n
    return batches


@dataclass
class Passes:
    """What a method that runs a prompt many times needs: the token budget of one pass, and where to report the
    units (integration steps, occluded words) each chunk of passes finished."""

    tokens: int = CPU_TOKENS_PER_PASS
    advance: Callable[[int], None] = lambda n: None


class Tracker:
    """Counts the finished units of each stage of one call and reports them as ProgressEvents, timed from the start
    (so each carries an ETA); reports every stage at done=0 when made."""

    def __init__(self, on_progress: Progress | None, model: str, totals: dict[str, int]):
        self.on_progress, self.model, self.totals = on_progress, model, totals
        self.done = dict.fromkeys(totals, 0)
        self.started = time.monotonic()
        for stage in totals:
            self.advance(stage, 0)

    def advance(self, stage: str, n: int) -> None:
        self.done[stage] += n
        if self.on_progress:
            elapsed = time.monotonic() - self.started
            self.on_progress(ProgressEvent(stage, self.done[stage], self.totals[stage], self.model, elapsed))
