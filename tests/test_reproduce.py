"""bench/reproduce.py end to end at its smoke size (tiny models, the shared data): every stage is a recorded kdviz
command, the results exist, a rerun skips every stage; and the Compare panel's view of its results folder."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from kdviz.errors import InputError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_reproduce", REPO / "bench" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, dataset: str, methods: list[str], capsys, *extra: str) -> tuple[list[str], str]:
    if not (DATA / dataset / "train.jsonl").exists():
        pytest.skip(f"shared {dataset} data not present")
    argv = ["--dataset", dataset, "--size", "smoke", "--methods", *methods, "--device", "cpu", "--cache-dir",
            str(tmp_path / "cache"), "--out", str(tmp_path / "out"), *extra]  # fmt: skip
    assert _bench().main(argv) == 0
    out = tmp_path / "out" / dataset
    commands = [c for c in (out / "commands.sh").read_text().splitlines() if c.startswith("kdviz ")]
    # one teacher stage, one run per method (smoke: seed 0 only), one comparison
    assert [c.split()[1] for c in commands] == ["rationales", *["train"] * len(methods), "compare"]
    for method in methods:
        assert any(c.endswith(f"--out {out}/runs/{method}-seed0") for c in commands), method
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == [*methods, "untrained (zero-shot)"]
    assert results["n_test"] == 6 and results["setup"]["seeds"] == [0] and results["setup"]["size"] == "smoke"
    assert set(results["timings_s"]) == {"teacher", "train", "compare"}
    assert len(results["timings_s"]["train"]) == len(methods)
    assert (out / "accuracy_by_method.html").exists() and "| `standard` |" in (out / "results.md").read_text()
    timings = (out / "timings.json").read_text()
    capsys.readouterr()
    assert _bench().main(argv) == 0  # everything is complete: every stage is skipped, nothing is timed again
    log = capsys.readouterr().out
    assert log.count("[done] kdviz ") == len(commands) and "[train]" not in log and "[compare]" not in log
    assert (out / "timings.json").read_text() == timings
    assert [c for c in (out / "commands.sh").read_text().splitlines() if c.startswith("kdviz ")] == commands
    return commands, log


def test_cqa_smoke_runs_every_stage_records_it_and_resumes(tmp_path, capsys):
    commands, _ = _run(tmp_path, "cqa", ["standard", "rationale_input", "teacher_label-540b"], capsys, "--lora")
    teacher = commands[0]  # the rationale study's defaults, passed explicitly so commands.sh records them
    assert "--method saliency" in teacher and "--top-k 3" in teacher and "--span question" in teacher
    assert "--target-mode choice" in teacher
    assert "--method teacher_label --label-source data" in commands[3]
    assert all(" --lora " in c for c in commands[1:4])  # the students train LoRA adapters when asked
    assert json.loads((tmp_path / "out" / "cqa" / "results.json").read_text())["setup"]["lora"] is True
    split = tmp_path / "out" / "cqa" / "data"
    assert [len(split.joinpath(f).read_text().splitlines()) for f in ("train.jsonl", "test.jsonl")] == [12, 6]
    with pytest.raises(SystemExit, match="another split"):  # a folder is never silently reused with other sizes
        _bench().main(["--dataset", "cqa", "--size", "smoke", "--n-test", "5", "--out", str(tmp_path / "out")])


def test_nli_smoke_trains_on_the_540b_chain_of_thought_and_opens_in_the_app(tmp_path, capsys):
    commands, _ = _run(tmp_path, "anli1", ["standard", "multitask-cot"], capsys)
    assert "--method multitask --rationale-source data" in commands[2]
    test = (tmp_path / "out" / "anli1" / "data" / "test.jsonl").read_text().splitlines()
    assert {json.loads(line)["answer"] for line in test} <= {"entailment", "neutral", "contradiction"}
    results = json.loads((tmp_path / "out" / "anli1" / "results.json").read_text())
    cot, standard = results["methods"]["multitask-cot"], results["methods"]["standard"]
    assert results["anchor"] == "multitask-cot" and cot["vs_anchor"] is None  # each run tested against the anchor
    assert standard["vs_anchor"]["difference"] == pytest.approx(-cot["vs_baseline"]["difference"])
    training = results["training_rationales"]  # the 12 rationales the students trained on, as the teacher made them
    rationales = [json.loads(line) for line in (tmp_path / "out" / "anli1" / "rationales.jsonl").open()]
    assert training["n"] == 12 and training["accuracy"] == pytest.approx(sum(r["correct"] for r in rationales) / 12)
    assert training["gold_overlap"] is None and training["faithfulness"]["n"] == 12  # NLI labels are not words
    assert training["plausibility"]["n"] == 12  # against ANLI's human explanations
    summary = (tmp_path / "out" / "summary.md").read_text()  # every dataset with results, side by side
    assert (
        "- anli1: size smoke, teacher tiny, student tiny-student, n train 12, n test 6, steps 2, batch size 4"
        in summary
    )
    assert "| anli1 | 6 |" in summary and (tmp_path / "out" / "accuracy_by_dataset.html").exists()
    _check_reproduction_view(tmp_path)


def test_svamp_smoke_compares_generated_answers_graded_by_value(tmp_path, capsys):
    from kdviz.answers import is_correct
    from kdviz.compare.report import load_report

    commands, _ = _run(tmp_path, "svamp", ["standard", "teacher_label"], capsys)
    assert "--target-mode generate" in commands[0] and "--target-mode generate" in commands[-1]
    report = load_report(tmp_path / "out" / "svamp" / "compare")
    assert report.settings.target_mode == "generate" and not report.cancelled
    for model in report.models:  # every model answered each question itself, graded by the value of its answer
        assert [r.target_mode for r in model.records] == ["generate"] * 6
        assert model.correct == [is_correct(r.target, ex.answer) for r, ex in zip(model.records, report.examples,
                                                                                   strict=True)]  # fmt: skip
    assert all(ex.answer.startswith("(") for ex in report.examples)  # SVAMP's equations, e.g. "( 84.0 / 2.0 )"


def _check_reproduction_view(tmp_path: Path) -> None:
    """The Compare panel's "Reproduction results" shows the folder's table and chart (run once, on the NLI run)."""
    from kdviz.ui import reproduction_view as rv

    root = str(tmp_path / "out")
    assert rv.list_results(root) == ["anli1"] and rv.list_results(str(tmp_path / "nothing")) == []
    markdown, fig = rv.results_view(root, "anli1")
    saved = (tmp_path / "out" / "anli1" / "results.md").read_text()
    assert markdown.startswith("### anli1\n\nsize smoke, teacher tiny, student tiny-student") and saved in markdown
    assert list(fig.data[0].x) == ["standard", "multitask-cot", "untrained (zero-shot)"]
    with pytest.raises(InputError, match="does not exist"):
        rv.results_view(root, "svamp")
    with pytest.raises(InputError, match="not a valid name"):
        rv.results_view(root, "../anli1")
    shutil.copytree(tmp_path / "out" / "anli1", tmp_path / "out" / "esnli")  # a second dataset's results
    assert rv.list_results(root) == ["anli1", "esnli", rv.ALL]
    markdown, fig = rv.results_view(root, rv.ALL)
    assert markdown.startswith("### all datasets\n\nTest accuracy") and "| esnli | 6 |" in markdown
    assert [t.name for t in fig.data] == ["standard", "multitask-cot", "untrained (zero-shot)", "teacher"]
    assert list(fig.data[0].x) == ["anli1", "esnli"]


@pytest.mark.slow  # every method of the driver on tiny models: about 65 s on 2 cores
def test_cqa_smoke_every_method(tmp_path, capsys):
    methods = list(_bench().METHODS)
    _run(tmp_path, "cqa", methods, capsys)
