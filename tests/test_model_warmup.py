"""The teacher's background warm-up and the fast stand-in that answers clicks meanwhile (kdviz.ui.model_warmup).

A slow first load is simulated with the tiny models: the loader is held at a gate until the test opens it, after
reporting a conversion stage, as a GGUF conversion would. No embedded model is loaded.
"""

from __future__ import annotations

import threading
import time

import pytest

from kdviz.errors import ModelLoadError
from kdviz.lm import embedded, models
from kdviz.records import ProgressEvent
from kdviz.ui import handlers, model_warmup


@pytest.fixture
def slow_teacher(monkeypatch):
    """ "tiny" is the default teacher, slow to load until `gate` is set; "tiny-student" its fast stand-in."""
    monkeypatch.setattr(model_warmup, "_started", {})
    monkeypatch.setattr(model_warmup, "FALLBACKS", {"tiny": "tiny-student"})
    monkeypatch.setattr(model_warmup, "POLL_S", 0.02)
    gate, loads, real_load = threading.Event(), [], models._load

    def gated_load(spec):
        loads.append(spec.model_name_or_path)
        if spec.model_name_or_path == "tiny":
            report = models._on_progress.get()  # what load_model hands the conversion
            report(ProgressEvent("dequantising", 2, 5, model="tiny", elapsed_s=6.0))
            assert gate.wait(60), "the test never opened the gate"
        return real_load(spec)

    models._load_cached.cache_clear()
    monkeypatch.setattr(models, "_load", gated_load)
    yield gate, loads
    gate.set()
    job = model_warmup._started.get("tiny")
    if job is not None:
        job.done.wait(60)
    models._load_cached.cache_clear()


def click(use_fast=True):
    view = handlers.run_attribution(
        "tiny", "saliency", "generate", "the cat sat", "", "", "", "auto", 1, use_fast=use_fast
    )  # fmt: skip
    return view.record["model_name"], view.answer


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_warmup_runs_once_and_the_cache_returns_its_model(slow_teacher):
    gate, loads = slow_teacher
    job = model_warmup.start("tiny")
    assert model_warmup.start(" tiny ") is job  # a second start (another page, a model change) joins the first
    gate.set()
    assert job.done.wait(30) and job.error is None
    assert model_warmup.start("tiny") is job  # done, and still not started again
    loaded = models.load_model("tiny")
    assert models.load_model("tiny") is loaded and loads == ["tiny"]  # loaded once, by the warm-up
    assert model_warmup.status_line("tiny") == ""


def test_progress_reaches_the_status_line(slow_teacher):
    model_warmup.start("tiny")
    wait_for(lambda: model_warmup._started["tiny"].event is not None)
    line = model_warmup.status_line("tiny")
    assert line.startswith("Loading tiny: dequantising… 40%, about 9.0 s left")  # 6 s for 2 of 5 tensors
    assert "Until then tiny-student answers clicks" in line


def test_a_click_during_warmup_is_answered_by_the_fast_model_then_by_the_default(slow_teacher):
    gate, loads = slow_teacher
    job = model_warmup.start("tiny")
    wait_for(lambda: job.event is not None)
    assert "tiny-student answers this click" in model_warmup.model_load_note("tiny")
    model, answer = click()
    assert model == "tiny-student"  # the record names the model that answered
    assert "Answered by the fast teacher (tiny-student) while tiny loads; click again when it is ready" in answer
    assert not job.done.is_set()  # the fast teacher answered without waiting for the default
    gate.set()
    assert job.done.wait(30)
    model, answer = click()
    assert model == "tiny" and "fast teacher" not in answer
    assert loads.count("tiny") == 1 and loads.count("tiny-student") == 1


def test_a_click_waits_for_the_default_when_the_user_chose_to(slow_teacher):
    gate, loads = slow_teacher
    job = model_warmup.start("tiny")
    wait_for(lambda: job.event is not None)
    assert model_warmup.model_load_note("tiny", use_fast=False).startswith("Waiting for tiny to finish loading")
    answered = []
    waiting = threading.Thread(target=lambda: answered.append(click(use_fast=False)))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and not answered  # held until the warm-up ends
    gate.set()
    waiting.join(30)
    assert answered[0][0] == "tiny" and "fast teacher" not in answered[0][1]
    assert loads == ["tiny"]  # the waiting click reused the warm-up's load


def test_a_failed_warmup_says_so_and_a_click_loads_again(slow_teacher, monkeypatch):
    def failing(spec):
        raise ModelLoadError("no weights here")

    monkeypatch.setattr(models, "_load", failing)
    job = model_warmup.start("tiny")
    assert job.done.wait(30)
    assert model_warmup.status_line("tiny") == (
        "Loading tiny in the background failed (no weights here); a click tries again."
    )


def test_assembling_the_parts_reports_each_part(tmp_path, monkeypatch):
    parts = []
    for i, data in enumerate([b"abc", b"defg", b"h"]):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(data)
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "part_paths", lambda name: parts)
    events: list[ProgressEvent] = []
    embedded.gguf_path("embedded-teacher", on_progress=events.append)
    assert [(e.stage, e.done, e.total) for e in events] == [("assembling", i, 3) for i in range(4)]


def test_the_app_starts_the_warmup_and_its_status_line_shows_the_progress(slow_teacher, tmp_path):
    from gradio_client import Client

    from kdviz.ui import launch

    gate, loads = slow_teacher
    demo = launch(teacher="tiny", port=None, workspace=tmp_path, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        wait_for(lambda: model_warmup._started["tiny"].event is not None)
        line, _ = client.predict("tiny", api_name="/warm_status")
        assert line.startswith("Loading tiny: dequantising… 40%")
        gate.set()
        assert model_warmup._started["tiny"].done.wait(30)
        assert client.predict("tiny", api_name="/warm_status")[0] == ""
        client.close()
    finally:
        demo.close()
    assert loads == ["tiny"]


def test_dequantising_counts_the_tensors_transformers_converts():
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original, events = gguf_utils.tqdm, []
    with models._counting_tensors(events.append, "m"):
        assert list(gguf_utils.tqdm(["t0", "t1", "t2", "t3"], desc="de-quantizing")) == ["t0", "t1", "t2", "t3"]
    assert gguf_utils.tqdm is original  # restored after the conversion
    counted = [(e.done, e.total) for e in events if e.total == 4]
    assert counted == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert {e.stage for e in events} == {"dequantising"} and (events[-1].done, events[-1].total) == (1, 1)
