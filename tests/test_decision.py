"""One pass per click (issue #16): in letter mode `attribute` predicts and attributes in one forward and one backward,
with the same prediction and scores as scoring first and attributing after (build_requests + attribute_requests)."""

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


def _forwards(loaded, fn) -> int:
    calls = []
    hook = loaded.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        hook.remove()
    return len(calls)


def test_a_letter_mode_click_runs_the_model_once_and_other_modes_score_first(tiny):
    assert _forwards(tiny, lambda: attribute(tiny, MCQ, method="saliency", predict="letter")) == 1
    # cloze scores the choices (one batched forward over a shared prefix), then attributes: two forwards or more
    assert _forwards(tiny, lambda: attribute(tiny, MCQ, method="saliency", predict="cloze")) >= 2
    # a method that needs more than one forward (integrated gradients) keeps the scoring forward: 1 + its steps
    assert _forwards(tiny, lambda: attribute(tiny, MCQ, method="integrated_gradients", predict="letter", steps=4)) == 2


def test_one_pass_reports_progress_like_the_two_pass_path(tiny):
    events = []
    attribute(tiny, MCQ, method="saliency", predict="letter", on_progress=events.append)
    assert [(e.stage, e.done, e.total) for e in events] == [("examples", 0, 1), ("examples", 1, 1)]
