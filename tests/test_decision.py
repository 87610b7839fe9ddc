"""One pass per click (issue #16): in letter mode `attribute` predicts and attributes in one forward and one backward,
with the same prediction and scores as scoring first and attributing after (build_requests + attribute_requests)."""

import contextlib
import importlib.util

import pytest
import torch

from kdviz import attribute, attribute_requests
from kdviz.attribution.targets import build_requests
from kdviz.records import Example

MCQ = Example(
    id="q1",
    task="mcqa",
    question="Where would you keep milk so that it stays cold?",
    choices=("oven", "refrigerator", "cupboard", "garden"),
    answer="refrigerator",
)
METHODS = ["saliency", "input_x_gradient"] + (["attnlrp"] if importlib.util.find_spec("lxt") else [])


def _same_prediction(a, b) -> None:
    """The same answer from the same scores (read off a forward on embeddings rather than ids: equal to ~1e-6)."""
    assert (a.predicted, a.correct, a.gold, a.choices, a.mode) == (b.predicted, b.correct, b.gold, b.choices, b.mode)
    assert a.choice_scores == pytest.approx(b.choice_scores, abs=1e-5)


def _two_passes(loaded, method, target_mode, contrast):
    (request,) = build_requests(loaded, [MCQ], target_mode, predict="letter", contrast=contrast)
    return attribute_requests(loaded, [request], method)[0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("target_mode", "contrast"), [(None, None), ("gold", None), (None, "runner-up"), (None, "gold")]
)
def test_one_pass_gives_the_two_pass_prediction_target_and_scores(tiny, method, target_mode, contrast):
    fused = attribute(tiny, MCQ, method=method, target_mode=target_mode, predict="letter", contrast=contrast)
    slow = _two_passes(tiny, method, target_mode, contrast)
    assert (fused.target, fused.contrast, fused.output_tokens) == (slow.target, slow.contrast, slow.output_tokens)
    _same_prediction(fused.prediction, slow.prediction)
    assert fused.prediction.mode == "letter" and fused.target in "ABCD"
    torch.testing.assert_close(torch.tensor(fused.word_scores), torch.tensor(slow.word_scores), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.tensor(fused.token_scores), torch.tensor(slow.token_scores), rtol=1e-4, atol=1e-6)
    assert fused.words == slow.words and fused.word_is_template == slow.word_is_template


def test_one_pass_also_holds_for_an_encoder_decoder(tiny_t5):
    fused = attribute(tiny_t5, MCQ, method="input_x_gradient", predict="letter", contrast="runner-up")
    slow = _two_passes(tiny_t5, "input_x_gradient", None, "runner-up")
    assert (fused.target, fused.contrast) == (slow.target, slow.contrast)
    _same_prediction(fused.prediction, slow.prediction)
    torch.testing.assert_close(torch.tensor(fused.word_scores), torch.tensor(slow.word_scores), rtol=1e-4, atol=1e-6)


@contextlib.contextmanager
def counted_forwards(loaded):
    """Yields a list that gets one entry per forward pass of the model within the block."""
    calls = []
    hook = loaded.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        hook.remove()


def _forwards(loaded, fn) -> int:
    with counted_forwards(loaded) as calls:
        fn()
    return len(calls)


def test_a_letter_mode_click_runs_the_model_once_and_other_modes_score_first(tiny):
    assert _forwards(tiny, lambda: attribute(tiny, MCQ, method="saliency", predict="letter")) == 1
    # cloze scores the choices (one batched forward over a shared prefix), then attributes: two forwards or more
    assert _forwards(tiny, lambda: attribute(tiny, MCQ, method="saliency", predict="cloze")) >= 2
    # a method that needs more than one forward (integrated gradients) keeps the scoring forward: the scoring, the
    # steps (one batched pass here) and the path's two ends (its completeness error)
    assert _forwards(tiny, lambda: attribute(tiny, MCQ, method="integrated_gradients", predict="letter", steps=4)) == 3


def test_one_pass_reports_progress_like_the_two_pass_path(tiny):
    events = []
    attribute(tiny, MCQ, method="saliency", predict="letter", on_progress=events.append)
    assert [(e.stage, e.done, e.total) for e in events] == [("examples", 0, 1), ("examples", 1, 1)]


def test_a_letter_mode_build_attributes_in_one_pass_the_records_of_scoring_then_attributing(tiny, tmp_path):
    from kdviz.data import demo_path, load_examples
    from kdviz.rationales.build import build_rationales

    examples = load_examples(demo_path(), limit=6)
    with counted_forwards(tiny) as calls:
        built = build_rationales(tiny, examples, "saliency", batch_size=4, cache_dir=tmp_path, faithfulness=False,
                                 predict="letter")  # fmt: skip
    assert len(calls) == 2  # two batches (4 + 2), one forward each: no scoring pass
    slow = attribute_requests(tiny, build_requests(tiny, examples, predict="letter"), "saliency", per_token=False)
    for record, attr in zip(built.records, slow, strict=True):
        assert (record.target, record.predicted, record.words) == (attr.target, attr.predicted, attr.words)
        assert record.word_scores == pytest.approx(attr.word_scores, rel=1e-4, abs=1e-6)


def test_a_one_pass_build_out_of_memory_retries_smaller_batches(tiny, tmp_path, monkeypatch):
    from kdviz.data import demo_path, load_examples
    from kdviz.rationales import build

    examples, sizes = load_examples(demo_path(), limit=4), []
    real = build.attribute_one_pass

    def small_only(loaded, chunk, *args, **kwargs):
        sizes.append(len(chunk))
        if len(chunk) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(loaded, chunk, *args, **kwargs)

    monkeypatch.setattr(build, "attribute_one_pass", small_only)
    built = build.build_rationales(tiny, examples, "saliency", batch_size=4, cache_dir=tmp_path, faithfulness=False)
    assert sizes == [4, 2, 1, 1, 2, 1, 1] and len(built.records) == 4
