"""The rationale-quality table and chart (`kdviz.rationales.quality`): methods x k x span, in the Rationales panel,
`bench/rationale_quality.py` and docs/rationale_quality.md."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kdviz.format import number

if TYPE_CHECKING:
    from kdviz.rationales.quality import QualityCell

QUALITY_COLUMNS = [
    "method",
    "k",
    "span",
    "words",
    "gold overlap",
    "distractor overlap",
    "question overlap",
    "plausibility F1",
    "comprehensiveness (random)",
    "sufficiency (random)",
    "comp. gain",
    "suff. gain",
    "s/example",
]
QUALITY_NOTE = """<small>Each row: the same attributions, the top-k words over the span (**question**: question
words only; **all**: any prompt word). **gold / distractor overlap**: share of records whose rationale holds a word
of the gold answer / mean share of wrong choices overlapped · **comprehensiveness**: drop in the teacher's
probability of its answer without the rationale (higher: more faithful) · **sufficiency**: the drop with only the
rationale kept (lower: better) · in brackets the same for as many random words · **comp. gain** = comprehensiveness
− random's · **suff. gain** = random's sufficiency − sufficiency (both: higher is better; in brackets the 95%
bootstrap interval over records) · **s/example**: the
attribution's cost</small>"""


def _pair(value: float | None, baseline: float | None) -> str:
    return f"{number(value)} ({number(baseline)})"


def _gain(value: float | None, ci: tuple[float, float] | None) -> str:
    return number(value) + (f" [{number(ci[0])}, {number(ci[1])}]" if ci else "")


def quality_rows(cells: Sequence[QualityCell]) -> list[list[str]]:
    """Returns one row per cell under `QUALITY_COLUMNS`."""
    return [
        [
            c.method,
            str(c.k),
            c.span,
            number(c.words, 1),
            number(c.gold_overlap),
            number(c.distractor_overlap),
            number(c.question_overlap),
            number(c.plausibility_f1),
            _pair(c.comprehensiveness, c.random_comprehensiveness),
            _pair(c.sufficiency, c.random_sufficiency),
            _gain(c.comprehensiveness_gain, c.comprehensiveness_gain_ci),
            _gain(c.sufficiency_gain, c.sufficiency_gain_ci),
            number(c.seconds_per_example, 2),
        ]
        for c in cells
    ]


def quality_markdown(cells: Sequence[QualityCell]) -> str:
    """Returns the quality table as GitHub Markdown."""
    lines = ["| " + " | ".join(QUALITY_COLUMNS) + " |", "|" + "---|" * len(QUALITY_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in quality_rows(cells)]
    return "\n".join(lines)


_PANELS = (
    ("gold − distractor overlap", lambda c: None if c.gold_overlap is None or c.distractor_overlap is None
     else c.gold_overlap - c.distractor_overlap),
    ("comprehensiveness gain over random", lambda c: c.comprehensiveness_gain),
    ("sufficiency gain over random", lambda c: c.sufficiency_gain),
)  # fmt: skip
_COLORS = ("#dc2626", "#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#6b7280")


def quality_figure(cells: Sequence[QualityCell]):
    """Returns a plotly Figure: per measure, one line per method over k, solid for span "question", dashed for
    "all" (higher is better in every panel)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(_PANELS), subplot_titles=[title for title, _ in _PANELS])
    methods = list(dict.fromkeys(c.method for c in cells))
    for m, method in enumerate(methods):
        for span, dash in (("question", "solid"), ("all", "dash")):
            line = sorted((c for c in cells if c.method == method and c.span == span), key=lambda c: c.k)
            if not line:
                continue
            for col, (_, value) in enumerate(_PANELS, start=1):
                fig.add_trace(
                    go.Scatter(
                        x=[c.k for c in line],
                        y=[value(c) for c in line],
                        mode="lines+markers",
                        name=f"{method} ({span})",
                        legendgroup=f"{method} ({span})",
                        showlegend=col == 1,
                        line={"color": _COLORS[m % len(_COLORS)], "dash": dash},
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="k (rationale words)", tickvals=sorted({c.k for c in cells}))
    fig.add_hline(y=0, line={"color": "#9ca3af", "width": 1})
    lines = len({(c.method, c.span) for c in cells})  # one legend entry each: the plot grows to show them all
    fig.update_layout(
        height=max(380, 90 + 30 * lines), margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"font": {"size": 10}}
    )
    return fig
