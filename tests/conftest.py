"""Shared test setup: every test runs offline, without telemetry, on the in-process tiny models."""

import contextlib
import dataclasses
import gc
import os
import threading

# Set before gradio or huggingface_hub are imported: both read these once, at import.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CQA_TRAIN = REPO.parent / "shared" / "data" / "cqa" / "train.jsonl"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """Lets pytest exit promptly (issue #15). No thread held it (the job workers are daemons, the served apps are
    closed): after the last test pytest runs five full garbage collections and the interpreter one more as it shuts
    down, each over the ~700k objects torch, transformers and gradio leave: on a busy 2-core machine 10-16 s after a
    few UI test files, about a minute after the whole suite. One collection here (pytest still reports what
    finalizers raise in it), then freezing the survivors, leaves those passes only what is made after it (0.3 s)."""
    gc.collect()
    gc.freeze()


def pytest_terminal_summary(terminalreporter):
    """Names any non-daemon thread still running at the end: the interpreter would wait for it before exiting."""
    lingering = [
        t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.main_thread()
    ]
    if lingering:
        terminalreporter.write_line(f"threads still running, exit waits for them: {', '.join(lingering)}", yellow=True)


@pytest.fixture(scope="session")
def tiny():
    from kdviz import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_t5():
    from kdviz import load_model

    return load_model("tiny-t5")


@pytest.fixture(params=["tiny", "tiny-t5"])
def any_tiny(request):
    """Both model kinds: decoder-only (Llama) and encoder-decoder (T5)."""
    from kdviz import load_model

    return load_model(request.param)


@pytest.fixture(scope="session")
def rationale_export(tmp_path_factory) -> Path:
    """A rationale export folder (rationales.jsonl) of the 40 demo questions, built with the tiny teacher."""
    from kdviz.data import demo_path, load_examples
    from kdviz.rationales.build import build_rationales
    from kdviz.rationales.export import export_records

    root = tmp_path_factory.mktemp("rationale_export")
    built = build_rationales("tiny", load_examples(demo_path()), cache_dir=root / "cache")
    accepted = [dataclasses.replace(r, status="accepted") for r in built.records]
    export_records(accepted, root / "export", formats=("jsonl", "parquet"))
    return root / "export"


@pytest.fixture(autouse=True)
def fresh_click_cache(monkeypatch):
    """Each test starts with an empty Teacher-panel click cache: a click an earlier test made must not answer for
    the model run a later test patches (imported only where the app already is, so library tests stay light)."""
    import sys

    clicks = sys.modules.get("kdviz.ui.teacher_click")
    if clicks is not None:
        monkeypatch.setattr(clicks, "CLICKS", clicks.ClickCache())


def train_config(export, out, **kw):
    """A three-step TrainConfig of the tiny student on `export` into `out`, with `kw` overriding any field."""
    from kdviz.config import TrainConfig

    base = dict(data=str(export), out=str(out), student="tiny-student", teacher="tiny", max_steps=3, batch_size=4,
                eval_every=2, eval_size=8)  # fmt: skip
    return TrainConfig(**{**base, **kw})


@contextlib.contextmanager
def client_of(demo, **client_options):
    """A gradio Client of a launched app; app and client are closed after."""
    from gradio_client import Client

    try:
        client = Client(demo.local_url, verbose=False, **client_options)
        try:
            yield client
        finally:
            client.close()
    finally:
        demo.close()


def app_client(workspace):
    """A gradio Client of the app (tiny teacher, 127.0.0.1, a free port) over `workspace` (see `client_of`)."""
    from kdviz.ui import launch

    return client_of(launch(teacher="tiny", host="127.0.0.1", port=None, workspace=workspace, prevent_thread_lock=True,
                            quiet=True))  # fmt: skip
