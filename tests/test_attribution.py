import math

import pytest
import torch

from kdviz import (
    AttributionRequest,
    Example,
    InputError,
    UnknownNameError,
    attribute,
    attribute_examples,
    attribute_requests,
    list_attribution_methods,
)
from kdviz.lm.forward import make_batch, target_logprobs
from kdviz.lm.prompts import encode, encode_target, render

MCQ = Example("q1", "mcqa", "Where would you keep milk cold?", ("cupboard", "refrigerator", "oven"), "refrigerator")
METHODS = ["attention", "feature_ablation", "input_x_gradient", "integrated_gradients", "saliency"]


def test_the_five_methods_are_listed():
    assert list_attribution_methods() == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_token_and_word_scores_for_both_model_kinds(any_tiny, method):
    attr = attribute(any_tiny, MCQ, target="cold storage", method=method, steps=4)
    n_in, n_out = len(attr.input_tokens), len(attr.output_tokens)
    assert n_out >= 2 and n_in > 10
    assert len(attr.token_scores) == n_out and all(len(row) == n_in for row in attr.token_scores)
    assert attr.words == tuple(attr.prompt.split())
    assert len(attr.word_token_scores) == n_out and all(len(r) == len(attr.words) for r in attr.word_token_scores)
    assert all(math.isfinite(s) for s in attr.seq_scores) and any(s != 0 for s in attr.seq_scores)
    # word scores are sums of their pieces' scores (whitespace-only tokens belong to no word)
    in_words = sum(s for tok, s in zip(attr.input_tokens, attr.seq_scores, strict=False) if tok.strip())
    assert sum(attr.word_scores) == pytest.approx(in_words, rel=1e-4, abs=1e-6)
    template = {w for w, t in zip(attr.words, attr.word_is_template, strict=False) if t}
    assert template == {"Question:", "Choices:", "A)", "B)", "C)", "Answer:"}


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "feature_ablation"])
def test_linear_methods_score_the_whole_target_as_the_sum_of_its_tokens(tiny, method):
    attr = attribute(tiny, MCQ, target="cold storage", method=method, steps=4)
    column_sums = [sum(col) for col in zip(*attr.token_scores, strict=False)]
    assert column_sums == pytest.approx(list(attr.seq_scores), rel=1e-4, abs=1e-7)


def test_saliency_is_a_gradient_norm(tiny):
    attr = attribute(tiny, MCQ, target="refrigerator", method="saliency")
    assert all(s >= 0 for row in attr.token_scores for s in row)


def test_integrated_gradients_satisfy_completeness(tiny):
    # Sum of IG scores = f(input) - f(baseline): the target's log-probability minus its value with the prompt
    # text's embeddings zeroed. (Not for T5: its RMSNorm jumps at exactly zero, see attribution.py.)
    any_tiny = tiny
    prompt, target = "Where would you keep milk cold?", "refrigerator"
    attr = attribute(any_tiny, prompt, target=target, method="integrated_gradients", steps=64)
    enc = encode(any_tiny, prompt)
    batch = make_batch(any_tiny, [(enc.ids, encode_target(any_tiny, enc, target))])
    emb = any_tiny.model.get_input_embeddings()(batch.input_ids).detach()
    with torch.no_grad():
        full = target_logprobs(any_tiny, batch, inputs_embeds=emb)[0].sum().item()
        emb[0, list(enc.content_positions)] = 0
        base = target_logprobs(any_tiny, batch, inputs_embeds=emb)[0].sum().item()
    assert sum(attr.seq_scores) == pytest.approx(full - base, rel=0.02, abs=1e-4)


def test_feature_ablation_is_the_drop_in_log_probability_without_the_word(tiny):
    attr = attribute(tiny, "the cat sat on the mat", target="mat", method="feature_ablation")
    enc = encode(tiny, attr.prompt)
    target = encode_target(tiny, enc, "mat")
    cat_positions = {enc.content_positions[i] for i, (a, b) in enumerate(enc.content_offsets) if 4 <= a < 7}
    without_cat = tuple(t for i, t in enumerate(enc.ids) if i not in cat_positions)
    logp, _ = target_logprobs(tiny, make_batch(tiny, [(enc.ids, target), (without_cat, target)]))
    expected = (logp[0].sum() - logp[1].sum()).item()
    assert attr.word_scores[attr.words.index("cat")] == pytest.approx(expected, abs=1e-5)


def test_attention_rows_are_attention_weights(any_tiny):
    attr = attribute(any_tiny, MCQ, target="refrigerator", method="attention")
    assert all(0 <= s <= 1 for row in attr.token_scores for s in row)
    assert all(sum(row) <= 1 + 1e-5 for row in attr.token_scores)


def test_input_x_gradient_matches_captum(tiny):
    captum = pytest.importorskip("captum.attr")
    prompt = "Where would you keep milk cold?"
    ours = attribute(tiny, prompt, target="refrigerator", method="input_x_gradient", fmt="raw")
    enc = encode(tiny, prompt)
    llm = captum.LLMGradientAttribution(
        captum.LayerGradientXActivation(tiny.model, tiny.model.get_input_embeddings()), tiny.tokenizer
    )
    res = llm.attribute(
        captum.TextTokenInput(tiny.tokenizer.decode(list(enc.ids)), tiny.tokenizer), target="refrigerator"
    )
    theirs = res.token_attr[:, list(enc.content_positions)]
    assert torch.allclose(torch.tensor(ours.token_scores), theirs.float(), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_batching_and_padding_do_not_change_scores(any_tiny, method):
    requests = [
        AttributionRequest("Where would you keep milk cold?", "refrigerator"),
        AttributionRequest("the cat", "sat on the mat"),
        AttributionRequest("A man plays a guitar and sings loudly in the street", "music"),
    ]
    one_by_one = [attribute_requests(any_tiny, [r], method, steps=8)[0] for r in requests]
    batched = attribute_requests(any_tiny, requests, method, steps=8, batch_size=3)
    for single, together in zip(one_by_one, batched, strict=False):
        assert together.seq_scores == pytest.approx(single.seq_scores, rel=1e-3, abs=1e-5)
        assert together.output_tokens == single.output_tokens


def test_fast_path_without_token_matrix_gives_the_same_whole_target_scores(tiny):
    requests = [AttributionRequest("Where would you keep milk cold?", "refrigerator")]
    for method in ("saliency", "input_x_gradient"):
        full = attribute_requests(tiny, requests, method)[0]
        fast = attribute_requests(tiny, requests, method, per_token=False)[0]
        assert fast.output_tokens == () and fast.token_scores == ()
        assert fast.seq_scores == pytest.approx(full.seq_scores, rel=1e-4, abs=1e-7)


def test_target_modes_pick_prediction_gold_or_generation(tiny):
    chosen = attribute(tiny, MCQ)
    assert chosen.target_mode == "choice" and chosen.target == chosen.meta["predicted"] in MCQ.choices
    assert chosen.meta["correct"] == (chosen.meta["predicted"] == "refrigerator")
    gold = attribute(tiny, MCQ, target_mode="gold")
    assert (gold.target_mode, gold.target) == ("gold", "refrigerator")
    forced = attribute(tiny, MCQ, target="a cold box")
    assert (forced.target_mode, forced.target) == ("forced", "a cold box")
    assert forced.meta["predicted"] == chosen.meta["predicted"] and forced.meta["gold"] == "refrigerator"


def test_generated_target_is_the_models_own_completion(tiny):
    from kdviz import generate

    attr = attribute(tiny, "the cat sat on the", target_mode="generate", max_new_tokens=4)
    assert attr.target == generate(tiny, "the cat sat on the", max_new_tokens=4).completion


def test_dataset_attribution_reports_progress_and_keeps_example_ids(tiny):
    examples = [MCQ, Example("q2", "qa", "What do cats chase?", (), "mice")]
    seen = []
    attrs = attribute_examples(
        tiny, examples, "saliency", target_mode="gold", batch_size=1, on_progress=lambda d, t: seen.append((d, t))
    )
    assert [a.example_id for a in attrs] == ["q1", "q2"]
    assert [a.target for a in attrs] == ["refrigerator", "mice"]
    assert seen == [(1, 2), (2, 2)]


def test_errors_name_the_problem(tiny):
    with pytest.raises(UnknownNameError, match="integrated_gradients"):
        attribute(tiny, MCQ, method="magic")
    with pytest.raises(InputError, match="target"):
        attribute(tiny, MCQ, target="   ")
    with pytest.raises(InputError, match="no gold answer"):
        attribute(tiny, Example("x", "qa", "q?"), target_mode="gold")
    with pytest.raises(InputError, match="no choices"):
        attribute(tiny, Example("x", "qa", "q?"), target_mode="choice")
    with pytest.raises(UnknownNameError, match="target mode"):
        attribute(tiny, MCQ, target_mode="psychic")


def test_rendered_prompt_is_what_gets_attributed(tiny):
    assert attribute(tiny, MCQ, target="x").prompt == render(MCQ).text
