"""Tiny randomly initialised models built in-process: offline, deterministic, milliseconds to run.

They exercise every code path (decoder-only and encoder-decoder, chat template, subword merging) in tests,
the CLI and the UI without any download. Teacher and student variants share one tokenizer.
"""

from __future__ import annotations

import functools

# A byte-level BPE trained on this text: any input tokenizes, common words get their own tokens,
# rare ones split into pieces (so word merging is exercised).
_CORPUS = """
Question: Where would you keep milk cold? Answer: refrigerator. The cat sat on the mat.
Choices: A) cupboard B) refrigerator C) table D) oven E) shelf. Premise: A man plays a guitar.
Hypothesis: A person makes music. Does the premise entail the hypothesis? entailment neutral contradiction
the a an of to in is you that it he was for on are as with his they at be this have from or one had by
where what when why who how would could should keep put find go get make see people person house store
"""

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TINY_SPECS = {  # spec name -> (architecture, seed)
    "tiny": ("llama", 0),
    "tiny-student": ("llama", 1),
    "tiny-t5": ("t5", 0),
}


@functools.cache
def tiny_tokenizer():
    """Returns a fast byte-level BPE tokenizer (about 400 tokens) with a small chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its progress lines went to stdout, before the CLI's JSON (issue #15)
    )
    tok.train_from_iterator([_CORPUS] * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny(name: str):
    """Returns (model, tokenizer) for a tiny spec name ("tiny", "tiny-student", "tiny-t5")."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    arch, seed = TINY_SPECS[name]
    tokenizer = tiny_tokenizer()
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **ids,
        )
        model = LlamaForCausalLM(config)
    else:
        config = T5Config(
            d_model=64,
            d_ff=128,
            d_kv=16,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            decoder_start_token_id=tokenizer.pad_token_id,
            **ids,
        )
        model = T5ForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer
