import functools
import math
import threading

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
from kdviz.records import Prediction

MCQ = Example("q1", "mcqa", "Where would you keep milk cold?", ("cupboard", "refrigerator", "oven"), "refrigerator")
METHODS = ["attention", "feature_ablation", "input_x_gradient", "integrated_gradients", "saliency"]


def test_the_methods_are_listed():
    assert list_attribution_methods() == sorted([*METHODS, "attnlrp"])  # attnlrp: optional lxt, tests/test_lrp.py


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_token_and_word_scores_for_both_model_kinds(any_tiny, method):
    attr = attribute(any_tiny, MCQ, target="cold storage", method=method, steps=4, predict="choice-text")
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


def _target_batch(loaded, prompt: str, target: str):
    enc = encode(loaded, prompt)
    return enc, make_batch(loaded, [(enc.ids, encode_target(loaded, enc, target))])


def test_saliency_is_the_gradient_norm_of_the_target_log_probability(tiny):
    prompt, target = "Where would you keep milk cold?", "cold storage"
    attr = attribute(tiny, prompt, target=target, method="saliency")
    enc, batch = _target_batch(tiny, prompt, target)
    emb = tiny.model.get_input_embeddings()(batch.input_ids).detach().requires_grad_(True)
    logp = target_logprobs(tiny, batch, inputs_embeds=emb)[0][0]
    content = list(enc.content_positions)

    def grad_norm(output: torch.Tensor) -> list[float]:
        (grad,) = torch.autograd.grad(output, emb, retain_graph=True)
        return grad[0].norm(dim=-1)[content].tolist()

    assert len(attr.token_scores) == len(logp) >= 2
    for t, row in enumerate(attr.token_scores):
        assert list(row) == pytest.approx(grad_norm(logp[t]), rel=1e-4, abs=1e-7)
    assert list(attr.seq_scores) == pytest.approx(grad_norm(logp.sum()), rel=1e-4, abs=1e-7)


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


def test_attention_rows_are_the_models_attention_from_the_predicting_positions(any_tiny):
    attr = attribute(any_tiny, MCQ, target="cold storage", method="attention")
    enc, batch = _target_batch(any_tiny, attr.prompt, attr.target)
    model, n_target = any_tiny.model, batch.target_ids.shape[1]
    previous = any_tiny.config._attn_implementation
    assert previous == "sdpa"  # the method switched to eager for its call only
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            if any_tiny.is_encoder_decoder:  # decoder position t predicts target token t
                out = model(
                    input_ids=batch.input_ids, decoder_input_ids=batch.decoder_input_ids, output_attentions=True
                )
                maps, first = out.cross_attentions, 0
            else:  # position p - 1 + t predicts target token t, for a prompt of p tokens
                out = model(input_ids=batch.input_ids, output_attentions=True)
                maps, first = out.attentions, len(enc.ids) - 1
    finally:
        model.set_attn_implementation(previous)
    mean = torch.stack(maps)[:, 0].float().mean(dim=(0, 1))  # over layers and heads: [queries, keys]
    expected = mean[first : first + n_target][:, list(enc.content_positions)]
    assert len(attr.token_scores) == n_target >= 2
    assert torch.allclose(torch.tensor(attr.token_scores), expected, atol=1e-6)
    assert torch.allclose(torch.tensor(attr.seq_scores), expected.mean(0), atol=1e-6)


def test_no_other_thread_runs_the_model_while_attention_has_switched_it(tiny):
    # Issue #11: the attention method switches the shared model to eager attention for its forward. A forward from
    # another thread (a Compare job, a Teacher click) must wait until it is switched back. The attention forward
    # pauses (up to 0.5 s) once the other thread is about to run the model: without the model lock, that forward
    # runs right then, on the switched model.
    request = AttributionRequest("Where would you keep milk cold?", "refrigerator")
    _, batch = _target_batch(tiny, request.prompt, request.target)
    paused, calling, other_ran = threading.Event(), threading.Event(), threading.Event()
    seen, errors, results = [], [], {}

    def hook(module, args, kwargs):
        if threading.current_thread().name == "attention" and not paused.is_set():
            paused.set()
            calling.wait(timeout=5)
            other_ran.wait(timeout=0.5)
        elif threading.current_thread().name == "scoring":
            seen.append(module.config._attn_implementation)
            other_ran.set()

    def run_attention():
        results["attention"] = attribute_requests(tiny, [request], "attention")[0]

    def run_scoring():
        paused.wait(timeout=5)
        calling.set()
        results["scoring"] = target_logprobs(tiny, batch)[0]

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        return run

    handle = tiny.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        threads = [threading.Thread(target=guarded(run_attention), name="attention")]
        threads.append(threading.Thread(target=guarded(run_scoring), name="scoring"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        handle.remove()
    assert not errors and paused.is_set()
    assert seen == ["sdpa"]  # the other thread's forward ran on the model as loaded, not switched to eager
    assert tiny.config._attn_implementation == "sdpa"
    assert results["attention"] == attribute_requests(tiny, [request], "attention")[0]
    assert torch.equal(results["scoring"], target_logprobs(tiny, batch)[0])


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
    assert len(batched) == 3
    for single, together in zip(one_by_one, batched, strict=True):
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
    chosen = attribute(tiny, MCQ)  # the tiny model has a chat template: letter mode by default
    pred = chosen.prediction
    best = max(range(3), key=pred.choice_scores.__getitem__)
    assert pred.mode == "letter" and pred.predicted == MCQ.choices[best]
    assert chosen.target_mode == "choice" and chosen.target == "ABC"[best]  # the letter that was scored
    assert pred.correct == (pred.predicted == "refrigerator") and pred.gold == "refrigerator"
    assert pred.choices == MCQ.choices and len(pred.choice_scores) == 3
    assert chosen.predicted == pred.predicted
    gold = attribute(tiny, MCQ, target_mode="gold")
    assert (gold.target_mode, gold.target) == ("gold", "B")  # the gold answer's letter
    assert gold.prediction == pred  # the choices are scored whatever is attributed
    forced = attribute(tiny, MCQ, target="a cold box")
    assert (forced.target_mode, forced.target) == ("forced", "a cold box")
    assert forced.prediction == pred
    cloze = attribute(tiny, MCQ, predict="cloze")
    assert cloze.target == cloze.prediction.predicted in MCQ.choices and cloze.prediction.mode == "cloze"


def test_free_prompts_record_what_is_known_of_the_prediction(tiny):
    free = attribute(tiny, "the cat sat on the", target="mat")
    assert free.prediction is None and free.predicted is None  # nothing predicted, no gold
    generated = attribute(tiny, Example("g", "qa", "What do cats chase?", (), "mice"), target_mode="generate")
    # the generation is graded as a student's answer is (the random tiny model does not say "mice")
    assert generated.prediction == Prediction(gold="mice", generated=generated.target, correct=False)
    assert generated.predicted == generated.target  # a generated target is the model's answer


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
    assert [a.target for a in attrs] == ["B", "mice"]  # letter mode: the gold choice's letter
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


def _events(tiny, method, tokens_per_pass, **kwargs):
    events = []
    request = AttributionRequest("the cat sat on the mat today", "mat")
    (attr,) = attribute_requests(
        tiny, [request], method, tokens_per_pass=tokens_per_pass, on_progress=events.append, **kwargs
    )
    return attr, events


@pytest.mark.parametrize(
    "method, stage, total", [("integrated_gradients", "steps", 8), ("feature_ablation", "words", 7)]
)
def test_chunked_methods_report_each_chunk_with_an_eta_and_chunking_keeps_the_scores(tiny, method, stage, total):
    whole, _ = _events(tiny, method, 4096, steps=8)
    chunked, events = _events(tiny, method, 20, steps=8)  # ~11 tokens a pass: one step or one word a chunk
    assert [pytest.approx(row, rel=1e-4, abs=1e-7) for row in whole.token_scores] == list(chunked.token_scores)
    units = [e for e in events if e.stage == stage]
    assert [e.done for e in units] == list(range(total + 1)) and {e.total for e in units} == {total}
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in units[1:]) and units[-1].eta_s == 0
    assert [(e.stage, e.done, e.total) for e in events if e.stage == "examples"] == [
        ("examples", 0, 1),
        ("examples", 1, 1),
    ]
    assert {e.model for e in events} == {"tiny"}


def test_one_pass_methods_report_examples_only(tiny):
    _, events = _events(tiny, "saliency", None)
    assert [(e.stage, e.done) for e in events] == [("examples", 0), ("examples", 1)]


def test_a_small_token_budget_splits_batches_without_changing_scores(tiny):
    requests = [AttributionRequest(f"the cat sat on the mat number {i}", "mat") for i in range(3)]
    seen = []
    batched = attribute_requests(tiny, requests, "input_x_gradient", batch_size=3)
    split = attribute_requests(
        tiny, requests, "input_x_gradient", batch_size=3, tokens_per_pass=12, on_progress=seen.append
    )
    assert [e.done for e in seen if e.stage == "examples"] == [0, 1, 2, 3]  # one example a batch
    for a, b in zip(batched, split, strict=True):
        assert a.word_scores == pytest.approx(b.word_scores, rel=1e-4, abs=1e-6)
    with pytest.raises(InputError, match="tokens_per_pass must be at least 1"):
        attribute_requests(tiny, requests, tokens_per_pass=0)


def _out_of_memory_above_one(monkeypatch, error):
    """Makes input_x_gradient run out of memory on any batch of more than one example; returns the sizes tried."""
    from kdviz.attribution import methods

    real, sizes = methods.METHODS["input_x_gradient"], []

    def fake(loaded, batch, preps, layout, **kwargs):
        sizes.append(len(preps))
        if len(preps) > 1:
            raise error
        return real(loaded, batch, preps, layout, **kwargs)

    monkeypatch.setitem(methods.METHODS, "input_x_gradient", fake)
    return sizes


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
    ],
    ids=["torch", "runtime"],
)
def test_a_build_out_of_memory_retries_smaller_batches_and_gives_the_same_records(tiny, tmp_path, monkeypatch, error):
    from kdviz.data import demo_path, load_examples
    from kdviz.rationales.build import build_rationales

    examples = load_examples(demo_path(), limit=5)
    # cloze: scored, then attributed by METHODS (letter mode's one pass has its own test, tests/test_decision.py)
    build = functools.partial(
        build_rationales, tiny, examples, "input_x_gradient", batch_size=4, faithfulness=False, predict="cloze"
    )
    plain = build(cache_dir=tmp_path / "plain")
    sizes = _out_of_memory_above_one(monkeypatch, error)
    forced = build(cache_dir=tmp_path / "forced")
    assert sizes == [4, 2, 1, 1, 2, 1, 1, 1]  # 4 fails, halves of 2 fail, then one by one; the 5th alone
    assert len(forced.records) == len(plain.records) == 5
    for a, b in zip(forced.records, plain.records, strict=True):
        assert (a.example, a.target, a.rationale) == (b.example, b.target, b.rationale)
        assert a.word_scores == pytest.approx(b.word_scores, rel=1e-4, abs=1e-6)


def test_a_build_gives_up_on_one_example_out_of_memory_and_on_other_errors(tiny, tmp_path, monkeypatch):
    from kdviz.attribution import methods
    from kdviz.data import demo_path, load_examples
    from kdviz.errors import ResourceError
    from kdviz.rationales.build import build_rationales

    examples, tries = load_examples(demo_path(), limit=2), []

    def always(loaded, batch, preps, layout, **kwargs):
        tries.append(len(preps))
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setitem(methods.METHODS, "input_x_gradient", always)
    build = functools.partial(
        build_rationales, tiny, examples, "input_x_gradient", batch_size=2, faithfulness=False, predict="cloze"
    )
    with pytest.raises(ResourceError, match="out of memory while attributing"):  # with advice, and the cause kept
        build(cache_dir=tmp_path / "a")
    assert tries == [2, 1, 1]  # the batch, then the first example alone, then once more one pass at a time
    _out_of_memory_above_one(monkeypatch, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):  # not memory: no retry
        build(cache_dir=tmp_path / "b")
