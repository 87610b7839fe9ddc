"""Bad input on every CLI path (issue #15): exit code 2, one line naming the flag or the file, no traceback, the
inputs untouched and nothing written, and no model loaded (every check runs before the model would load)."""

import json

import pytest

from kdviz.cli.main import main
from kdviz.data import demo_path

ZW = "\u200b\u200d"  # zero-width space and joiner: text that shows nothing
MCQA = {"question": "Where is milk kept?", "choices": ["fridge", "oven"], "answer": "fridge"}


def record_row(example_id: str, example: object = None) -> dict:
    """A valid rationale record as `kdviz rationales` writes it (or with another `example` value)."""
    ex = {"id": example_id, "task": "mcqa", **MCQA} if example is None else example
    return {"example": ex, "prompt": "Where is milk kept?", "target": "fridge", "target_mode": "choice",
            "predicted": "fridge", "correct": True, "words": ["milk"], "word_offsets": [[9, 13]],
            "word_scores": [1.0], "word_is_template": [False], "rationale": [0], "rationale_text": "milk",
            "status": "accepted"}  # fmt: skip


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def files(tmp_path):
    """The inputs the cases name, by placeholder; every one must be unchanged after a refused command."""
    demo = demo_path().read_text(encoding="utf-8").splitlines(keepends=True)
    texts = {
        "data": "".join(demo[:3]),
        "dup": jsonl({"id": "a", **MCQA}, {"id": "a", **MCQA}),
        "nullq": jsonl({"id": "a", **MCQA, "question": None}),
        "gold": jsonl({"id": "a", **MCQA, "answer": "pantry"}),
        "zwq": jsonl({"id": "a", **MCQA, "question": ZW}),
        "nullchoice": jsonl({"id": "a", **MCQA, "choices": ["fridge", None]}),
        "nli": jsonl({"id": "n", "premise": "A man plays.", "hypothesis": "Music.", "label": "maybe"}),
        "arrays": '["a", "list"]\n',
        "exstr": jsonl(record_row("a", example="hello")),
        "recdup": jsonl(record_row("a"), record_row("a")),
        "afile": "not a folder\n",
        "yaml": "data: d.jsonl\nout: o\nmax_steps: [\n",
        "yamlten": "data: d.jsonl\nout: o\nmax_steps: ten\n",
    }
    paths = {}
    for key, text in texts.items():
        suffix = ".yaml" if key.startswith("yaml") else ".jsonl"
        paths[key] = tmp_path / f"{key}{suffix}"
        paths[key].write_text(text, encoding="utf-8")
    paths["latin"] = tmp_path / "latin.jsonl"
    paths["latin"].write_bytes(jsonl({"id": "a", **MCQA}).encode() + b'{"id": "b", "question": "caf\xe9?"}\n')
    paths["latinrec"] = tmp_path / "latinrec.jsonl"
    paths["latinrec"].write_bytes(b'{"example": "caf\xe9"}\n')
    paths["latincsv"] = tmp_path / "latin.csv"
    paths["latincsv"].write_bytes(b"question,answer\nwhere?,here\ncaf\xe9?,there\n")
    paths["dir"] = tmp_path / "adir"
    (paths["dir"] / "notes.txt").parent.mkdir()
    (paths["dir"] / "notes.txt").write_text("the user's own file\n")
    paths["export"] = tmp_path / "export"  # a rationale export folder, as `kdviz export` writes it
    paths["export"].mkdir()
    (paths["export"] / "rationales.jsonl").write_text(jsonl(record_row("a")))
    paths["missing"] = tmp_path / "missing.jsonl"
    return {k: str(v) for k, v in paths.items()}


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fails the test if anything tries to load a model or launch the app."""
    import kdviz.cli.app
    import kdviz.lm.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded (or the app launched) before the arguments were checked")

    for name in ("_load_cached", "_load"):
        monkeypatch.setattr(kdviz.lm.models, name, refuse)
    monkeypatch.setattr(kdviz.cli.app, "run_app", refuse)


ATTR = ["attribute", "--model", "tiny", "--prompt", "Where is milk kept?", "--target", "fridge"]
ATTR_DATA = ["attribute", "--model", "tiny", "--data"]
RAT = ["rationales", "--teacher", "tiny", "--data", "{data}"]
RAT_OUT = [*RAT, "--out", "{tmp}/r.jsonl"]
EXPORT = ["export", "--records", "{export}/rationales.jsonl", "--out", "{tmp}/exp"]
TRAIN = ["train", "--student", "tiny-student", "--data", "{data}", "--out", "{tmp}/run"]
CMP = ["compare", "--teacher", "tiny", "--student", "tiny-student", "--data", "{data}", "--out", "{tmp}/cmp"]

CASES = [
    # attribute: ranges (were silently accepted, or "range() arg 3 must not be zero")
    ("attr-limit-0", [*ATTR_DATA, "{data}", "--limit", "0"], "--limit must be at least 1, not 0"),
    ("attr-limit-negative", [*ATTR_DATA, "{data}", "--limit", "-1"], "--limit must be at least 1, not -1"),
    ("attr-top-k-0", [*ATTR, "--top-k", "0"], "--top-k must be at least 1, not 0"),
    ("attr-top-k-negative", [*ATTR, "--top-k", "-3"], "--top-k must be at least 1, not -3"),
    ("attr-batch-size-0", [*ATTR_DATA, "{data}", "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    ("attr-steps-0", [*ATTR, "--steps", "0"], "--steps must be at least 1, not 0"),
    ("attr-max-new-tokens-0", [*ATTR, "--max-new-tokens", "0"], "--max-new-tokens must be between 1 and 256"),
    # attribute: devices (were AssertionError and RuntimeError tracebacks)
    ("attr-device-cuda", [*ATTR, "--device", "cuda"], "--device cuda: not available on this machine; available: auto, cpu"),
    ("attr-device-cuda-7", [*ATTR, "--device", "cuda:7"], "--device cuda:7: not available on this machine; available: auto, cpu"),
    ("attr-device-bogus", [*ATTR, "--device", "bogus"], "unknown --device value 'bogus'; choose one of: auto, cpu, cuda, cuda:N, mps"),
    # attribute: output paths (an existing folder was IsADirectoryError)
    ("attr-out-folder", [*ATTR, "--out", "{dir}"], "adir is a folder; give a file name"),
    ("attr-out-under-a-file", [*ATTR, "--out", "{afile}/a.jsonl"], "afile.jsonl is a file, so no folder can be made under it"),
    ("attr-out-is-the-data", [*ATTR_DATA, "{data}", "--out", "{data}"], "data.jsonl; writing it would destroy the input"),
    # attribute: unbounded or invisible text (a 20,000-character target ran out of memory after minutes)
    ("attr-long-target", [*ATTR[:-1], "x" * 20000], "the target has 20000 characters; the limit is 1000"),
    ("attr-invisible-target", [*ATTR[:-1], ZW], "the target to attribute has no visible characters"),
    ("attr-invisible-prompt", ["attribute", "--model", "tiny", "--prompt", ZW, "--target", "a"], "the prompt has no visible characters"),
    ("attr-gold-not-a-choice", [*ATTR[:5], "--choices", "fridge", "oven", "--gold", "pantry"], "the gold answer 'pantry' is not one of the choices"),
    # dataset files (kdviz/data.py): what the app refuses, with the file and the line
    ("data-duplicate-ids", [*ATTR_DATA, "{dup}"], "dup.jsonl, line 2: example id 'a' appears twice (first on line 1)"),
    ("data-null-question", [*ATTR_DATA, "{nullq}"], "nullq.jsonl, line 1: 'question' is null"),
    ("data-gold-outside-choices", [*ATTR_DATA, "{gold}"], "gold.jsonl, line 1: answer 'pantry' is not one of its choices (fridge, oven)"),
    ("data-invisible-question", [*ATTR_DATA, "{zwq}"], "zwq.jsonl, line 1: 'question' has no visible characters"),
    ("data-null-choice", [*ATTR_DATA, "{nullchoice}"], "nullchoice.jsonl, line 1: choice 2 is null"),
    ("data-unknown-nli-label", [*ATTR_DATA, "{nli}"], "nli.jsonl, line 1: label 'maybe' is not one of entailment, neutral, contradiction"),
    ("data-json-arrays", [*ATTR_DATA, "{arrays}"], "arrays.jsonl, line 1: expected a JSON object, not list"),
    ("data-not-utf8", [*ATTR_DATA, "{latin}"], "latin.jsonl, line 2: not UTF-8 text (byte 0xe9 at column 29: invalid continuation byte)"),
    ("data-csv-not-utf8", [*ATTR_DATA, "{latincsv}"], "latin.csv, line 3: not UTF-8 text (byte 0xe9 at column 4"),
    ("data-missing", [*ATTR_DATA, "{missing}"], "no such data file"),
    # rationales: the input overwritten, cache paths (were FileExistsError tracebacks), ranges, mappings
    ("rat-out-is-the-data", [*RAT, "--out", "{data}"], "data.jsonl; writing it would destroy the input"),
    ("rat-out-folder", [*RAT, "--out", "{dir}"], "adir is a folder; give a file name"),
    ("rat-cache-dir-is-a-file", [*RAT_OUT, "--cache-dir", "{afile}"], "--cache-dir {afile} is a file; give a folder"),
    ("rat-cache-dir-under-a-file", [*RAT_OUT, "--cache-dir", "{afile}/c"], "afile.jsonl is a file, so no folder can be made under it"),
    ("rat-workspace-is-a-file", [*RAT, "--workspace", "{afile}"], "--workspace {afile} is a file; give a folder"),
    ("rat-columns-no-equals", [*RAT_OUT, "--columns", "question"], "column mapping 'question': write kdviz_field=file_column"),
    ("rat-columns-unknown-field", [*RAT_OUT, "--columns", "qestion=prompt"], "kdviz reads no field 'qestion'; map one of: id, question"),
    ("rat-limit-0", [*RAT_OUT, "--limit", "0"], "--limit must be at least 1, not 0"),
    ("rat-top-k-0", [*RAT_OUT, "--top-k", "0"], "--top-k must be at least 1, not 0"),
    ("rat-mass-above-1", [*RAT_OUT, "--mass", "1.5"], "--mass must be more than 0 and at most 1, not 1.5"),
    ("rat-mass-nan", [*RAT_OUT, "--mass", "nan"], "--mass must be a finite number, not nan"),
    ("rat-z-inf", [*RAT_OUT, "--z", "inf"], "--z must be a finite number, not inf"),
    ("rat-batch-size-0", [*RAT_OUT, "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    ("rat-steps-negative", [*RAT_OUT, "--steps", "-5"], "--steps must be at least 1, not -5"),
    ("rat-device-bogus", [*RAT_OUT, "--device", "gpu"], "unknown --device value 'gpu'"),
    ("rat-duplicate-ids", ["rationales", "--teacher", "tiny", "--data", "{dup}", "--out", "{tmp}/r.jsonl"], "example id 'a' appears twice"),
    ("rat-not-utf8", ["rationales", "--teacher", "tiny", "--data", "{latin}", "--out", "{tmp}/r.jsonl"], "latin.jsonl, line 2: not UTF-8 text"),
    # export (were AttributeError and FileExistsError tracebacks)
    ("export-json-arrays", ["export", "--records", "{arrays}", "--out", "{tmp}/exp"], "arrays.jsonl, line 1: expected a JSON object, not list"),
    ("export-example-is-a-string", ["export", "--records", "{exstr}", "--out", "{tmp}/exp"], "exstr.jsonl, line 1: not a RationaleRecord (TypeError: example must be an object of the example's fields, not 'hello')"),
    ("export-duplicate-ids", ["export", "--records", "{recdup}", "--out", "{tmp}/exp"], "recdup.jsonl, line 2: id 'a' appears twice (first on line 1)"),
    ("export-not-utf8", ["export", "--records", "{latinrec}", "--out", "{tmp}/exp"], "latinrec.jsonl, line 1: not UTF-8 text (byte 0xe9"),
    ("export-records-missing", ["export", "--records", "{missing}", "--out", "{tmp}/exp"], "no such file"),
    ("export-out-is-a-file", [*EXPORT[:3], "--out", "{afile}"], "--out {afile} is a file; give a folder"),
    ("export-over-its-own-records", [*EXPORT[:3], "--out", "{export}"], "writing there would replace the input {export}/rationales.jsonl"),
    # train
    ("train-max-steps-0", [*TRAIN, "--max-steps", "0"], "--max-steps must be at least 1, not 0"),
    ("train-batch-size-0", [*TRAIN, "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    ("train-lr-0", [*TRAIN, "--lr", "0"], "--lr must be more than 0, not 0.0"),
    ("train-lr-inf", [*TRAIN, "--lr", "inf"], "--lr must be a finite number, not inf"),
    ("train-warmup-negative", [*TRAIN, "--warmup-steps", "-1"], "--warmup-steps must be at least 0, not -1"),
    ("train-max-length-4", [*TRAIN, "--max-length", "4"], "max_length must be at least 8 tokens"),
    ("train-device-cuda-7", [*TRAIN, "--device", "cuda:7"], "--device cuda:7: not available on this machine"),
    ("train-device-bogus", [*TRAIN, "--device", "tpu"], "unknown --device value 'tpu'"),
    ("train-out-is-a-file", [*TRAIN[:-1], "{afile}"], "--out {afile} is a file; give a folder"),
    ("train-out-holds-other-files", [*TRAIN[:-1], "{dir}"], "--out {dir} holds other files; give a new or empty folder"),
    ("train-out-inside-the-data", ["train", "--data", "{export}", "--out", "{export}/sub/run"], "lies inside the input {export}"),
    ("train-config-bad-yaml", ["train", "--config", "{yaml}"], "a training config must be valid YAML"),
    ("train-config-max-steps-ten", ["train", "--config", "{yamlten}"], "max_steps must be a whole number, not 'ten'"),
    # compare
    ("compare-limit-0", [*CMP, "--limit", "0"], "--limit must be at least 1, not 0"),
    ("compare-top-k-0", [*CMP, "--top-k", "0"], "--top-k must be at least 1, not 0"),
    ("compare-batch-size-0", [*CMP, "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    ("compare-sample-negative", [*CMP, "--sample", "-1"], "--sample must be at least 0, not -1"),
    ("compare-out-is-a-file", [*CMP[:-1], "{afile}"], "--out {afile} is a file; give a folder"),
    ("compare-out-inside-the-data", [*CMP[:-3], "{export}", "--out", "{export}/report"], "lies inside the input {export}"),
    ("compare-cache-dir-is-a-file", [*CMP, "--cache-dir", "{afile}"], "--cache-dir {afile} is a file; give a folder"),
    # app
    ("app-port-99999", ["app", "--teacher", "tiny", "--port", "99999"], "--port must be between 1 and 65535, not 99999"),
    ("app-port-0", ["app", "--teacher", "tiny", "--port", "0"], "--port must be between 1 and 65535, not 0"),
    ("app-workspace-is-a-file", ["app", "--workspace", "{afile}"], "--workspace {afile} is a file; give a folder"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    request, tmp_path, files, no_model_loads, capsys, argv, message
):
    if request.node.callspec.id == "attr-device-cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    names = {**files, "tmp": str(tmp_path)}
    before = snapshot(tmp_path)
    code = main([arg.format(**names) for arg in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(**names) in lines[0]
    assert "Traceback" not in out + err and out == ""
    assert snapshot(tmp_path) == before  # inputs byte for byte, and no output begun


def test_at_least_40_bad_inputs_are_covered():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_a_tiny_model_prints_nothing_before_its_json(capfd):
    # The in-process tokenizer trainer (Rust, writing to file descriptor 1) printed progress lines before the JSON.
    from kdviz.lm.models import _load_cached
    from kdviz.lm.tiny import tiny_tokenizer

    tiny_tokenizer.cache_clear(), _load_cached.cache_clear()  # so the tokenizer is trained again, here
    argv = ["attribute", "--model", "tiny", "--prompt", "Where is milk kept?", "--target", "fridge", "--json"]
    assert main([*argv, "--method", "saliency"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("{") and json.loads(out)["target"] == "fridge"


def test_every_option_has_help_and_shows_its_default(capsys):
    import argparse

    from kdviz.cli.main import build_parser

    def options(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from options(sub)
            elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
                yield parser, action

    checked = 0
    for parser, action in options(build_parser()):
        name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help.strip(), f"{name} has no help"
        shown = parser._get_formatter()._get_help_string(action)
        if action.default not in (None, False):
            assert "default" in shown, f"{name} does not show its default {action.default!r}"
        checked += 1
    assert checked > 60
    assert main(["attribute", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE with --data: examples per batch (default: 4)" in help_text
    assert "--device DEVICE auto (cuda, mps, cpu), cpu, cuda, ... (default auto)" in help_text


def test_version(capsys):
    from kdviz._version import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"kdviz {__version__}\n"
