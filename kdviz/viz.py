"""Render attributions: word-highlighted HTML (notebooks, the app) and a plotly heatmap. Only viz imports plotly."""

from __future__ import annotations

import html

from .records import TokenAttribution


def _color(score: float, scale: float) -> str:
    # Red for support of the target, blue against; alpha carries the strength.
    strength = 0.0 if scale == 0 else max(-1.0, min(1.0, score / scale))
    rgb = "220, 38, 38" if strength >= 0 else "37, 99, 235"
    return f"rgba({rgb}, {abs(strength) * 0.85:.3f})"


def attribution_html(attr: TokenAttribution, title: bool = True) -> str:
    """Returns HTML of the prompt with each word highlighted by its score (one `span.kdviz-word` per word).

    Whitespace and line breaks of the prompt are kept; template words ("Question:", "A)") are shown in grey
    and do not set the colour scale. Hovering a word shows its score.
    """
    scored = [abs(s) for s, t in zip(attr.word_scores, attr.word_is_template, strict=False) if not t]
    scale = max(scored, default=0.0) or max((abs(s) for s in attr.word_scores), default=0.0)
    parts, cursor = [], 0
    for word, (a, b), score, is_template in zip(
        attr.words, attr.word_offsets, attr.word_scores, attr.word_is_template, strict=False
    ):
        parts.append(html.escape(attr.prompt[cursor:a]))
        style = "color:#9ca3af" if is_template else f"background:{_color(score, scale)}"
        parts.append(
            f'<span class="kdviz-word{" kdviz-template" if is_template else ""}" data-score="{score:.6g}" '
            f'title="{html.escape(word)}: {score:.4g}" style="{style};border-radius:3px;padding:0 1px">'
            f"{html.escape(attr.prompt[a:b])}</span>"
        )
        cursor = b
    parts.append(html.escape(attr.prompt[cursor:]))
    body = "".join(parts)
    header = ""
    if title:
        header = (
            f'<div class="kdviz-target" style="margin-bottom:6px"><b>{html.escape(attr.model_name)}</b> · '
            f"{html.escape(attr.method)} · target ({html.escape(attr.target_mode)}): "
            f"<code>{html.escape(attr.target)}</code></div>"
        )
    return (
        f'<div class="kdviz-attribution">{header}<div style="white-space:pre-wrap;line-height:1.9;'
        f'font-family:ui-monospace,monospace">{body}</div></div>'
    )


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
