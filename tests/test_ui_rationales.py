"""The Rationales panel: its handlers called directly, then the served app through gradio_client (tiny teacher).

Every build attributes the same demo examples with the same settings, so only the first one runs the model: the
others read kdviz's attribution cache, pointed at a temporary folder for this module.
"""

import json
import shlex
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import kdviz
import kdviz.rationales.build
from kdviz.cli.main import main
from kdviz.data import demo_path
from kdviz.errors import InputError, KdvizError
from kdviz.lm.models import _load_cached
from kdviz.rationales.curation import CurationStore
from kdviz.rationales.quality import QualityCell
from kdviz.records import ProgressEvent
from kdviz.ui import build_handlers as bh
from kdviz.ui import build_job as bj
from kdviz.ui import curation_handlers as ch
from kdviz.ui import curation_views as cv
from kdviz.ui import export_handlers as eh
from kdviz.ui import launch
from kdviz.ui import quality_handlers as qh
from kdviz.ui import rationale_handlers as rh
from kdviz.viz.quality import quality_rows
from kdviz.workspace import WORKSPACE_ENV, Workspace

ALL = list(bh.EXCLUSIONS)


@pytest.fixture(scope="module", autouse=True)
def attribution_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDVIZ_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def build(workspace, name, limit=6, **settings):
    args = dict(model_spec="tiny", dataset=str(demo_path()), columns="", limit=limit, method="input_x_gradient")
    args |= dict(target_mode="choice", rule="top-k", rule_value=5, exclude=ALL, batch_size=4, name=name)
    return bh.build(workspace, **{**args, **settings})


def folder(workspace, name):
    return Workspace(workspace).build_dir(name)


def root(store):
    return store.folder.parent.parent  # <workspace>/builds/<build>


@pytest.fixture
def workspace(tmp_path):
    return rh.workspace_root(tmp_path / "ws")


@pytest.fixture
def store(workspace):
    name, *_ = build(workspace, "b1")
    return CurationStore(folder(workspace, name))


def test_build_writes_a_build_folder_with_statistics(workspace):
    seen = []
    name, message, command, *_ = build(workspace, "first", on_progress=lambda done, total: seen.append((done, total)))
    assert name == "first" and "6 records" in message and seen[-1] == (6, 6)
    assert (folder(workspace, "first") / "records.jsonl").is_file() and rh.list_builds(workspace) == ["first"]
    info = json.loads((folder(workspace, "first") / "build.json").read_text())
    assert info["source"] == "cqa_demo.jsonl" and info["teacher"] == "tiny" and info["examples"] == 6
    assert info["cancelled"] is False and info["method"] == "input_x_gradient"
    assert info["rule"].startswith("top-5, question words only, excluding stopwords")  # the default span
    assert info["command"] in command and info["command"].startswith("kdviz rationales --teacher tiny --data ")
    assert (
        f"--limit 6 --method input_x_gradient --target-mode choice --top-k 5 --span question --batch-size 4 "
        f"--workspace {workspace}" in (info["command"])
    )
    assert rh.open_existing(workspace, "first") == ("first", "Opened build **first**.", command)
    counts, stats, figure, rows, ids = cv.curation_view(workspace, "first")
    assert counts == "**first** · 6 records: 6 pending · 0 accepted · 0 rejected · 6 shown"
    assert ids == [f"demo-00{i}" for i in range(1, 7)] and [r[0] for r in rows] == ids
    table = {row[0]: row[1:] for row in stats}
    assert table["records"][0] == "6" and table["records"][3] == "0"  # all ... accepted
    assert int(table["records"][1]) + int(table["records"][2]) == 6  # teacher correct + wrong
    assert {"gold overlap", "gold word fraction", "distractor overlap", "plausibility f1"} <= set(table)
    assert [trace.type for trace in figure.data] == ["bar"] * 3
    default, *_ = build(workspace, "", limit=2)
    assert default.startswith("cqa_demo-input_x_gradient-") and rh.list_builds(workspace)[0] == default


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(name="../escape"), "is not a valid name"),
        (dict(name="b1"), "a build named 'b1' exists already"),
        (dict(rule="top-k", rule_value=2.5), "give the top-k rule a whole number"),
        (dict(rule="mass", rule_value=1.5), "mass must be in (0, 1]"),
        (dict(rule="median"), "unknown selection rule 'median'"),
        (dict(exclude=["vowels"]), "unknown exclusion 'vowels'"),
        (dict(span="choices"), "unknown rationale span 'choices'"),
        (dict(predict="magic"), "unknown prediction mode 'magic'"),
        (dict(method="magic"), "unknown attribution method 'magic'"),
        (dict(target_mode="forced"), "unknown target mode 'forced'"),
        (dict(columns="question"), "write kdviz_field=file_column"),
        (dict(columns="question=prompt"), "column 'prompt' (mapped in the column mapping) is missing"),
        (dict(limit=0), "must be at least 1"),
        (dict(model_spec=" "), "choose a teacher model"),
    ],
)
def test_bad_build_settings_are_clear_errors(store, settings, message):
    with pytest.raises(KdvizError) as info:
        build(root(store), **{"name": "other", **settings})
    assert message in str(info.value)


def test_span_and_faithfulness_settings_and_what_the_panel_shows_of_them(workspace):
    seen = []
    name, _, command, *_ = build(workspace, "q", limit=3, span="question", on_faithfulness=lambda d, t: seen.append(d))
    assert "--span question" in command and "--no-faithfulness" not in command and seen[-1] == 3
    table = {row[0]: row[1:] for row in cv.curation_view(workspace, "q").stats}
    assert table["question overlap"][0] == "1.000" and table["records measured"][0] == "3"
    assert {"comprehensiveness", "comprehensiveness (random)", "sufficiency", "sufficiency (random)"} <= set(table)
    store = CurationStore(folder(workspace, "q"))
    rec = store.records()[0]
    assert "question words only" in rec.provenance.rule
    summary = cv.record_view(workspace, "q", rec.id).summary
    assert f"Faithfulness: comprehensiveness **{rec.faithfulness.comprehensiveness:.3f}** (random " in summary
    assert "edited since" not in summary
    assert "edited since" in ch.toggle_word(workspace, "q", rec.id, rec.rationale[0]).summary
    name, _, command, *_ = build(workspace, "plain", limit=2, faithfulness=False, predict="cloze")
    assert "--predict cloze" in command
    assert CurationStore(folder(workspace, name)).get("demo-001").provenance.predict == "cloze"
    assert "--no-faithfulness" in command and "comprehensiveness" not in {
        r[0] for r in cv.curation_view(workspace, name).stats
    }
    assert "Faithfulness: not measured" in cv.record_view(workspace, name, "demo-001").summary
    assert bj.progress_message(ProgressEvent("faithfulness", 1, 4)) == (
        "Building: 1 of 4 examples measured for faithfulness (25%)…"
    )


def test_duplicate_example_ids_are_refused_before_any_model_work(workspace, tmp_path):
    path = tmp_path / "dups.jsonl"
    path.write_text('{"id": "a", "question": "q?", "choices": ["x", "y"]}\n' * 2)
    with pytest.raises(InputError, match="dups.jsonl, line 2: example id 'a' appears twice"):
        build(workspace, "dups", dataset=str(path))


def test_filters(store):
    ws, records = root(store), store.records()

    def ids(*filters):
        return cv.curation_view(ws, "b1", *filters).ids

    right, wrong = ids("yes"), ids("no")
    assert sorted(right + wrong) == [r.id for r in records] and right == [r.id for r in records if r.correct]
    assert sorted(ids("any", "yes") + ids("any", "no")) == [r.id for r in records]
    assert ids("any", "any", "accepted") == [] and len(ids("any", "any", "pending")) == 6
    shares = [row[4] for row in cv.curation_view(ws, "b1").rows]
    assert len(shares) == 6
    assert ids("any", "any", "any", min(shares), min(shares)) == [records[shares.index(min(shares))].id]
    assert ids("any", "any", "any", 0.0, 1.0, "CARPENTER") == ["demo-002"]
    with pytest.raises(InputError, match="lowest rationale share is above the highest"):
        ids("any", "any", "any", 0.9, 0.1)
    with pytest.raises(KdvizError, match="unknown status 'done'"):
        ids("any", "any", "done")


def test_toggling_a_word_edits_the_rationale_and_is_saved(store):
    ws, rec = root(store), store.get("demo-001")
    outside = next(i for i in range(len(rec.words)) if i not in rec.rationale and not rec.word_is_template[i])
    html, text, summary = ch.toggle_word(ws, "b1", "demo-001", outside)
    assert rec.words[outside] in text.split() and text != rec.rationale_text
    assert f'data-index="{outside}"' in html and html.count("kdviz-rationale ") + html.count('kdviz-rationale"') >= 1
    assert CurationStore(store.folder).get("demo-001").rationale_text == text  # on disk: what a restart reads
    assert ch.toggle_word(ws, "b1", "demo-001", outside)[1] == rec.rationale_text
    _, text, _ = ch.save_text(ws, "b1", "demo-001", "  milk   cold ")
    assert text == "milk cold" == CurationStore(store.folder).get("demo-001").rationale_text
    with pytest.raises(InputError, match="rationale text is empty"):
        ch.save_text(ws, "b1", "demo-001", " ")
    with pytest.raises(InputError, match="word 999 does not exist"):
        ch.toggle_word(ws, "b1", "demo-001", 999)
    with pytest.raises(InputError, match="pick a record first"):
        ch.toggle_word(ws, "b1", "", 0)


def test_accept_reject_reset_one_record_and_the_filtered_set(store):
    ws = root(store)
    assert "status **accepted**" in ch.record_action(ws, "b1", "demo-001", "accept")[2]
    ch.record_action(ws, "b1", "demo-002", "reject")
    as_built = store.get("demo-003").rationale_text
    ch.toggle_word(ws, "b1", "demo-003", 1)
    assert store.counts() == {"pending": 4, "accepted": 1, "rejected": 1, "total": 6}
    assert ch.record_action(ws, "b1", "demo-003", "reset")[1] == as_built
    assert ch.bulk_action(ws, "b1", "accept", "any", "any", "pending") == "Accepted 4 records."
    assert store.counts() == {"pending": 0, "accepted": 5, "rejected": 1, "total": 6}
    assert ch.bulk_action(ws, "b1", "reset", "any", "any", "any", 0, 1, "carpenter") == "Reset 1 record."
    assert store.get("demo-002").status == "pending"
    assert "6 records: 1 pending · 5 accepted · 0 rejected" in cv.curation_view(ws, "b1")[0]
    with pytest.raises(InputError, match="no record passes the filters"):
        ch.bulk_action(ws, "b1", "accept", "any", "any", "any", 0, 1, "no such words")
    with pytest.raises(KdvizError, match="unknown action 'approve'"):
        ch.record_action(ws, "b1", "demo-001", "approve")


def test_export_stays_inside_the_workspace(store):
    ws = root(store)
    with pytest.raises(InputError, match="nothing to export"):
        eh.export(ws, "b1", "none", ["jsonl"], accepted_only=True)
    ch.record_action(ws, "b1", "demo-001", "accept")
    paths = [Path(p) for p in eh.export(ws, "b1", "v1", ["jsonl", "parquet", "hf"], accepted_only=True)]
    out = Workspace(ws).export_dir("b1", "v1")
    assert paths == [out / "README.md", out / "rationales.jsonl", out / "rationales.parquet", out / "hf_dataset"]
    rows = [json.loads(line) for line in (out / "rationales.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["demo-001"] and "status" not in rows[0]
    everything = eh.export(ws, "b1", "all", ["jsonl"], accepted_only=False)
    assert len((Workspace(ws).export_dir("b1", "all") / "rationales.jsonl").read_text().splitlines()) == 6
    assert everything == [str(Workspace(ws).export_dir("b1", "all") / f) for f in ("README.md", "rationales.jsonl")]
    for bad in ("../x", "..", "/tmp/x", "a/b", ".hidden", ""):
        with pytest.raises(InputError, match="not a valid name"):
            eh.export(ws, "b1", bad, ["jsonl"])
    with pytest.raises(InputError, match="not a valid name"):
        eh.export(ws, "../b1", "v2", ["jsonl"])
    with pytest.raises(InputError, match="choose at least one export format"):
        eh.export(ws, "b1", "v3", [])
    with pytest.raises(InputError, match="owner/name"):
        eh.push(ws, "b1", "v1", "not a repo")
    with pytest.raises(InputError):  # offline in tests: either not logged in or the push fails, clearly
        eh.push(ws, "b1", "v1", "someone/rationales")


def test_cancel_keeps_the_finished_records_and_a_rerun_resumes(workspace):
    build(workspace, "warm")  # six examples attributed and cached
    stop = threading.Event()
    stop.set()  # pressed before the first batch: only the cached examples are in the build
    name, message, *_ = build(workspace, "partial", limit=8, should_stop=stop.is_set)
    assert name == "partial" and message.startswith("Cancelled. Build **partial**: 6 of 8 examples (6 from the cache)")
    assert "Build again to resume" in message
    assert CurationStore(folder(workspace, "partial")).counts()["total"] == 6
    assert json.loads((folder(workspace, "partial") / "build.json").read_text())["cancelled"] is True
    nothing, message, *_ = build(workspace, "empty", method="saliency", should_stop=stop.is_set)
    assert nothing == "" and "nothing was saved" in message and not folder(workspace, "empty").exists()


def test_import_records_from_the_cli_format(store, tmp_path):
    ws = root(store)
    name, message, _ = rh.import_records(ws, store.path, "copy")
    assert name == "copy" and "6 records imported" in message
    assert CurationStore(folder(ws, "copy")).records() == store.records()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "not a record"}\n')
    with pytest.raises(InputError, match="bad.jsonl is not a file of rationale records"):
        rh.import_records(ws, bad)


def test_workspace_defaults_to_the_environment_then_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "mine"))
    assert rh.workspace_root() == tmp_path / "mine" and rh.workspace_root(tmp_path) == tmp_path
    monkeypatch.delenv(WORKSPACE_ENV)
    monkeypatch.chdir(tmp_path)
    assert rh.workspace_root() == tmp_path / "kdviz_workspace" and rh.list_builds(rh.workspace_root()) == []


def test_the_build_is_one_background_job_any_session_cancels_and_a_reloaded_page_follows(monkeypatch):
    started = threading.Event()

    def slow_build(workspace, *fields, on_progress, should_stop, on_faithfulness):  # the model: waits for Cancel
        on_progress(1, 4)
        started.set()
        while not should_stop():
            time.sleep(0.01)
        return bh.BuildView("slow", "Cancelled. Build **slow**: 1 of 4 examples.", "cmd")

    monkeypatch.setattr(bj, "build", slow_build)
    running = bj.launch("ws", "tiny", "data.jsonl", poll_s=0.01)
    try:
        _one_job_checks(running, started)
    finally:
        bj.cancel_build()  # never leave the slot taken for the tests after this one


def _one_job_checks(running, started):
    first = next(running)  # starts the job
    assert first.running and first.build == "" and first.message.startswith("Building")
    assert started.wait(5)
    progress = first if first.progress else next(running)  # the worker may have reported before the first view
    assert progress.progress.fraction == 0.25 and "1 of 4 examples attributed (25%)" in progress.message
    with pytest.raises(bj.BusyError, match=r"busy: a rationale build \(new build\) is running"):
        next(bj.launch("ws", "tiny", "other.jsonl"))
    follower = bj.attach(poll_s=0.01)  # what a reloaded page does
    assert next(follower).progress == progress.progress
    assert bj.cancel_build() == "Cancelling after the current batch…"
    final = list(running)[-1]
    assert final == ("slow", "Cancelled. Build **slow**: 1 of 4 examples.", "cmd", None, False)
    assert list(follower)[-1] == final  # the reloaded page sees the same end
    assert bj.cancel_build() == "No build is running." and list(bj.attach()) == []


def test_a_failed_background_build_raises_its_own_error(monkeypatch):
    def bad_build(workspace, *fields, on_progress, should_stop, on_faithfulness):
        raise InputError("no such data file: x.jsonl")

    monkeypatch.setattr(bj, "build", bad_build)
    with pytest.raises(InputError, match="no such data file"):
        list(bj.launch("ws", "tiny", "x.jsonl", poll_s=0.01))
    assert bj.JOBS.active is None  # the slot is free again


def test_quality_by_k_and_span_measures_the_open_build_on_the_teacher_already_loaded(store, capsys):
    ws = root(store)
    loads = _load_cached.cache_info().misses
    seen = []
    view = qh.measure(ws, "b1", ["5", "3"], ["all", "question"], on_progress=lambda d, t: seen.append((d, t)))
    assert _load_cached.cache_info().misses == loads  # the build's teacher ("tiny"), from the app's model cache
    assert view.message == "Build **b1**: 6 records, 4 settings." and seen[-1] == (4, 4)
    assert [(r[0], r[1], r[2]) for r in view.rows] == [
        ("input_x_gradient", "3", "question"),
        ("input_x_gradient", "5", "question"),
        ("input_x_gradient", "3", "all"),
        ("input_x_gradient", "5", "all"),
    ]  # k sorted, spans in the table's order, however the boxes were ticked
    assert all(r[8] != "— (—)" for r in view.rows)  # comprehensiveness measured
    assert len(view.figure.data) == 6  # 3 panels x 2 spans
    command = f"kdviz quality --workspace {ws} --name b1 --ks 3 5 --spans question all"
    assert f"```\n{command}\n```" in view.command
    assert main([*shlex.split(command)[1:], "--json"]) == 0  # the command prints the same table
    cells = [QualityCell.from_dict(d) for d in json.loads(capsys.readouterr().out)]
    assert quality_rows(cells) == view.rows


def test_quality_without_faithfulness_loads_no_model_and_bad_settings_are_clear(store, monkeypatch):
    ws = root(store)
    monkeypatch.setattr(kdviz, "load_model", lambda spec: pytest.fail(f"loaded {spec}"))
    view = qh.measure(ws, "b1", ["10"], ["question"], faithfulness=False)
    assert [(r[1], r[2], r[8]) for r in view.rows] == [("10", "question", "— (—)")]
    assert view.command.endswith("--ks 10 --spans question --no-faithfulness\n```")
    bad = [([], ["all"], "give at least one k and one span"), (["3"], [], "give at least one k and one span")]
    for ks, spans, message in [*bad, (["3"], ["choices"], "unknown rationale span 'choices'")]:
        with pytest.raises(KdvizError, match=message):
            qh.measure(ws, "b1", ks, spans)
    with pytest.raises(InputError, match="no rationale build in"):
        qh.measure(ws, "nope")
    with pytest.raises(InputError, match="no build is open"):
        next(qh.launch(ws, "", ["3"], ["all"]))


def test_quality_is_one_background_job_with_progress_busy_refusal_and_cancel(monkeypatch):
    started = threading.Event()

    def slow_measure(workspace, build, *fields, on_progress, should_stop):  # waits for Cancel
        on_progress(1, 6)
        started.set()
        while not should_stop():
            time.sleep(0.01)
        return qh.QualityView("Cancelled: finished measurements are cached, so measuring again resumes.", [])

    monkeypatch.setattr(qh, "measure", slow_measure)
    running = qh.launch("ws", "b1", ["3"], ["all"], True, poll_s=0.01)
    try:
        first = next(running)
        assert first.running and first.message.startswith("Measuring")
        assert started.wait(5)
        progress = first if first.progress else next(running)
        assert progress.message == "Measuring: 1 of 6 settings done (17%)…"
        with pytest.raises(qh.BusyError, match=r"busy: the quality of build b1 is being measured"):
            next(qh.launch("ws", "b2", ["3"], ["all"], True))
        assert qh.cancel() == "Cancelling after the current batch…"
        assert list(running)[-1].message.startswith("Cancelled")
        assert qh.cancel() == "No quality measurement is running."
    finally:
        qh.cancel()  # never leave the slot taken for the tests after this one


def serve(workspace):
    return launch(teacher="tiny", port=None, workspace=workspace, prevent_thread_lock=True, quiet=True)


def test_api_build_accept_then_restart_sees_the_saved_state(workspace, monkeypatch):
    demo = serve(workspace)
    try:
        one, two = Client(demo.local_url, verbose=False), Client(demo.local_url, verbose=False)
        built, message, command = one.predict(limit=3, name="api", api_name="/build")
        assert built["value"] == "api" and "3 records" in message and "kdviz rationales --teacher tiny" in command
        *view, counts, _, _, records, record = one.predict("demo-002", api_name="/accept")
        assert "status **accepted**" in view[2] and "3 records: 2 pending · 1 accepted · 0 rejected" in counts
        assert [row[:2] for row in records["data"]][1] == ["demo-002", "accepted"] and record["value"] == "demo-002"
        message, table, _, command = one.predict(["3"], ["all"], True, api_name="/measure_quality")
        assert message == "Build **api**: 3 records, 1 setting." and [r[1:3] for r in table["data"]] == [["3", "all"]]
        assert "kdviz quality --workspace" in command and "--name api --ks 3 --spans all" in command
        two.predict(limit=3, name="other", api_name="/build")  # a second session on its own build
        two.predict("demo-001", api_name="/reject")
        counts = one.predict(None, api_name="/filter")[0]
        assert "1 accepted · 0 rejected" in counts and "**api**" in counts  # session one is still on its build
        with pytest.raises(AppError, match="a build named 'api' exists already"):
            one.predict(limit=3, name="api", api_name="/build")
        with pytest.raises(AppError, match="not a valid name"):
            one.predict("../out", ["jsonl"], True, api_name="/export")
        written, files = one.predict("v1", ["jsonl", "parquet"], True, api_name="/export")
        assert str(Workspace(workspace).export_dir("api", "v1") / "rationales.jsonl") in written
        assert sorted(Path(f).name for f in files) == ["rationales.jsonl", "rationales.parquet"]
        jsonl = next(f for f in files if f.endswith(".jsonl"))
        assert [json.loads(line)["id"] for line in Path(jsonl).read_text().splitlines()] == ["demo-002"]
        attribute = kdviz.rationales.build._attribute_shrinking

        def slowly(*args, **kwargs):  # the tiny teacher would finish 40 examples before the test could cancel
            time.sleep(0.3)
            return attribute(*args, **kwargs)

        # Every batch goes through here, whichever path attributes it (one pass in letter mode, or scored first).
        monkeypatch.setattr(kdviz.rationales.build, "_attribute_shrinking", slowly)
        job = two.submit(limit=40, batch_size=1, name="cancelled", api_name="/build")
        while not job.status().progress_data:  # the build has started: the cached examples are reported
            time.sleep(0.05)
        follow = Client(demo.local_url, verbose=False).submit(api_name="/follow_build")  # a reloaded page
        busy = one.predict(limit=3, name="later", api_name="/build")[1]
        assert busy == "busy: a rationale build (cancelled) is running; wait for it or cancel it"
        assert one.predict(api_name="/cancel") == "Cancelling after the current batch…"  # from any session
        _, message, _ = job.result()
        assert message.startswith("Cancelled. Build **cancelled**:") and "of 40 examples" in message
        assert follow.result()[1] == message  # the reloaded page saw the same end
        assert not (Workspace(workspace).build_dir("later")).exists()
        assert two.predict(api_name="/cancel") == "No build is running."
    finally:
        demo.close()
    demo = serve(workspace)  # the restart: a new app over the same workspace
    try:
        client = Client(demo.local_url, verbose=False)
        message, command = client.predict("api", api_name="/open_build")
        assert message == "Opened build **api**." and command.endswith("--name api\n```")
        counts, *_, records, _ = client.predict(None, "any", "any", "accepted", api_name="/filter")
        assert "1 accepted" in counts and [row[0] for row in records["data"]] == ["demo-002"]
    finally:
        demo.close()
