"""Always-valid sample-ratio-mismatch test, for an SRM check that is re-run at every look.

A chi-square test at p < 0.001 repeated after every batch of traffic rejects a correct assignment far
more often than 0.001 (about 2-6% of rollouts over 60-160 looks in tests/gates/test_online.py). The
Dirichlet-multinomial mixture Bayes factor (Lindon & Malek 2022, "Anytime-valid inference for
multinomial count data") is a nonnegative martingale under the configured weights, so by Ville's
inequality p = min(1, 1/BF) is valid at any stopping time:

    BF = [Gamma(A) / Gamma(A + n)] * prod_i Gamma(a_i + x_i) / Gamma(a_i) / prod_i w_i^x_i,  a = k w, A = k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

# Prior concentration k: Dir(k w) puts the alternative's shares within about sqrt(w (1 - w) / k) of the
# weights, i.e. it is most sensitive to mismatches of a few points, the size assignment bugs produce.
PRIOR_CONCENTRATION = 200.0


def srm_sequential_p(observed_counts: Sequence[int], expected_weights: Sequence[float],
                     concentration: float = PRIOR_CONCENTRATION) -> float:
    """Always-valid p-value that the counts were drawn with the given weights (1 when no traffic)."""
    return float(min(1.0, np.exp(-srm_log_bayes_factor(observed_counts, expected_weights, concentration))))


def srm_log_bayes_factor(observed_counts: Sequence[int], expected_weights: Sequence[float],
                         concentration: float = PRIOR_CONCENTRATION) -> float:
    """log BF of the Dirichlet-multinomial mixture against the weights (0 when no traffic)."""
    x = np.asarray(observed_counts, dtype=float)
    w = np.asarray(expected_weights, dtype=float)
    if x.ndim != 1 or x.shape != w.shape or x.size < 2:
        raise ValueError("need at least two variants, with one count and one weight each")
    if (w <= 0).any() or (x < 0).any() or concentration <= 0:
        raise ValueError("weights and concentration must be positive and counts non-negative")
    w = w / w.sum()
    alpha = concentration * w
    n = x.sum()
    return float(gammaln(concentration) - gammaln(concentration + n)
                 + np.sum(gammaln(alpha + x) - gammaln(alpha)) - np.sum(x * np.log(w)))


def stratified_srm_p(strata: Sequence[tuple[Sequence[int], Sequence[float]]],
                     concentration: float = PRIOR_CONCENTRATION) -> float:
    """Always-valid p-value over strata that each have their own weights (the rows of each route-table
    version, when replicas switch tables a few seconds apart).

    Each stratum's Bayes factor is a nonnegative martingale under its own weights, and every unit updates
    exactly one of them, so their product is one too, and p = min(1, 1 / prod BF) stays valid at any look.
    A variant with weight 0 in a stratum cannot receive its units: any unit there is a certain mismatch
    (p 0); otherwise it is left out. A stratum with fewer than two variants of positive weight says nothing.
    """
    log_bf = 0.0
    for counts, weights in strata:
        x, w = np.asarray(counts, dtype=float), np.asarray(weights, dtype=float)
        if x.shape != w.shape or (w < 0).any():
            raise ValueError("each stratum needs one count and one non-negative weight per variant")
        if (x[w == 0] > 0).any():
            return 0.0
        if (w > 0).sum() >= 2:
            log_bf += srm_log_bayes_factor(x[w > 0], w[w > 0], concentration)
    return float(min(1.0, np.exp(-log_bf)))
