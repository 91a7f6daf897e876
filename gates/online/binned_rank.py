"""The canary's latency rank test on value sketches: Mann-Whitney U and the Hodges-Lehmann shift from counts.

`mlgate.gates.stats.rank.rank_judge` compares raw samples; the incremental analysis keeps each arm's
latencies in a `ValueSketch`. The same statistics are computed here from (value, count) pairs: U with the
tie-corrected normal approximation and continuity correction (scipy's `method="asymptotic"`), the
superiority P(b > a) + 0.5 P(b = a), and the median of all pairwise differences. On exact sketches the
numbers are those of the raw values; once binned, of values moved by at most 0.5% (equal bins are ties).
Like `rank_judge`, each arm is first subsampled (seeded) to `max_samples`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from mlgate.gates.online.sketch import ValueSketch
from mlgate.gates.stats.rank import DEFAULT_MAX_SAMPLES, RankJudgement, RankTest, judge_superiority


def sketch_rank_test(a: ValueSketch, b: ValueSketch, *, max_samples: int = DEFAULT_MAX_SAMPLES,
                     seed: int = 0) -> RankTest:
    """Mann-Whitney comparison of b (candidate) against a (baseline), from their sketches."""
    rng = np.random.default_rng(seed)
    (va, ca), (vb, cb) = (_limited(s, max_samples, rng) for s in (a, b))
    n_a, n_b = int(ca.sum()), int(cb.sum())
    subsampled = n_a < a.total or n_b < b.total
    values = np.union1d(va, vb)
    count_a = np.zeros(values.size, np.int64)
    count_b = np.zeros(values.size, np.int64)
    count_a[np.searchsorted(values, va)] = ca
    count_b[np.searchsorted(values, vb)] = cb
    below_a = np.cumsum(count_a) - count_a
    u_b = float((count_b * (below_a + 0.5 * count_a)).sum())
    p_greater, p_two = _asymptotic_p(u_b, n_a, n_b, count_a + count_b)
    return RankTest(n_a, n_b, p_greater, p_two, u_b / (n_a * n_b), _shift(va, ca, vb, cb), subsampled,
                    _weighted_median(va, ca))


def judge_rank(test: RankTest, *, tolerance: float, alpha: float, unit: str = "ms",
               slack: float = 0.0) -> RankJudgement:
    """`rank_judge`'s rule for effect `superiority` on a computed test (`judge_superiority`)."""
    return judge_superiority(test, tolerance=tolerance, alpha=alpha, unit=unit, slack=slack)


def _limited(sketch: ValueSketch, max_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    values, counts = sketch.values_counts()
    if counts.sum() > max_samples:
        counts = rng.multivariate_hypergeometric(counts, max_samples)
        values, counts = values[counts > 0], counts[counts > 0]
    return values, counts


def _asymptotic_p(u_b: float, n_a: int, n_b: int, ties: np.ndarray) -> tuple[float, float]:
    """One-sided (b greater) and two-sided p of U, as scipy.stats.mannwhitneyu(method="asymptotic")."""
    n = n_a + n_b
    tie_term = float((ties.astype(float) ** 3 - ties).sum())
    sd = math.sqrt(n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    mu = n_a * n_b / 2
    if sd == 0:
        return 1.0, 1.0
    greater = float(stats.norm.sf((u_b - mu - 0.5) / sd))
    two = float(min(1.0, 2 * stats.norm.sf((max(u_b, n_a * n_b - u_b) - mu - 0.5) / sd)))
    return greater, two


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    sketch = ValueSketch(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    return sketch.quantile(0.5)


def _shift(va: np.ndarray, ca: np.ndarray, vb: np.ndarray, cb: np.ndarray) -> float:
    """Hodges-Lehmann: the median of all n_a x n_b differences b - a, weighted by the counts."""
    total = int(ca.sum()) * int(cb.sum())
    lower = _kth_difference(va, ca, vb, cb, (total + 1) // 2)
    upper = lower if total % 2 else _kth_difference(va, ca, vb, cb, total // 2 + 1)
    return (lower + upper) / 2


def _kth_difference(va, ca, vb, cb, k: int) -> float:
    """The k-th smallest (1-based) difference b_j - a_i: the smallest actual difference d with
    #(b - a <= d) >= k, by bisection on the count, then snapped to a real difference."""
    lo, hi = float(vb[0] - va[-1]), float(vb[-1] - va[0])
    if _count_at_most(va, ca, vb, cb, lo) >= k:
        return lo
    while True:  # invariant: count(lo) < k <= count(hi)
        mid = lo + (hi - lo) / 2
        if mid <= lo or mid >= hi:
            break
        if _count_at_most(va, ca, vb, cb, mid) >= k:
            hi = mid
        else:
            lo = mid
    index = np.searchsorted(va, vb - hi, side="left")
    valid = index < va.size
    return float((vb[valid] - va[index[valid]]).max())


def _count_at_most(va, ca, vb, cb, d: float) -> int:
    """#(i, j) with b_j - a_i <= d, i.e. a_i >= b_j - d, weighted."""
    above = np.concatenate([np.cumsum(ca[::-1])[::-1], [0]])  # above[i] = count of a at index >= i
    return int((cb * above[np.searchsorted(va, vb - d, side="left")]).sum())
