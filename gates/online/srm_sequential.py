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
    x = np.asarray(observed_counts, dtype=float)
    w = np.asarray(expected_weights, dtype=float)
    if x.ndim != 1 or x.shape != w.shape or x.size < 2:
        raise ValueError("need at least two variants, with one count and one weight each")
    if (w <= 0).any() or (x < 0).any() or concentration <= 0:
        raise ValueError("weights and concentration must be positive and counts non-negative")
    w = w / w.sum()
    alpha = concentration * w
    n = x.sum()
    log_bf = (gammaln(concentration) - gammaln(concentration + n)
              + np.sum(gammaln(alpha + x) - gammaln(alpha)) - np.sum(x * np.log(w)))
    return float(min(1.0, np.exp(-log_bf)))
