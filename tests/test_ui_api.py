"""The app served by `kdviz.ui.launch` and scripted through its named endpoints with gradio_client (tiny teacher)."""

import inspect
import json
import re

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import kdviz
from kdviz.ui import train_settings as ts

from .conftest import app_client

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
def client(tmp_path_factory):
    with app_client(tmp_path_factory.mktemp("workspace")) as client:
        yield client


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


@pytest.fixture
def session(client):
    """A gradio session of its own (its own open build), on the module's app."""
    own = Client(client.src, verbose=False)
    try:
        yield own
    finally:
        own.close()


def parameters(client, endpoint):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]
    return [p["parameter_name"] for p in api["parameters"]]


def test_every_endpoint_names_its_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    unnamed = {e: p["parameter_name"] for e, api in endpoints.items() for p in api["parameters"]}
    assert not {e: name for e, name in unnamed.items() if not name or re.fullmatch(r"param(eter)?_\d+", name)}
    assert parameters(client, "/train") == list(inspect.signature(ts.make_config).parameters)[1:]  # after workspace
    assert parameters(client, "/build") == [
        "model", "columns", "limit", "method", "target_mode", "rule", "rule_value", "exclude", "batch_size", "name",
        "span", "faithfulness", "predict",
    ]  # fmt: skip
    filters = ["correct", "overlaps_gold", "status", "share_min", "share_max", "search"]
    assert parameters(client, "/filter") == ["record_id", *filters] and parameters(client, "/show_build") == filters
    assert parameters(client, "/accept_filtered") == ["record_id", *filters]
    assert parameters(client, "/rule_default") == ["rule"]
    # the steps slider, whose range kdviz checks rather than gradio, is still drawn as gradio's slider
    steps = [
        c for c in client.config["components"] if c.get("props", {}).get("label") == "Steps (integrated gradients)"
    ]
    assert [(c["type"], c["props"]["minimum"], c["props"]["maximum"]) for c in steps] == [("slider", 1, 256)]


def test_build_then_curate_by_keyword(session):
    built, message, command = session.predict(
        model="tiny", limit=3, batch_size=2, rule="top-k", rule_value=2, name="by-name", faithfulness=False,
        api_name="/build",
    )  # fmt: skip
    assert built["value"] == "by-name"
    assert re.fullmatch(r"Build \*\*by-name\*\*: 3 records \(\d from the cache\)\.", message)
    assert "--limit 3" in command and "--top-k 2" in command and "--batch-size 2" in command
    *_, counts, _, _, records, _ = session.predict(record_id="demo-002", api_name="/accept")
    assert "3 records: 2 pending · 1 accepted · 0 rejected" in counts
    counts, _, _, records, picker = session.predict(record_id=None, status="accepted", api_name="/filter")
    assert [row[:2] for row in records["data"]] == [["demo-002", "accepted"]] and picker["value"] is None
    with pytest.raises(AppError, match=re.escape("Share ≤ must be between 0 and 1, not 1.5")):
        session.predict(record_id=None, share_max=1.5, api_name="/filter")


def test_train_by_keyword(client, rationale_export):
    status, plot, samples, command = client.predict(
        student="tiny-student", dataset=str(rationale_export), max_steps=2, batch_size=2, lr=1e-3, eval_every=0,
        eval_size=4, name="by-name", api_name="/train",
    )  # fmt: skip
    assert status.startswith("**by-name** · completed · step 2/2") and plot["type"] == "plotly"
    assert "--max-steps 2" in command and "--batch-size 2" in command and "--student tiny-student" in command


TRAIN = dict(student="tiny-student", dataset="data.jsonl", name="never-trained")
COMPARE = dict(teacher="tiny", students=["tiny-student"], name="never-compared")


@pytest.mark.parametrize(
    "endpoint, fields, message",
    [
        ("/attribute", {**FIELDS, "steps": 0}, "Steps (integrated gradients) must be between 1 and 256, not 0"),
        ("/attribute", {**FIELDS, "steps": 257}, "Steps (integrated gradients) must be between 1 and 256, not 257"),
        ("/build", dict(model="tiny", limit=0), "Examples (first N) must be at least 1, not 0"),
        ("/build", dict(model="tiny", batch_size=-2), "Batch size must be at least 1, not -2"),
        ("/build", dict(model="tiny", rule="top-k", rule_value=0), "top_k must be at least 1"),
        ("/train", {**TRAIN, "max_steps": 0}, "Max steps must be at least 1, not 0"),
        ("/train", {**TRAIN, "lr": 0}, "Learning rate must be above 0, not 0"),
        ("/train", {**TRAIN, "eval_every": -1}, "Eval every (0: at the end) must be at least 0, not -1"),
        (
            "/train",
            {**TRAIN, "method": "multitask", "alpha": 1.5},
            "α (weight of the answer loss) must be between 0 and 1, not 1.5",
        ),
        ("/train", {**TRAIN, "lora": True, "lora_r": 0}, "LoRA rank must be at least 1, not 0"),
        ("/compare", {**COMPARE, "top_k": 0}, "Top-k rationale words must be at least 1, not 0"),
        ("/compare", {**COMPARE, "limit": -1}, "Examples (first N) must be at least 1, not -1"),
    ],
)
def test_out_of_range_values_get_a_message_naming_the_field(client, endpoint, fields, message):
    # gradio's own range check ("Value 0 is less than minimum value 1.") would run first and name no field
    with pytest.raises(AppError, match=f"^{re.escape(message)}$"):
        client.predict(**fields, api_name=endpoint)


def test_the_compare_panel_opens_reproduction_results_one_dataset_or_all(client, tmp_path):
    from kdviz.compare.results import method_table

    from .test_results import _comparison

    runs = {"standard": [[i < 10 for i in range(20)]], "multitask": [[i < 15 for i in range(20)]]}
    table = method_table(_comparison(runs), {"standard-seed0": "standard", "multitask-seed0": "multitask"})
    for dataset in ("cqa", "esnli"):  # what bench/reproduce.py writes: the setup and the table
        (tmp_path / dataset).mkdir()
        setup = {"dataset": dataset, "size": "cpu", "teacher": "embedded-teacher", "seeds": [0]}
        (tmp_path / dataset / "results.json").write_text(json.dumps({"setup": setup, **table.to_dict()}))
    listed = client.predict(str(tmp_path), api_name="/list_reproductions")
    assert [c[0] for c in listed["choices"]] == ["cqa", "esnli", "all datasets"] and listed["value"] == "cqa"
    markdown, plot = client.predict(str(tmp_path), "esnli", api_name="/open_reproduction")
    assert markdown.startswith("### esnli\n\nsize cpu, teacher embedded-teacher, seeds [0]")
    assert "| `multitask` | 75.0% ± 0.0 | 75.0 | +25.0 (" in markdown
    markdown, plot = client.predict(str(tmp_path), "all datasets", api_name="/open_reproduction")
    assert "| cqa | 20 | 75.0% | 50.0% ± 0.0 | 75.0% ± 0.0 |" in markdown and "| esnli | 20 |" in markdown
    assert [t["name"] for t in json.loads(plot["plot"])["data"]] == ["standard", "multitask", "teacher"]
    with pytest.raises(AppError, match="svamp is not in the list of choices"):  # only what the folder holds
        client.predict(str(tmp_path), "svamp", api_name="/open_reproduction")
