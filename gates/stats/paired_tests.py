"""Closed-form paired comparisons of two models on the same rows: DeLong for ROC AUC, McNemar for accuracy."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from mlgate.gates.stats.interval import Interval


def delong_roc_auc_test(
    y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, level: float = 0.95
) -> Interval:
    """DeLong test of AUC(b) - AUC(a) on paired scores, O(n log n) midrank form (Sun & Xu 2014).

    The CI is the normal interval from DeLong's covariance; the p-value is two-sided for delta = 0.
    Raises ValueError without both classes or with mismatched lengths.
    """
    y = np.asarray(y_true)
    scores = np.vstack([np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)])
    if y.ndim != 1 or scores.shape[1] != y.size or not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 0/1 and as long as both score arrays")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    positives, negatives = scores[:, y == 1], scores[:, y == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative row")
    aucs, cov = _delong_auc_covariance(positives, negatives)
    delta = float(aucs[1] - aucs[0])
    se = math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))
    return _normal_interval(delta, se, level, f"DeLong (fast midrank), {m} positives / {n} negatives")


def _delong_auc_covariance(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their covariance (k, k) from structural components (Sun & Xu 2014, Alg. 1)."""
    m, n = positives.shape[1], negatives.shape[1]
    rank_pos = stats.rankdata(positives, axis=1)
    rank_neg = stats.rankdata(negatives, axis=1)
    rank_all = stats.rankdata(np.hstack([positives, negatives]), axis=1)
    aucs = rank_all[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    v_pos = (rank_all[:, :m] - rank_pos) / n
    v_neg = 1.0 - (rank_all[:, m:] - rank_neg) / m
    cov_pos = np.cov(v_pos) if m > 1 else np.zeros((2, 2))
    cov_neg = np.cov(v_neg) if n > 1 else np.zeros((2, 2))
    return aucs, cov_pos / m + cov_neg / n


def mcnemar_accuracy_test(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, level: float = 0.95
) -> Interval:
    """Accuracy(b) - accuracy(a) on paired predictions.

    CI: Newcombe's hybrid score interval for a difference of paired proportions (method 10, 1998).
    p-value: McNemar's mid-p test on the discordant pairs (Fagerland et al. 2013).
    """
    y, a, b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if y.ndim != 1 or y.size == 0 or not y.shape == a.shape == b.shape:
        raise ValueError("y_true and both prediction arrays must be non-empty, 1-D and of one length")
    right_a, right_b = a == y, b == y
    both = int(np.sum(right_a & right_b))
    only_b = int(np.sum(right_b & ~right_a))
    only_a = int(np.sum(right_a & ~right_b))
    neither = y.size - both - only_b - only_a
    low, high = _newcombe_paired(both, only_b, only_a, neither, level)
    p = mcnemar_mid_p(only_b, only_a)
    method = f"Newcombe paired score CI; McNemar mid-p ({only_b} pairs only b right, {only_a} only a right)"
    return Interval((only_b - only_a) / y.size, low, high, level, p, method)


def mcnemar_mid_p(only_b: int, only_a: int) -> float:
    """Two-sided mid-p of McNemar's exact test: exact binomial p minus the point probability."""
    discordant = only_b + only_a
    if discordant == 0:
        return 1.0
    k = min(only_b, only_a)
    exact = min(1.0, 2.0 * stats.binom.cdf(k, discordant, 0.5))
    return float(exact - stats.binom.pmf(k, discordant, 0.5))


def _newcombe_paired(both: int, only_1: int, only_2: int, neither: int, level: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 for p1 - p2, p1 = (both + only_1)/n, p2 = (both + only_2)/n."""
    n = both + only_1 + only_2 + neither
    p1, p2 = (both + only_1) / n, (both + only_2) / n
    l1, u1 = wilson_interval(both + only_1, n, level)
    l2, u2 = wilson_interval(both + only_2, n, level)
    margins = (both + only_1) * (only_2 + neither) * (both + only_2) * (only_1 + neither)
    phi = (both * neither - only_1 * only_2) / math.sqrt(margins) if margins > 0 else 0.0
    delta = p1 - p2
    low = delta - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = delta + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return max(low, -1.0), min(high, 1.0)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n <= 0:
        raise ValueError("a proportion needs n > 0")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _normal_interval(estimate: float, se: float, level: float, method: str) -> Interval:
    if se == 0.0:
        return Interval(estimate, estimate, estimate, level, 1.0 if estimate == 0 else 0.0, method)
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = float(2 * stats.norm.sf(abs(estimate) / se))
    return Interval(estimate, estimate - z * se, estimate + z * se, level, p, method)
