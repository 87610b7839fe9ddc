"""Aggregate a comparison of students trained with several methods and seeds into a results table: test accuracy
by method (mean ± standard deviation over seeds), paired tests against a baseline method, and the teacher's
accuracy and attribution-overlap statistics. Pure functions of a `Comparison`; the reproduction of the seed
paper (`bench/reproduce_cqa.py`) writes its table with them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kdviz.format import MISSING, percent
from kdviz.rationales.stats import PlausibilityMeans
from kdviz.records import Record

from .records import Comparison
from .stats import bootstrap_ci, mcnemar, sign_flip_p


@dataclass(frozen=True)
class PairedDifference(Record):
    """A method's accuracy gain over a baseline on the same examples, with its paired-bootstrap 95% interval and
    two-sided sign-flip permutation p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class VsBaseline(PairedDifference):
    """The paired difference over seeds averaged, and McNemar's p of each seed's run against the baseline's."""

    mcnemar_p_by_seed: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "mcnemar_p_by_seed", tuple(self.mcnemar_p_by_seed))


@dataclass(frozen=True)
class TeacherRow(Record):
    """The teacher's line of the results: accuracy with its interval, and its rationales' overlap statistics."""

    name: str
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    gold_overlap: float | None
    distractor_overlap: float | None
    plausibility: PlausibilityMeans | None
    gold_overlap_by_correctness: dict[str, float | None] = field(default_factory=dict)  # "correct", "incorrect"

    def __post_init__(self) -> None:
        if isinstance(self.plausibility, dict):
            object.__setattr__(self, "plausibility", PlausibilityMeans.from_dict(self.plausibility))


@dataclass(frozen=True)
class MethodRow(Record):
    """One method's line: its runs (one per seed), their accuracies, mean and standard deviation, and the paired
    tests against the baseline (None for the baseline itself, or when the seeds do not match)."""

    runs: tuple[str, ...]
    accuracies: tuple[float, ...]
    mean: float
    sd: float
    agreement_with_teacher: float
    teacher_at_test_time: bool
    accuracy_no_rationale_mean: float | None = None
    vs_baseline: VsBaseline | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "accuracies", tuple(self.accuracies))
        if isinstance(self.vs_baseline, dict):
            object.__setattr__(self, "vs_baseline", VsBaseline.from_dict(self.vs_baseline))


@dataclass(frozen=True)
class ResultsTable(Record):
    """The results table: the test split's size, the baseline method, the teacher's line and one line per method
    (in the order the comparison's students appear). `to_dict()` is the table of bench's results.json."""

    n_test: int
    baseline: str
    teacher: TeacherRow
    methods: dict[str, MethodRow]

    def __post_init__(self) -> None:
        if isinstance(self.teacher, dict):
            object.__setattr__(self, "teacher", TeacherRow.from_dict(self.teacher))
        rows = {k: v if isinstance(v, MethodRow) else MethodRow.from_dict(v) for k, v in self.methods.items()}
        object.__setattr__(self, "methods", rows)


def paired_difference(
    method: Sequence[Sequence[bool]], baseline: Sequence[Sequence[bool]], seed: int = 0
) -> PairedDifference:
    """Returns the accuracy difference of a method over a baseline on the same examples, seeds averaged.

    `method[s][i]` is run s's correctness on example i (the same for `baseline`; run s of each share a seed). Each
    example's difference d_i is the mean over seeds of method minus baseline correctness; the mean of d is the
    accuracy gain. Its 95% interval resamples examples (paired bootstrap, `scipy.stats.bootstrap`); its p-value is
    a sign-flip permutation test (under "no difference", each d_i is as likely negated; `scipy.stats.
    permutation_test`), two-sided.
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
    return PairedDifference(observed, low, high, sign_flip_p(diffs, seed=seed))


def method_table(comparison: Comparison, method_of: Mapping[str, str], baseline: str = "standard") -> ResultsTable:
    """Returns the results table of a comparison whose students are runs of methods.

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
    overlap = t.overlap
    by = overlap.by_correctness
    teacher_row = TeacherRow(
        name=teacher.name, accuracy=t.accuracy, ci_low=t.ci_low, ci_high=t.ci_high,
        gold_overlap=overlap.gold_overlap, distractor_overlap=overlap.distractor_overlap,
        plausibility=overlap.plausibility,
        gold_overlap_by_correctness={"correct": by.correct.gold_overlap, "incorrect": by.incorrect.gold_overlap},
    )  # fmt: skip
    base = [[bool(c) for c in b.correct] for b in runs[baseline]]
    methods: dict[str, MethodRow] = {}
    for method, models in runs.items():
        rows = [comparison.summary[m.name] for m in models]
        accuracies = [r.accuracy for r in rows]
        no_rationale = [r.accuracy_no_rationale for r in rows]
        vs = None
        if method != baseline and len(models) == len(base):
            graded = [[bool(c) for c in m.correct] for m in models]
            vs = VsBaseline(
                **paired_difference(graded, base).to_dict(),
                mcnemar_p_by_seed=tuple(mcnemar(m, b).p_value for m, b in zip(graded, base, strict=True)),
            )
        methods[method] = MethodRow(
            runs=tuple(m.name for m in models),
            accuracies=tuple(accuracies),
            mean=statistics.fmean(accuracies),
            sd=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            agreement_with_teacher=statistics.fmean(r.agreement_with_teacher for r in rows),
            teacher_at_test_time=any(m.teacher_at_test_time for m in models),
            accuracy_no_rationale_mean=statistics.fmean(no_rationale) if None not in no_rationale else None,
            vs_baseline=vs,
        )
    return ResultsTable(len(comparison.examples), baseline, teacher_row, methods)


def results_markdown(table: ResultsTable) -> str:
    """Returns the results table (and the teacher's statistics) as Markdown."""
    teacher, baseline_name = table.teacher, table.baseline
    lines = [
        f"Test split: {table.n_test} questions. Accuracy is mean ± standard deviation over seeds; Δ is the "
        f"gain over `{baseline_name}` with its paired-bootstrap 95% interval and sign-flip permutation p-value "
        "(examples paired, seeds averaged); McNemar p is the exact test of each seed's run against the "
        f"`{baseline_name}` run of the same seed.",
        "",
        f"| method | test accuracy | per seed | Δ vs {baseline_name} (95% CI) | p | McNemar p by seed "
        "| agrees w/ teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in table.methods.items():
        name = f"`{method}`" + (" (teacher at test time)" if row.teacher_at_test_time else "")
        seeds = ", ".join(f"{100 * a:.1f}" for a in row.accuracies)
        vs = row.vs_baseline
        delta = f"{100 * vs.difference:+.1f} ({100 * vs.ci_low:+.1f}, {100 * vs.ci_high:+.1f})" if vs else MISSING
        p = f"{vs.p_value:.3f}" if vs else MISSING
        mcn = ", ".join(f"{x:.3f}" for x in vs.mcnemar_p_by_seed) if vs else MISSING
        lines.append(f"| {name} | {percent(row.mean, row.sd)} | {seeds} | {delta} | {p} | {mcn} | "
                     f"{percent(row.agreement_with_teacher)} |")  # fmt: skip
        if row.accuracy_no_rationale_mean is not None:
            lines.append(f"| `{method}` without the teacher's rationale | {percent(row.accuracy_no_rationale_mean)}"
                         " | | | | | |")  # fmt: skip
    plaus = teacher.plausibility
    by = teacher.gold_overlap_by_correctness
    lines += [
        f"| teacher `{teacher.name}` | {percent(teacher.accuracy)} (95% CI {percent(teacher.ci_low)}–"
        f"{percent(teacher.ci_high)}) | | | | | |",
        "",
        f"Teacher's top-k words on the test split: they contain a word of the gold answer in "
        f"{percent(teacher.gold_overlap)} of the questions (the paper's 68% statistic; "
        f"{percent(by.get('correct'))} when the teacher is right, {percent(by.get('incorrect'))} when wrong), while a "
        f"wrong choice is hit {percent(teacher.distractor_overlap)} of the time on average; against the human (CoS-E) "
        f"rationales: precision {percent(plaus.precision if plaus else None)}, recall "
        f"{percent(plaus.recall if plaus else None)}, F1 {percent(plaus.f1 if plaus else None)}.",
    ]
    return "\n".join(lines) + "\n"
