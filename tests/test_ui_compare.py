"""The Compare panel: its handlers called directly, then the served app through gradio_client, on the tiny models.

The students are a 2-step tiny-student run of the workspace ("runs/s1") and the untrained "tiny-student". The
attribution cache is one folder per module, so a comparison repeated on the same examples is quick. The tests that
cancel hold one model's first batch until Cancel is pressed (tiny models finish 40 examples in a second), so what is
cancelled is certain.
"""

import dataclasses
import inspect
import json
import re
import shlex
import shutil
import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from kdviz.cli.main import build_parser
from kdviz.cli.main import main as cli_main
from kdviz.compare.report import load_report
from kdviz.compare.run import compare
from kdviz.compare.viz import FILTERS, SUMMARY_COLUMNS
from kdviz.config import TrainConfig
from kdviz.data import demo_path
from kdviz.distill.loop import finetune
from kdviz.errors import InputError, KdvizError
from kdviz.ui import compare_handlers as ch
from kdviz.ui import compare_settings as cs
from kdviz.ui import launch
from kdviz.ui import saved_comparisons as sc

FIELDS = list(inspect.signature(cs.make_settings).parameters)[1:]  # the panel's fields, after the workspace
SETTINGS = dict(
    teacher="tiny", students=["runs/s1"], extra_students="tiny-student", dataset=str(demo_path()), limit=6,
    method="input_x_gradient", top_k=5, batch_size=4, name="first", predict="default", target_mode="default",
)  # fmt: skip
MODELS = ["tiny", "runs/s1", "tiny-student"]
POLL_S = 0.05


def fields(**settings) -> list:
    values = {**SETTINGS, **settings}
    return [values[f] for f in FIELDS]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, rationale_export):
    """A workspace holding one finished training run, runs/s1 (standard, 2 steps), and a shared attribution cache."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_CACHE", str(root / "cache"))
        config = TrainConfig(data=str(rationale_export), out=str(root / "ws" / "runs" / "s1"), student="tiny-student",
                             max_steps=2, eval_size=4)  # fmt: skip
        finetune(config)
        yield root / "ws"


@pytest.fixture(scope="module")
def first(workspace):
    """The views of the comparison "first": tiny against runs/s1 and tiny-student on 6 demo examples."""
    return list(ch.launch(workspace, *fields(), poll_s=POLL_S))


@pytest.fixture(autouse=True)
def no_comparison_left_behind():
    """A failed test must not leave its comparison running: the next test's launch would be refused as busy."""
    yield
    job = ch.JOBS.active
    if job is not None:
        job.stop.set()
        job.done.wait(60)


def hold_until_cancelled(monkeypatch, role: str) -> None:
    """Makes the comparison wait after the first progress report of the model in `role` until Cancel is pressed."""
    real = ch.compare

    def held(*args, on_progress, should_stop, **kwargs):
        def progress(event):
            on_progress(event)
            deadline = time.monotonic() + 60
            while event.stage == role and not should_stop() and time.monotonic() < deadline:
                time.sleep(0.01)

        return real(*args, on_progress=progress, should_stop=should_stop, **kwargs)

    monkeypatch.setattr(ch, "compare", held)


def accuracy(cell: str) -> float:
    return float(cell.split()[0])


def test_launch_writes_the_report_and_shows_every_view(workspace, first):
    assert first[0].status.startswith("**first** · running · loading the teacher tiny…")
    # Every progress event is shown, however fast a model is: each model in turn, from its start to 6/6.
    progress = [
        re.search(r"· running · (\w+) (\S+): (\d)/6 examples · model (\d)/3 · ", v.status) for v in first[1:-1]
    ]
    assert all(progress) and all(v.files == [] and v.name == "first" for v in first[:-1])
    steps = [(m[1], m[2], int(m[3]), int(m[4])) for m in progress]
    shown = list(dict.fromkeys((role, name) for role, name, _, _ in steps))
    models = [("teacher", "tiny"), ("student", "runs/s1"), ("student", "tiny-student")]
    # each model's answers, then the faithfulness of its rationales
    assert shown == [step for role, name in models for step in ((role, name), ("faithfulness", name))]
    assert [order for *_, order in steps] == sorted(order for *_, order in steps)
    for role, name in shown:
        done = [d for r, n, d, _ in steps if (r, n) == (role, name)]
        assert done == sorted(done) and done[-1] == 6, (name, done)
    status, summary, pairwise, acc_fig, overlap_fig, agree_fig, table, html, files, command, name = first[-1]
    assert status.startswith("**first** · completed · teacher `tiny` and 2 student(s) on 6 examples · ")
    assert name == "first" and html == sc.NO_EXAMPLE_HTML
    folder = workspace / "comparisons" / "first"
    assert files == [str(folder / f) for f in ("report.html", "report.json", "examples.csv")]
    assert all((folder / f).is_file() for f in ("report.html", "report.json", "examples.csv"))
    assert [row[0] for row in summary] == MODELS and all(len(row) == len(SUMMARY_COLUMNS) for row in summary)
    assert all(0.0 <= accuracy(row[3]) <= 1.0 for row in summary) and summary[1][2] == "standard"
    assert [row[:2] for row in pairwise] == [
        ["tiny", "runs/s1"],
        ["tiny", "tiny-student"],
        ["runs/s1", "tiny-student"],
    ]
    assert all(0.0 <= float(row[4]) <= 1.0 for row in pairwise)
    assert list(acc_fig.data[0].x) == MODELS and len(overlap_fig.data) == 3 and list(agree_fig.data[0].x) == MODELS
    assert table["headers"] == ["id", "question", "gold", *MODELS] and len(table["data"]) == 6
    assert [m.name for m in load_report(folder).models] == MODELS
    assert sc.list_comparisons(workspace) == ["first"] and cs.next_name(workspace, "first") == "comparison-1"


def test_the_cli_command_reproduces_the_comparison(workspace, first, capsys):
    command = first[-1].command
    assert command.startswith("**Same comparison from the command line:**\n```\nkdviz compare --teacher tiny ")
    line = command.split("\n")[2]
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert (args.teacher, args.student, args.data, args.limit) == ("tiny", MODELS[1:], str(demo_path()), 6)
    assert (args.workspace, args.name, args.out) == (str(workspace.resolve()), "first", None)
    assert (args.method, args.top_k, args.batch_size, args.predict) == ("input_x_gradient", 5, 4, None)
    assert cli_main(shlex.split(line)[1:]) == 2  # the same name: a finished comparison is never overwritten
    assert "a comparison named 'first' exists already" in capsys.readouterr().err
    # Under another name, run anywhere, it writes the same report into the workspace, and the app lists it.
    assert cli_main(shlex.split(line.replace("--name first", "--name first-cli"))[1:]) == 0
    ui, cli = load_report(workspace / "comparisons" / "first"), load_report(workspace / "comparisons" / "first-cli")
    assert (cli.examples, cli.summary, cli.pairwise) == (ui.examples, ui.summary, ui.pairwise)

    def answers(comparison):  # every model's records, less when they were made
        return [(m.name, [dataclasses.replace(r, provenance=dataclasses.replace(r.provenance, created=None)) for r in m.records])
                for m in comparison.models]  # fmt: skip

    assert answers(cli) == answers(ui)
    assert cli.settings.command == line.replace("--name first", "--name first-cli")
    assert set(sc.list_comparisons(workspace)) == {"first", "first-cli"}
    assert sc.comparison_view(workspace, "first-cli").summary == first[-1].summary
    shutil.rmtree(workspace / "comparisons" / "first-cli")  # the other tests expect "first" alone


def test_reopening_a_past_comparison_recomputes_nothing(workspace, first, monkeypatch):
    monkeypatch.setattr(ch, "compare", lambda *a, **k: pytest.fail("a reopened comparison was recomputed"))
    reopened, last = sc.comparison_view(workspace, "first"), first[-1]
    assert (reopened.summary, reopened.pairwise, reopened.examples) == (last.summary, last.pairwise, last.examples)
    assert (reopened.example, reopened.files, reopened.command, reopened.name) == (
        last.example, last.files, last.command, last.name
    )  # fmt: skip
    assert reopened.status == last.status.rsplit(" · ", 1)[0]  # the same status, less the run time
    with pytest.raises(InputError, match="no comparison named 'nope'"):
        sc.comparison_view(workspace, "nope")


def test_filters_keep_the_examples_their_correctness_says(workspace, first):
    comparison = sc.load_comparison(workspace, "first")
    index = {ex.id: i for i, ex in enumerate(comparison.examples)}
    teacher, students = comparison.models[0].correct, [m.correct for m in comparison.models[1:]]
    expected = {
        "all": lambda i: True,
        "all_wrong": lambda i: teacher[i] is False and all(s[i] is False for s in students),
        "teacher_right_student_wrong": lambda i: teacher[i] is True and any(s[i] is False for s in students),
        "student_right_teacher_wrong": lambda i: teacher[i] is False and any(s[i] is True for s in students),
        "disagree": lambda i: len({m.predicted[i] for m in comparison.models}) > 1,
    }
    assert set(expected) == set(FILTERS)
    for key, keeps in expected.items():
        rows = sc.examples_table(workspace, "first", key)["data"]
        assert [index[row[0]] for row in rows] == [i for i in range(6) if keeps(i)], key
        for row in rows:  # each model's cell: its answer, ✓ or ✗
            assert [cell.endswith("✓") for cell in row[3:]] == [m.correct[index[row[0]]] for m in comparison.models]
    with pytest.raises(InputError, match="unknown filter 'magic'"):
        sc.examples_table(workspace, "first", "magic")


def test_an_example_shows_every_models_attribution_map(workspace, first):
    example_id = first[-1].examples["data"][0][0]
    html = sc.show_example(workspace, "first", example_id)
    assert all(f"<b>{name}</b>" in html for name in MODELS) and html.count("kdviz-model") == 3
    assert html.count("kdviz-word") > 10 and sc.show_example(workspace, "first", "") == sc.NO_EXAMPLE_HTML
    with pytest.raises(InputError, match="has no example 'nope'"):
        sc.show_example(workspace, "first", "nope")


def test_cancel_keeps_finished_models_a_second_launch_is_busy_and_compare_again_resumes(workspace, tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))  # nothing cached: the rerun below resumes
    hold_until_cancelled(monkeypatch, "student")
    long = fields(students=[], extra_students="tiny-student", limit=40, batch_size=1, name="long")
    views = ch.launch(workspace, *long, poll_s=POLL_S)
    assert next(view[0] for view in views if "student tiny-student: " in view[0])  # the teacher has finished
    with pytest.raises(ch.BusyError, match=r"^busy: a comparison \(long\) is running; wait or cancel it$"):
        next(ch.launch(workspace, *fields(name="other")))
    assert ch.cancel_comparison() == "Cancelling **long** after the current batch…"
    status, summary, *_, files, command, name = list(views)[-1]
    assert status.startswith("**long** · cancelled · teacher `tiny` and 0 student(s) on 40 examples")
    assert "Compare again under this name to resume" in status and [row[0] for row in summary] == ["tiny"]
    assert load_report(workspace / "comparisons" / "long").cancelled and len(files) == 3
    assert ch.cancel_comparison() == "No comparison is running."
    assert not (workspace / "comparisons" / "other").exists()
    # A cancelled comparison keeps its name (Compare resumes it); a finished one is never overwritten.
    assert cs.next_name(workspace, "long") == "long"
    monkeypatch.setattr(ch, "compare", compare)  # no more holding
    with pytest.raises(InputError, match="a comparison named 'first' exists already"):
        cs.make_settings(workspace, *fields())
    status, summary = list(ch.launch(workspace, *long, poll_s=POLL_S))[-1][:2]
    assert status.startswith("**long** · completed · teacher `tiny` and 1 student(s) on 40 examples")
    assert [row[0] for row in summary] == ["tiny", "tiny-student"]


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(students=[], extra_students=" , "), "pick at least one student"),
        (dict(name="../x"), "'../x' is not a valid name"),
        (dict(name="a/b"), "'a/b' is not a valid name"),
        (dict(teacher=" "), "choose a teacher model"),
        (dict(dataset=""), "choose the data to compare on"),
        (dict(method="magic"), "unknown attribution method 'magic'"),
        (dict(limit=0), "Examples (first N) must be at least 1, not 0"),
        (dict(top_k="x"), "Top-k rationale words must be a whole number, not 'x'"),
        (dict(predict="magic"), "unknown prediction mode 'magic'"),
        (dict(target_mode="magic"), "unknown target mode 'magic'"),
    ],
)
def test_bad_settings_are_clear_errors(workspace, settings, message):
    with pytest.raises(KdvizError, match=re.escape(message)):
        cs.make_settings(workspace, *fields(**{"name": "bad", **settings}))


def test_the_prediction_mode_reaches_compare_and_the_command(workspace):
    assert cs.PREDICT_CHOICES == [("each model's default", "default"), ("letter", "letter"), ("cloze", "cloze"),
                                  ("choice-text", "choice-text")]  # fmt: skip
    default = cs.make_settings(workspace, *fields(name="modes"))
    assert default.predict is None and "--predict" not in default.command
    cloze = cs.make_settings(workspace, *fields(name="modes", predict="cloze"))
    assert cloze.predict == "cloze" and " --predict cloze " in cloze.command
    args = build_parser().parse_args(shlex.split(cloze.command)[1:])
    assert args.predict == "cloze" and args.name == "modes"
    assert default.target_mode is None and "--target-mode" not in default.command  # the data's default
    gold = cs.make_settings(workspace, *fields(name="modes", target_mode="gold"))
    assert build_parser().parse_args(shlex.split(gold.command)[1:]).target_mode == "gold"


def test_bad_data_and_models_are_clear_errors_and_free_the_panel(workspace, tmp_path):
    empty, no_question, no_answer = (tmp_path / f for f in ("empty.jsonl", "no_question.jsonl", "no_answer.jsonl"))
    empty.write_text("")
    no_question.write_text(json.dumps({"id": "1", "prompt": "q?", "answer": "a"}) + "\n")
    no_answer.write_text("".join(json.dumps({"id": f"q{i}", "question": "the cat sat?"}) + "\n" for i in range(3)))
    for settings, message in [
        (dict(dataset=str(tmp_path / "missing.jsonl")), "no such data file"),
        (dict(dataset=str(empty)), "empty.jsonl holds no training examples"),
        (dict(dataset=str(no_question)), "has no 'question' field"),
        (dict(dataset=str(no_answer)), "no example has a gold answer"),  # compare() checks, before any model
        (dict(extra_students="no-such/model"), "could not load model 'no-such/model'"),
        (dict(students=[], extra_students="tiny"), "each model can appear only once"),
    ]:
        with pytest.raises(KdvizError, match=message):
            list(ch.launch(workspace, *fields(name="bad", **settings), poll_s=POLL_S))
        assert (
            ch.cancel_comparison() == "No comparison is running." and not (workspace / "comparisons" / "bad").exists()
        )


def test_students_data_and_names_of_the_workspace(workspace, tmp_path):
    failed = workspace / "runs" / "broken"  # a failed run's checkpoint is not offered
    (failed / "checkpoint").mkdir(parents=True)
    (failed / "checkpoint" / "config.json").write_text("{}")
    (failed / "config.yaml").write_text("method: standard\nstudent: tiny-student\n")
    (failed / "status.json").write_text(json.dumps({"status": "failed"}))
    students = cs.list_students(workspace)
    assert students[0] == ("runs/s1 (standard, completed)", "runs/s1") and ("tiny-student", "tiny-student") in students
    assert all("broken" not in value for _, value in students)
    assert cs.list_data(workspace, demo_path())[0] == ("cqa_demo.jsonl (the app's examples)", str(demo_path()))
    assert cs.list_data(tmp_path / "empty", None) == [] and sc.list_comparisons(tmp_path / "empty") == []
    assert cs.parse_specs("a, b\nc,,") == ["a", "b", "c"]
    assert cs.suggest_name(tmp_path / "empty") == "comparison-1" and cs.next_name(workspace, "../x") == "comparison-1"
    broken = workspace / "comparisons" / "broken"  # an unreadable report: kept, never overwritten
    broken.mkdir(parents=True)
    (broken / "report.json").write_text("{")
    with pytest.raises(InputError, match="report.json cannot be read as a comparison report"):
        sc.comparison_view(workspace, "broken")
    with pytest.raises(InputError, match="a comparison named 'broken' exists already"):
        cs.make_settings(workspace, *fields(name="broken"))


def test_api_compare_show_filter_open_busy_and_errors(workspace, first, tmp_path, monkeypatch):
    demo = launch(teacher="tiny", port=None, workspace=workspace, prevent_thread_lock=True, quiet=True)
    try:
        one, two = Client(demo.local_url, verbose=False), Client(demo.local_url, verbose=False)
        with pytest.raises(AppError, match="pick at least one student"):
            one.predict(**{**SETTINGS, "students": [], "extra_students": ""}, api_name="/compare")
        out = one.predict(**{**SETTINGS, "name": "api"}, api_name="/compare")
        status, summary, pairwise, accuracy_plot, *_, table, html, files, command = out
        assert status.startswith("**api** · completed") and summary["headers"] == SUMMARY_COLUMNS
        assert [row[0] for row in summary["data"]] == MODELS and accuracy_plot["type"] == "plotly"
        assert table["headers"][3:] == MODELS and len(table["data"]) == 6 and "--name api" in command
        assert sorted(p.rsplit("/", 1)[1] for p in files) == ["examples.csv", "report.html", "report.json"]
        shown = one.predict(table["data"][0][0], api_name="/show_example")
        assert all(f"<b>{name}</b>" in shown for name in MODELS)
        wrong = one.predict("all_wrong", api_name="/filter_examples")
        assert [r[0] for r in wrong["data"]] == [
            r[0] for r in sc.examples_table(workspace, "api", "all_wrong")["data"]
        ]
        reopened = one.predict("first", "all", api_name="/open_comparison")
        assert (
            reopened[0].startswith("**first** · completed")
            and reopened[1]["data"] == sc.comparison_view(workspace, "first")[1]
        )
        assert one.predict("api", api_name="/after_compare")[1] == "comparison-1"

        hold_until_cancelled(monkeypatch, "teacher")
        long = {**SETTINGS, "students": [], "limit": 40, "batch_size": 1, "name": "api-long"}
        job = one.submit(**long, api_name="/compare")
        deadline = time.time() + 120
        while not any("· running · teacher tiny: " in out[0] for out in job.outputs()):
            assert time.time() < deadline and not job.done(), "no progress shown"
            time.sleep(0.1)
        busy = two.predict(**{**SETTINGS, "name": "other"}, api_name="/compare")[0]
        assert busy == "busy: a comparison (api-long) is running; wait or cancel it"
        assert two.predict(api_name="/cancel_comparison") == "Cancelling **api-long** after the current batch…"
        assert "· cancelled · " in job.result()[0] and not (workspace / "comparisons" / "other").exists()
    finally:
        demo.close()
