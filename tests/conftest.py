"""Shared test setup: every test runs offline, without telemetry, on the in-process tiny models."""

import os

# Set before gradio or huggingface_hub are imported: both read these once, at import.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CQA_TRAIN = REPO.parent / "shared" / "data" / "cqa" / "train.jsonl"


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
