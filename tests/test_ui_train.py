"""The Train panel: its handlers called directly, then the served app through gradio_client (tiny-student).

Runs are a few steps of the tiny student on small batches, so each takes seconds; the cancelled ones are long runs
stopped after their first step.
"""

import inspect
import json
import re
import shlex
import shutil
import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from kdviz.cli.main import build_parser
from kdviz.cli.train import _config
from kdviz.distill.runs import train_command
from kdviz.errors import InputError, KdvizError
from kdviz.ui import launch
from kdviz.ui import run_views as rv
from kdviz.ui import train_handlers as th
from kdviz.ui import train_settings as ts

FIELDS = list(inspect.signature(ts.make_config).parameters)[1:]  # the panel's fields, after the workspace
SETTINGS = dict(
    student="tiny-student", method="standard", max_steps=3, batch_size=2, lr=1e-3, seed=0, eval_every=2,
    eval_size=4, alpha=0.5, kd_loss="kl", temperature=2.0, teacher="tiny", lora=False, lora_r=16, beta=0.1, lmbda=0.5,
    dpo_rationale=False, report_to="none", name="", rationale_source="build", label_source="build",
)  # fmt: skip
POLL_S = 0.05


def fields(data, **settings) -> list:
    values = named(data, **settings)
    return [values[f] for f in FIELDS]


def named(data, **settings) -> dict:
    return {**SETTINGS, "dataset": str(data), **settings}


@pytest.fixture
def workspace(tmp_path):
    return tmp_path / "ws"


@pytest.fixture(autouse=True)
def no_run_left_behind():
    """A failed test must not leave its run training: the next test's launch would be refused as busy."""
    yield
    training = th.JOBS.active
    if training is not None:
        training.stop.set()
        training.done.wait(60)


def first_step(views) -> tuple:
    """Returns the first view that shows a finished training step."""
    for view in views:
        if re.search(r"step [1-9]\d*/", view[0]):
            return view
    raise AssertionError("the run ended before its first step was shown")


def test_launch_streams_curves_and_finishes(workspace, rationale_export):
    views = list(th.launch(workspace, *fields(rationale_export), poll_s=0.01))  # short polls: a view per step
    name = "standard-tiny-student-1"
    status, figure, samples, command = views[0]
    assert status.startswith(f"**{name}** · running · step 0/3") and "kdviz train" in command and samples == []
    assert len(views) >= 3 and any(re.search(r"running · step [1-3]/3 · .* ETA ", v[0]) for v in views[1:-1])
    status, figure, samples, command = views[-1]
    assert status.startswith(f"**{name}** · completed · step 3/3 ·") and "loss " in status
    assert "eval accuracy" in status and "ETA" not in status
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["loss (total)"].x) == [1, 2, 3] and list(traces["eval accuracy"].x) == [0, 2, 3]
    assert samples and [row[0] for row in samples][0] == 3 and all(len(row) == 5 for row in samples)
    assert samples[0][4] in ("yes", "no") and samples[0][1]  # correct, question
    folder = workspace / "runs" / name
    assert f"--config {folder / 'config.yaml'}" in command and (folder / "checkpoint").is_dir()
    rows = rv.run_rows(workspace)
    assert [row[:5] for row in rows] == [[name, "completed", "standard", "tiny-student", "3/3"]]
    assert re.fullmatch(r"\d\.\d{3}", rows[0][5]) and re.fullmatch(r"\d+\.\d{4}", rows[0][6])
    assert rv.run_view(workspace, name).status == status  # a past run reads the same from its folder
    assert ts.next_run_name(workspace, "standard", "tiny-student", name) == "standard-tiny-student-2"
    assert ts.next_run_name(workspace, "standard", "tiny-student", "mine") == "mine"


def test_the_cli_command_runs_the_same_config(workspace, rationale_export):
    config = ts.make_config(workspace, *fields(rationale_export, method="multitask", alpha=0.3, lora=True, lora_r=4))
    command = train_command(config)
    assert command.startswith(f"kdviz train --data {rationale_export} --out {workspace / 'runs'}")
    assert "--alpha 0.3 --lora --lora-r 4" in command and "--teacher" not in command and "--kd-loss" not in command
    assert _config(build_parser().parse_args(shlex.split(command)[1:])) == config
    kd = ts.make_config(workspace, *fields(rationale_export, method="logit_kd", kd_loss="jsd", teacher="tiny"))
    assert (kd.teacher, kd.kd_loss, kd.temperature, kd.lora) == ("tiny", "jsd", 2.0, False)
    assert "--method logit_kd --teacher tiny" in train_command(kd) and "--kd-loss jsd" in train_command(kd)


def test_cancel_keeps_the_run_marked_cancelled_and_a_second_launch_is_busy(workspace, rationale_export):
    views = th.launch(workspace, *fields(rationale_export, max_steps=2000, eval_every=0, name="long"), poll_s=POLL_S)
    first_step(views)
    with pytest.raises(th.BusyError, match=r"^busy: a training run \(long\) is in progress; wait or cancel it$"):
        next(th.launch(workspace, *fields(rationale_export, name="other")))
    assert not (workspace / "runs" / "other").exists()
    assert th.cancel_run() == "Cancelling **long** after the current step…"
    status, figure, samples, command = list(views)[-1]
    assert re.match(r"\*\*long\*\* · cancelled · step \d+/2000 ·", status) and figure.data[0].x
    assert rv.run_rows(workspace)[0][:2] == ["long", "cancelled"]
    assert th.cancel_run() == "No training is running."
    assert json.loads((workspace / "runs" / "long" / "status.json").read_text())["status"] == "cancelled"


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(name="../escape"), "is not a valid name"),
        (dict(name="a/b"), "is not a valid name"),
        (dict(method="magic"), "unknown distillation method 'magic'"),
        (dict(student=" "), "choose a student model"),
        (dict(dataset=""), "choose the training data"),
        (dict(max_steps=0), "Max steps must be at least 1, not 0"),
        (dict(batch_size=2.5), "Batch size must be a whole number, not 2.5"),
        (dict(lr=None), "Learning rate is empty: give a number"),
        (dict(method="logit_kd", teacher=""), "logit_kd needs a teacher model"),
        (dict(method="multitask", alpha=1.5), "α (weight of the answer loss) must be between 0 and 1, not 1.5"),
    ],
)
def test_bad_settings_are_clear_errors(workspace, settings, message):
    with pytest.raises(KdvizError, match=re.escape(message)):
        ts.make_config(workspace, *fields("data.jsonl", **settings))


def test_bad_data_is_a_clear_error_and_frees_the_panel(workspace, tmp_path, rationale_export):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    plain = tmp_path / "plain.jsonl"  # a dataset without the teacher's rationales
    plain.write_text("".join(json.dumps({"id": f"q{i}", "question": "q?", "answer": "a"}) + "\n" for i in range(4)))
    for data, settings, message in [
        (bad, {}, "bad.jsonl"),
        (tmp_path / "missing.jsonl", {}, "no such data file"),
        (plain, dict(method="multitask"), "method 'multitask' needs the teacher's rationales; the data has none."),
        (rationale_export, dict(student=str(tmp_path / "no-student")), "could not load model"),  # after the folder
    ]:
        with pytest.raises(KdvizError, match=re.escape(message)):
            list(th.launch(workspace, *fields(data, **settings, name="bad"), poll_s=POLL_S))
        assert th.cancel_run() == "No training is running." and not (workspace / "runs" / "bad").exists()
    (workspace / "runs" / "taken").mkdir(parents=True)
    (workspace / "runs" / "taken" / "config.yaml").write_text("data: x\nout: y\n")
    with pytest.raises(InputError, match="a run named 'taken' exists already"):
        next(th.launch(workspace, *fields(rationale_export, name="taken")))


def test_datasets_of_the_workspace_and_uploads(workspace, tmp_path, rationale_export):
    assert th.list_datasets(workspace) == []
    export = workspace / "builds" / "b1" / "exports" / "v1"
    shutil.copytree(rationale_export, export)
    shutil.copy(rationale_export / "rationales.jsonl", workspace / "builds" / "b1" / "records.jsonl")
    assert th.list_datasets(workspace) == [
        ("b1/v1 (export)", str(export)),
        ("b1 (curated records)", str(workspace / "builds" / "b1" / "records.jsonl")),
    ]
    upload = tmp_path / "my data.jsonl"
    upload.write_text('{"id": "1", "question": "q?", "answer": "a"}\n')
    copy = th.add_upload(workspace, upload)
    assert copy == str(workspace / "uploads" / "my-data.jsonl") and th.add_upload(workspace, upload) == copy
    upload.write_text('{"id": "2", "question": "q?", "answer": "b"}\n')
    assert th.add_upload(workspace, upload) == str(workspace / "uploads" / "my-data-2.jsonl")
    assert th.list_datasets(workspace)[-1] == ("my-data.jsonl (uploaded)", copy)
    with pytest.raises(InputError, match="notes.txt: upload a .jsonl"):
        th.add_upload(workspace, tmp_path / "notes.txt")


def test_method_info_and_run_names(workspace):
    assert ts.method_info("standard")[1:] == (False, False)
    assert ts.method_info("multitask")[1:] == (True, False)
    text, uses_alpha, uses_teacher = ts.method_info("logit_kd")
    assert uses_alpha and uses_teacher and "share a vocabulary" in text and text.startswith("**logit_kd**: ")
    assert "at test time" in ts.method_info("rationale_input").summary
    assert ts.suggest_run_name(workspace, "standard", "Qwen/Qwen2.5-0.5B") == "standard-Qwen2.5-0.5B-1"
    assert ts.suggest_run_name(workspace, "multitask", "runs/s1/") == "multitask-s1-1"
    assert rv.run_view(workspace, "") == ("Pick a run.", None, [], "")
    with pytest.raises(InputError, match="no run named 'nope'"):
        rv.run_view(workspace, "nope")


def test_api_train_busy_cancel_and_errors(workspace, rationale_export):
    demo = launch(teacher="tiny", port=None, workspace=workspace, prevent_thread_lock=True, quiet=True)
    try:
        one, two = Client(demo.local_url, verbose=False), Client(demo.local_url, verbose=False)
        with pytest.raises(AppError, match="no such data file"):
            one.predict(**named(workspace / "missing.jsonl"), api_name="/train")
        status, plot, samples, command = one.predict(**named(rationale_export, max_steps=2), api_name="/train")
        assert status.startswith("**standard-tiny-student-1** · completed · step 2/2") and plot["type"] == "plotly"
        assert samples["headers"] == rv.SAMPLE_COLUMNS and samples["data"] and "kdviz train --data" in command
        runs, run, name = one.predict("standard", "tiny-student", "standard-tiny-student-1", api_name="/after_train")
        assert runs["data"][0][:2] == ["standard-tiny-student-1", "completed"] and name == "standard-tiny-student-2"
        assert one.predict("standard-tiny-student-1", api_name="/show_run")[0] == status

        job = one.submit(*fields(rationale_export, max_steps=2000, eval_every=0, name="long"), api_name="/train")
        deadline = time.time() + 120
        while not any(re.search(r"step [1-9]\d*/2000", out[0]) for out in job.outputs()):
            assert time.time() < deadline and not job.done(), "no training step shown"
            time.sleep(0.1)
        busy = two.predict(*fields(rationale_export, name="other"), api_name="/train")[0]
        assert busy == "busy: a training run (long) is in progress; wait or cancel it"
        assert two.predict(api_name="/cancel_training") == "Cancelling **long** after the current step…"
        assert re.match(r"\*\*long\*\* · cancelled · step \d+/2000", job.result()[0])
        assert not (workspace / "runs" / "other").exists()
    finally:
        demo.close()


def test_ui_errors_keeps_a_streaming_handler_streaming():
    import gradio as gr

    from kdviz.ui.errors import ui_errors

    @ui_errors
    def stream():
        yield 1
        raise InputError("bad data")

    assert inspect.isgeneratorfunction(stream)  # gradio streams only generator functions
    updates = stream()
    assert next(updates) == 1
    with pytest.raises(gr.Error, match="bad data"):
        next(updates)
