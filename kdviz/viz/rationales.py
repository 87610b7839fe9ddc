"""Tables and charts of rationale statistics (`kdviz.rationales.stats`): the Rationales panel's view of a build."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kdviz.format import number

if TYPE_CHECKING:
    from kdviz.rationale_records import Faithfulness
    from kdviz.rationales.stats import OverlapStats, RationaleStats

STATS_COLUMNS = ["statistic", "all", "teacher correct", "teacher wrong", "accepted"]
# What the rows mean, shown under the table.
STATS_NOTE = """<small>**gold overlap**: share of records whose rationale holds a word of the gold answer (Ballout et
al.'s 68%) · **gold word fraction**: rationale words in the gold answer · **distractor overlap**: the same against
the wrong choices (a chance baseline) · **question overlap**: share holding a question word · **plausibility**: word
overlap with human rationales · **comprehensiveness**: drop in the teacher's probability of its answer without the
rationale words (higher: more faithful) · **sufficiency**: the drop with only them kept (lower: better) ·
**random**: the same for as many random words</small>"""
_STATS_ROWS: list[tuple[str, Callable[[OverlapStats], float | None]]] = [  # definitions: kdviz.rationales
    ("records", lambda b: b.n),
    ("gold overlap", lambda b: b.gold_overlap),
    ("gold word fraction", lambda b: b.gold_word_fraction),
    ("distractor overlap", lambda b: b.distractor_overlap),
    ("question overlap", lambda b: b.question_overlap),
]
_FAITHFULNESS_ROWS = [  # (label, FaithfulnessMeans field): ERASER's figures beside their random-k baseline
    ("comprehensiveness", "comprehensiveness"),
    ("comprehensiveness (random)", "random_comprehensiveness"),
    ("sufficiency", "sufficiency"),
    ("sufficiency (random)", "random_sufficiency"),
    ("p(prediction), full prompt", "p_full"),
    ("records measured", "n"),
]


def rationale_stats_table(stats: RationaleStats, accepted: RationaleStats | None = None) -> list[list[str]]:
    """Returns rows under `STATS_COLUMNS` of a build's statistics, split by the teacher's correctness, with the
    statistics of the accepted records (another `RationaleStats`) in the last column."""
    blocks: list[OverlapStats | None] = [stats, stats.by_correctness.correct, stats.by_correctness.incorrect, accepted]
    rows = [[label, *(number(figure(b)) if b else "—" for b in blocks)] for label, figure in _STATS_ROWS]
    rows.append(["teacher accuracy", number(stats.accuracy), "", "", number(accepted.accuracy if accepted else None)])
    if stats.plausibility:
        for key in ("precision", "recall", "f1", "iou"):
            cells = [number(getattr(b.plausibility, key)) if b and b.plausibility else "—" for b in blocks]
            rows.append([f"plausibility {key}", *cells])
    if stats.faithfulness:
        for label, key in _FAITHFULNESS_ROWS:
            rows.append(
                [label, *(number(getattr(b.faithfulness, key)) if b and b.faithfulness else "—" for b in blocks)]
            )
    return rows


def faithfulness_markdown(measured: Faithfulness | None, current: bool = True) -> str:
    """Returns one record's faithfulness as a Markdown line: comprehensiveness and sufficiency beside their random
    baseline, and the model's probability of its answer; `current` False says the rationale was edited since."""
    if measured is None:
        return "Faithfulness: not measured (build with faithfulness on a choice the teacher predicted)."
    line = (
        f"Faithfulness: comprehensiveness **{number(measured.comprehensiveness)}** (random "
        f"{number(measured.random_comprehensiveness)}) · sufficiency **{number(measured.sufficiency)}** (random "
        f"{number(measured.random_sufficiency)}) · p(answer) {number(measured.p_full)}"
    )
    return line + ("" if current else " — measured for the words as built; edited since")


def rationale_stats_figure(stats: RationaleStats):
    """Returns a plotly Figure of a build's statistics: how often rationales overlap each choice position, and gold
    vs distractor overlap, overall and split by whether the teacher was correct."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        subplot_titles=("overlap by choice position", "gold vs distractor overlap"),
    )
    by_position = stats.choice_overlap_by_position
    fig.add_trace(
        go.Bar(
            x=[chr(ord("A") + k) for k in range(len(by_position))],
            y=[v or 0 for v in by_position],
            name="choice overlap",
            marker_color="#6b7280",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    groups = [
        ("all", stats),
        ("teacher correct", stats.by_correctness.correct),
        ("teacher wrong", stats.by_correctness.incorrect),
    ]
    for key, name, color in [("gold_overlap", "gold", "#dc2626"), ("distractor_overlap", "distractor", "#2563eb")]:
        fig.add_trace(
            go.Bar(
                x=[f"{g} (n={b.n})" for g, b in groups],
                y=[getattr(b, key) or 0 for _, b in groups],
                name=name,
                marker_color=color,
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(range=[0, 1], title_text="share of records", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(barmode="group", height=320, margin=dict(l=50, r=20, t=40, b=40), legend=dict(x=1.0, y=1.0))
    return fig
