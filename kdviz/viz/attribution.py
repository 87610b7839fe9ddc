"""Render attributions, rationales and training curves: word-highlighted HTML and plotly figures.

Only viz imports plotly."""

from __future__ import annotations

import html
from collections.abc import Sequence

from kdviz.records import RationaleRecord, TokenAttribution


def _color(score: float, scale: float) -> str:
    # Red for support of the target, blue against; alpha carries the strength.
    strength = 0.0 if scale == 0 else max(-1.0, min(1.0, score / scale))
    rgb = "220, 38, 38" if strength >= 0 else "37, 99, 235"
    return f"rgba({rgb}, {abs(strength) * 0.85:.3f})"


def _words_html(
    prompt: str,
    words: Sequence[str],
    offsets: Sequence[tuple[int, int]],
    scores: Sequence[float],
    is_template: Sequence[bool],
    marked: frozenset[int] = frozenset(),
) -> str:
    """Returns the prompt as HTML, one `span.kdviz-word` (with `data-index`) per word, coloured by score."""
    scored = [abs(s) for s, t in zip(scores, is_template, strict=False) if not t]
    scale = max(scored, default=0.0) or max((abs(s) for s in scores), default=0.0)
    parts, cursor = [], 0
    for i, (word, (a, b), score, template) in enumerate(zip(words, offsets, scores, is_template, strict=False)):
        parts.append(html.escape(prompt[cursor:a]))
        classes = "kdviz-word" + (" kdviz-template" if template else "") + (" kdviz-rationale" if i in marked else "")
        style = "color:#9ca3af" if template else f"background:{_color(score, scale)}"
        if i in marked:  # a rationale word: outlined and bold, whatever its colour
            style += ";outline:2px solid #111827;font-weight:700"
        parts.append(
            f'<span class="{classes}" data-index="{i}" data-score="{score:.6g}" '
            f'title="{html.escape(word)}: {score:.4g}" style="{style};border-radius:3px;padding:0 1px">'
            f"{html.escape(prompt[a:b])}</span>"
        )
        cursor = b
    parts.append(html.escape(prompt[cursor:]))
    return (
        '<div style="white-space:pre-wrap;line-height:1.9;font-family:ui-monospace,monospace">'
        + "".join(parts)
        + "</div>"
    )


def attribution_html(attr: TokenAttribution, title: bool = True) -> str:
    """Returns HTML of the prompt with each word highlighted by its score (one `span.kdviz-word` per word).

    Whitespace and line breaks of the prompt are kept; template words ("Question:", "A)") are shown in grey
    and do not set the colour scale. Hovering a word shows its score.
    """
    body = _words_html(attr.prompt, attr.words, attr.word_offsets, attr.word_scores, attr.word_is_template)
    header = ""
    if title:
        header = (
            f'<div class="kdviz-target" style="margin-bottom:6px"><b>{html.escape(attr.model_name)}</b> · '
            f"{html.escape(attr.method)} · target ({html.escape(attr.target_mode)}): "
            f"<code>{html.escape(attr.target)}</code></div>"
        )
    return f'<div class="kdviz-attribution">{header}{body}</div>'


def rationale_html(rec: RationaleRecord) -> str:
    """Returns HTML of a rationale record's prompt, words coloured by attribution and rationale words outlined.

    Every word is a `span.kdviz-word` with its position in `data-index` (the app toggles a word on click);
    rationale words also carry the class `kdviz-rationale`.
    """
    body = _words_html(
        rec.prompt, rec.words, rec.word_offsets, rec.word_scores, rec.word_is_template, frozenset(rec.rationale)
    )
    return f'<div class="kdviz-rationale-view" style="cursor:pointer">{body}</div>'


def attribution_heatmap(attr: TokenAttribution, include_template: bool = False):
    """Returns a plotly Figure of output tokens (rows) × input words (columns)."""
    import plotly.graph_objects as go

    keep = [i for i, t in enumerate(attr.word_is_template) if include_template or not t]
    words = [f"{attr.words[i]}·{i}" for i in keep]  # suffix keeps repeated words as separate columns
    rows = [[row[i] for i in keep] for row in attr.word_token_scores]
    labels = [f"{repr(tok)[1:-1]}·{t}" for t, tok in enumerate(attr.output_tokens)]
    peak = max((abs(v) for row in rows for v in row), default=1.0) or 1.0
    signed = any(v < 0 for row in rows for v in row)
    fig = go.Figure(
        go.Heatmap(
            z=rows,
            x=words,
            y=labels,
            colorscale="RdBu_r" if signed else "Reds",
            zmin=-peak if signed else 0,
            zmax=peak,
            colorbar=dict(title="score"),
            hovertemplate="output %{y}<br>input %{x}<br>score %{z:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{attr.method}: output tokens × input words",
        xaxis=dict(tickangle=-60),
        yaxis=dict(autorange="reversed"),
        height=220 + 22 * len(labels),
        margin=dict(l=60, r=20, t=50, b=120),
    )
    return fig


def top_words_table(attr: TokenAttribution, k: int = 10) -> list[list]:
    """Returns rows [rank, word, score] of the k best non-template words."""
    return [[n + 1, word, round(score, 6)] for n, (word, score) in enumerate(attr.top_words(k))]


STATS_COLUMNS = ["statistic", "all", "teacher correct", "teacher wrong", "accepted"]
_STATS_ROWS = [  # definitions: kdviz.rationales
    ("n", "records"),
    ("gold_overlap", "gold overlap"),
    ("gold_word_fraction", "gold word fraction"),
    ("distractor_overlap", "distractor overlap"),
]


def _cell(value: float | int | None) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def rationale_stats_table(stats: dict, accepted: dict | None = None) -> list[list[str]]:
    """Returns rows under `STATS_COLUMNS` of a `rationale_stats` dict, split by the teacher's correctness,
    with the statistics of the accepted records (another `rationale_stats` dict) in the last column."""
    blocks = [stats, stats["by_correctness"]["correct"], stats["by_correctness"]["incorrect"], accepted]
    rows = [[label, *(_cell(b[key]) if b else "—" for b in blocks)] for key, label in _STATS_ROWS]
    rows.append(["teacher accuracy", _cell(stats["accuracy"]), "", "", _cell((accepted or {}).get("accuracy"))])
    if stats["plausibility"]:
        for key in ("precision", "recall", "f1", "iou"):
            cells = [_cell(b["plausibility"][key]) if b and b["plausibility"] else "—" for b in blocks]
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


def training_curves(rows: Sequence[dict]):
    """Returns a plotly Figure of a run's metrics rows (`kdviz.runs`): the losses against the step on the left,
    the held-out accuracy at each evaluation on the right. A loss component is drawn only where the total mixes
    several (multitask, logit_kd); for one component the total is that component."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    steps = [r for r in rows if r.get("kind") == "step"]
    evals = [r for r in rows if r.get("kind") == "eval" and r.get("eval_accuracy") is not None]
    parts = sorted({k for r in steps for k in r if k.startswith("loss_")})
    shown = ["loss", *parts] if len(parts) > 1 else ["loss"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], subplot_titles=("training loss", "eval accuracy"))
    for key, color in zip(shown, ("#111827", "#dc2626", "#2563eb", "#059669"), strict=False):
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in steps if key in r],
                y=[r[key] for r in steps if key in r],
                mode="lines+markers" if len(steps) < 40 else "lines",
                name=key.removeprefix("loss_") if key != "loss" else "loss (total)",
                line=dict(color=color, width=2 if key == "loss" else 1.5),
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=[r["step"] for r in evals],
            y=[r["eval_accuracy"] for r in evals],
            mode="lines+markers",
            name="eval accuracy",
            line=dict(color="#7c3aed"),
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_xaxes(matches="x", row=1, col=2)  # both panels on the run's step axis
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=2)
    fig.update_layout(height=340, margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2))
    return fig
