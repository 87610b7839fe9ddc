"""Resampled intervals shared by the stages that report means over examples (comparisons, rationale quality).

scipy does the resampling; every figure is seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """Returns the percentile bootstrap interval of the mean: of correctness marks, the accuracy; of paired
    differences, the gain (None for no examples)."""
    from scipy.stats import bootstrap

    if not values:
        return None
    data = np.asarray(values, dtype=float)
    if len(data) == 1:  # scipy asks for two observations; every resample of one value is that value
        return float(data[0]), float(data[0])
    interval = bootstrap(
        (data,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    return float(interval.low), float(interval.high)
