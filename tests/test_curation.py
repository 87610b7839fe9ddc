import threading

import pytest

from kdviz import InputError
from kdviz.data import demo_path, load_examples
from kdviz.rationales.build import build_rationales
from kdviz.rationales.curation import CurationStore, filter_records, rationale_share, safe_child


@pytest.fixture(scope="module")
def records(tiny, tmp_path_factory):
    examples = load_examples(demo_path(), limit=6)
    return build_rationales(tiny, examples, "saliency", cache_dir=tmp_path_factory.mktemp("cache")).records


@pytest.fixture
def store(records, tmp_path):
    return CurationStore.create(tmp_path / "build", records, {"name": "build"})


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
    assert len(right) + len(wrong) == 6 and all(r.correct for r in right)
    store.set_status([r.id for r in wrong], "rejected")
    assert store.counts()["rejected"] == len(wrong)
    assert filter_records(store.records(), status="rejected") == [store.get(r.id) for r in wrong]
    word = records[0].example.question.split()[2]
    assert records[0] in filter_records(records, text=word.upper())
    assert filter_records(records, share_range=(1.01, 2.0)) == []
    assert all(0 <= rationale_share(r) <= 1 for r in records)


def test_concurrent_changes_are_all_kept(store):
    ids = [r.id for r in store.records()]
    threads = [threading.Thread(target=store.set_status, args=([i], "accepted")) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts()["accepted"] == 6


def test_names_cannot_escape_the_workspace(tmp_path, records):
    assert safe_child(tmp_path, "my-build_1.v2") == (tmp_path / "my-build_1.v2").resolve()
    for bad in ["../x", "a/b", "/etc", "..", "", "~root", ".hidden"]:
        with pytest.raises(InputError):
            safe_child(tmp_path, bad)
    with pytest.raises(InputError, match="appears more than once"):
        CurationStore.create(tmp_path / "dup", [records[0], records[0]], {})
    CurationStore.create(tmp_path / "b", records, {})
    with pytest.raises(InputError, match="exists already"):
        CurationStore.create(tmp_path / "b", records, {})
    with pytest.raises(InputError, match="no rationale build"):
        CurationStore(tmp_path / "nothing")
