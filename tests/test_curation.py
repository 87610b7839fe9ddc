import dataclasses
import subprocess
import sys
import threading

import pytest

from kdviz import InputError
from kdviz.data import demo_path, load_examples
from kdviz.rationales.build import build_rationales
from kdviz.rationales.curation import (
    CurationStore,
    filter_records,
    import_build,
    open_build,
    rationale_share,
    safe_child,
)
from kdviz.rationales.stats import RationaleStats, current_faithfulness, rationale_stats
from kdviz.records import save_jsonl
from kdviz.workspace import BuildInfo, Workspace


@pytest.fixture(scope="module")
def records(tiny, tmp_path_factory):
    examples = load_examples(demo_path(), limit=6)
    return build_rationales(tiny, examples, "saliency", cache_dir=tmp_path_factory.mktemp("cache")).records


@pytest.fixture
def store(records, tmp_path):
    return CurationStore.create(tmp_path / "build", records, BuildInfo("build", "cqa_demo.jsonl"))


def test_every_change_is_on_disk_for_a_new_store(store):
    first, second = (r.id for r in store.records()[:2])
    store.set_status([first], "accepted")
    store.set_status([second], "rejected")
    toggled = store.toggle_word(first, 0)
    reopened = CurationStore(store.folder)  # what an app restart sees
    assert reopened.get(first) == toggled and reopened.get(first).status == "accepted"
    assert reopened.counts() == {"pending": 4, "accepted": 1, "rejected": 1, "total": 6}


def test_toggling_a_word_adds_or_removes_it_in_input_order(store):
    rec = store.records()[0]
    outside = next(i for i in range(len(rec.words)) if i not in rec.rationale)
    added = store.toggle_word(rec.id, outside)
    assert outside in added.rationale and list(added.rationale) == sorted(added.rationale)
    assert added.rationale_text == " ".join(rec.words[i] for i in added.rationale)
    assert store.toggle_word(rec.id, outside).rationale == rec.rationale
    with pytest.raises(InputError, match="does not exist"):
        store.toggle_word(rec.id, 10_000)


def test_edit_text_then_reset_restores_the_rules_selection(store):
    rec = store.records()[1]
    store.set_text(rec.id, "  milk   cold ")
    store.set_status([rec.id], "accepted")
    assert store.get(rec.id).rationale_words == ["milk", "cold"]
    (reset,) = store.reset([rec.id])
    assert (reset.rationale, reset.rationale_text, reset.status) == (rec.rationale, rec.rationale_text, "pending")


def test_filters_and_bulk_actions(store):
    records = store.records()
    right = filter_records(records, correct=True)
    wrong = filter_records(records, correct=False)
    assert len(right) + len(wrong) == 6
    assert right == [r for r in records if r.correct is True] and wrong == [r for r in records if r.correct is False]
    store.set_status([r.id for r in wrong], "rejected")
    assert store.counts()["rejected"] == len(wrong)
    assert filter_records(store.records(), status="rejected") == [store.get(r.id) for r in wrong]
    word = records[0].example.question.split()[2]
    assert records[0] in filter_records(records, text=word.upper())
    assert filter_records(records, share_range=(1.01, 2.0)) == []
    shares = [rationale_share(r) for r in records]
    assert len(shares) == 6 and all(0 <= share <= 1 for share in shares) and max(shares) > 0


def test_concurrent_changes_are_all_kept(store):
    ids = [r.id for r in store.records()]
    threads = [threading.Thread(target=store.set_status, args=([i], "accepted")) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts()["accepted"] == 6


_ACCEPT_EACH = """
import sys
from kdviz.rationales.curation import CurationStore
store = CurationStore(sys.argv[1])
for record_id in sys.argv[2:]:
    store.set_status([record_id], "accepted")
"""


def test_two_processes_accepting_records_of_one_build_lose_nothing(records, tmp_path):
    # 200 records, each accepted by its own change: the two processes' read-modify-writes interleave constantly
    many = [
        dataclasses.replace(r, example=dataclasses.replace(r.example, id=f"q{n}"))
        for n, r in enumerate(records[i % len(records)] for i in range(200))
    ]
    store = CurationStore.create(tmp_path / "build", many, BuildInfo("build", "x"))
    ids = [r.id for r in many]
    halves = [ids[0::2], ids[1::2]]
    workers = [
        subprocess.Popen([sys.executable, "-c", _ACCEPT_EACH, str(store.folder), *half], stderr=subprocess.PIPE)
        for half in halves
    ]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read().decode()
    assert store.counts() == {"pending": 0, "accepted": 200, "rejected": 0, "total": 200}
    assert [r.id for r in store.records()] == ids  # the order is kept too


def test_names_cannot_escape_the_workspace(tmp_path, records):
    assert safe_child(tmp_path, "my-build_1.v2") == (tmp_path / "my-build_1.v2").resolve()
    for bad in ["../x", "a/b", "/etc", "..", "", "~root", ".hidden"]:
        with pytest.raises(InputError):
            safe_child(tmp_path, bad)
    with pytest.raises(InputError, match="appears more than once"):
        CurationStore.create(tmp_path / "dup", [records[0], records[0]], BuildInfo("dup", "x"))
    CurationStore.create(tmp_path / "b", records, BuildInfo("b", "x"))
    with pytest.raises(InputError, match="exists already"):
        CurationStore.create(tmp_path / "b", records, BuildInfo("b", "x"))
    with pytest.raises(InputError, match="no rationale build"):
        CurationStore(tmp_path / "nothing")


def test_build_info_round_trips_through_build_json(store):
    info = BuildInfo("build", "cqa_demo.jsonl", teacher="tiny", columns={"question": "q"}, examples=6, command="x y")
    again = CurationStore.create(store.folder.parent / "again", store.records(), info)
    assert CurationStore(again.folder).info == info and store.info == BuildInfo.from_dict(store.info.to_dict())
    (store.folder / "build.json").unlink()  # a build made by hand: described by its folder
    assert CurationStore(store.folder).info.name == "build"
    (store.folder / "build.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="build.json is not a build description"):
        CurationStore(store.folder)


def test_statistics_of_all_or_the_accepted_records(store):
    first = store.records()[0].id
    store.set_status([first], "accepted")
    assert isinstance(store.stats(), RationaleStats) and store.stats().n == 6
    assert store.stats(accepted_only=True) == rationale_stats([store.get(first)])


def test_open_and_import_builds_by_name_in_a_workspace(records, tmp_path):
    ws = Workspace(tmp_path / "ws")
    save_jsonl(records, tmp_path / "records.jsonl")
    info = import_build(ws, tmp_path / "records.jsonl", "copy")
    assert (info.name, info.source, info.imported) == ("copy", "records.jsonl", True)
    assert open_build(ws, "copy").records() == list(records) and open_build(ws, "copy").info == info
    default = import_build(str(ws.root), tmp_path / "records.jsonl")
    assert default.name.startswith("records-imported-") and set(ws.list_builds()) == {"copy", default.name}
    with pytest.raises(InputError, match="exists already"):
        import_build(ws, tmp_path / "records.jsonl", "copy")
    with pytest.raises(InputError, match="no build is open"):
        open_build(ws, "")
    with pytest.raises(InputError, match="not a valid name"):
        open_build(ws, "../copy")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "not a record"}\n')
    with pytest.raises(InputError, match="bad.jsonl is not a file of rationale records"):
        import_build(ws, bad)
    save_jsonl([records[0], records[0]], tmp_path / "dups.jsonl")
    with pytest.raises(InputError, match="record ids must be unique"):
        import_build(ws, tmp_path / "dups.jsonl")


def test_an_edited_rationale_leaves_the_statistics_faithfulness_until_it_is_reset(store):
    first = store.records()[0]
    assert current_faithfulness(first) == first.faithfulness is not None and store.stats().faithfulness.n == 6
    edited = store.toggle_word(first.id, first.rationale[0])  # the words measured are not the rationale now
    assert edited.faithfulness == first.faithfulness and current_faithfulness(edited) is None
    assert store.stats().faithfulness.n == 5
    store.set_text(first.id, "something else")  # the text alone does not change the words measured
    store.reset([first.id])
    assert current_faithfulness(store.get(first.id)) is not None and store.stats().faithfulness.n == 6
