"""ROC AUC and average precision under row weights, vectorised over bootstrap replicates.

Scores are sorted once; each replicate is a row of weights (resample counts), so B replicates cost
O(B n) after one O(n log n) sort, and AUC and average precision of one model share that work. Tied
scores are grouped, so ties count half (AUC) and share one threshold (average precision), as sklearn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankedScores:
    """Rows ordered by descending score, the last row of each tie group, and the 0/1 labels in that order."""

    order: np.ndarray
    ends: np.ndarray | None
    positive: np.ndarray


@dataclass(frozen=True)
class GroupedWeights:
    """Per replicate and tie group (descending score): positive/negative weight and their running sums."""

    pos: np.ndarray
    neg: np.ndarray
    cum_pos: np.ndarray
    cum_neg: np.ndarray


def rank_scores(y_true: np.ndarray, score: np.ndarray) -> RankedScores:
    """Sort once: descending score, stable; `ends` is None when there are no ties."""
    y, s = np.asarray(y_true), np.asarray(score, dtype=float)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError("scores must be 1-D and as long as y_true")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("binary y_true must hold only 0 and 1 (1 = positive class)")
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    last_of_group = np.r_[sorted_s[1:] != sorted_s[:-1], True]
    ends = None if last_of_group.all() else np.flatnonzero(last_of_group)
    return RankedScores(order, ends, y[order].astype(bool))


def group_weights(ranked: RankedScores, weights: np.ndarray) -> GroupedWeights:
    """Sum row weights (B, n) into tie groups; weights keep their dtype (float32 counts stay exact).

    Running sums over rows read at each group's last row are the running sums over groups, which is
    cheaper than np.add.reduceat.
    """
    w = weights[:, ranked.order]
    cum_pos = np.cumsum(w * ranked.positive, axis=1)
    cum_all = np.cumsum(w, axis=1)
    if ranked.ends is not None:
        cum_pos, cum_all = cum_pos[:, ranked.ends], cum_all[:, ranked.ends]
    cum_neg = cum_all - cum_pos
    return GroupedWeights(_steps(cum_pos), _steps(cum_neg), cum_pos, cum_neg)


def _steps(running: np.ndarray) -> np.ndarray:
    """Inverse of a running sum along axis 1."""
    steps = np.empty_like(running)
    steps[:, 0] = running[:, 0]
    np.subtract(running[:, 1:], running[:, :-1], out=steps[:, 1:])
    return steps


def weighted_roc_auc(g: GroupedWeights) -> np.ndarray:
    """P(positive scores above negative) + half the ties, per replicate; NaN without both classes."""
    total_neg = g.cum_neg[:, -1]
    # negatives strictly below a group = all negatives - those at or above it, + half the group's own
    below = total_neg[:, None] - g.cum_neg + 0.5 * g.neg
    wins = np.einsum("ij,ij->i", g.pos, below, dtype=np.float64)
    return _nan_where_zero(wins, g.cum_pos[:, -1].astype(np.float64) * total_neg)


def weighted_average_precision(g: GroupedWeights) -> np.ndarray:
    """Sum over thresholds of (recall increase) x precision, per replicate; NaN without positives."""
    predicted = g.cum_pos + g.cum_neg
    precision = np.divide(g.cum_pos, predicted, out=np.zeros_like(predicted), where=predicted > 0)
    return _nan_where_zero(np.einsum("ij,ij->i", g.pos, precision, dtype=np.float64), g.cum_pos[:, -1])


def _nan_where_zero(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
