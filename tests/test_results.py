"""The results tables of the reproduction: paired tests across seeds on hand-made predictions with known answers,
the table by method (against the baseline and an anchor), its Markdown and chart, and several datasets side by side
(bench/reproduce.py end to end is tests/test_reproduce.py)."""

import dataclasses
import json
from itertools import product

import pytest

from kdviz.compare.records import ComparisonSettings
from kdviz.compare.results import (
    PairedDifference,
    ResultsTable,
    datasets_markdown,
    method_table,
    paired_difference,
    results_markdown,
)
from kdviz.compare.run import Comparison, ModelAnswers, summarize_models
from kdviz.compare.viz import SUMMARY_COLUMNS, datasets_accuracy_figure, method_accuracy_figure, summary_rows
from kdviz.rationale_records import RationaleRecord
from kdviz.rationales.stats import FaithfulnessMeans, summarize
from kdviz.records import Example

EXAMPLES = [
    Example(
        id=f"q{i}",
        task="mcqa",
        question=f"where is thing {i}?",
        choices=("box", "shelf"),
        answer="box",
        human_rationale="thing box",
    )  # fmt: skip
    for i in range(20)
]


def _model(name: str, role: str, method: str | None, correct: list[bool]) -> ModelAnswers:
    records = []
    for ex, ok in zip(EXAMPLES, correct, strict=True):
        words = tuple(ex.question.split())
        offsets, start = [], 0
        for w in words:
            start = ex.question.index(w, start)
            offsets.append((start, start + len(w)))
            start += len(w)
        answer = "box" if ok else "shelf"
        records.append(RationaleRecord(ex, ex.question, answer, "choice", answer, ok, words, tuple(offsets),
                                       (0.1, 0.5, 0.2, 0.9), (False,) * 4, (1, 3), "is thing"))  # fmt: skip
    return ModelAnswers(name, role, method, method == "rationale_input", tuple(records))


def _comparison(runs: dict[str, list[list[bool]]]) -> Comparison:
    models = [_model("teacher", "teacher", None, [i % 4 != 0 for i in range(20)])]
    for method, seeds in runs.items():
        models += [_model(f"{method}-seed{s}", "student", method, c) for s, c in enumerate(seeds)]
    summary, pairwise = summarize_models(models, EXAMPLES, 2)
    settings = ComparisonSettings("teacher", tuple(m.name for m in models[1:]), "input_x_gradient", 2, len(EXAMPLES))
    return Comparison(tuple(EXAMPLES), tuple(models), settings, summary, tuple(pairwise))


def test_the_summary_shows_faithfulness_against_random_words():
    comparison = _comparison({"standard": [[True] * 20]})
    comp, suff = SUMMARY_COLUMNS.index("comprehensiveness"), SUMMARY_COLUMNS.index("sufficiency")
    assert [row[comp : suff + 1] for row in summary_rows(comparison)] == [["—", "—"]] * 2  # not measured
    means = FaithfulnessMeans(n=20, p_full=0.9, comprehensiveness=0.31, sufficiency=0.05,
                              random_comprehensiveness=0.12, random_sufficiency=0.2)  # fmt: skip
    teacher = comparison.summary["teacher"]
    measured = dataclasses.replace(teacher, overlap=dataclasses.replace(teacher.overlap, faithfulness=means))
    rows = summary_rows(dataclasses.replace(comparison, summary={**comparison.summary, "teacher": measured}))
    assert rows[0][comp : suff + 1] == ["0.310 (random 0.120)", "0.050 (random 0.200)"]
    assert rows[1][comp : suff + 1] == ["—", "—"] and len(rows[0]) == len(SUMMARY_COLUMNS)


def test_paired_difference_known_cases():
    same = [[True, False, True, False] * 5] * 3
    assert paired_difference(same, same) == PairedDifference(difference=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0)
    better = [[True] * 20] * 3
    worse = [[False] * 10 + [True] * 10] * 3
    up = paired_difference(better, worse)
    assert up.difference == pytest.approx(0.5) and 0 < up.ci_low <= 0.5 <= up.ci_high
    # 10 of 10 discordant examples favour the method: 2 of the 2**10 sign flips are as extreme (counted exactly).
    assert up.p_value == pytest.approx(2 / 2**10, rel=1e-9)
    down = paired_difference(worse, better)
    assert down.difference == pytest.approx(-0.5) and down.p_value == pytest.approx(up.p_value, rel=1e-9)
    assert (down.ci_low, down.ci_high) == pytest.approx((-up.ci_high, -up.ci_low), abs=0.05)
    # One seed better on 2 examples, another worse on the same 2: seeds average out.
    mixed = paired_difference([[True] * 2 + [False] * 18, [False] * 20], [[False] * 20, [True] * 2 + [False] * 18])
    assert mixed.difference == 0.0 and mixed.p_value == 1.0
    with pytest.raises(ValueError):
        paired_difference([[True]], [[True], [False]])
    with pytest.raises(ValueError):
        paired_difference([[True, False]], [[True]])


def test_the_permutation_p_value_counts_every_sign_flip_of_seed_averaged_differences():
    # 3 seeds: each example's difference is a multiple of 1/3; 7 are non-zero, so all 2**7 flips are counted.
    method = [[i < 12 for i in range(20)], [i < 10 or i == 15 for i in range(20)], [i < 11 for i in range(20)]]
    baseline = [[i < 8 for i in range(20)], [i < 9 for i in range(20)], [i < 7 or i == 14 for i in range(20)]]
    result = paired_difference(method, baseline)
    diffs = [sum(float(m[i]) - float(b[i]) for m, b in zip(method, baseline, strict=True)) / 3 for i in range(20)]
    nonzero = [d for d in diffs if d]
    assert len(nonzero) == 7 and result.difference == pytest.approx(sum(diffs) / 20)
    flips = [abs(sum(s * d for s, d in zip(signs, nonzero, strict=True))) for signs in product((1, -1), repeat=7)]
    expected = sum(f >= abs(sum(nonzero)) - 1e-12 for f in flips) / len(flips)
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert result.ci_low < result.difference < result.ci_high


def test_method_table_means_seeds_and_tests_against_standard():
    standard = [[i < 10 for i in range(20)], [i < 12 for i in range(20)], [i < 8 for i in range(20)]]
    multitask = [[i < 16 for i in range(20)], [i < 18 for i in range(20)], [i < 17 for i in range(20)]]
    comparison = _comparison({"standard": standard, "multitask": multitask})
    method_of = {m.name: m.method for m in comparison.models[1:]}
    table = method_table(comparison, method_of)
    assert table.n_test == 20 and table.teacher.accuracy == pytest.approx(0.75)
    assert table.teacher.plausibility.n == 20  # the examples carry human rationales
    std, mt = table.methods["standard"], table.methods["multitask"]
    assert std.accuracies == pytest.approx([0.5, 0.6, 0.4]) and std.mean == pytest.approx(0.5)
    assert std.sd == pytest.approx(0.1) and std.vs_baseline is None and std.accuracy_no_rationale_mean is None
    assert mt.mean == pytest.approx(0.85) and mt.vs_baseline.difference == pytest.approx(0.35)
    assert mt.vs_baseline.p_value < 0.01
    # Seed s of multitask is tested against seed s of standard: 6, 6 and 9 discordant examples, all one way.
    assert mt.vs_baseline.mcnemar_p_by_seed == pytest.approx([2 / 2**6, 2 / 2**6, 2 / 2**9])
    assert ResultsTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table  # results.json round trip
    markdown = results_markdown(table)
    assert "| `multitask` | 85.0% ± 5.0 | 80.0, 90.0, 85.0 | +35.0" in markdown
    assert "| teacher `teacher` | 75.0% (95% CI 55.0%–90.0%) | | | | | |\n" in markdown
    fig = method_accuracy_figure(table)
    assert list(fig.data[0].x) == ["standard", "multitask"] and list(fig.data[0].error_y.array) == [std.sd, mt.sd]
    assert len(fig.data[1].y) == 6  # every seed drawn as a dot
    with pytest.raises(ValueError, match="no 'standard' runs"):
        method_table(comparison, {name: "multitask" for name in method_of})
    with pytest.raises(ValueError, match="no method given"):
        method_table(comparison, {})


def test_every_method_is_also_tested_against_the_anchor_and_tables_sit_side_by_side():
    standard = [[i < 10 for i in range(20)]] * 2
    cot = [[i < 14 for i in range(20)]] * 2  # 4 examples better than standard on both seeds
    multitask = [[i < 12 for i in range(20)], [i < 16 for i in range(20)]]
    comparison = _comparison({"standard": standard, "multitask": multitask, "multitask-cot": cot})
    method_of = {m.name: m.method for m in comparison.models[1:]}
    training = summarize([(("thing", "box"), EXAMPLES[0], True), (("where",), EXAMPLES[1], False)])
    table = method_table(comparison, method_of, anchor="multitask-cot", training_rationales=training)
    mt, std, anchor = table.methods["multitask"], table.methods["standard"], table.methods["multitask-cot"]
    assert mt.vs_baseline.difference == pytest.approx(0.2) and mt.vs_anchor.difference == pytest.approx(0.0)
    assert std.vs_anchor.difference == pytest.approx(-0.2) and anchor.vs_anchor is None
    assert anchor.vs_baseline.mcnemar_p_by_seed == pytest.approx([2 / 2**4] * 2)
    assert ResultsTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    markdown = results_markdown(table)
    assert "| Δ vs standard (95% CI) | p | McNemar p by seed | Δ vs multitask-cot (95% CI) | p |" in markdown
    assert "| `standard` | 50.0% ± 0.0 | 50.0, 50.0 | — | — | — | -20.0 (" in markdown
    assert "| `multitask-cot` | 70.0% ± 0.0 | 70.0, 70.0 | +20.0 (" in markdown and "| — | — | 55.0% |" in markdown
    assert "training split (2 examples; the teacher is right on 50.0%)" in markdown
    assert "contain a word of the gold answer in 50.0%" in markdown
    with pytest.raises(ValueError, match="no 'cot' runs"):
        method_table(comparison, method_of, anchor="cot")
    alone = method_table(_comparison({"standard": standard[:1], "multitask": multitask[:1]}), {
        "standard-seed0": "standard", "multitask-seed0": "multitask"})  # fmt: skip
    side = datasets_markdown({"cqa": table, "anli1": alone})
    assert "| dataset | test n | teacher | `standard` | `multitask` | `multitask-cot` |" in side
    assert "| anli1 | 20 | 75.0% | 50.0% ± 0.0 | 60.0% ± 0.0 | — |" in side
    assert (
        "| cqa (vs `standard` / `multitask-cot`) | +20.0 (p " in side and "| anli1 (vs `standard`) | +10.0 (p " in side
    )
    fig = datasets_accuracy_figure({"cqa": table, "anli1": alone})
    assert [t.name for t in fig.data] == ["standard", "multitask", "multitask-cot", "teacher"]
    assert list(fig.data[1].y) == pytest.approx([0.7, 0.6]) and list(fig.data[2].y) == [0.7, None]
