"""Training curves of a run's metrics rows (`kdviz.distill.runs`): losses by step, held-out accuracy by evaluation."""

from __future__ import annotations

from collections.abc import Sequence


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
