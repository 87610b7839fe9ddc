"""What an attribution costs before it runs, in saliency clicks: the passes each method makes over the prompt
(`kdviz.attribution.methods`), without importing torch, so the app can say it under the method menu.

The unit is one forward and one backward pass (saliency, input×gradient, attnlrp). A backward that asks for the
input's gradient only (no weight gradients) costs about one forward, so a forward alone is half a unit. Chunking
(the token budget, `kdviz.attribution.passes`) changes how many passes hold memory at once, not how many are made.
What a click shares across methods (loading, scoring the choices) is left out: it adds the same to every method.
"""

from __future__ import annotations

from .catalog import DEFAULT_STEPS, check_method

BACKWARD_IN_FORWARDS = 1.0  # a backward for input gradients only ~ one forward (no weight gradients)
_UNIT = 1.0 + BACKWARD_IN_FORWARDS  # forwards in one forward + backward


def relative_cost(method: str, n_words: int, steps: int = DEFAULT_STEPS) -> float:
    """Returns the expected compute of attributing one prompt of `n_words` words with `method`, relative to saliency
    (one forward and one backward): integrated_gradients makes `steps` of those, feature_ablation one forward with
    the prompt whole and one per word dropped, attention one forward.

    Raises:
        UnknownNameError: unknown method.
    """
    check_method(method)
    if method == "integrated_gradients":
        return float(max(steps, 1))
    if method == "feature_ablation":
        return (1 + max(n_words, 0)) / _UNIT
    if method == "attention":
        return 1 / _UNIT
    return 1.0  # saliency, input_x_gradient, attnlrp


def cost_passes(method: str, n_words: int, steps: int = DEFAULT_STEPS) -> str:
    """Returns the passes `relative_cost` counts, in words ("20 forward+backward passes")."""
    check_method(method)
    if method == "integrated_gradients":
        return f"{max(steps, 1)} forward+backward passes, one per integration step"
    if method == "feature_ablation":
        return f"{1 + max(n_words, 0)} forward passes, one per word dropped and one for the whole prompt"
    if method == "attention":
        return "1 forward pass"
    return "1 forward+backward pass"
