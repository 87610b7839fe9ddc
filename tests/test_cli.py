import json
import os

from kdviz import TokenAttribution, load_jsonl
from kdviz.cli.main import main
from kdviz.data import demo_path


def test_attribute_prints_per_token_scores_as_json(capsys):
    assert (
        main(["attribute", "--model", "tiny", "--prompt", "Where is milk kept cold?", "--target", "fridge", "--json"])
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    attr = TokenAttribution.from_dict(record)
    assert attr.target == "fridge" and attr.target_mode == "forced"
    assert "".join(attr.input_tokens).replace(" ", "") == "Whereismilkkeptcold?"  # whitespace-only tokens dropped
    assert len(attr.seq_scores) == len(attr.input_tokens)


def test_attribute_text_output_lists_tokens_and_top_words(capsys):
    args = ["attribute", "--model", "tiny", "--prompt", "Where is milk kept cold?", "--choices", "fridge", "oven"]
    assert main(args + ["--gold", "fridge", "--method", "saliency", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "target (choice)" in out and "correct:" in out and "top 3 words:" in out
    assert len(attr_words(out)) == 3 and set(attr_words(out)) <= {
        "Where",
        "is",
        "milk",
        "kept",
        "cold?",
        "fridge",
        "oven",
    }


def test_dataset_attribution_writes_jsonl(tmp_path, capsys):
    out = tmp_path / "attrs.jsonl"
    args = ["attribute", "--model", "tiny", "--data", str(demo_path()), "--limit", "3", "--method", "saliency"]
    assert main(args + ["--out", str(out)]) == 0
    attrs = load_jsonl(out, TokenAttribution)
    assert [a.example_id for a in attrs] == ["demo-001", "demo-002", "demo-003"]
    assert all(a.target_mode == "choice" for a in attrs)


def test_bad_input_exits_2_with_one_line_on_stderr(capsys, tmp_path):
    cases = [
        ["attribute", "--model", "tiny", "--prompt", "q", "--method", "magic"],
        ["attribute", "--model", "no-such/model", "--prompt", "q", "--target", "a"],
        ["attribute", "--model", "tiny", "--prompt", "  ", "--target", "a"],
        ["attribute", "--model", "tiny"],
        ["attribute", "--model", "tiny", "--data", str(tmp_path / "missing.jsonl")],
        ["frobnicate"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "attribute" in capsys.readouterr().out


def test_models_lists_the_offline_specs(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "embedded-teacher" in out and "Qwen2.5-Coder-1.5B-Instruct" in out and "tiny-t5" in out


def attr_words(out: str) -> list[str]:
    return [line.split()[0] for line in out.split("top 3 words:")[1].strip().splitlines()]


def test_rationales_then_export(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["rationales", "--teacher", "tiny", "--data", str(demo_path()), "--limit", "4", "--top-k", "3"]
    assert main(args + ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["n"] == 4 and 0 <= stats["gold_overlap"] <= 1 and stats["plausibility"]["n"] == 4
    from kdviz.rationale_records import RationaleRecord

    records = load_jsonl(out, RationaleRecord)
    assert len(records) == 4 and all(len(r.rationale) == 3 for r in records)
    assert main(["export", "--records", str(out), "--out", str(tmp_path / "exp"), "--all", "--format", "jsonl"]) == 0
    assert (tmp_path / "exp" / "rationales.jsonl").exists()
    assert main(["export", "--records", str(out), "--out", str(tmp_path / "exp2")]) == 2  # nothing accepted yet
    assert "nothing to export" in capsys.readouterr().err


def test_rationales_on_a_bad_file_leaves_no_output(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "answer": "a"}\n{"oops"\n')
    out = tmp_path / "r.jsonl"
    assert main(["rationales", "--teacher", "tiny", "--data", str(bad), "--out", str(out)]) == 2
    assert "line 2: not valid JSON" in capsys.readouterr().err
    assert not out.exists()


def test_an_internal_error_is_not_passed_off_as_bad_input(capsys, monkeypatch):
    import kdviz.cli.app

    def broken(args):
        raise RuntimeError("a bug, not the user's input")

    monkeypatch.setattr(kdviz.cli.app, "run_models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("a bug' in err
    assert err.strip().splitlines()[-1] == (
        "error: internal error in kdviz models (RuntimeError: a bug, not the user's input); "
        "the traceback above says where"
    )


def test_a_value_error_from_a_library_bug_keeps_its_traceback(capsys, monkeypatch):
    import kdviz.cli.app

    monkeypatch.setattr(kdviz.cli.app, "run_models", lambda args: dict([("only one",)]))
    assert main(["models"]) == 1  # was exit 2 with "dictionary update sequence element #0 has length 1"
    assert "Traceback" in capsys.readouterr().err


def test_version(capsys):
    from kdviz import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kdviz {__version__}"


def test_attribute_predict_and_contrast_print_the_mode_and_what_was_scored(capsys):
    args = ["attribute", "--model", "tiny", "--prompt", "Where is milk kept cold?", "--choices", "fridge", "oven"]
    assert main(args + ["--predict", "cloze", "--method", "saliency"]) == 0
    out = capsys.readouterr().out
    assert "prediction mode: cloze" in out and 'scored: log p("' in out and " − " not in out
    assert main(args + ["--contrast", "runner-up", "--json"]) == 0
    attr = TokenAttribution.from_dict(json.loads(capsys.readouterr().out))
    assert attr.prediction.mode == "letter" and {attr.target, attr.contrast} == {"A", "B"}
    assert main(args + ["--contrast", "runner-up"]) == 0
    assert f'scored: log p("{attr.target}" = ' in capsys.readouterr().out  # letter = choice, then − the other
    assert main(args + ["--contrast", "gold", "--method", "attention"]) == 2
    assert "attention has no contrastive form" in capsys.readouterr().err


def test_predict_flag_reaches_rationales_and_is_offered_by_compare(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["rationales", "--teacher", "tiny", "--data", str(demo_path()), "--limit", "2", "--predict", "choice-text"]
    assert main(args + ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    from kdviz.rationale_records import RationaleRecord

    records = load_jsonl(out, RationaleRecord)
    assert all(r.provenance.predict == "choice-text" and r.target == r.predicted for r in records)
    assert all("A) " in r.prompt for r in records)
    for command in ("attribute", "rationales", "compare"):
        try:
            main([command, "--help"])
        except SystemExit:
            pass
        assert "--predict {letter,cloze,choice-text}" in capsys.readouterr().out


def test_threads_sets_torchs_threads_during_the_command_and_restores_them(capsys, monkeypatch):
    import torch

    import kdviz.attribution.targets as targets

    seen = []
    real = targets.attribute

    def spy(*args, **kwargs):  # the command's model work: how many threads torch has while it runs
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(targets, "attribute", spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        args = ["attribute", "--model", "tiny", "--prompt", "Where is milk kept cold?", "--target", "fridge"]
        assert main([*args, "--threads", "1", "--json"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2  # the caller's own number is back
        assert main([*args, "--json"]) == 0 and seen[-1] == 2  # without --threads, torch's number stays
        capsys.readouterr()
        assert main([*args, "--threads", "0"]) == 2
        assert capsys.readouterr().err.strip() == "error: --threads must be at least 1, not 0"
    finally:
        torch.set_num_threads(previous)
    for command in ("attribute", "rationales", "quality", "train", "compare", "app"):  # every command running a model
        assert main([command, "--help"]) == 0 and "--threads N" in capsys.readouterr().out, command


def test_main_makes_waiting_openmp_threads_sleep_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["--version"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["--version"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
