"""Aggregate a comparison of students trained with several methods and seeds into a results table: test accuracy
by method (mean ± standard deviation over seeds), paired tests against a baseline method (and, optionally, against
an anchor method, e.g. Distilling step-by-step), and the teacher's accuracy and attribution statistics. Pure
functions of a `Comparison`; the reproduction of the seed paper (`bench/reproduce.py`) writes its tables with them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdviz.errors import InputError
from kdviz.format import MISSING, percent
from kdviz.rationales.stats import PlausibilityMeans, RationaleStats
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
    tests against the baseline and the anchor (None for the method itself, no anchor, or when the seeds do not
    match)."""

    runs: tuple[str, ...]
    accuracies: tuple[float, ...]
    mean: float
    sd: float
    agreement_with_teacher: float
    teacher_at_test_time: bool
    accuracy_no_rationale_mean: float | None = None
    vs_baseline: VsBaseline | None = None
    vs_anchor: VsBaseline | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "accuracies", tuple(self.accuracies))
        for name in ("vs_baseline", "vs_anchor"):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, VsBaseline.from_dict(getattr(self, name)))


@dataclass(frozen=True)
class ResultsTable(Record):
    """The results table: the test split's size, the baseline method, the teacher's line and one line per method
    (in the order the comparison's students appear); the anchor method every method is also tested against, and
    the statistics of the teacher's rationales the students trained on, when given. `to_dict()` is the table of
    bench's results.json."""

    n_test: int
    baseline: str
    teacher: TeacherRow
    methods: dict[str, MethodRow]
    anchor: str | None = None
    training_rationales: RationaleStats | None = None

    def __post_init__(self) -> None:
        if isinstance(self.teacher, dict):
            object.__setattr__(self, "teacher", TeacherRow.from_dict(self.teacher))
        if isinstance(self.training_rationales, dict):
            object.__setattr__(self, "training_rationales", RationaleStats.from_dict(self.training_rationales))
        rows = {k: v if isinstance(v, MethodRow) else MethodRow.from_dict(v) for k, v in self.methods.items()}
        object.__setattr__(self, "methods", rows)


SETUP_KEYS = ("size", "teacher", "student", "n_train", "n_test", "steps", "batch_size", "seeds", "target_mode")


def read_results(path: str | Path) -> tuple[dict, ResultsTable]:
    """Returns (the run's setup, the results table) of a results.json that bench/reproduce.py wrote.

    Raises:
        InputError: the file is not JSON, or not such a results.json.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return data.get("setup", {}), ResultsTable.from_dict(data)
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"{path} is not a results.json of bench/reproduce.py ({exc})") from exc


def setup_line(setup: Mapping) -> str:
    """Returns the setup of a results.json in one line ("size cpu, teacher ..., seeds [0, 1, 2]")."""
    return ", ".join(f"{k.replace('_', ' ')} {setup[k]}" for k in SETUP_KEYS if setup.get(k) is not None)


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


def method_table(
    comparison: Comparison,
    method_of: Mapping[str, str],
    baseline: str = "standard",
    anchor: str | None = None,
    training_rationales: RationaleStats | None = None,
) -> ResultsTable:
    """Returns the results table of a comparison whose students are runs of methods.

    `method_of` maps each student's name in the comparison to its method; runs of one method are matched to the
    baseline's (and the anchor's) runs in the order they appear (run order = seed order), for the per-seed McNemar
    tests. `training_rationales` (the statistics of the rationales the students trained on) is carried along.
    """
    teacher, students = comparison.models[0], comparison.models[1:]
    runs: dict[str, list] = {}
    for student in students:
        if student.name not in method_of:
            raise ValueError(f"no method given for the student {student.name!r}")
        runs.setdefault(method_of[student.name], []).append(student)
    for reference in filter(None, (baseline, anchor)):
        if reference not in runs:
            raise ValueError(f"the comparison has no {reference!r} runs to test against")
    t = comparison.summary[teacher.name]
    overlap = t.overlap
    by = overlap.by_correctness
    teacher_row = TeacherRow(
        name=teacher.name, accuracy=t.accuracy, ci_low=t.ci_low, ci_high=t.ci_high,
        gold_overlap=overlap.gold_overlap, distractor_overlap=overlap.distractor_overlap,
        plausibility=overlap.plausibility,
        gold_overlap_by_correctness={"correct": by.correct.gold_overlap, "incorrect": by.incorrect.gold_overlap},
    )  # fmt: skip
    graded = {method: [[bool(c) for c in m.correct] for m in models] for method, models in runs.items()}
    methods: dict[str, MethodRow] = {}
    for method, models in runs.items():
        rows = [comparison.summary[m.name] for m in models]
        accuracies = [r.accuracy for r in rows]
        no_rationale = [r.accuracy_no_rationale for r in rows]
        methods[method] = MethodRow(
            runs=tuple(m.name for m in models),
            accuracies=tuple(accuracies),
            mean=statistics.fmean(accuracies),
            sd=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            agreement_with_teacher=statistics.fmean(r.agreement_with_teacher for r in rows),
            teacher_at_test_time=any(m.teacher_at_test_time for m in models),
            accuracy_no_rationale_mean=statistics.fmean(no_rationale) if None not in no_rationale else None,
            vs_baseline=_versus(graded, method, baseline),
            vs_anchor=_versus(graded, method, anchor),
        )
    return ResultsTable(len(comparison.examples), baseline, teacher_row, methods, anchor, training_rationales)


def _versus(graded: Mapping[str, list[list[bool]]], method: str, reference: str | None) -> VsBaseline | None:
    """The paired tests of a method's runs against a reference method's, seed by seed; None for the reference
    itself, no reference, or runs whose seeds do not match."""
    if reference is None or method == reference or len(graded[method]) != len(graded[reference]):
        return None
    runs, ref = graded[method], graded[reference]
    return VsBaseline(
        **paired_difference(runs, ref).to_dict(),
        mcnemar_p_by_seed=tuple(mcnemar(m, b).p_value for m, b in zip(runs, ref, strict=True)),
    )


def results_markdown(table: ResultsTable) -> str:
    """Returns the results table (and the teacher's statistics) as Markdown."""
    teacher, base, anchor = table.teacher, table.baseline, table.anchor
    lines = [
        f"Test split: {table.n_test} questions. Accuracy is mean ± standard deviation over seeds; Δ is the gain "
        f"over `{base}`" + (f" (and over `{anchor}`)" if anchor else "") + " with its paired-bootstrap 95% interval "
        "and sign-flip permutation p-value (examples paired, seeds averaged); McNemar p is the exact test of each "
        f"seed's run against the `{base}` run of the same seed.",
        "",
        f"| method | test accuracy | per seed | Δ vs {base} (95% CI) | p | McNemar p by seed "
        + (f"| Δ vs {anchor} (95% CI) | p " if anchor else "")
        + "| agrees w/ teacher |",
        "|---|---|---|---|---|---|" + ("---|---|" if anchor else "") + "---|",
    ]
    blank = " | | | | | |" + (" | |" if anchor else "")
    for method, row in table.methods.items():
        name = f"`{method}`" + (" (teacher at test time)" if row.teacher_at_test_time else "")
        seeds = ", ".join(f"{100 * a:.1f}" for a in row.accuracies)
        vs = row.vs_baseline
        mcn = ", ".join(f"{x:.3f}" for x in vs.mcnemar_p_by_seed) if vs else MISSING
        versus_anchor = f" {_delta(row.vs_anchor)} |" if anchor else ""
        lines.append(f"| {name} | {percent(row.mean, row.sd)} | {seeds} | {_delta(vs)} | {mcn} |{versus_anchor} "
                     f"{percent(row.agreement_with_teacher)} |")  # fmt: skip
        if row.accuracy_no_rationale_mean is not None:
            lines.append(f"| `{method}` without the teacher's rationale | {percent(row.accuracy_no_rationale_mean)}"
                         + blank)  # fmt: skip
    lines += [
        f"| teacher `{teacher.name}` | {percent(teacher.accuracy)} (95% CI {percent(teacher.ci_low)}–"
        f"{percent(teacher.ci_high)})" + blank,
        "",
        _teacher_test_sentence(teacher),
    ]
    if table.training_rationales is not None:
        lines += ["", _training_sentence(table.training_rationales)]
    return "\n".join(lines) + "\n"


def _delta(vs: PairedDifference | None) -> str:
    """The cells "Δ (95% CI) | p" of a paired difference, in points."""
    if vs is None:
        return f"{MISSING} | {MISSING}"
    return f"{100 * vs.difference:+.1f} ({100 * vs.ci_low:+.1f}, {100 * vs.ci_high:+.1f}) | {vs.p_value:.3f}"


def _plausibility(plaus: PlausibilityMeans | None) -> str:
    if plaus is None:
        return "no human rationales to compare with"
    return (f"against the human rationales (n = {plaus.n}): precision {percent(plaus.precision)}, recall "
            f"{percent(plaus.recall)}, F1 {percent(plaus.f1)}")  # fmt: skip


def _teacher_test_sentence(teacher: TeacherRow) -> str:
    by = teacher.gold_overlap_by_correctness
    overlap = ""
    if teacher.gold_overlap is not None:  # None where the choices are labels, not words of the text (NLI)
        overlap = (
            f"they contain a word of the gold answer in {percent(teacher.gold_overlap)} of the questions (the "
            f"paper's 68% statistic; {percent(by.get('correct'))} when the teacher is right, "
            f"{percent(by.get('incorrect'))} when wrong), while a wrong choice is hit "
            f"{percent(teacher.distractor_overlap)} of the time on average; "
        )
    return f"Teacher's top-k words on the test split: {overlap}{_plausibility(teacher.plausibility)}."


def _training_sentence(stats: RationaleStats) -> str:
    """The rationales the students trained on: the teacher's accuracy on them, overlap, plausibility and ERASER
    faithfulness (against as many random words)."""
    parts = [f"The teacher's rationales on the training split ({stats.n} examples; the teacher is right on "
             f"{percent(stats.accuracy)})"]  # fmt: skip
    if stats.gold_overlap is not None:
        parts.append(f"they contain a word of the gold answer in {percent(stats.gold_overlap)} (a wrong choice "
                     f"{percent(stats.distractor_overlap)})")  # fmt: skip
    parts.append(_plausibility(stats.plausibility))
    f = stats.faithfulness
    if f is not None:
        parts.append(
            f"faithfulness over {f.n}: comprehensiveness {f.comprehensiveness:.3f} (random words "
            f"{f.random_comprehensiveness:.3f}, higher is more faithful), sufficiency {f.sufficiency:.3f} (random "
            f"{f.random_sufficiency:.3f}, lower is more faithful), the teacher's probability of its answer "
            f"{f.p_full:.3f}"
        )
    return parts[0] + ": " + "; ".join(parts[1:]) + "."


def datasets_markdown(tables: Mapping[str, ResultsTable]) -> str:
    """Returns the results of several datasets side by side as Markdown: test accuracy by method (mean ± sd over
    seeds) with the teacher's, then each method's gain over the baseline (and the anchor) with its p-value."""
    methods = list(dict.fromkeys(m for t in tables.values() for m in t.methods))
    head = "| dataset | test n | teacher | " + " | ".join(f"`{m}`" for m in methods) + " |"
    rule = "|---|---|---|" + "---|" * len(methods)
    lines = ["Test accuracy, mean ± sd over seeds:", "", head, rule]
    for name, t in tables.items():
        cells = [percent(t.methods[m].mean, t.methods[m].sd) if m in t.methods else MISSING for m in methods]
        lines.append(f"| {name} | {t.n_test} | {percent(t.teacher.accuracy)} | " + " | ".join(cells) + " |")
    compared = [m for m in methods if any(m in t.methods and t.methods[m].vs_baseline for t in tables.values())]
    if compared:
        lines += ["", "Gain in points with its permutation p-value, over the baseline / over the anchor:", "",
                  "| dataset | " + " | ".join(f"`{m}`" for m in compared) + " |", "|---|" + "---|" * len(compared)]  # fmt: skip
        for name, t in tables.items():
            cells = []
            for m in compared:
                row = t.methods.get(m)
                vs = [_short(row.vs_baseline) if row else MISSING]
                if t.anchor:
                    vs.append(_short(row.vs_anchor) if row else MISSING)
                cells.append(" / ".join(vs))
            refs = f" (vs `{t.baseline}`" + (f" / `{t.anchor}`)" if t.anchor else ")")
            lines.append(f"| {name}{refs} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(vs: PairedDifference | None) -> str:
    return MISSING if vs is None else f"{100 * vs.difference:+.1f} (p {vs.p_value:.2f})"
