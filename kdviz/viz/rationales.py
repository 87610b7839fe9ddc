"""Tables and charts of rationale statistics (`kdviz.rationales.stats`): the Rationales panel's view of a build."""

from __future__ import annotations

from .format import number

STATS_COLUMNS = ["statistic", "all", "teacher correct", "teacher wrong", "accepted"]
_STATS_ROWS = [  # definitions: kdviz.rationales
    ("n", "records"),
    ("gold_overlap", "gold overlap"),
    ("gold_word_fraction", "gold word fraction"),
    ("distractor_overlap", "distractor overlap"),
]


def rationale_stats_table(stats: dict, accepted: dict | None = None) -> list[list[str]]:
    """Returns rows under `STATS_COLUMNS` of a `rationale_stats` dict, split by the teacher's correctness,
    with the statistics of the accepted records (another `rationale_stats` dict) in the last column."""
    blocks = [stats, stats["by_correctness"]["correct"], stats["by_correctness"]["incorrect"], accepted]
    rows = [[label, *(number(b[key]) if b else "—" for b in blocks)] for key, label in _STATS_ROWS]
    rows.append(["teacher accuracy", number(stats["accuracy"]), "", "", number((accepted or {}).get("accuracy"))])
    if stats["plausibility"]:
        for key in ("precision", "recall", "f1", "iou"):
            cells = [number(b["plausibility"][key]) if b and b["plausibility"] else "—" for b in blocks]
            rows.append([f"plausibility {key}", *cells])
    return rows


def rationale_stats_figure(stats: dict):
    """Returns a plotly Figure of a `rationale_stats` dict: how often rationales overlap each choice position,
    and gold vs distractor overlap, overall and split by whether the teacher was correct."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        subplot_titles=("overlap by choice position", "gold vs distractor overlap"),
    )
    by_position = stats["choice_overlap_by_position"]
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
        ("teacher correct", stats["by_correctness"]["correct"]),
        ("teacher wrong", stats["by_correctness"]["incorrect"]),
    ]
    for key, name, color in [("gold_overlap", "gold", "#dc2626"), ("distractor_overlap", "distractor", "#2563eb")]:
        fig.add_trace(
            go.Bar(
                x=[f"{g} (n={b['n']})" for g, b in groups],
                y=[b[key] or 0 for _, b in groups],
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
