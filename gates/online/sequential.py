"""Always-valid sequential comparison of two arms for canary analysis: the normal-mixture mSPRT.

For an estimated difference d = b - a with variance V, mixing the alternative over N(theta0, tau2)
gives the likelihood ratio (Johari et al. 2017/2022; Robbins 1970)
    Lambda = sqrt(V / (V + tau2)) * exp((d - theta0)^2 tau2 / (2 V (V + tau2))),
a nonnegative martingale under theta = theta0, so by Ville's inequality P(ever Lambda >= 1/alpha) <= alpha.
Hence p = min(1, 1/Lambda) is valid at any look, and {theta0 : Lambda(theta0) < 1/alpha} is a
confidence sequence: the analysis may peek after every request and stop whenever it likes.
tau2 sets where the boundary is tightest; `tau2_for_horizon` places that at the planned sample size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Outcome = Literal["inferior", "non_inferior", "continue"]


@dataclass(frozen=True)
class SequentialResult:
    """One look: difference b - a, its always-valid CI and p-value (H0: no difference), and the outcome."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    decision: Outcome
    n_a: int
    n_b: int
    message: str


def tau2_for_horizon(variance_of_difference: float, alpha: float = 0.05) -> float:
    """Mixing variance that makes the confidence sequence narrowest when Var(d) reaches this value.

    Minimising the half-width V (1 + 1/r)(2 ln(1/alpha) + ln(1 + r)) over r = tau2 / V gives
    r = 2 ln(1/alpha) + ln(1 + r) (Howard et al. 2021, normal mixture), solved by fixed point.
    """
    if variance_of_difference <= 0 or not 0 < alpha < 1:
        raise ValueError("variance_of_difference must be > 0 and alpha in (0, 1)")
    c = 2 * math.log(1 / alpha)
    r = c
    for _ in range(50):
        r = c + math.log1p(r)
    return r * variance_of_difference


def tau2_for_proportions(rate: float, n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """tau2 for a rate near `rate`, tightest when the arms reach n_a and n_b (the planned horizon)."""
    return tau2_for_horizon(rate * (1 - rate) * (1 / n_a + 1 / n_b), alpha)


def proportion_difference(x_a, n_a, x_b, n_b) -> tuple[np.ndarray, np.ndarray]:
    """Difference of rates b - a and its variance; arrays broadcast (e.g. runs x looks).

    The variance uses (x + 0.5) / (n + 1) so that 0 or n successes never give a zero variance.
    """
    x_a, n_a, x_b, n_b = (np.asarray(v, dtype=float) for v in (x_a, n_a, x_b, n_b))
    if (n_a <= 0).any() or (n_b <= 0).any():
        raise ValueError("each arm needs at least one observation")
    smooth_a, smooth_b = (x_a + 0.5) / (n_a + 1), (x_b + 0.5) / (n_b + 1)
    variance = smooth_a * (1 - smooth_a) / n_a + smooth_b * (1 - smooth_b) / n_b
    return x_b / n_b - x_a / n_a, variance


def mixture_log_likelihood_ratio(diff, variance, tau2: float, theta0: float = 0.0) -> np.ndarray:
    """log Lambda of the normal-mixture SPRT for H0: theta = theta0, elementwise."""
    d, v = np.asarray(diff, dtype=float), np.asarray(variance, dtype=float)
    return 0.5 * np.log(v / (v + tau2)) + (d - theta0) ** 2 * tau2 / (2 * v * (v + tau2))


def always_valid_p_value(diff, variance, tau2: float, theta0: float = 0.0) -> np.ndarray:
    """min(1, 1/Lambda): valid at any stopping time, elementwise."""
    return np.minimum(1.0, np.exp(-mixture_log_likelihood_ratio(diff, variance, tau2, theta0)))


def confidence_sequence(diff, variance, tau2: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid (1 - alpha) interval for theta: all theta0 the mSPRT would not reject, elementwise."""
    d, v = np.asarray(diff, dtype=float), np.asarray(variance, dtype=float)
    half = np.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((v + tau2) / v)))
    return d - half, d + half


def msprt_two_proportions(
    x_a: int, n_a: int, x_b: int, n_b: int, *, margin: float, tau2: float, alpha: float = 0.05,
    greater_is_better: bool = True, name: str = "rate",
) -> SequentialResult:
    """Sequential non-inferiority of rate b vs rate a from cumulative counts (successes x of n).

    For an error rate pass greater_is_better=False. Outcome: non_inferior when the CI excludes a
    worsening beyond `margin`, inferior when the CI lies entirely beyond it, else continue.
    """
    diff, variance = proportion_difference(x_a, n_a, x_b, n_b)
    n = int(n_a), int(n_b)
    return _result(float(diff), float(variance), *n, margin, tau2, alpha, greater_is_better, name)


def msprt_two_means(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int, *, margin: float,
    tau2: float, alpha: float = 0.05, greater_is_better: bool = True, name: str = "mean",
) -> SequentialResult:
    """As `msprt_two_proportions` for means, from each arm's mean, sample variance and count."""
    if n_a <= 1 or n_b <= 1:
        raise ValueError("each arm needs at least two observations")
    variance = max(var_a / n_a + var_b / n_b, 1e-12)
    return _result(mean_b - mean_a, variance, n_a, n_b, margin, tau2, alpha, greater_is_better, name)


def _result(diff, variance, n_a, n_b, margin, tau2, alpha, greater_is_better, name) -> SequentialResult:
    if margin < 0 or tau2 <= 0 or not 0 < alpha < 1:
        raise ValueError("margin must be >= 0, tau2 > 0 and alpha in (0, 1)")
    low, high = (float(v) for v in confidence_sequence(diff, variance, tau2, alpha))
    p = float(always_valid_p_value(diff, variance, tau2))
    limit = -margin if greater_is_better else margin
    decision = _decide(low, high, margin, greater_is_better)
    ci = f"[always-valid {1 - alpha:.0%} CI {low:+.4f}, {high:+.4f}]"
    message = (f"{name} delta {diff:+.4f} {ci} vs margin "
               f"{limit:+.4f}: {decision.replace('_', '-')} (n {n_b} candidate / {n_a} baseline, p {p:.2g})")
    return SequentialResult(diff, low, high, p, decision, n_a, n_b, message)


def _decide(low: float, high: float, margin: float, greater_is_better: bool) -> Outcome:
    """Three-way split around the margin: the whole CI on one side decides, straddling continues."""
    if greater_is_better:  # harm is a decrease
        if low > -margin:
            return "non_inferior"
        if high < -margin:
            return "inferior"
    else:  # harm is an increase
        if high < margin:
            return "non_inferior"
        if low > margin:
            return "inferior"
    return "continue"
