"""The app served by `kdviz.ui.launch` and scripted through its named endpoints with gradio_client (tiny teacher)."""

import json

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import kdviz
from kdviz.ui import launch

FIELDS = dict(
    model="tiny",
    method="input_x_gradient",
    target_mode="generate",
    prompt="the cat sat on the mat",
    choices="",
    gold="",
    custom_target="",
    fmt="auto",
    steps=4,
)


@pytest.fixture(scope="module")
def client():
    demo = launch(teacher="tiny", host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        demo.close()


def attribute(client, **fields):
    return client.predict(**{**FIELDS, **fields}, api_name="/attribute")


def test_attribute_endpoint(client):
    answer, html, plot, top_k, record = attribute(client)
    attr = kdviz.TokenAttribution.from_dict(record)
    assert attr.words == ("the", "cat", "sat", "on", "the", "mat") and attr.target_mode == "generate"
    assert html.count('class="kdviz-word') == 6 and f"`{attr.target}`" in answer
    assert plot["type"] == "plotly" and json.loads(plot["plot"])["data"][0]["type"] == "heatmap"
    assert top_k["headers"] == ["rank", "word", "score"] and [r[1] for r in top_k["data"]] == [
        w for w, _ in attr.top_words(10)
    ]


def test_errors_are_reported_and_the_app_keeps_answering(client):
    with pytest.raises(AppError, match="nope"):
        attribute(client, method="nope")
    with pytest.raises(AppError, match="could not load model 'no-such-org/no-such-model'"):
        attribute(client, model="no-such-org/no-such-model")
    with pytest.raises(AppError, match="the prompt is empty"):
        attribute(client, prompt="")
    *_, record = attribute(client, method="saliency", target_mode="custom", custom_target="on the mat")
    assert (record["method"], record["target"], record["target_mode"]) == ("saliency", "on the mat", "forced")


def test_pick_example_then_attribute_its_choice(client):
    prompt, choices, gold, fmt, mode = client.predict("demo-003", api_name="/pick_example")
    assert prompt.startswith("The child lost her favorite toy") and (gold, fmt, mode) == ("sad", "mcqa", "choice")
    answer, *_, record = attribute(client, prompt=prompt, choices=choices, gold=gold, fmt=fmt, target_mode=mode)
    # tiny has a chat template, so it predicts by letter and the letter it scored is what is attributed
    listed = choices.splitlines()
    assert record["prediction"]["mode"] == "letter" and record["prediction"]["predicted"] in listed
    assert record["target"] == "ABCDE"[listed.index(record["prediction"]["predicted"])]
    assert "**Prediction**" in answer


def test_load_dataset_upload_then_pick_from_it(client, tmp_path):
    good, bad = tmp_path / "mine.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps({"id": "q1", "question": "Where is milk kept?", "choices": ["fridge", "oven"]}) + "\n")
    bad.write_text("{not json\n")
    session = Client(client.src, verbose=False)  # a session of its own: an upload replaces the session's examples
    try:
        picker = session.predict(handle_file(str(good)), api_name="/load_dataset")
        assert picker["choices"] == [["q1: Where is milk kept?", "q1"]] and picker["value"] is None
        fields = session.predict("q1", api_name="/pick_example")
        assert fields == ("Where is milk kept?", "fridge\noven", "", "mcqa", "choice")
        with pytest.raises(AppError, match="line 1: not valid JSON"):
            session.predict(handle_file(str(bad)), api_name="/load_dataset")
    finally:
        session.close()
