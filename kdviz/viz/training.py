"""Training curves of a run's metrics rows (`kdviz.distill.metrics`): losses by step, held-out accuracy by evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdviz.distill.metrics import MetricsRow


def training_curves(rows: Sequence[MetricsRow]):
    """Returns a plotly Figure of a run's metrics rows (`kdviz.distill.metrics`): the losses against the step on
    the left, the held-out accuracy at each evaluation on the right. A loss part is drawn only where the total
    mixes several (multitask, logit_kd); for one part the total is that part."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from kdviz.distill.metrics import EvalRow, StepRow

    steps = [r for r in rows if isinstance(r, StepRow)]
    evals = [r for r in rows if isinstance(r, EvalRow) and r.eval_accuracy is not None]
    parts = sorted({name for r in steps for name in r.parts})
    series = {"loss (total)": [(r.step, r.loss) for r in steps]}
    if len(parts) > 1:
        series |= {name: [(r.step, r.parts[name]) for r in steps if name in r.parts] for name in parts}
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], subplot_titles=("training loss", "eval accuracy"))
    for (name, points), color in zip(series.items(), ("#111827", "#dc2626", "#2563eb", "#059669"), strict=False):
        fig.add_trace(
            go.Scatter(
                x=[step for step, _ in points],
                y=[value for _, value in points],
                mode="lines+markers" if len(steps) < 40 else "lines",
                name=name,
                line=dict(color=color, width=2 if name == "loss (total)" else 1.5),
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=[r.step for r in evals],
            y=[r.eval_accuracy for r in evals],
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
