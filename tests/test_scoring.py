"""Shared-prefix choice scoring (issue #16): each prompt runs once and its choices continue from its key/value
cache. The scores must equal the one-row-per-pair scores, and the model must see fewer tokens."""

import dataclasses

import pytest
import torch

from kdviz.lm.forward import counting_forward_tokens
from kdviz.lm.inference import score_choices_batch
from kdviz.lm.prompts import encode, encode_target

PROMPTS = [
    "Where would you keep milk cold?",
    "The cat sat on the",
    "Does the premise entail the hypothesis? A man plays a guitar.",
]
# Choices of 1 to several tokens ("a" is one token: nothing to feed after the prompt for it).
CHOICES = [
    ["refrigerator", "cupboard in the house", "oven", "a", "shelf of the store"],
    ["mat", "table"],
    ["entailment", "neutral", "contradiction xyz"],
]


def _sharp_model(tiny, arch: str, **config):
    """Returns `tiny` with a freshly initialised model of `arch` whose weights are large enough (std 0.3) that its
    predictions depend strongly on the context: the stock tiny models predict almost uniformly (every score is
    about -log(vocabulary)), which would hide a wrong position or a wrong mask."""
    import transformers

    tok = tiny.tokenizer
    common = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.3,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    config_class, model_class = {
        "llama": ("LlamaConfig", "LlamaForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),  # the embedded teacher's architecture
        "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),  # the embedded student's (sliding-window layers)
    }[arch]
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**common, **config))
    return dataclasses.replace(tiny, model=model.eval())


def _max_difference(a, b) -> float:
    return max(abs(x - y) for sa, sb in zip(a, b, strict=True) for x, y in zip(sa.scores, sb.scores, strict=True))


@pytest.mark.parametrize(
    ("arch", "config"),
    [("llama", {}), ("qwen2", {}), ("gemma3", {"head_dim": 16, "sliding_window": 512})],
)
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_shared_prefix_scores_equal_one_row_per_pair(tiny, arch, config, batch_size):
    loaded = _sharp_model(tiny, arch, **config)
    encoded = encode(loaded, PROMPTS[0])
    assert len({len(encode_target(loaded, encoded, c)) for c in CHOICES[0]}) >= 3  # choices of different lengths
    old = score_choices_batch(loaded, PROMPTS, CHOICES, batch_size=batch_size, shared_prefix=False)
    with counting_forward_tokens(loaded) as counts:
        new = score_choices_batch(loaded, PROMPTS, CHOICES, batch_size=batch_size)
    assert _max_difference(old, new) < 1e-4
    assert max(s for r in old for s in r.scores) - min(s for r in old for s in r.scores) > 1.0  # not a flat model
    assert [r.predicted for r in new] == [r.predicted for r in old]
    # Two forwards per chunk of whole prompts: batch_size 1 and 4 still put one prompt per chunk, 16 all three.
    assert counts["forwards"] == {1: 6, 4: 6, 16: 2}[batch_size]


def test_forward_tokens_saved_is_exact(tiny):
    """One prompt of P tokens and 5 choices of c tokens: one row per pair feeds 5(P + c) tokens; the shared prefix
    feeds P, then 5(c - 1) (the first choice token is read off the prompt's last position, the last is never fed)."""
    choices = ["oven", "shelf", "house", "store", "mat"]
    encoded = encode(tiny, PROMPTS[0])
    p, (c,) = len(encoded.ids), {len(encode_target(tiny, encoded, x)) for x in choices}
    assert (p, c) == (42, 2)
    with counting_forward_tokens(tiny) as old:
        score_choices_batch(tiny, PROMPTS[:1], [choices], shared_prefix=False)
    with counting_forward_tokens(tiny) as new:
        score_choices_batch(tiny, PROMPTS[:1], [choices])
    assert old == {"forwards": 1, "tokens": 5 * (p + c)} == {"forwards": 1, "tokens": 220}
    assert new == {"forwards": 2, "tokens": p + 5 * (c - 1)} == {"forwards": 2, "tokens": 47}


def test_single_token_choices_take_one_forward(tiny):
    with counting_forward_tokens(tiny) as counts:
        (scores,) = score_choices_batch(tiny, PROMPTS[:1], [["a", "the"]])
    (expected,) = score_choices_batch(tiny, PROMPTS[:1], [["a", "the"]], shared_prefix=False)
    assert counts == {"forwards": 1, "tokens": 42}
    assert _max_difference([scores], [expected]) < 1e-4


def test_a_window_shorter_than_the_sequence_falls_back_to_one_row_per_pair(tiny):
    """A sliding-window layer drops keys the choices would need: the prefix forward is refused and the pairs are
    scored one row each, with the same scores."""
    loaded = _sharp_model(
        tiny, "gemma3", head_dim=16, sliding_window=4, layer_types=["sliding_attention", "full_attention"]
    )
    old = score_choices_batch(loaded, PROMPTS, CHOICES, batch_size=4, shared_prefix=False)
    with counting_forward_tokens(loaded) as counts:
        new = score_choices_batch(loaded, PROMPTS, CHOICES, batch_size=4)
    assert _max_difference(old, new) == 0.0
    assert counts["forwards"] == 1 + 3  # the refused prefix, then 10 pairs 4 at a time


def test_encoder_decoder_keeps_one_row_per_pair(tiny_t5):
    old = score_choices_batch(tiny_t5, PROMPTS, CHOICES, shared_prefix=False)
    with counting_forward_tokens(tiny_t5) as counts:
        new = score_choices_batch(tiny_t5, PROMPTS, CHOICES)
    assert [r.scores for r in new] == [r.scores for r in old]
    assert counts["forwards"] == 1  # 10 pairs in one batch of 16


def test_progress_counts_whole_prompts(tiny):
    seen = []
    score_choices_batch(
        tiny, PROMPTS, CHOICES, batch_size=5, on_progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 3), (3, 3)]  # 5 choices fill the first chunk; 2 + 3 the second
