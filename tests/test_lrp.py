"""AttnLRP through the optional lxt package: run with lxt installed (pip install --no-deps lxt==2.1, as `make install` does); skipped without it,
except the check of the message that says how to install it."""

import copy
import dataclasses
import importlib.util

import pytest
import torch

from kdviz import AttributionRequest, InputError, attribute_requests
from kdviz.attribution import lrp

needs_lxt = pytest.mark.skipif(importlib.util.find_spec("lxt") is None, reason="the optional lxt package is absent")
REQUESTS = [
    AttributionRequest("Where would you keep milk cold?", "refrigerator"),
    AttributionRequest("the cat", "sat on the mat"),
]


def _qwen2(tiny):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tiny.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tiny.tokenizer.pad_token_id)  # fmt: skip
    return Qwen2ForCausalLM(config).eval()


def _relevance_and_logit(model, ids: torch.Tensor, token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (input embeddings · gradient per position, the last position's logit of `token`)."""
    x = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logit = model(inputs_embeds=x).logits[0, -1, token]
    (grad,) = torch.autograd.grad(logit, x)
    return (x * grad).sum(-1)[0].detach(), logit.detach()


@needs_lxt
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_relevance_sums_to_the_logit_when_attention_is_silenced(tiny, family):
    # LRP conserves relevance through the norms, the gated MLP, residuals and the bias-free lm_head, but not through
    # the softmax (AttnLRP's rule there drops a term): with every attention output zeroed, the input relevances sum
    # exactly to the logit. Plain gradient × input does not (RMSNorm's scale and SiLU are not linear).
    model = copy.deepcopy(tiny.model) if family == "llama" else _qwen2(tiny)
    for layer in model.model.layers:
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
        torch.nn.init.normal_(layer.post_attention_layernorm.weight, 1.0, 0.5)  # the norm's weight is not just 1
    ids = torch.tensor([[1, 40, 77, 123, 250, 9, 31]])
    with lrp.attnlrp_rules(model):
        relevance, logit = _relevance_and_logit(model, ids, token=42)
    plain, plain_logit = _relevance_and_logit(model, ids, token=42)
    assert logit == pytest.approx(plain_logit.item(), rel=1e-6)  # the rules change the backward pass only
    assert relevance.sum().item() == pytest.approx(logit.item(), rel=1e-4, abs=1e-5)
    assert abs(plain.sum() - logit) > 0.05 * abs(logit)


@needs_lxt
def test_agrees_with_lxts_own_class_patching(tiny):
    # lxt's route, as its llama map patches classes, with its attention wrapper put on modeling_llama's eager
    # function (its patch_attention's ALL_ATTENTION_FUNCTIONS dict breaks transformers 5): the same relevances.
    from transformers.models.llama import modeling_llama

    rules, patches = lrp._lxt()
    model = copy.deepcopy(tiny.model)
    model.set_attn_implementation("eager")
    ids = torch.tensor([[1, 40, 77, 123, 250, 9, 31]])
    with lrp.attnlrp_rules(model):
        ours, _ = _relevance_and_logit(model, ids, token=42)
    saved = (modeling_llama.LlamaMLP.forward, modeling_llama.LlamaRMSNorm.forward)
    saved_eager = modeling_llama.eager_attention_forward
    try:
        assert patches.patch_method(patches.gated_mlp_forward, modeling_llama.LlamaMLP)
        assert patches.patch_method(patches.rms_norm_forward, modeling_llama.LlamaRMSNorm)
        modeling_llama.eager_attention_forward = patches.wrap_attention_forward(saved_eager)
        theirs, _ = _relevance_and_logit(model, ids, token=42)
    finally:
        modeling_llama.LlamaMLP.forward, modeling_llama.LlamaRMSNorm.forward = saved
        modeling_llama.eager_attention_forward = saved_eager
    plain, _ = _relevance_and_logit(model, ids, token=42)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours, plain, rtol=1e-2, atol=1e-4)  # the attention rule changes the scores


@needs_lxt
def _patches(model) -> list:
    """Each module's own forward override and its hooks (other tests may have left some on the shared model)."""
    return [(m.__dict__.get("forward"), list(m._forward_hooks), list(m._forward_pre_hooks)) for m in model.modules()]


def test_the_model_is_unchanged_for_other_methods_afterwards(tiny):
    patches = _patches(tiny.model)
    before = attribute_requests(tiny, REQUESTS, "input_x_gradient")
    attribute_requests(tiny, REQUESTS, "attnlrp")
    after = attribute_requests(tiny, REQUESTS, "input_x_gradient")
    assert [a.token_scores for a in after] == [b.token_scores for b in before]
    assert _patches(tiny.model) == patches
    with pytest.raises(RuntimeError), lrp.attnlrp_rules(tiny.model):  # also undone when the call fails
        assert _patches(tiny.model) != patches  # the rules are on inside
        raise RuntimeError("boom")
    assert _patches(tiny.model) == patches


@needs_lxt
def test_scores_add_up_over_terms_and_match_the_fast_path_and_batching(tiny):
    requests = [*REQUESTS, AttributionRequest("the cat", "sat", contrast="on", first_token_only=True)]
    full = attribute_requests(tiny, requests, "attnlrp", batch_size=3)
    fast = attribute_requests(tiny, requests, "attnlrp", per_token=False, batch_size=3)
    single = [attribute_requests(tiny, [r], "attnlrp")[0] for r in requests]
    for attr, quick, alone in zip(full, fast, single, strict=True):
        rows = torch.tensor(attr.token_scores)
        assert rows.shape == (len(attr.output_tokens), len(attr.input_tokens))
        assert rows.sum(0).tolist() == pytest.approx(attr.seq_scores, abs=1e-6)
        assert quick.seq_scores == pytest.approx(attr.seq_scores, abs=1e-6)
        assert alone.seq_scores == pytest.approx(attr.seq_scores, rel=1e-3, abs=1e-5)
        assert any(abs(s) > 1e-4 for s in attr.seq_scores)
    assert full[2].n_contrast_tokens == 1 and len(full[2].token_scores) == 2  # target row, then contrast row


@needs_lxt
def test_qwen2_runs_through_the_pipeline(tiny):
    qwen = dataclasses.replace(tiny, model=_qwen2(tiny))
    attr = attribute_requests(qwen, REQUESTS[:1], "attnlrp")[0]
    assert len(attr.seq_scores) == len(attr.input_tokens) and any(abs(s) > 1e-4 for s in attr.seq_scores)


def test_other_architectures_are_refused(tiny_t5):
    with pytest.raises(InputError, match="llama, qwen2"):
        attribute_requests(tiny_t5, REQUESTS[:1], "attnlrp")


def test_without_lxt_the_error_says_how_to_install_it_and_the_licence(tiny, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lxt" else real(name, *a))
    with pytest.raises(InputError, match=r"pip install --no-deps lxt==2.1 .*non-commercial"):
        attribute_requests(tiny, REQUESTS[:1], "attnlrp")
