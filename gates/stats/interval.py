"""Confidence intervals and the rules that judge them: non-inferiority, required improvement, Holm."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval at `level`, and how it was computed."""

    estimate: float
    low: float
    high: float
    level: float
    p_value: float | None
    method: str

    def covers(self, value: float) -> bool:
        """True when `value` lies inside the closed interval."""
        return self.low <= value <= self.high

    def describe(self, name: str) -> str:
        """`roc_auc delta -0.021 [95% CI -0.034, -0.008]`."""
        level = f"{self.level * 100:.4g}%"  # 95%, or 98.75% after a Bonferroni adjustment
        return f"{name} delta {self.estimate:+.3f} [{level} CI {self.low:+.3f}, {self.high:+.3f}]"


@dataclass(frozen=True)
class Decision:
    """Outcome of a rule applied to an interval; `message` states observed vs expected and the rule."""

    passed: bool
    message: str


def non_inferiority(name: str, interval: Interval, margin: float, *, greater_is_better: bool) -> Decision:
    """Non-inferiority of candidate vs baseline on delta = candidate - baseline, decided on the CI bound.

    Greater is better: the lower bound must exceed -margin. Lower is better: the upper bound must be
    below +margin. A CI that straddles the margin does not establish non-inferiority (fails). The
    message states the rule it applied: which bound, against which margin, and why it failed.
    """
    _check_margin(margin)
    if greater_is_better:
        bound_name, bound, limit = "lower", interval.low, -margin
        passed, worse = bound > limit, interval.estimate <= limit
        op = ">" if passed else "<="
    else:
        bound_name, bound, limit = "upper", interval.high, margin
        passed, worse = bound < limit, interval.estimate >= limit
        op = "<" if passed else ">="
    rule = f"CI {bound_name} bound {bound:+.3f} {op} margin {limit:+.3f}"
    if passed:
        return Decision(True, f"{interval.describe(name)}: {rule}: non-inferior")
    why = ("the estimate itself is beyond the margin" if worse else
           "the estimate is within the margin but the CI is too wide to show it (more rows narrow it)")
    return Decision(False, f"{interval.describe(name)}: {rule}: non-inferiority not shown; {why}")


def required_improvement(
    name: str, interval: Interval, min_improvement: float, *, greater_is_better: bool
) -> Decision:
    """Superiority by at least `min_improvement`: the whole CI must lie beyond it in the good direction."""
    _check_margin(min_improvement)
    if greater_is_better:
        bound_name, bound, limit = "lower", interval.low, min_improvement
        passed = bound > limit
    else:
        bound_name, bound, limit = "upper", interval.high, -min_improvement
        passed = bound < limit
    verb = "clears" if passed else "does not clear"
    return Decision(passed, f"{interval.describe(name)}: CI {bound_name} bound {bound:+.3f} {verb} required "
                            f"improvement {limit:+.3f}")


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order (reject where adjusted p < alpha)."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("p_values must be one-dimensional")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must lie in [0, 1] and not be NaN")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def bonferroni_level(level: float, n_comparisons: int) -> float:
    """Per-comparison CI level whose family-wise coverage is at least `level` (Bonferroni)."""
    if not 0.0 < level < 1.0 or n_comparisons < 1:
        raise ValueError("level must be in (0, 1) and n_comparisons >= 1")
    return 1.0 - (1.0 - level) / n_comparisons


def _check_margin(margin: float) -> None:
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
