"""Render a `Comparison`: summary rows, plotly charts (accuracy with intervals, overlap histograms, agreement
matrix) and one example's answers and attribution maps, model above model. Plotly is imported lazily."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kdviz.format import MISSING, number
from kdviz.rationales.select import gold_overlap
from kdviz.viz.attribution import rationale_html

from .records import Comparison

if TYPE_CHECKING:
    from .results import ResultsTable

SUMMARY_COLUMNS = [
    "model", "role", "trained as", "accuracy", "95% CI", "agrees w/ teacher", "gold overlap", "distractor overlap",
    "plausibility F1", "comprehensiveness", "sufficiency", "top-k overlap w/ teacher", "Spearman w/ teacher",
]  # fmt: skip
FILTERS = {
    "all": "all examples",
    "all_wrong": "every model wrong",
    "teacher_right_student_wrong": "teacher right, a student wrong",
    "student_right_teacher_wrong": "a student right, teacher wrong",
    "disagree": "models disagree",
}


def with_random(value: float | None, random: float | None) -> str:
    """Returns a faithfulness mean with its random-k baseline, "0.310 (random 0.120)"; "—" where not measured."""
    return MISSING if value is None else f"{number(value)} (random {number(random)})"


def summary_rows(comparison: Comparison) -> list[list[str]]:
    """Returns one row per model under `SUMMARY_COLUMNS`; comprehensiveness and sufficiency are of the model's own
    rationales, each with the same measure of as many random words."""
    rows = []
    for name, s in comparison.summary.items():
        overlap, vs, faith = s.overlap, s.attribution_vs_teacher, s.overlap.faithfulness
        accuracy = number(s.accuracy)
        if s.accuracy_no_rationale is not None:
            accuracy += f" ({number(s.accuracy_no_rationale)} without the teacher's rationale)"
        rows.append([
            name, s.role, (s.method or MISSING) + (" (needs the teacher)" if s.teacher_at_test_time else ""),
            accuracy, f"{number(s.ci_low)}–{number(s.ci_high)}", number(s.agreement_with_teacher),
            number(overlap.gold_overlap), number(overlap.distractor_overlap),
            number(overlap.plausibility.f1 if overlap.plausibility else None),
            with_random(faith.comprehensiveness, faith.random_comprehensiveness) if faith else MISSING,
            with_random(faith.sufficiency, faith.random_sufficiency) if faith else MISSING,
            number(vs.top_k_overlap if vs else None), number(vs.spearman if vs else None),
        ])  # fmt: skip
    return rows


def pairwise_rows(comparison: Comparison) -> list[list[str]]:
    """Returns rows [A, B, A right & B wrong, B right & A wrong, McNemar p, answer agreement]."""
    return [
        [p.a, p.b, str(p.a_only), str(p.b_only), number(p.p_value, 4), number(p.agreement)]
        for p in comparison.pairwise
    ]


def accuracy_figure(comparison: Comparison):
    """Returns a bar chart of each model's accuracy with its 95% bootstrap interval as error bars."""
    import plotly.graph_objects as go

    names, rows = list(comparison.summary), list(comparison.summary.values())
    acc = [r.accuracy or 0.0 for r in rows]
    hi = [max(0.0, (r.ci_high or 0.0) - a) for r, a in zip(rows, acc, strict=True)]
    lo = [max(0.0, a - (r.ci_low or 0.0)) for r, a in zip(rows, acc, strict=True)]
    colors = ["#111827" if r.role == "teacher" else "#2563eb" for r in rows]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=acc,
            marker_color=colors,
            error_y=dict(type="data", array=hi, arrayminus=lo),
            text=[f"{a:.0%}" for a in acc],
            textposition="outside",
        )  # fmt: skip
    )
    fig.update_layout(title="accuracy (95% bootstrap interval)", yaxis=dict(range=[0, 1.05], title="accuracy"),
                      height=340, margin=dict(l=50, r=20, t=50, b=60))  # fmt: skip
    return fig


def overlap_histogram(comparison: Comparison):
    """Returns overlaid histograms, per model, of the share of its rationale words found in the gold answer."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for m in comparison.models:
        shares = [
            gold_overlap(r.rationale_words, ex.answer)[1]
            for r, ex in zip(m.records, comparison.examples, strict=True)
            if ex.answer
        ]
        fig.add_trace(go.Histogram(x=shares, name=m.name, opacity=0.6, xbins=dict(start=0, end=1.0001, size=0.1)))
    fig.update_layout(barmode="overlay", title="rationale words in the gold answer (per example)", height=340,
                      xaxis_title="share of the model's rationale words in the gold answer", yaxis_title="examples",
                      margin=dict(l=50, r=20, t=50, b=50))  # fmt: skip
    return fig


def agreement_matrix(comparison: Comparison):
    """Returns a heatmap of how often each pair of models gives the same answer."""
    import plotly.graph_objects as go

    names = [m.name for m in comparison.models]
    preds = [m.predicted for m in comparison.models]
    n = max(1, len(comparison.examples))
    z = [[sum(x == y for x, y in zip(a, b, strict=True)) / n for b in preds] for a in preds]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=0, zmax=1, colorscale="Blues",
                               text=[[f"{v:.0%}" for v in row] for row in z], texttemplate="%{text}"))  # fmt: skip
    fig.update_layout(title="answer agreement", height=340, margin=dict(l=120, r=20, t=50, b=80))
    return fig


def filter_examples(comparison: Comparison, name: str) -> list[int]:
    """Returns the indices of the examples a filter (a key of `FILTERS`) keeps."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose from {', '.join(FILTERS)}")
    teacher, students = comparison.models[0], comparison.models[1:]
    keep = []
    for i in range(len(comparison.examples)):
        t_ok = teacher.correct[i]
        s_ok = [s.correct[i] for s in students]
        answers = {m.predicted[i] for m in comparison.models}
        if (
            name == "all"
            or (name == "all_wrong" and t_ok is False and all(ok is False for ok in s_ok))
            or (name == "teacher_right_student_wrong" and t_ok is True and any(ok is False for ok in s_ok))
            or (name == "student_right_teacher_wrong" and t_ok is False and any(ok is True for ok in s_ok))
            or (name == "disagree" and len(answers) > 1)
        ):
            keep.append(i)
    return keep


def example_rows(comparison: Comparison, indices: Sequence[int] | None = None) -> list[list[str]]:
    """Returns rows [id, question, gold, each model's answer with ✓/✗] for the chosen examples."""
    rows = []
    for i in range(len(comparison.examples)) if indices is None else indices:
        ex = comparison.examples[i]
        marks = [f"{m.predicted[i]} {'✓' if m.correct[i] else '✗' if m.correct[i] is False else ''}".strip()
                 for m in comparison.models]  # fmt: skip
        rows.append([ex.id, ex.question, ex.answer or "—", *marks])
    return rows


def example_html(comparison: Comparison, index: int) -> str:
    """Returns one example with every model's answer and its attribution map, the teacher's first."""
    ex = comparison.examples[index]
    parts = [f"<div class='kdviz-example'><p><b>{html.escape(ex.id)}</b>: {html.escape(ex.question)}<br>"
             f"gold: <code>{html.escape(ex.answer or '—')}</code></p>"]  # fmt: skip
    for m in comparison.models:
        rec = m.records[index]
        mark = "✓" if rec.correct else "✗" if rec.correct is False else ""
        parts.append(
            f"<div class='kdviz-model' style='margin:8px 0'><div><b>{html.escape(m.name)}</b> ({m.role}"
            f"{', ' + html.escape(m.method) if m.method else ''}): <code>{html.escape(m.predicted[index])}</code> "
            f"{mark} · rationale: <i>{html.escape(rec.rationale_text)}</i></div>{rationale_html(rec)}</div>"
        )
    return "".join(parts) + "</div>"


def method_accuracy_figure(table: ResultsTable):
    """Returns a bar chart of test accuracy by distillation method (mean over seeds, ± one standard deviation, the
    seeds as dots), the teacher's accuracy as a dashed line; `table` is `kdviz.compare.results.method_table`'s."""
    import plotly.graph_objects as go

    methods = list(table.methods)
    rows = list(table.methods.values())
    fig = go.Figure(
        go.Bar(
            x=methods,
            y=[r.mean for r in rows],
            marker_color="#2563eb",
            name="mean over seeds",
            error_y=dict(type="data", array=[r.sd for r in rows]),
            text=[f"{r.mean:.1%}" for r in rows],
            textposition="inside",
            insidetextanchor="start",  # at the bar's foot, clear of the error bar and the seeds' dots
        )  # fmt: skip
    )
    fig.add_trace(
        go.Scatter(
            x=[m for m, r in zip(methods, rows, strict=True) for _ in r.accuracies],
            y=[a for r in rows for a in r.accuracies],
            mode="markers",
            name="one seed",
            marker=dict(color="#111827", size=7, symbol="circle-open"),
        )  # fmt: skip
    )
    teacher = table.teacher.accuracy
    if teacher is not None:
        fig.add_hline(y=teacher, line_dash="dash", line_color="#dc2626", annotation_text=f"teacher {teacher:.1%}",
                      annotation_position="top left")  # fmt: skip
    top = max([teacher or 0.0, *(a for r in rows for a in r.accuracies)])
    fig.update_layout(title=f"test accuracy by distillation method ({table.n_test} questions, mean ± sd)",
                      yaxis=dict(range=[0, min(1.0, top + 0.15)], title="accuracy", tickformat=".0%"),
                      height=380, width=720, margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h"))  # fmt: skip
    return fig


def datasets_accuracy_figure(tables: Mapping[str, ResultsTable]):
    """Returns a grouped bar chart of test accuracy by method on each dataset (mean over seeds ± one standard
    deviation), the teacher's accuracy on each as a red dash."""
    import plotly.graph_objects as go

    names = list(tables)
    methods = list(dict.fromkeys(m for t in tables.values() for m in t.methods))
    fig = go.Figure()
    for method in methods:
        rows = [tables[d].methods.get(method) for d in names]
        fig.add_trace(go.Bar(x=names, y=[r.mean if r else None for r in rows], name=method,
                             error_y=dict(type="data", array=[r.sd if r else 0.0 for r in rows])))  # fmt: skip
    fig.add_trace(go.Scatter(x=names, y=[tables[d].teacher.accuracy for d in names], mode="markers", name="teacher",
                             marker=dict(symbol="line-ew", size=40, line=dict(width=3, color="#dc2626"))))  # fmt: skip
    fig.update_layout(barmode="group", title="test accuracy by distillation method and dataset (mean ± sd over seeds)",
                      yaxis=dict(range=[0, 1], title="accuracy", tickformat=".0%"), height=420, width=900,
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.12))  # fmt: skip
    return fig
