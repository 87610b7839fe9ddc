"""Render attributions and rationales: word-highlighted HTML, a token heatmap, top-word tables (plotly lazily)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from kdviz.lm.prompts import LETTERS
from kdviz.rationale_records import RationaleRecord
from kdviz.records import TokenAttribution


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
            f"<code>{html.escape(attr.target)}</code>"
            + (f" vs <code>{html.escape(attr.contrast)}</code>" if attr.contrast is not None else "")
            + "</div>"
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
    first_contrast = len(attr.output_tokens) - attr.n_contrast_tokens
    # A contrastive attribution's last rows attribute -log p(contrast token): marked with a minus sign.
    labels = [f"{'−' if t >= first_contrast else ''}{repr(tok)[1:-1]}·{t}" for t, tok in enumerate(attr.output_tokens)]
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
        # gradio's Plot showed nothing (height 0) for a one-row map, as a letter-mode target makes, at 242 px
        height=max(360, 220 + 22 * len(labels)),
        margin=dict(l=60, r=20, t=50, b=120),
    )
    return fig


def top_words_table(attr: TokenAttribution, k: int = 10) -> list[list]:
    """Returns rows [rank, word, score] of the k best non-template words."""
    return [[n + 1, word, round(score, 6)] for n, (word, score) in enumerate(attr.top_words(k))]


def _choice_of(attr: TokenAttribution, target: str) -> str | None:
    """Returns the choice a letter-mode target names (None for any other target)."""
    pred = attr.prediction
    letters = list(LETTERS[: len(pred.choices)]) if pred is not None and pred.mode == "letter" else []
    return pred.choices[letters.index(target)] if target in letters else None


def scored_target_text(attr: TokenAttribution) -> str:
    """Returns what was attributed, in one line: `log p("C" = oven)` (a letter names its choice), or for a
    contrastive attribution the difference `log p("C" = oven) − log p("A" = cupboard)`."""

    def term(target: str) -> str:
        choice = _choice_of(attr, target)
        return f'log p("{target}"' + (f" = {choice})" if choice is not None else ")")

    return term(attr.target) + (f" − {term(attr.contrast)}" if attr.contrast is not None else "")


_SCORE_HEADERS = {"letter": "letter log-prob, over the letters"}


def prediction_markdown(attr: TokenAttribution, gold: str | None = None) -> str:
    """Returns Markdown of what was attributed: the target and its mode, what was scored (for a contrastive
    attribution, the two targets and how to read the colours), the prediction, its mode and whether it is correct,
    and the choice scores where choices were scored. `gold` is shown where the record does not carry one."""
    pred = attr.prediction
    gold = pred.gold if pred is not None and pred.gold is not None else gold
    paragraphs = [f"**Target** ({attr.target_mode}): `{attr.target}`", f"**Scored**: `{scored_target_text(attr)}`"]
    if attr.contrast is not None:
        paragraphs.append(
            f"**Contrast**: why `{attr.target}` and not `{attr.contrast}`: red words raise the difference, blue "
            "words lower it; what both answers share cancels out."
        )
    if attr.completeness_error is not None:
        paragraphs.append(
            f"**Completeness**: the words' scores sum to {sum(attr.seq_scores):.3f}, the path integral is "
            f"{attr.integral:.3f} (error {attr.completeness_error:.0%}); more steps bring them closer "
            "(bench/ig_steps.py)."
        )
    if pred is not None and pred.predicted is not None:
        verdict = ""
        if pred.correct is not None:
            verdict = " — correct" if pred.correct else f" — wrong (gold: `{gold}`)"
        mode = f" (prediction mode: {pred.mode})" if pred.mode else ""
        paragraphs.append(f"**Prediction**: `{pred.predicted}`{verdict}{mode}")
    elif gold:
        paragraphs.append(f"**Gold answer**: `{gold}`")
    if pred is not None and pred.choices:
        rows = [f"| choice | score ({_SCORE_HEADERS.get(pred.mode or '', 'mean log-prob')}) |", "|---|---|"]
        for n, (choice, score) in enumerate(zip(pred.choices, pred.choice_scores, strict=True)):
            marks = " ← predicted" if choice == pred.predicted else ""
            marks += " (gold)" if choice == gold else ""
            label = f"{LETTERS[n]}) " if pred.mode == "letter" else ""
            rows.append(f"| {label}{_cell(choice)}{marks} | {score:.4f} |")
        paragraphs.append("\n".join(rows))
    return "\n\n".join(paragraphs)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
