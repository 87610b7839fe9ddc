"""Prediction modes (letter, cloze, choice-text), the attribution of the decision each one made, and contrastive
targets (issue #12), on the tiny models with values computed by hand."""

import json

import pytest
import torch

from kdviz import AttributionRequest, Example, InputError, UnknownNameError, attribute, attribute_requests
from kdviz.attribution.targets import build_requests, score_examples
from kdviz.config import ModelSpec
from kdviz.lm.inference import score_choices_batch, score_prompts
from kdviz.lm.models import load_model
from kdviz.lm.prompts import default_predict_mode, encode, render, render_prediction
from kdviz.records import TokenAttribution

MCQ = Example("q1", "mcqa", "Where would you keep milk cold?", ("cupboard", "refrigerator", "oven"), "refrigerator")
NLI = Example("n1", "nli", "A person makes music.", (), "entailment", "A man plays a guitar.")
LINEAR = ["input_x_gradient", "integrated_gradients", "feature_ablation"]


def test_default_mode_is_letter_for_chat_models_and_cloze_for_base_models(tiny, tiny_t5):
    assert (tiny.chat, default_predict_mode(tiny)) == (True, "letter")
    assert (tiny_t5.chat, default_predict_mode(tiny_t5)) == (False, "cloze")
    assert default_predict_mode(load_model(ModelSpec("tiny", chat=False))) == "cloze"


def test_an_embedded_model_defaults_to_its_measured_best_mode():
    from types import SimpleNamespace

    # bench/README.md: the chat student answers "B" two times in three by letter (22.5%) and 33.0% by cloze
    assert default_predict_mode(SimpleNamespace(name="embedded-student", chat=True)) == "cloze"
    assert default_predict_mode(SimpleNamespace(name="embedded-teacher", chat=True)) == "letter"  # 63.5% vs 41.0%
    assert default_predict_mode(SimpleNamespace(name="embedded-teacher-fast", chat=False)) == "cloze"  # base model


def test_each_mode_renders_the_prompt_it_scores():
    assert render_prediction(MCQ, "letter") == render(MCQ, "mcqa")
    assert render_prediction(MCQ, "choice-text") == render(MCQ, "mcqa")
    assert render_prediction(MCQ, "cloze").text == "Question: Where would you keep milk cold?\nAnswer:"
    free = Example("f", "qa", "What do cats chase?", (), "mice")
    assert {render_prediction(free, m) for m in ("letter", "cloze", "choice-text")} == {render(free)}
    with pytest.raises(UnknownNameError, match="unknown prediction mode 'guess'"):
        render_prediction(MCQ, "guess")


def test_letter_mode_letters_the_nli_labels_and_keeps_premise_and_hypothesis():
    rendered = render_prediction(NLI, "letter")
    assert rendered.text == (
        "Premise: A man plays a guitar.\nHypothesis: A person makes music.\n"
        "Does the premise entail the hypothesis?\nChoices:\nA) entailment\nB) neutral\nC) contradiction\nAnswer:"
    )
    template = {rendered.text[a:b] for a, b in rendered.template_spans}
    assert "\nA) entailment" in template and "A man plays a guitar." not in template
    assert render_prediction(NLI, "cloze") == render_prediction(NLI, "choice-text") == render(NLI)


def test_letter_mode_predicts_the_argmax_of_the_next_token_over_the_letters(tiny):
    (scores,) = score_examples(tiny, [MCQ], predict="letter")
    ids = encode(tiny, render(MCQ, "mcqa").text).ids
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([ids])).logits[0, -1]
    letters = [tiny.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in "ABC"]  # chat: no leading space
    expected = torch.log_softmax(logits[letters], dim=-1)
    assert list(scores.scores) == pytest.approx(expected.tolist(), abs=1e-5)
    assert scores.predicted == MCQ.choices[int(expected.argmax())]
    assert sum(torch.tensor(scores.scores).exp().tolist()) == pytest.approx(1.0)


def test_cloze_is_the_question_only_scoring_and_choice_text_scores_the_listed_choices(any_tiny):
    (cloze,) = score_examples(any_tiny, [MCQ], predict="cloze")
    (before,) = score_choices_batch(any_tiny, [render(MCQ, "qa").text], [MCQ.choices])  # the scoring of old
    assert cloze.scores == pytest.approx(before.scores, abs=1e-6)
    (listed,) = score_examples(any_tiny, [MCQ], predict="choice-text")
    assert "B) refrigerator" in listed.prompt
    (expected,) = score_choices_batch(any_tiny, [render(MCQ, "mcqa").text], [MCQ.choices])
    assert listed.scores == pytest.approx(expected.scores, abs=1e-6)


@pytest.mark.parametrize("mode", ["letter", "cloze", "choice-text"])
def test_the_attributed_prompt_and_target_are_the_ones_the_prediction_scored(any_tiny, mode):
    attr = attribute(any_tiny, MCQ, method="input_x_gradient", predict=mode)
    pred = attr.prediction
    assert pred.mode == mode and attr.prompt == render_prediction(MCQ, mode).text
    (rescored,) = score_prompts(any_tiny, [attr.prompt], [pred.choices], letters=mode == "letter")
    assert rescored.scores == pytest.approx(pred.choice_scores, abs=1e-5)  # what helper checks rely on
    if mode == "letter":
        letter = "ABC"[pred.choices.index(pred.predicted)]
        assert attr.target == letter and attr.output_tokens == (letter,)  # one token: the next-token letter
    else:
        assert attr.target == pred.predicted
    words = dict(zip(attr.words, attr.word_is_template, strict=False))
    if mode != "cloze":
        assert words["A)"] and words["Choices:"] and not words["refrigerator"]


def test_gold_target_in_letter_mode_is_the_gold_letter_and_a_gold_outside_the_choices_is_refused(tiny):
    assert attribute(tiny, MCQ, target_mode="gold", predict="letter").target == "B"
    off = Example("x", "mcqa", "Where is milk kept?", ("fridge", "oven"), "cellar")
    with pytest.raises(InputError, match="not one of its choices, so it has no letter"):
        attribute(tiny, off, target_mode="gold", predict="letter")
    assert attribute(tiny, off, target_mode="gold", predict="cloze").target == "cellar"


def test_free_form_examples_keep_generation(tiny):
    free = Example("f", "qa", "What do cats chase?", (), "mice")
    (request,) = build_requests(tiny, [free], max_new_tokens=3, predict="letter")
    assert request.target_mode == "generate" and request.prompt == render(free).text
    assert request.prediction.mode is None and request.prediction.generated == request.target


def _input_x_gradient(loaded, prompt, target, contrast=None, first=False, method="input_x_gradient"):
    request = AttributionRequest(prompt, target, contrast=contrast, first_token_only=first)
    return attribute_requests(loaded, [request], method, steps=8)[0]


@pytest.mark.parametrize("text", [False, True], ids=["letters", "texts"])
def test_swapping_the_contrast_negates_input_x_gradient(any_tiny, text):
    prompt = render(MCQ, "qa" if text else "mcqa").text
    a, b = ("refrigerator", "cupboard") if text else ("B", "A")
    ab = _input_x_gradient(any_tiny, prompt, a, b, first=not text)
    ba = _input_x_gradient(any_tiny, prompt, b, a, first=not text)
    assert ab.contrast == b and any(abs(s) > 1e-6 for s in ab.seq_scores)
    assert list(ba.seq_scores) == pytest.approx([-s for s in ab.seq_scores], rel=1e-5, abs=1e-7)
    assert list(ba.word_scores) == pytest.approx([-s for s in ab.word_scores], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("method", LINEAR)
@pytest.mark.parametrize("text", [False, True], ids=["letters", "texts"])
def test_a_contrast_is_the_difference_of_the_two_plain_attributions(any_tiny, method, text):
    prompt = render(MCQ, "qa" if text else "mcqa").text
    a, b = ("refrigerator", "oven") if text else ("B", "C")
    both = _input_x_gradient(any_tiny, prompt, a, b, first=not text, method=method)
    plain_a = _input_x_gradient(any_tiny, prompt, a, first=not text, method=method)
    plain_b = _input_x_gradient(any_tiny, prompt, b, first=not text, method=method)
    difference = [x - y for x, y in zip(plain_a.seq_scores, plain_b.seq_scores, strict=True)]
    assert list(both.seq_scores) == pytest.approx(difference, rel=1e-4, abs=1e-5)  # float noise of padding
    # output tokens: the target's, then the contrast's, whose rows attribute -log p; rows still sum to the whole
    assert both.output_tokens == plain_a.output_tokens + plain_b.output_tokens
    assert both.n_contrast_tokens == len(plain_b.output_tokens)
    contrast_rows = both.token_scores[len(plain_a.output_tokens) :]
    assert [list(r) for r in contrast_rows] == [pytest.approx([-v for v in r], abs=1e-6) for r in plain_b.token_scores]
    column_sums = [sum(col) for col in zip(*both.token_scores, strict=True)]
    assert column_sums == pytest.approx(list(both.seq_scores), rel=1e-4, abs=1e-6)


def test_the_letter_contrast_is_the_gradient_of_a_difference_at_one_position(tiny):
    prompt = render(MCQ, "mcqa").text
    attr = _input_x_gradient(tiny, prompt, "B", "C", first=True)
    enc = encode(tiny, prompt)
    emb = tiny.model.get_input_embeddings()(torch.tensor([enc.ids])).detach().requires_grad_(True)
    logp = torch.log_softmax(tiny.model(inputs_embeds=emb).logits[0, -1].float(), dim=-1)
    b, c = (tiny.tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in "BC")
    (grad,) = torch.autograd.grad(logp[b] - logp[c], emb)
    expected = (grad[0] * emb[0]).sum(-1)[list(enc.content_positions)]
    assert list(attr.seq_scores) == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-7)


def test_contrast_modes_pick_the_runner_up_or_the_gold_answer(tiny):
    runner = attribute(tiny, MCQ, contrast="runner-up")
    pred = runner.prediction
    letter = {c: "ABC"[i] for i, c in enumerate(MCQ.choices)}
    assert (runner.target_mode, runner.target, runner.contrast) == (
        "choice",
        letter[pred.predicted],
        letter[pred.runner_up],
    )
    wrong_gold = next(c for c in MCQ.choices if c != pred.predicted)
    wrong = attribute(tiny, Example("w", "mcqa", MCQ.question, MCQ.choices, wrong_gold), contrast="gold")
    assert (wrong.target_mode, wrong.target, wrong.contrast) == ("gold", letter[wrong_gold], letter[pred.predicted])
    right = attribute(tiny, Example("r", "mcqa", MCQ.question, MCQ.choices, pred.predicted), contrast="gold")
    assert (right.target, right.contrast) == (letter[pred.predicted], letter[pred.runner_up])  # never zero
    texts = attribute(tiny, MCQ, contrast="runner-up", predict="choice-text", method="saliency")
    assert (texts.target, texts.contrast) == (texts.prediction.predicted, texts.prediction.runner_up)
    assert TokenAttribution.from_dict(json.loads(json.dumps(texts.to_dict()))) == texts


def test_contrasts_that_cannot_be_made_are_clear_errors(tiny):
    with pytest.raises(InputError, match="attention has no contrastive form"):
        attribute(tiny, MCQ, method="attention", contrast="runner-up")
    with pytest.raises(InputError, match="attention has no contrastive form"):
        attribute_requests(tiny, [AttributionRequest("q", "a", contrast="b")], "attention")
    with pytest.raises(UnknownNameError, match="unknown contrast 'best'"):
        attribute(tiny, MCQ, contrast="best")
    with pytest.raises(InputError, match="no two choices to contrast"):
        attribute(tiny, Example("f", "qa", "q?", (), "a"), contrast="gold")
    with pytest.raises(InputError, match="attributes target mode 'choice', not 'gold'"):
        attribute(tiny, MCQ, contrast="runner-up", target_mode="gold")
    with pytest.raises(InputError, match="give no target string"):
        attribute(tiny, MCQ, target="x", contrast="runner-up")
    with pytest.raises(UnknownNameError, match="unknown prediction mode"):
        attribute(tiny, MCQ, predict="guess")


def test_records_reject_contrast_tokens_without_a_contrast(tiny):
    data = attribute(tiny, MCQ, contrast="runner-up").to_dict()
    assert data["n_contrast_tokens"] == 1 and len(data["output_tokens"]) == 2
    with pytest.raises(ValueError, match="n_contrast_tokens"):
        TokenAttribution.from_dict({**data, "contrast": None})
    with pytest.raises(ValueError, match="n_contrast_tokens"):
        TokenAttribution.from_dict({**data, "n_contrast_tokens": 3})


def test_a_build_records_the_mode_and_the_scored_prompt(tiny, tmp_path):
    from kdviz.rationales.build import build_rationales

    built = build_rationales(tiny, [MCQ, NLI], "saliency", cache_dir=tmp_path, predict="cloze")
    mcq, nli = built.records
    assert mcq.provenance.predict == "cloze" and mcq.prompt == render(MCQ, "qa").text
    assert mcq.target == mcq.predicted and nli.prompt == render(NLI).text
    letters = build_rationales(tiny, [MCQ], "saliency", cache_dir=tmp_path)  # the default: letter, its own cache
    (rec,) = letters.records
    assert rec.provenance.predict == "letter" and rec.target in "ABC" and "A) cupboard" in rec.prompt
    assert rec.predicted == MCQ.choices["ABC".index(rec.target)]


def test_a_students_evaluation_keeps_its_default_and_can_predict_in_each_mode(tiny):
    from kdviz.distill.evaluation import predict_answers, student_prompt
    from kdviz.distill.methods import BASELINE, get_method
    from kdviz.lm.inference import score_letters_batch
    from kdviz.records import TrainExample

    items = [
        TrainExample(MCQ, "oven", "milk cold"),
        TrainExample(Example("q2", "mcqa", "Where is a cat?", ("mat", "sky"))),
    ]
    listed = [render(t.example).text for t in items]
    default = predict_answers(tiny, items)
    assert default == [s.predicted for s in score_choices_batch(tiny, listed, [t.example.choices for t in items])]
    assert predict_answers(tiny, items, predict="choice-text") == default
    letters = score_letters_batch(tiny, listed, [t.example.choices for t in items])
    assert predict_answers(tiny, items, predict="letter") == [s.predicted for s in letters]
    alone = [render(t.example, "qa").text for t in items]
    cloze = score_choices_batch(tiny, alone, [t.example.choices for t in items])
    assert predict_answers(tiny, items, predict="cloze") == [s.predicted for s in cloze]
    with_rationale = student_prompt(get_method("rationale_input"), items[0], "cloze")
    assert with_rationale == "Question: Where would you keep milk cold?\nRationale: milk cold\nAnswer:"
    # NLI in letter mode: the student's prompt letters the labels, as the teacher's letter prompt does
    lettered = student_prompt(BASELINE, TrainExample(NLI), "letter")
    assert lettered == render_prediction(NLI, "letter").text and "\nA) entailment\nB) neutral" in lettered
    by_letter = score_letters_batch(tiny, [lettered], [("entailment", "neutral", "contradiction")])
    assert predict_answers(tiny, [TrainExample(NLI)], BASELINE, predict="letter") == [by_letter[0].predicted]
