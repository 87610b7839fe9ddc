import json

import pytest

from kdviz.data import demo_path, load_examples
from kdviz.rationales.build import AttributionCache, build_rationales, example_key, reselect
from kdviz.rationales.select import SelectionRule


@pytest.fixture(scope="module")
def examples():
    return load_examples(demo_path(), limit=6)


def test_build_keeps_everything_a_record_needs(tiny, examples, tmp_path):
    result = build_rationales(tiny, examples, "saliency", SelectionRule(top_k=3), cache_dir=tmp_path, batch_size=4)
    assert not result.cancelled and result.from_cache == 0
    assert [r.id for r in result.records] == [e.id for e in examples]
    for rec, ex in zip(result.records, examples, strict=True):
        assert rec.example == ex and rec.target == rec.predicted in ex.choices
        assert rec.correct == (rec.predicted == ex.answer)
        assert len(rec.rationale) == 3 and list(rec.rationale) == sorted(rec.rationale)  # input order
        assert rec.rationale_text == " ".join(rec.words[i] for i in rec.rationale)
        assert rec.provenance["teacher"] == "tiny" and rec.provenance["rule"].startswith("top-3")
        assert {"method", "kdviz_version", "created", "rule_config"} <= set(rec.provenance)
    assert result.stats["n"] == 6


def test_a_rerun_reads_the_cache_and_a_crash_loses_only_the_torn_line(tiny, examples, tmp_path):
    first = build_rationales(tiny, examples[:4], "saliency", cache_dir=tmp_path, batch_size=2)
    (cache_file,) = tmp_path.glob("*.jsonl")
    with cache_file.open("a") as handle:
        handle.write('{"key": "half a line')  # what a crash mid-write leaves
    seen = []
    second = build_rationales(
        tiny, examples, "saliency", cache_dir=tmp_path, batch_size=2, on_progress=lambda d, t: seen.append(d)
    )
    assert second.from_cache == 4 and seen[0] == 4 and seen[-1] == 6
    assert [r.to_dict() for r in second.records[:4]] != [] and second.records[0].word_scores == first.records[
        0
    ].word_scores


def test_cancel_returns_the_finished_batches_and_a_rerun_resumes(tiny, examples, tmp_path):
    calls = []
    stop_after_first_batch = lambda: bool(calls)  # noqa: E731
    result = build_rationales(
        tiny,
        examples,
        "saliency",
        cache_dir=tmp_path,
        batch_size=2,
        on_progress=lambda d, t: calls.append(d),
        should_stop=stop_after_first_batch,
    )
    assert result.cancelled and len(result.records) == 0  # stopped before the first batch: progress(0) came first
    calls.clear()
    result = build_rationales(
        tiny,
        examples,
        "saliency",
        cache_dir=tmp_path,
        batch_size=2,
        on_progress=lambda d, t: calls.append(d),
        should_stop=lambda: len(calls) >= 2,
    )
    assert result.cancelled and len(result.records) == 2
    resumed = build_rationales(tiny, examples, "saliency", cache_dir=tmp_path, batch_size=2)
    assert resumed.from_cache == 2 and len(resumed.records) == 6 and not resumed.cancelled


def test_cache_is_keyed_by_teacher_method_settings_and_example(examples, tmp_path):
    a = AttributionCache(tmp_path, "tiny", "saliency", {"steps": None})
    assert a.path != AttributionCache(tmp_path, "tiny", "attention", {"steps": None}).path
    assert a.path != AttributionCache(tmp_path, "tiny-student", "saliency", {"steps": None}).path
    assert a.path != AttributionCache(tmp_path, "tiny", "saliency", {"steps": 8}).path
    assert example_key(examples[0]) != example_key(examples[1])
    changed = type(examples[0])(**{**examples[0].to_dict(), "answer": examples[0].choices[1]})
    assert example_key(changed) != example_key(examples[0])


def test_reselect_applies_another_rule_without_a_model(tiny, examples, tmp_path):
    records = build_rationales(tiny, examples, "saliency", SelectionRule(top_k=2), cache_dir=tmp_path).records
    wider = reselect(records, SelectionRule(top_k=4))
    assert all(
        len(r.rationale) == 4 and set(old.rationale) <= set(r.rationale) for r, old in zip(wider, records, strict=True)
    )
    assert json.loads(json.dumps(wider[0].to_dict()))["provenance"]["rule"].startswith("top-4")
