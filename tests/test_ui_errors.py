"""Out of memory, a full disk, an unreadable checkpoint and bugs: one clear message each, from the library's stage
boundaries (`kdviz.errors.resource_errors`) to the app's message box (`kdviz.ui.errors`), never gradio's generic
"upstream Gradio app has raised an exception" (issue #15). Tiny models only; the forced failures are patched in."""

import errno
import logging

import gradio as gr
import pytest
from gradio_client.exceptions import AppError

from kdviz.attribution import methods
from kdviz.attribution.methods import AttributionRequest, attribute_requests
from kdviz.errors import KEPT, InputError, ModelLoadError, ResourceError, as_resource_error, resource_errors
from kdviz.lm.models import load_model
from kdviz.lm.prompts import MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, MAX_TARGET_CHARS, MAX_TARGET_TOKENS
from kdviz.rationales.build import build_rationales
from kdviz.records import Example
from kdviz.ui import saved_comparisons as sc
from kdviz.ui.errors import ui_errors

from .conftest import app_client

CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
    "81920000000 bytes. Error code 12 (Cannot allocate memory)"
)
ATTRIBUTE_ADVICE = (
    "out of memory while attributing: use a smaller batch size, fewer integrated-gradients steps, a shorter prompt "
    "or target, or a smaller model"
)
GENERIC = "upstream Gradio app has raised an exception"


def failing(exc: BaseException):
    def method(*args, **kwargs):
        raise exc

    return method


# -- the library's boundary ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(CPU_OOM),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        type("OutOfMemoryError", (RuntimeError,), {})("CUDA error"),  # torch.OutOfMemoryError, by its name
    ],
)
def test_every_form_of_out_of_memory_is_one_message_saying_what_to_reduce(exc):
    with pytest.raises(ResourceError) as info, resource_errors("attributing", "use a smaller batch size"):
        raise exc
    assert str(info.value) == "out of memory while attributing: use a smaller batch size"
    assert info.value.__cause__ is exc


def test_a_full_disk_names_the_file_and_other_errors_pass_unchanged():
    with pytest.raises(ResourceError) as info, resource_errors("building rationales", kept=True):
        raise OSError(errno.ENOSPC, "No space left on device", "/w/cache.jsonl")
    assert str(info.value) == (
        "the disk is full while building rationales (writing /w/cache.jsonl): free some space or use a folder on "
        f"another disk; {KEPT}"
    )
    for other in (RuntimeError("shape mismatch"), OSError(errno.EACCES, "Permission denied"), InputError("bad")):
        with pytest.raises(type(other)) as info, resource_errors("attributing"):
            raise other
        assert info.value is other
    assert as_resource_error(ValueError("out of memory")) is None  # only allocation failures, not any mention


def test_an_inner_stage_message_passes_through_with_the_kept_note_added_once():
    with pytest.raises(ResourceError) as info:
        with resource_errors("comparing", kept=True), resource_errors("building rationales", kept=True):
            with resource_errors("attributing", "use fewer steps"):
                raise RuntimeError(CPU_OOM)
    assert str(info.value) == f"out of memory while attributing: use fewer steps; {KEPT}"


def test_attribution_out_of_memory_says_what_to_reduce(tiny, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "saliency", failing(RuntimeError(CPU_OOM)))
    with pytest.raises(ResourceError, match=f"^{ATTRIBUTE_ADVICE}$"):
        attribute_requests(tiny, [AttributionRequest("the cat sat", "on the mat")], "saliency")


def test_a_build_out_of_memory_keeps_its_finished_batches(tmp_path, monkeypatch):
    examples = [Example(f"e{i}", "qa", f"the cat sat on mat {i}", answer="mat") for i in range(4)]
    real = methods.METHODS["saliency"]
    calls = []

    def after_the_first_batch_memory_runs_out(*args, **kwargs):  # retries in smaller pieces fail too
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError(CPU_OOM)
        return real(*args, **kwargs)

    monkeypatch.setitem(methods.METHODS, "saliency", after_the_first_batch_memory_runs_out)
    build = dict(method="saliency", target_mode="gold", batch_size=2, cache_dir=tmp_path, faithfulness=False)
    with pytest.raises(ResourceError, match=f"^{ATTRIBUTE_ADVICE}; {KEPT}$"):
        build_rationales("tiny", examples, **build)
    monkeypatch.setitem(methods.METHODS, "saliency", real)
    again = build_rationales("tiny", examples, **build)
    assert again.from_cache == 2 and len(again.records) == 4


def test_targets_are_bounded_in_tokens_as_in_characters(tiny):
    long = "xyz " * 150  # 600 characters, under the character limit; a token a character for the tiny tokenizer
    assert len(long) < MAX_TARGET_CHARS
    with pytest.raises(
        InputError, match=f"^the target is 6\\d\\d tokens long .*the limit is {MAX_TARGET_TOKENS} tokens$"
    ):
        attribute_requests(tiny, [AttributionRequest("the cat sat", long)], "saliency")
    with pytest.raises(InputError, match="^the contrast is"):
        attribute_requests(tiny, [AttributionRequest("the cat sat", "mat", contrast=long)], "saliency")


def test_prompts_are_bounded_in_tokens_as_in_characters(tiny):
    long = "q" * 3000  # under the character limit; the tiny byte-level tokenizer makes about a token a character
    assert len(long) < MAX_PROMPT_CHARS
    with pytest.raises(
        InputError, match=f"^the prompt is \\d+ tokens long .*the limit is {MAX_PROMPT_TOKENS} tokens$"
    ):
        attribute_requests(tiny, [AttributionRequest(long, "mat")], "saliency")
    assert attribute_requests(tiny, [AttributionRequest("q" * 100, "mat")], "saliency")  # a short one still runs


def test_a_truncated_checkpoint_is_a_clear_load_error(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="does not hold a loadable model.*deserializing header"):
        load_model(str(tmp_path))


# -- the app's boundary ----------------------------------------------------------------------------------------


def test_ui_errors_shows_resource_messages_and_one_line_of_a_bug(caplog):
    with pytest.raises(gr.Error) as info:
        ui_errors(failing(RuntimeError(CPU_OOM)))()
    assert info.value.message.startswith("out of memory: use a smaller batch size")
    with pytest.raises(gr.Error) as info:
        ui_errors(failing(ZeroDivisionError("first line\nsecond line")))()
    assert info.value.message == "internal error (ZeroDivisionError: first line); the traceback is in the app's log"
    bugs = [r for r in caplog.records if r.name == "kdviz.ui" and r.levelno == logging.ERROR]
    assert len(bugs) == 1 and bugs[0].exc_info  # the out-of-memory one is a warning, not a bug


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_client(tmp_path_factory.mktemp("workspace")) as client:
        yield client


def attribute(client, **fields):
    values = dict(
        model="tiny", method="saliency", target_mode="custom", prompt="the cat sat on the mat", choices="", gold="",
        custom_target="on the mat", fmt="auto", steps=4,
    )  # fmt: skip
    return client.predict(**{**values, **fields}, api_name="/attribute")


def test_the_app_shows_kdvizs_message_for_out_of_memory_and_bugs(client, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "saliency", failing(RuntimeError(CPU_OOM)))
    with pytest.raises(AppError) as info:
        attribute(client)
    assert str(info.value).startswith(ATTRIBUTE_ADVICE) and GENERIC not in str(info.value)
    monkeypatch.setitem(methods.METHODS, "saliency", failing(ZeroDivisionError("division by zero")))
    with pytest.raises(AppError) as info:
        attribute(client)
    assert str(info.value) == "internal error (ZeroDivisionError: division by zero); the traceback is in the app's log"
    monkeypatch.undo()
    *_, record = attribute(client)  # the app still answers
    assert record["target"] == "on the mat"


def test_an_event_no_tab_wrapped_still_shows_kdvizs_message(client, monkeypatch):
    # /refresh_compare is wired without `ui_errors` by its tab; `guard_events` puts it behind the boundary too
    monkeypatch.setattr(sc, "list_comparisons", failing(OSError(errno.ENOSPC, "No space left on device", "/w/x")))
    with pytest.raises(AppError) as info:
        client.predict(dataset=None, api_name="/refresh_compare")
    message = "the disk is full (writing /w/x): free some space or use a folder on another disk"
    assert str(info.value) == message


def test_the_app_names_an_unreadable_checkpoint(client, tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(AppError, match=f"could not load model '{tmp_path}': the local folder exists but does not"):
        attribute(client, model=str(tmp_path))
