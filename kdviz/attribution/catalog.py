"""The attribution methods by name, without importing torch: the CLI's --help and the app's menus read them here.

`kdviz.attribution.methods.METHODS` maps the same names to their implementations (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Literal

from kdviz.errors import InputError, UnknownNameError

AttributionMethod = Literal[
    "attention", "attnlrp", "feature_ablation", "input_x_gradient", "integrated_gradients", "saliency"
]

METHOD_DESCRIPTIONS: dict[str, str] = {
    "saliency": "L2 norm of the gradient of the target's log-probability w.r.t. each input embedding (Captum Saliency)",
    "input_x_gradient": "gradient · input embedding (Captum InputXGradient / LayerGradientXActivation)",
    "integrated_gradients": "gradient · input integrated from a zero embedding at the prompt text's tokens (chat "
    "template and target kept; Captum IntegratedGradients)",
    "feature_ablation": "drop in target log-probability when a word is removed (occlusion; Captum FeatureAblation)",
    "attention": "mean attention (cross-attention for encoder-decoders) over layers and heads",
    "attnlrp": "AttnLRP relevance of the target's logits (Llama/Qwen2; optional: pip install --no-deps "
    "lxt==2.1; LRP is patented: free only for personal and scientific, non-commercial use)",
}
# What the app's messages call each method ("Integrated gradients: 12/20 steps").
METHOD_LABELS: dict[str, str] = {
    "attention": "Attention",
    "attnlrp": "AttnLRP",
    "feature_ablation": "Occlusion",
    "input_x_gradient": "Input × gradient",
    "integrated_gradients": "Integrated gradients",
    "saliency": "Saliency",
}
DEFAULT_METHOD: AttributionMethod = "input_x_gradient"  # the Teacher panel's and `kdviz attribute`'s
# What rationale datasets are built with unless told otherwise (`kdviz rationales`, the Rationales panel, compare):
# chosen by the method study, docs/rationale_quality.md.
RATIONALE_METHOD: AttributionMethod = "saliency"
# Integrated gradients' Gauss-Legendre steps unless told otherwise, chosen by completeness error against steps
# (bench/ig_steps.py, bench/README.md): on the embedded student's letter decisions the scores' sum missed the path
# integral by a median 46% at 16 steps, 23% at 32 and 8.6% at 64 (top-3 question words: 0.73, 0.77, 0.87 of a
# 128-step reference's). Every IG record carries its own completeness error, shown with the answer.
DEFAULT_STEPS = 64
# The methods that attribute a difference of two log-probabilities (a contrastive target, issue #12; attnlrp: of two
# logits); attention does not depend on the target at all, so it has no contrastive form.
CONTRASTIVE_METHODS: tuple[AttributionMethod, ...] = (
    "attnlrp",
    "feature_ablation",
    "input_x_gradient",
    "integrated_gradients",
    "saliency",
)


def list_attribution_methods() -> list[str]:
    """Returns the names of the attribution methods, sorted."""
    return sorted(METHOD_DESCRIPTIONS)


def check_method(method: str) -> None:
    """Raises UnknownNameError (listing the choices) when `method` is not an attribution method."""
    if method not in METHOD_DESCRIPTIONS:
        raise UnknownNameError("attribution method", method, METHOD_DESCRIPTIONS)


def check_contrastive(method: str, contrast: str | None) -> None:
    """Raises InputError when a contrast is asked of a method that has no contrastive form (attention)."""
    if contrast is not None and method not in CONTRASTIVE_METHODS:
        raise InputError(
            f"{method} has no contrastive form (it does not depend on the target); "
            f"use one of {', '.join(CONTRASTIVE_METHODS)} for a contrastive target"
        )
