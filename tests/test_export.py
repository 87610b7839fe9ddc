import dataclasses
import json

import pytest

from kdviz import InputError, UnknownNameError
from kdviz.data import demo_path, load_examples
from kdviz.rationale_records import Faithfulness
from kdviz.rationales.build import build_rationales
from kdviz.rationales.curation import CurationStore
from kdviz.rationales.export import dataset_card, export_build, export_records, push_to_hub
from kdviz.rationales.stats import rationale_stats
from kdviz.workspace import BuildInfo, Workspace


@pytest.fixture(scope="module")
def store(tiny, tmp_path_factory):
    examples = load_examples(demo_path(), limit=5)
    records = build_rationales(tiny, examples, "saliency", cache_dir=tmp_path_factory.mktemp("c")).records
    ws = Workspace(tmp_path_factory.mktemp("w"))
    store = CurationStore.create(ws.build_dir("b"), records, BuildInfo("b", "cqa_demo.jsonl"))
    store.set_status([r.id for r in records[:2]], "accepted")
    store.set_status([records[2].id], "rejected")
    return store


def test_accepted_records_round_trip_through_every_format(store, tmp_path):
    import datasets
    import pandas as pd

    paths = export_records(store.records(), tmp_path, name="demo", source="cqa_demo.jsonl")
    assert sorted(p.name for p in paths) == ["README.md", "hf_dataset", "rationales.jsonl", "rationales.parquet"]
    rows = [json.loads(line) for line in (tmp_path / "rationales.jsonl").read_text().splitlines()]
    accepted = [r for r in store.records() if r.status == "accepted"]
    assert [r["id"] for r in rows] == [r.id for r in accepted] and "status" not in rows[0]
    assert rows[0]["rationale"] == accepted[0].rationale_text and rows[0]["answer"] == accepted[0].example.answer
    assert pd.read_parquet(tmp_path / "rationales.parquet")["id"].tolist() == [r.id for r in accepted]
    assert datasets.load_from_disk(str(tmp_path / "hf_dataset"))["rationale"] == [r.rationale_text for r in accepted]
    card = (tmp_path / "README.md").read_text()
    assert "teacher: tiny" in card and "gold overlap" in card and "records: 2 (accepted only)" in card
    assert "# Rationale dataset: demo" in card and "source data: cqa_demo.jsonl" in card
    stats = rationale_stats(accepted)
    assert f"| records | 2 | {stats.by_correctness.correct.n} | {stats.by_correctness.incorrect.n} |" in card
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_all_records_with_a_status_column(store, tmp_path):
    export_records(store.records(), tmp_path, ["jsonl"], accepted_only=False)
    statuses = [json.loads(line)["status"] for line in (tmp_path / "rationales.jsonl").read_text().splitlines()]
    assert statuses == ["accepted", "accepted", "rejected", "pending", "pending"]


def test_nothing_accepted_and_unknown_formats_are_refused(store, tmp_path):
    pending = [r for r in store.records() if r.status == "pending"]
    with pytest.raises(InputError, match="nothing to export"):
        export_records(pending, tmp_path / "x")
    with pytest.raises(UnknownNameError, match="parquet"):
        export_records(store.records(), tmp_path / "x", ["xlsx"])
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_push_to_hub_without_login_says_so(store, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(InputError, match="export with the 'hf' format"):
        push_to_hub(tmp_path, "me/data")
    export_records(store.records(), tmp_path, ["hf"])
    with pytest.raises(InputError, match="not logged in"):
        push_to_hub(tmp_path, "me/data")
    with pytest.raises(InputError, match="owner/name"):
        push_to_hub(tmp_path, "not a repo")


def test_export_a_build_of_the_workspace_by_name(store):
    ws = Workspace(store.folder.parent.parent)
    paths = export_build(ws, "b", "v1", ["jsonl"])
    out = ws.export_dir("b", "v1")
    assert paths == [out / "README.md", out / "rationales.jsonl"] and ws.list_exports("b") == [out]
    assert "# Rationale dataset: b/v1" in (out / "README.md").read_text()
    assert "source data: cqa_demo.jsonl" in (out / "README.md").read_text()
    with pytest.raises(InputError, match="choose at least one export format"):
        export_build(ws, "b", "v2", [])
    for bad in ("../x", "a/b", ""):
        with pytest.raises(InputError, match="not a valid name"):
            export_build(ws, "b", bad, ["jsonl"])
    with pytest.raises(InputError, match="no rationale build"):
        export_build(ws, "missing", "v1", ["jsonl"])


def test_the_card_shows_faithfulness_beside_random_words(store):
    records = store.records()[:2]
    made = [Faithfulness(0.8, 0.6, 0.1, 0.2, 0.5, rec.rationale) for rec in records]
    card = dataset_card([dataclasses.replace(r, faithfulness=f) for r, f in zip(records, made, strict=True)], True)
    assert "## Faithfulness" in card and "for 2 of 2 records" in card and "full prompt: 0.800." in card
    assert "| comprehensiveness | 0.600 | 0.200 |" in card and "| sufficiency | 0.100 | 0.500 |" in card
    assert "| question overlap (≥1 rationale word in the question) |" in card
    unmeasured = [dataclasses.replace(r, faithfulness=None) for r in records]
    assert "## Faithfulness" not in dataset_card(unmeasured, True)


def test_an_export_keeps_the_datasets_own_teacher_for_training_with_data_sources(store, tmp_path):
    from kdviz.distill.data import load_train_examples

    accepted = [r for r in store.records() if r.status == "accepted"]
    cot = [r.example.teacher_rationale for r in accepted]
    assert all(cot) and cot[0].startswith("The answer must be")  # the demo data ships a chain of thought
    for fmt in ("jsonl", "parquet", "hf"):
        folder = tmp_path / fmt
        export_records(store.records(), folder, [fmt])
        built = load_train_examples(folder)  # the build's attribution rationale and teacher answer
        assert [t.rationale for t in built] == [r.rationale_text for r in accepted], fmt
        shipped = load_train_examples(folder, rationale_source="data", label_source="data")
        assert [t.rationale for t in shipped] == cot, fmt
        assert [t.teacher_answer for t in shipped] == [r.example.teacher_answer for r in accepted], fmt
