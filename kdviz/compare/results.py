"""Aggregate a comparison of students trained with several methods and seeds into a results table: test accuracy
by method (mean ± standard deviation over seeds), paired tests against a baseline method, and the teacher's
accuracy and attribution-overlap statistics. Pure functions of a `Comparison`; the reproduction of the seed
paper (`bench/reproduce_cqa.py`) writes its table with them.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .run import Comparison
from .stats import bootstrap_ci, mcnemar

PERMUTATIONS = 10000


def paired_difference(method: Sequence[Sequence[bool]], baseline: Sequence[Sequence[bool]], seed: int = 0) -> dict:
    """Returns the accuracy difference of a method over a baseline on the same examples, seeds averaged.

    `method[s][i]` is run s's correctness on example i (the same for `baseline`; run s of each share a seed). Each
    example's difference d_i is the mean over seeds of method minus baseline correctness; the mean of d is the
    accuracy gain. Its 95% interval resamples examples (paired bootstrap); its p-value is a sign-flip permutation
    test (under "no difference", each d_i is as likely negated), two-sided.
    """
    if not method or len(method) != len(baseline):
        raise ValueError("the method and the baseline need the same number of seeds (at least one)")
    n = len(method[0])
    if any(len(run) != n for run in (*method, *baseline)):
        raise ValueError("every run must answer the same examples")
    diffs = [statistics.fmean(float(m[i]) - float(b[i]) for m, b in zip(method, baseline, strict=True))
             for i in range(n)]  # fmt: skip
    observed = statistics.fmean(diffs) if diffs else 0.0
    low, high = bootstrap_ci(diffs, seed=seed) or (0.0, 0.0)
    rng = random.Random(seed)
    nonzero = [d for d in diffs if d]
    extreme = sum(
        abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) >= abs(sum(nonzero)) - 1e-12
        for _ in range(PERMUTATIONS)
    ) if nonzero else PERMUTATIONS  # fmt: skip
    return {"difference": observed, "ci_low": low, "ci_high": high, "p_value": (extreme + 1) / (PERMUTATIONS + 1)}


def method_table(comparison: Comparison, method_of: Mapping[str, str], baseline: str = "standard") -> dict[str, Any]:
    """Returns {"teacher": ..., "methods": {method: ...}} from a comparison whose students are runs of methods.

    `method_of` maps each student's name in the comparison to its method; runs of one method are matched to the
    baseline's runs in the order they appear (run order = seed order), for the per-seed McNemar tests.
    """
    teacher, students = comparison.models[0], comparison.models[1:]
    runs: dict[str, list] = {}
    for student in students:
        if student.name not in method_of:
            raise ValueError(f"no method given for the student {student.name!r}")
        runs.setdefault(method_of[student.name], []).append(student)
    if baseline not in runs:
        raise ValueError(f"the comparison has no {baseline!r} runs to test against")
    t = comparison.summary[teacher.name]
    overlap = t["overlap"]
    out: dict[str, Any] = {
        "n_test": len(comparison.examples),
        "baseline": baseline,
        "teacher": {
            "name": teacher.name, "accuracy": t["accuracy"], "ci_low": t["ci_low"], "ci_high": t["ci_high"],
            "gold_overlap": overlap.get("gold_overlap"), "distractor_overlap": overlap.get("distractor_overlap"),
            "plausibility": overlap.get("plausibility"),
            "gold_overlap_by_correctness": {k: v.get("gold_overlap") for k, v in
                                            (overlap.get("by_correctness") or {}).items()},
        },
        "methods": {},
    }  # fmt: skip
    base = runs[baseline]
    for method, models in runs.items():
        accuracies = [comparison.summary[m.name]["accuracy"] for m in models]
        row: dict[str, Any] = {
            "runs": [m.name for m in models],
            "accuracies": accuracies,
            "mean": statistics.fmean(accuracies),
            "sd": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "agreement_with_teacher": statistics.fmean(comparison.summary[m.name]["agreement_with_teacher"]
                                                       for m in models),
            "teacher_at_test_time": any(m.teacher_at_test_time for m in models),
        }  # fmt: skip
        no_rationale = [comparison.summary[m.name].get("accuracy_no_rationale") for m in models]
        if all(a is not None for a in no_rationale):
            row["accuracy_no_rationale_mean"] = statistics.fmean(no_rationale)
        if method != baseline and len(models) == len(base):
            graded = [[bool(c) for c in m.correct] for m in models]
            row["vs_baseline"] = {
                **paired_difference(graded, [[bool(c) for c in b.correct] for b in base]),
                "mcnemar_p_by_seed": [mcnemar(m, [bool(c) for c in b.correct])["p_value"]
                                      for m, b in zip(graded, base, strict=True)],
            }  # fmt: skip
        out["methods"][method] = row
    return out


def _pct(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.1f}%" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def results_markdown(results: Mapping[str, Any]) -> str:
    """Returns the results table (and the teacher's statistics) as Markdown."""
    teacher, baseline_name = results["teacher"], results["baseline"]
    lines = [
        f"Test split: {results['n_test']} questions. Accuracy is mean ± standard deviation over seeds; Δ is the "
        f"gain over `{baseline_name}` with its paired-bootstrap 95% interval and sign-flip permutation p-value "
        "(examples paired, seeds averaged); McNemar p is the exact test of each seed's run against the "
        f"`{baseline_name}` run of the same seed.",
        "",
        f"| method | test accuracy | per seed | Δ vs {baseline_name} (95% CI) | p | McNemar p by seed "
        "| agrees w/ teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in results["methods"].items():
        name = f"`{method}`" + (" (teacher at test time)" if row["teacher_at_test_time"] else "")
        seeds = ", ".join(f"{100 * a:.1f}" for a in row["accuracies"])
        vs = row.get("vs_baseline")
        delta = (f"{100 * vs['difference']:+.1f} ({100 * vs['ci_low']:+.1f}, {100 * vs['ci_high']:+.1f})"
                 if vs else "—")  # fmt: skip
        p = f"{vs['p_value']:.3f}" if vs else "—"
        mcn = ", ".join(f"{x:.3f}" for x in vs["mcnemar_p_by_seed"]) if vs else "—"
        lines.append(f"| {name} | {_pct(row['mean'], row['sd'])} | {seeds} | {delta} | {p} | {mcn} | "
                     f"{_pct(row['agreement_with_teacher'])} |")  # fmt: skip
        if "accuracy_no_rationale_mean" in row:
            lines.append(f"| `{method}` without the teacher's rationale | {_pct(row['accuracy_no_rationale_mean'])}"
                         " | | | | | |")  # fmt: skip
    plaus = teacher.get("plausibility") or {}
    by = teacher.get("gold_overlap_by_correctness") or {}
    lines += [
        f"| teacher `{teacher['name']}` | {_pct(teacher['accuracy'])} (95% CI {_pct(teacher['ci_low'])}–"
        f"{_pct(teacher['ci_high'])}) | | | | | |",
        "",
        f"Teacher's top-k words on the test split: they contain a word of the gold answer in "
        f"{_pct(teacher['gold_overlap'])} of the questions (the paper's 68% statistic; "
        f"{_pct(by.get('correct'))} when the teacher is right, {_pct(by.get('incorrect'))} when wrong), while a "
        f"wrong choice is hit {_pct(teacher['distractor_overlap'])} of the time on average; against the human (CoS-E) rationales: precision "
        f"{_pct(plaus.get('precision'))}, recall {_pct(plaus.get('recall'))}, F1 {_pct(plaus.get('f1'))}.",
    ]
    return "\n".join(lines) + "\n"
