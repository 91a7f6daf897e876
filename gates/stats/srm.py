"""Sample ratio mismatch: does the traffic split match the configured weights?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def srm_chi_square(observed_counts: Sequence[int], expected_weights: Sequence[float]) -> tuple[float, float]:
    """Chi-square goodness of fit of per-variant counts to the configured weights: (chi2, p_value).

    A tiny p (the canary halts below 0.001) means assignment is broken, so no metric comparison
    between the variants can be trusted. Raises ValueError on empty traffic or non-positive weights.
    """
    observed = np.asarray(observed_counts, dtype=float)
    weights = np.asarray(expected_weights, dtype=float)
    if observed.ndim != 1 or observed.shape != weights.shape or observed.size < 2:
        raise ValueError("need at least two variants, with one count and one weight each")
    if (weights <= 0).any() or (observed < 0).any():
        raise ValueError("weights must be positive and counts non-negative")
    total = observed.sum()
    if total == 0:
        raise ValueError("no traffic observed")
    result = stats.chisquare(observed, weights / weights.sum() * total)
    return float(result.statistic), float(result.pvalue)
