"""`kdviz rationales` with a workspace (a build the app opens) and its column mapping (tiny teacher, offline)."""

import json

import pytest

from kdviz.cli.main import main
from kdviz.data import demo_path, format_columns, parse_columns
from kdviz.errors import InputError
from kdviz.rationale_records import RationaleRecord
from kdviz.rationales.curation import open_build
from kdviz.records import load_jsonl
from kdviz.workspace import Workspace

BASE = ["rationales", "--teacher", "tiny", "--data", str(demo_path()), "--limit", "3", "--top-k", "2"]


def test_a_bad_column_mapping_is_one_clear_line(tmp_path, capsys):
    # was: "dictionary update sequence element #0 has length 1"
    assert main([*BASE, "--columns", "question", "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: column mapping 'question': write kdviz_field=file_column, e.g. question=prompt"]
    assert not (tmp_path / "r.jsonl").exists()


def test_the_column_mapping_parser():
    assert parse_columns(" question = prompt , answer=label,") == {"question": "prompt", "answer": "label"}
    assert parse_columns("") is None and parse_columns(None) is None
    assert parse_columns(format_columns({"question": "q", "id": "key"})) == {"question": "q", "id": "key"}
    for bad in ("question", "=prompt", "question=", "a=b,c"):
        with pytest.raises(InputError, match="write kdviz_field=file_column"):
            parse_columns(bad)


def test_a_workspace_build_the_app_can_open(tmp_path, capsys):
    ws = tmp_path / "ws"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main([*BASE, *cache, "--workspace", str(ws), "--name", "cli-build"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    store = open_build(Workspace(ws), "cli-build")
    assert stats == store.stats().to_dict() and stats["n"] == 3
    assert (store.info.name, store.info.teacher, store.info.examples, store.info.rule[:5]) == (
        "cli-build",
        "tiny",
        3,
        "top-2",
    )
    assert store.info.command.startswith("kdviz rationales --teacher tiny --data ")
    assert f"--workspace {ws.resolve()} --name cli-build" in store.info.command
    assert main([*BASE, *cache, "--workspace", str(ws), "--name", "cli-build"]) == 2  # the name is taken
    assert "a build named 'cli-build' exists already" in capsys.readouterr().err
    out = tmp_path / "r.jsonl"
    assert main([*BASE, *cache, "--workspace", str(ws), "--out", str(out)]) == 0  # default name, and a file
    assert len(Workspace(ws).list_builds()) == 2 and len(load_jsonl(out, RationaleRecord)) == 3


def test_out_or_workspace_is_required_and_name_needs_a_workspace(tmp_path, capsys):
    assert main(BASE) == 2
    assert "give --out FILE.jsonl, or --workspace DIR" in capsys.readouterr().err
    assert main([*BASE, "--name", "x", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "--name names a build in a workspace" in capsys.readouterr().err
    assert main([*BASE, "--workspace", str(tmp_path), "--name", "../x"]) == 2
    assert "is not a valid name" in capsys.readouterr().err and not (tmp_path / "builds").exists()


def test_the_json_reports_faithfulness_beside_random_words_unless_skipped(tmp_path, capsys):
    cache = ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "r.jsonl"
    assert main([*BASE, *cache, "--span", "question", "--out", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    f = stats["faithfulness"]
    assert f["n"] == 3 and set(f) == {
        "n", "p_full", "comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency"
    }  # fmt: skip
    assert stats["question_overlap"] == 1.0  # question words only
    records = load_jsonl(out, RationaleRecord)
    assert all(r.faithfulness is not None and "question words only" in r.provenance.rule for r in records)
    assert main([*BASE, *cache, "--no-faithfulness", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["faithfulness"] is None
    assert main([*BASE, "--span", "choices", "--out", str(out)]) == 2  # argparse refuses it
