"""Random-weight models with the embedded models' architectures, for speed benchmarks where the weights cannot go.

A GPU machine of this project receives only the repository (64 MiB, no internet): the embedded GGUF weights (1.1 GB)
cannot travel. Speed depends on the architecture, not on the weights' values, so the benchmarks build the same
architecture in-process with random weights. `install()` teaches kdviz's loader (in this process only, not kdviz's
model registry) the spec `random:<name>`; bench/attribution.py `--model` and bench/train.py `--student` take it.

The tokenizer is kdviz's tiny byte-level BPE (its ids fit any vocabulary): it splits text into more tokens than the
real tokenizers, so sequences are somewhat longer than the real models' and the timings err on the slow side.
"""

from __future__ import annotations

import functools

PREFIX = "random:"
# The numbers of each embedded model's config.json (~/.cache/kdviz/models/<name>/config.json, converted from GGUF).
ARCHS: dict[str, dict] = {
    "embedded-teacher": dict(  # Qwen2.5-Coder-1.5B-Instruct
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=False, rms_norm_eps=1e-6,
        max_position_embeddings=32768, rope_theta=1e6,
    ),
    "embedded-student": dict(  # SmolLM2-135M-Instruct
        model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rms_norm_eps=1e-5,
        max_position_embeddings=8192, rope_theta=1e5,
    ),
}  # fmt: skip


def build(name: str):
    """Returns (model, tokenizer): `name`'s architecture (a key of ARCHS) with seeded random weights, fp32, on CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kdviz.lm.tiny import tiny_tokenizer

    if name not in ARCHS:
        raise ValueError(f"no architecture for {name!r}: one of {', '.join(ARCHS)}")
    numbers = dict(ARCHS[name])
    rope_theta = numbers.pop("rope_theta")
    config = AutoConfig.for_model(**numbers, rope_parameters={"rope_type": "default", "rope_theta": rope_theta})
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    return AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32), tokenizer


def install() -> None:
    """Makes kdviz's loader (this process only) build `random:<name>` specs with `build` (idempotent)."""
    from kdviz.lm import models

    if getattr(models._load, "random_specs", False):
        return
    original = models._load

    @functools.wraps(original)
    def load(spec):
        name = spec.model_name_or_path
        if not name.startswith(PREFIX):
            return original(spec)
        model, tokenizer = build(name[len(PREFIX) :])
        device = models.select_device(spec.device)
        model.to(device=device, dtype=models._dtype(spec, device)).eval()
        chat = True if spec.chat is None else spec.chat
        return models.LoadedModel(model=model, tokenizer=tokenizer, spec=spec, device=device, chat=chat)

    load.random_specs = True
    models._load = load
