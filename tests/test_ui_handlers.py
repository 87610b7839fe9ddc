"""The Teacher panel's handlers, called directly on the tiny model: no server, no browser."""

import importlib.util
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

import kdviz
from kdviz.data import demo_path
from kdviz.lm.prompts import MAX_PROMPT_CHARS
from kdviz.ui import handlers


class _WordSpans(HTMLParser):
    """Collects the text of every `span.kdviz-word` (they do not nest)."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        if tag == "span" and "kdviz-word" in (dict(attrs).get("class") or "").split():
            self._inside = True
            self.words.append("")

    def handle_endtag(self, tag):
        self._inside = self._inside and tag != "span"

    def handle_data(self, data):
        if self._inside:
            self.words[-1] += data


def word_spans(html: str) -> list[str]:
    parser = _WordSpans()
    parser.feed(html)
    return parser.words


def attribute(prompt="the cat sat on the mat", **fields):
    args = dict(
        model_spec="tiny",
        method="input_x_gradient",
        target_mode="generate",
        prompt=prompt,
        choices_text="",
        gold="",
        custom_target="",
        fmt="auto",
        steps=4,
    )
    return handlers.run_attribution(**{**args, **fields})


def test_free_prompt_gives_one_span_per_word_and_a_record_that_round_trips():
    prompt = "Where would you keep milk cold?"
    view = attribute(prompt)
    assert isinstance(view, handlers.AttributionView)
    answer, html, figure, rows, record = view
    assert (view.answer, view.record) == (answer, record)
    assert word_spans(html) == prompt.split()
    attr = kdviz.TokenAttribution.from_dict(record)
    assert attr.to_dict() == record
    assert json.loads(json.dumps(record)) == record
    assert (attr.prompt, attr.target_mode, attr.method) == (prompt, "generate", "input_x_gradient")
    assert f"`{attr.target}`" in answer
    assert figure.data[0].type == "heatmap" and len(figure.data[0].y) == len(attr.output_tokens)
    assert [row[1] for row in rows] == [word for word, _ in attr.top_words(handlers.TOP_K)]


def test_every_method_runs():
    for method in kdviz.list_attribution_methods():
        if method == "attnlrp" and importlib.util.find_spec("lxt") is None:  # optional package (tests/test_lrp.py)
            continue
        _, html, _, _, record = attribute(method=method, steps=2)
        assert record["method"] == method and len(word_spans(html)) == 6


def test_picked_example_attributes_its_predicted_choice():
    fields = handlers.example_fields(demo_path(), "demo-002")
    prompt, choices, gold, fmt, mode = fields
    assert (fields.prompt, fields.target_mode) == (prompt, mode)
    assert prompt.startswith("What tool would a carpenter use")
    assert choices.splitlines() == ["screwdriver", "hammer", "saw", "ruler", "paintbrush"]
    assert (gold, fmt, mode) == ("hammer", "mcqa", "choice")
    answer, html, _, rows, record = attribute(prompt, choices_text=choices, gold=gold, fmt=fmt, target_mode=mode)
    pred = kdviz.TokenAttribution.from_dict(record).prediction
    letter = "ABCDE"[pred.choices.index(pred.predicted)]
    assert record["target"] == letter and pred.mode == "letter"  # the tiny model chats: letter mode by default
    assert pred.correct == (pred.predicted == "hammer") and pred.gold == "hammer"
    assert f"**Prediction**: `{pred.predicted}`" in answer and "| B) hammer" in answer
    assert "(prediction mode: letter)" in answer and f'**Scored**: `log p("{letter}" = {pred.predicted})`' in answer
    assert ("— correct" in answer) == pred.correct and answer.count("← predicted") == 1
    rendered = kdviz.render(kdviz.load_examples(demo_path())[1]).text
    assert word_spans(html) == rendered.split()  # the mcqa format's own words are shown too, in grey
    assert len(rows) == handlers.TOP_K and all(word not in ("Question:", "Answer:") for _, word, _ in rows)


def test_gold_and_custom_targets():
    _, _, _, _, gold = attribute("Where is milk kept?", choices_text="fridge\noven", gold="fridge", target_mode="gold")
    assert (gold["target"], gold["target_mode"]) == ("A", "gold")  # letter mode: the gold answer's letter
    _, _, _, _, gold = attribute(
        "Where is milk kept?", choices_text="fridge\noven", gold="fridge", target_mode="gold", predict="choice-text"
    )
    assert (gold["target"], gold["target_mode"]) == ("fridge", "gold")
    answer, _, _, _, custom = attribute(target_mode="custom", custom_target="on the mat")
    assert (custom["target"], custom["target_mode"]) == ("on the mat", "forced")
    assert "(forced): `on the mat`" in answer


def test_nli_example_keeps_premise_and_hypothesis(tmp_path):
    path = tmp_path / "nli.jsonl"
    path.write_text(
        json.dumps({"id": "n1", "premise": "A man plays a guitar.", "hypothesis": "A person makes music.", "label": 0})
        + "\n"
    )
    assert handlers.load_dataset_examples(path) == [("n1: A person makes music.", "n1")]
    prompt, choices, gold, fmt, mode = handlers.example_fields(path, "n1")
    assert (prompt, fmt, gold) == ("A man plays a guitar.\n\nA person makes music.", "nli", "entailment")
    _, html, _, _, record = attribute(prompt, choices_text=choices, gold=gold, fmt=fmt, target_mode="gold")
    assert record["target"] == "A" and "Premise:" in record["prompt"] and "\nA) entailment" in record["prompt"]
    assert {"man", "guitar.", "music."} <= set(word_spans(html))


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(prompt="   "), "the prompt is empty"),
        (dict(prompt="word " * MAX_PROMPT_CHARS), f"the limit is {MAX_PROMPT_CHARS}"),
        (dict(method="gradient_magic"), "unknown attribution method 'gradient_magic'; choose one of: attention"),
        (dict(model_spec="no-such-org/no-such-model"), "could not load model 'no-such-org/no-such-model'"),
        (dict(model_spec=" "), "choose a model"),
        (dict(target_mode="best"), "unknown target mode 'best'"),
        (dict(fmt="yaml"), "unknown prompt format 'yaml'"),
        (dict(target_mode="choice"), "has no choices; use target mode 'generate' or 'gold'"),
        (dict(target_mode="gold"), "has no gold answer"),
        (dict(target_mode="custom"), "type the custom target"),
        (dict(choices_text="a\nb", gold="c"), "the gold answer 'c' is not one of the choices"),
        (dict(fmt="nli"), "an NLI prompt needs a premise"),
    ],
)
def test_bad_input_raises_a_clear_kdviz_error(fields, message):
    with pytest.raises(kdviz.KdvizError) as info:
        attribute(**fields)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": "a", "question": "q?", "choices": ["x", "y"], "answer": "x"}\n{oops\n', "line 2: not valid JSON"),
        ('{"id": "a", "text": "no question"}\n', "has no 'question' field"),
        ('["a", "list"]\n', "line 1: expected a JSON object"),
        ("\n\n", "holds no examples"),
        ('{"id": "a", "question": "q?"}\n{"id": "a", "question": "r?"}\n', "example id 'a' appears twice"),
    ],
)
def test_malformed_examples_file_gives_a_clear_error(tmp_path, text, message):
    path = tmp_path / "upload.jsonl"
    path.write_text(text)
    with pytest.raises(kdviz.KdvizError) as info:
        handlers.load_dataset_examples(path)
    assert message in str(info.value)


def test_demo_set_lists_every_example_and_unknown_ids_are_errors():
    options = handlers.load_dataset_examples(demo_path())
    assert len(options) == 40 and options[0] == (
        "demo-001: Where would you keep milk so that it stays cold overnight?",
        "demo-001",
    )
    with pytest.raises(kdviz.InputError, match="no example with id 'demo-999'"):
        handlers.example_fields(demo_path(), "demo-999")


def test_model_load_note_only_for_unconverted_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path))
    assert handlers.model_load_note("tiny") is None
    assert "converting its weights once" in handlers.model_load_note("embedded-teacher")


def test_ui_errors_turns_kdviz_errors_into_gradio_errors():
    import gradio as gr

    from kdviz.ui.errors import ui_errors

    assert handlers.ui_errors is ui_errors  # still importable from here, for the tabs that do
    wrapped = ui_errors(handlers.example_fields)
    with pytest.raises(gr.Error, match="no example with id 'nope'"):
        wrapped(demo_path(), "nope")
    with pytest.raises(gr.Error, match="unknown attribution method"):
        ui_errors(attribute)(method="nope")


def test_ui_errors_reports_a_bug_as_an_internal_error_with_its_traceback_in_the_log(caplog):
    import gradio as gr

    from kdviz.ui.errors import ui_errors

    def buggy():
        return dict(["x"])  # a bug, not bad input, though it raises ValueError

    def buggy_stream():
        yield 1
        raise KeyError("step")

    with pytest.raises(gr.Error) as info:
        ui_errors(buggy)()
    message = info.value.message
    assert message.startswith("internal error (ValueError: dictionary update sequence element #0")
    assert message.endswith("the traceback is in the app's log")
    stream = ui_errors(buggy_stream)()
    assert next(stream) == 1
    with pytest.raises(gr.Error, match=r"internal error \(KeyError: 'step'\)"):
        next(stream)
    logged = [r for r in caplog.records if r.name == "kdviz.ui"]
    assert len(logged) == 2 and all(r.exc_info for r in logged)
    assert "buggy_stream" in caplog.text  # the traceback reaches the log


def test_importing_kdviz_leaves_gradio_out():
    code = "import sys, kdviz; assert 'gradio' not in sys.modules, 'import kdviz pulled in gradio'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prediction_mode_and_contrast_are_shown():
    fields = dict(
        prompt="Where is milk kept?", choices_text="fridge\noven\nshelf", gold="fridge", target_mode="choice"
    )
    answer, _, _, _, record = attribute(**fields, predict="cloze")
    attr = kdviz.TokenAttribution.from_dict(record)
    assert attr.prediction.mode == "cloze" and attr.target == attr.prediction.predicted
    assert "(prediction mode: cloze)" in answer and f'**Scored**: `log p("{attr.target}")`' in answer
    assert attr.prompt == "Question: Where is milk kept?\nAnswer:"  # cloze scores after the question alone
    fields.update(target_mode="custom", custom_target="x")  # ignored: a contrast sets its own target
    answer, html, figure, _, record = attribute(**fields, contrast="gold")
    attr = kdviz.TokenAttribution.from_dict(record)  # gold against the prediction (or the runner-up)
    assert (attr.target_mode, attr.target) == ("gold", "A") and attr.contrast in ("B", "C")
    assert "**Contrast**: why `A` and not" in answer and f' − log p("{attr.contrast}" = ' in answer
    assert f"vs <code>{attr.contrast}</code>" in html
    assert list(figure.data[0].y) == ["A·0", f"−{attr.contrast}·1"]


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(predict="guess"), "unknown prediction mode 'guess'"),
        (dict(contrast="best"), "unknown contrast 'best'"),
        (dict(contrast="runner-up", method="attention", model_spec="no-such/model"), "no contrastive form"),
    ],
)
def test_bad_prediction_mode_or_contrast_is_refused_before_the_model_loads(fields, message):
    with pytest.raises(kdviz.KdvizError, match=message):
        attribute(**fields)


@pytest.fixture
def counted(monkeypatch):
    """A fresh click cache, and the attributions the model computes, counted."""
    from kdviz.attribution import targets
    from kdviz.ui import teacher_click

    monkeypatch.setattr(teacher_click, "CLICKS", teacher_click.ClickCache())
    calls = []

    def counting(real):  # both attribute a method, third argument: scoring first, or in one pass (letter mode)
        def run(*args, **kwargs):
            calls.append(args[2] if len(args) > 2 else kwargs.get("method"))
            return real(*args, **kwargs)

        return run

    for name in ("attribute_requests", "attribute_letter_decisions"):
        monkeypatch.setattr(targets, name, counting(getattr(targets, name)))
    return calls


def test_a_repeated_click_is_answered_from_memory_without_the_model(counted):
    from kdviz.ui.teacher_click import FROM_MEMORY

    first = attribute(method="integrated_gradients", steps=4)
    again = attribute(method="integrated_gradients", steps=4)
    assert len(counted) == 1 and again.record == first.record and FROM_MEMORY in again.answer
    assert FROM_MEMORY not in first.answer
    attribute(method="integrated_gradients", steps=5)  # a setting that changes the scores: computed
    attribute(method="saliency", steps=4)
    attribute(method="saliency", steps=7)  # steps do not change saliency: from memory
    assert counted == ["integrated_gradients", "integrated_gradients", "saliency"]


def test_the_memory_keeps_the_last_clicks_and_only_for_the_same_model_object():
    from kdviz.ui.teacher_click import Click, ClickCache

    cache, model, other = ClickCache(size=2), torch_free_model(), torch_free_model()
    clicks = [
        Click("tiny", "saliency", kdviz.Example("prompt", "qa", f"q{i}"), "raw", None, "generate", None, None, "cloze")
        for i in range(3)
    ]
    for i, click in enumerate(clicks):
        cache.put(click, model, i)
    assert [cache.get(c, model) for c in clicks] == [None, 1, 2]  # the oldest went
    assert cache.get(clicks[2], other) is None  # a model loaded again is attributed again


def torch_free_model():
    class Model:  # any object that can be weakly referenced, as a torch module can
        pass

    return Model()


def test_a_click_on_an_example_a_build_attributed_reuses_the_build(counted, tmp_path, monkeypatch):
    from kdviz.rationales.build import build_rationales
    from kdviz.ui import teacher_click
    from kdviz.ui.teacher_click import FROM_BUILD

    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path))  # where the build caches, and the click looks
    picked = kdviz.load_examples(demo_path())[1]
    build_rationales("tiny", [picked], "input_x_gradient", target_mode="choice", faithfulness=False)
    built = len(counted)
    prompt, choices, gold, fmt, mode = handlers.example_fields(demo_path(), picked.id)
    shown = dict(choices_text=choices, gold=gold, fmt=fmt, target_mode=mode, dataset=str(demo_path()))
    reused = attribute(prompt, **shown, example_id=picked.id)
    assert len(counted) == built and FROM_BUILD in reused.answer  # no model run
    assert attribute(prompt, **shown, example_id="").record == reused.record  # now remembered for these settings
    monkeypatch.setattr(teacher_click, "CLICKS", teacher_click.ClickCache())
    computed = attribute(prompt, **shown, example_id="")  # the same click, forgotten, and not linked to the example
    assert len(counted) == built + 1 and FROM_BUILD not in computed.answer
    a, b = (kdviz.TokenAttribution.from_dict(v.record) for v in (reused, computed))
    assert (a.prompt, a.target, a.words, a.output_tokens) == (b.prompt, b.target, b.words, b.output_tokens)
    assert a.word_scores == pytest.approx(b.word_scores, rel=1e-4, abs=1e-6)
    assert len(a.word_token_scores) == len(b.word_token_scores) == 1  # the letter's one row
    assert a.word_token_scores[0] == pytest.approx(b.word_token_scores[0], rel=1e-4, abs=1e-6)
    edited = attribute(prompt + " Quickly.", **shown, example_id=picked.id)  # the fields no longer show it
    assert FROM_BUILD not in edited.answer and len(counted) == built + 2


def test_a_click_reports_integration_steps_with_a_fraction(counted):
    seen = []
    attribute(method="integrated_gradients", steps=3, on_progress=lambda fraction, desc: seen.append((fraction, desc)))
    assert seen[0] == (0.1, "loading tiny")
    assert ("Integrated gradients: 0/3 steps (0%)" in [d for _, d in seen]) and seen[-1] == (
        1.0,
        "Integrated gradients: 3/3 steps (100%)",
    )


def test_progress_line_and_cost_note_say_what_a_user_waits_for():
    from kdviz.records import ProgressEvent
    from kdviz.ui import teacher_click

    event = ProgressEvent("steps", 12, 20, "tiny", elapsed_s=60.0)
    assert teacher_click.progress_line("integrated_gradients", event) == (
        "Integrated gradients: 12/20 steps (60%), about 40.0 s left"
    )
    words = ProgressEvent("words", 3, 40, "tiny", elapsed_s=30.0)
    assert (
        teacher_click.progress_line("feature_ablation", words) == "Occlusion: 3/40 words (8%), about 6 min 10 s left"
    )
    note = teacher_click.cost_note("integrated_gradients", "Where is milk kept?", "fridge\noven", 20, "no-such-model")
    assert note == "Expected cost: 20× a saliency click (20 forward+backward passes, one per integration step)"
    note = teacher_click.cost_note("feature_ablation", "Where is milk kept?", "fridge\noven", 20, "no-such-model")
    assert note.startswith("Expected cost: 3.5× a saliency click (7 forward passes")


def test_cost_note_gives_seconds_after_a_click_timed_the_model(counted):
    from kdviz.ui import teacher_click

    attribute(method="saliency")
    note = teacher_click.cost_note("integrated_gradients", "the cat sat on the mat", "", 20, "tiny")
    assert note.startswith("Expected cost: 20× a saliency click") and "s on tiny at its last click's pace" in note
