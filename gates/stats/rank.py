"""Rank comparison of two samples (latency): Mann-Whitney U with effect sizes, and a Kayenta-style judge.

A huge sample makes any difference "significant", so the judge fails only when the test is
significant AND the effect size exceeds a stated tolerance. Like Kayenta's effect-size measures, the
effect is either a magnitude, `shift_ratio` (the Hodges-Lehmann shift as a share of the baseline
median: 0.5 = the typical request is 50% slower), or `superiority` (P(candidate slower) - 0.5, a
consistency measure: a small but steady shift reaches it as surely as a large one, and a noisy
baseline tail keeps even a doubling below it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

DEFAULT_MAX_SAMPLES = 50_000
Effect = Literal["superiority", "shift_ratio"]


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney comparison of b (candidate) against a (baseline) on the samples actually used."""

    n_a: int
    n_b: int
    p_greater: float  # one-sided: b tends to be larger (slower) than a
    p_two_sided: float
    superiority: float  # P(b > a) + 0.5 P(b = a), 0.5 = no difference
    shift: float  # Hodges-Lehmann estimate: median of all differences b - a
    subsampled: bool
    a_median: float = float("nan")  # median of the baseline sample used

    @property
    def shift_ratio(self) -> float:
        """The shift as a share of the baseline median (inf when that median is not positive)."""
        return self.shift / self.a_median if self.a_median > 0 else float("inf")


@dataclass(frozen=True)
class RankJudgement:
    """Verdict of `rank_judge`, with the rule and numbers in words."""

    passed: bool
    message: str
    test: RankTest


def mann_whitney_effect(
    a: np.ndarray, b: np.ndarray, *, max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0
) -> RankTest:
    """Mann-Whitney U (asymptotic, tie-corrected) and effect sizes on seeded subsamples of max_samples."""
    rng = np.random.default_rng(seed)
    a_used, b_used = (_finite_sample(x, max_samples, rng) for x in (a, b))
    subsampled = a_used.size < np.size(a) or b_used.size < np.size(b)
    greater = stats.mannwhitneyu(b_used, a_used, alternative="greater", method="asymptotic")
    two_sided = stats.mannwhitneyu(b_used, a_used, alternative="two-sided", method="asymptotic")
    superiority = float(greater.statistic) / (a_used.size * b_used.size)
    return RankTest(
        a_used.size, b_used.size, float(greater.pvalue), float(two_sided.pvalue),
        superiority, hodges_lehmann_shift(a_used, b_used), subsampled, float(np.median(a_used)),
    )


def rank_judge(
    a: np.ndarray, b: np.ndarray, *, tolerance: float, alpha: float, effect: Effect = "superiority",
    max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0, unit: str = "ms", slack: float = 0.0,
) -> RankJudgement:
    """Fail only if b is significantly larger (one-sided p < alpha) AND its effect exceeds `tolerance`
    (`superiority`: P(b > a) - 0.5; `shift_ratio`: Hodges-Lehmann shift / median(a)) AND the shift itself
    exceeds `slack` (in `unit`; 0: any shift)."""
    test = mann_whitney_effect(a, b, max_samples=max_samples, seed=seed)
    if effect != "shift_ratio":
        return judge_superiority(test, tolerance=tolerance, alpha=alpha, unit=unit, slack=slack)
    significant = test.p_greater < alpha
    mw = f"Mann-Whitney one-sided p {test.p_greater:.2g} vs alpha {alpha:g}"
    large = test.shift_ratio > tolerance and test.shift > slack
    allowed = f"+{tolerance:.0%}" + (f" (or +{slack:g} {unit})" if slack > 0 else "")
    facts = (f"median shift {test.shift:+.1f} {unit} = {test.shift_ratio:+.0%} of the baseline median "
             f"{test.a_median:.1f} {unit} vs allowed {allowed}, {mw}, "
             f"P(candidate > baseline) {test.superiority:.3f} (n {test.n_b}/{test.n_a})")
    if significant and large:
        return RankJudgement(False, f"candidate slower than baseline: {facts}", test)
    reason = "difference within tolerance" if significant else "no significant slowdown"
    return RankJudgement(True, f"{reason}: {facts}", test)


def judge_superiority(test: RankTest, *, tolerance: float, alpha: float, unit: str = "ms",
                      slack: float = 0.0) -> RankJudgement:
    """Fail only if b is significantly larger (one-sided p < alpha) AND P(b > a) - 0.5 exceeds `tolerance`
    AND the median shift exceeds `slack` (0: any shift)."""
    significant = test.p_greater < alpha
    mw = f"Mann-Whitney one-sided p {test.p_greater:.2g} vs alpha {alpha:g}"
    allowed = f"{0.5 + tolerance:.3f}" + (f" (or a shift within {slack:g} {unit})" if slack > 0 else "")
    facts = (f"P(candidate > baseline) {test.superiority:.3f} vs allowed {allowed}, {mw}, "
             f"median shift {test.shift:+.3g} {unit} (n {test.n_b}/{test.n_a})")
    if significant and test.superiority - 0.5 > tolerance and test.shift > slack:
        return RankJudgement(False, f"candidate slower than baseline: {facts}", test)
    reason = "difference within tolerance" if significant else "no significant slowdown"
    return RankJudgement(True, f"{reason}: {facts}", test)


def hodges_lehmann_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Median of all n_a x n_b differences b - a, by bisection on a sorted count (no n_a x n_b array)."""
    a_sorted, b_arr = np.sort(np.asarray(a, dtype=float)), np.asarray(b, dtype=float)
    total = a_sorted.size * b_arr.size
    if total == 0:
        raise ValueError("both samples must be non-empty")
    lower = _kth_difference(a_sorted, b_arr, (total + 1) // 2)
    upper = lower if total % 2 else _kth_difference(a_sorted, b_arr, total // 2 + 1)
    return (lower + upper) / 2


def _kth_difference(a_sorted: np.ndarray, b: np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of b_j - a_i: the smallest d with #(b_j - a_i <= d) >= k."""
    lo, hi = b.min() - a_sorted[-1], b.max() - a_sorted[0]
    if _count_at_most(a_sorted, b, lo) >= k:
        return float(lo)
    while True:  # invariant: count(lo) < k <= count(hi)
        mid = lo + (hi - lo) / 2
        if mid <= lo or mid >= hi:
            return _largest_difference_at_most(a_sorted, b, hi)
        if _count_at_most(a_sorted, b, mid) >= k:
            hi = mid
        else:
            lo = mid


def _largest_difference_at_most(a_sorted: np.ndarray, b: np.ndarray, d: float) -> float:
    """The largest actual b_j - a_i <= d, so the bisection returns a real difference, not a float near it."""
    idx = np.searchsorted(a_sorted, b - d, side="left")
    valid = idx < a_sorted.size
    return float((b[valid] - a_sorted[idx[valid]]).max())


def _count_at_most(a_sorted: np.ndarray, b: np.ndarray, d: float) -> int:
    """#(i, j) with b_j - a_i <= d, i.e. a_i >= b_j - d."""
    return int(a_sorted.size * b.size - np.searchsorted(a_sorted, b - d, side="left").sum())


def _finite_sample(x: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("a sample has no finite values")
    if values.size > max_samples:
        values = rng.choice(values, size=max_samples, replace=False)
    return values
