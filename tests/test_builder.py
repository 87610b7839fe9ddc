import json

import pytest

from kdviz.config import ModelSpec
from kdviz.data import demo_path, load_examples
from kdviz.errors import InputError, KdvizError
from kdviz.rationale_records import RationaleRecord
from kdviz.rationales.build import AttributionCache, BuildResult, build_rationales, example_key, reselect
from kdviz.rationales.curation import CurationStore
from kdviz.rationales.select import SelectionRule
from kdviz.rationales.stats import RationaleStats, rationale_stats
from kdviz.rationales.workspace_build import build_into_workspace, rationales_command
from kdviz.records import load_jsonl, save_jsonl
from kdviz.workspace import BuildInfo, Workspace


@pytest.fixture(scope="module")
def examples():
    return load_examples(demo_path(), limit=6)


def test_build_keeps_everything_a_record_needs(tiny, examples, tmp_path):
    result = build_rationales(tiny, examples, "saliency", SelectionRule(top_k=3), cache_dir=tmp_path, batch_size=4)
    assert not result.cancelled and result.from_cache == 0
    assert [r.id for r in result.records] == [e.id for e in examples]
    for rec, ex in zip(result.records, examples, strict=True):
        assert rec.example == ex and rec.predicted in ex.choices and rec.provenance.predict == "letter"
        assert rec.target == "ABCDE"[ex.choices.index(rec.predicted)]  # the tiny teacher has a chat template
        assert rec.correct == (rec.predicted == ex.answer)
        assert len(rec.rationale) == 3 and list(rec.rationale) == sorted(rec.rationale)  # input order
        assert rec.rationale_text == " ".join(rec.words[i] for i in rec.rationale)
        assert rec.provenance.teacher == "tiny" and rec.provenance.rule.startswith("top-3")
        prov = rec.provenance
        assert None not in (prov.method, prov.kdviz_version, prov.created, prov.rule_config)
    assert result.stats.n == 6 and result.stats == rationale_stats(result.records)


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
    assert len(first.records) == 4 and len(second.records) == 6
    assert [r.word_scores for r in second.records[:4]] == [r.word_scores for r in first.records]  # cached, same


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
    assert len(wider) == len(records) == 6 and all(
        len(r.rationale) == 4 and set(old.rationale) <= set(r.rationale) for r, old in zip(wider, records, strict=True)
    )
    assert json.loads(json.dumps(wider[0].to_dict()))["provenance"]["rule"].startswith("top-4")


def test_records_and_build_results_round_trip(tiny, examples, tmp_path):
    result = build_rationales(tiny, examples[:3], "saliency", cache_dir=tmp_path)
    save_jsonl(result.records, tmp_path / "records.jsonl")
    assert tuple(load_jsonl(tmp_path / "records.jsonl", RationaleRecord)) == result.records
    back = BuildResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result and isinstance(back.stats, RationaleStats) and isinstance(back.records[0], RationaleRecord)


def test_build_into_a_workspace_writes_a_build_the_app_opens(tiny, tmp_path):
    ws = Workspace(tmp_path / "ws")
    seen = []
    info, result = build_into_workspace(
        ws, "first", tiny, demo_path(), "saliency", SelectionRule(top_k=3), limit=4, batch_size=2,
        cache_dir=tmp_path / "cache", on_progress=lambda d, t: seen.append((d, t)),
    )  # fmt: skip
    assert ws.list_builds() == ["first"] and seen[-1] == (4, 4) and len(result.records) == 4
    store = CurationStore(ws.build_dir("first"))
    assert store.info == info and isinstance(store.info, BuildInfo)  # build.json round trip
    assert (info.name, info.source, info.teacher, info.examples, info.cancelled) == (
        "first", "cqa_demo.jsonl", "tiny", 4, False
    )  # fmt: skip
    assert info.rule == "top-3, question words only, excluding stopwords, punctuation, choice letters, template"
    assert info.command == rationales_command(
        "tiny", demo_path(), "saliency", SelectionRule(top_k=3), limit=4, batch_size=2, workspace=ws, name="first"
    )
    assert store.records() == list(result.records) and store.stats() == result.stats
    with pytest.raises(InputError, match="a build named 'first' exists already"):
        build_into_workspace(ws, "first", tiny, demo_path(), "saliency", cache_dir=tmp_path / "cache")
    default, _ = build_into_workspace(ws, None, tiny, demo_path(), "saliency", limit=2, cache_dir=tmp_path / "cache")
    assert default.name.startswith("cqa_demo-saliency-") and ws.list_builds()[0] == default.name


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(name="../escape"), "is not a valid name"),
        (dict(method="magic"), "unknown attribution method 'magic'"),
        (dict(target_mode="forced"), "unknown target mode 'forced'"),
        (dict(teacher=" "), "choose a teacher model"),
        (dict(limit=0), "must be at least 1"),
        (dict(batch_size=0), "must be at least 1"),
        (dict(columns={"question": "prompt"}), "column 'prompt' (mapped in the column mapping) is missing"),
    ],
)
def test_bad_workspace_build_settings_fail_before_any_model_loads(tmp_path, settings, message):
    args = dict(name="b", teacher="no/such-model-anywhere", source=demo_path()) | settings
    with pytest.raises(KdvizError) as info:
        build_into_workspace(tmp_path, args.pop("name"), args.pop("teacher"), args.pop("source"), **args)
    assert message in str(info.value) and not (tmp_path / "builds").exists()


def test_cancelled_before_any_example_saves_nothing(tiny, tmp_path):
    info, result = build_into_workspace(
        tmp_path, "none", tiny, demo_path(), "saliency", limit=2, cache_dir=tmp_path / "c", should_stop=lambda: True
    )
    assert info is None and result.cancelled and result.records == () and Workspace(tmp_path).list_builds() == []


def test_the_equivalent_command_names_every_setting_that_matters(tmp_path):
    spec = ModelSpec("org/teacher", device="cpu", chat=False)
    rule = SelectionRule(top_k=None, mass=0.5, exclude_stopwords=False)
    command = rationales_command(
        spec, "data dir/q.jsonl", "integrated_gradients", rule, target_mode="gold", columns={"question": "q"},
        steps=8, batch_size=2, workspace=Workspace(tmp_path), name="b1",
    )  # fmt: skip
    assert command == (
        "kdviz rationales --teacher org/teacher --device cpu --no-chat --data 'data dir/q.jsonl' --columns question=q "
        "--method integrated_gradients --target-mode gold --mass 0.5 --span question --keep-stopwords --steps 8 "
        "--batch-size 2 "
        f"--workspace {tmp_path.resolve()} --name b1"
    )
    question = rationales_command("tiny", "d.jsonl", "saliency", SelectionRule(span="question"), faithfulness=False)
    assert "--top-k 3 --span question --batch-size 4 --no-faithfulness" in question  # the defaults, named
    plain = rationales_command("tiny", "d.jsonl", "saliency", SelectionRule(), limit=3, steps=8, out="r.jsonl")
    assert plain == (
        "kdviz rationales --teacher tiny --data d.jsonl --limit 3 --method saliency --target-mode choice --top-k 3 "
        "--span question --batch-size 4 --out r.jsonl"
    )


def test_a_build_measures_each_rationales_faithfulness_unless_told_not_to(tiny, examples, tmp_path):
    seen = []
    result = build_rationales(
        tiny, examples[:4], "saliency", SelectionRule(top_k=2, span="question"), cache_dir=tmp_path, batch_size=2,
        on_faithfulness=lambda d, t: seen.append((d, t)),
    )  # fmt: skip
    assert seen == [(0, 4), (2, 4), (4, 4)] and (tmp_path / "faithfulness").is_dir()
    for rec in result.records:
        f = rec.faithfulness
        assert f.rationale == rec.rationale and len(f.random) == 2 and 0 < f.p_full < 1
        assert -1 < f.comprehensiveness < 1 and -1 < f.random_sufficiency < 1
    assert result.stats.faithfulness.n == 4 and result.stats.question_overlap == 1.0  # question words only
    assert all(r.faithfulness is None for r in build_rationales(
        tiny, examples[:4], "saliency", cache_dir=tmp_path, faithfulness=False).records)  # fmt: skip
    seen.clear()
    again = build_rationales(tiny, examples[:4], "saliency", SelectionRule(top_k=2, span="question"),
                             cache_dir=tmp_path, on_faithfulness=lambda d, t: seen.append((d, t)))  # fmt: skip
    assert [r.faithfulness for r in again.records] == [r.faithfulness for r in result.records]
    assert seen == [(4, 4)]  # all from the cache


def test_stopped_while_measuring_the_records_are_kept_without_faithfulness(tiny, examples, tmp_path):
    calls = []
    result = build_rationales(
        tiny, examples[:4], "saliency", cache_dir=tmp_path, batch_size=2,
        on_faithfulness=lambda d, t: calls.append(d), should_stop=lambda: len(calls) >= 2,
    )  # fmt: skip
    assert result.cancelled and len(result.records) == 4
    assert [r.faithfulness is not None for r in result.records] == [True, True, False, False]
