"""The metric registry: each metric is written once, in a form that also evaluates bootstrap replicates.

A metric is a function of a confusion matrix, of per-row sums, or of weighted ranks. Its point
estimate is the same code applied with unit weights, so the estimate and its bootstrap cannot drift.
Conventions: binary labels and y_true are 0/1 (1 = positive class); binary scores/proba are 1-D
P(y=1); multiclass proba is (n, K) with y_true holding column indices; regression uses values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mlgate.gates.stats.ranking import (
    GroupedWeights,
    group_weights,
    rank_scores,
    weighted_average_precision,
    weighted_roc_auc,
)

Needs = Literal["labels", "scores", "proba", "values"]
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class FromConfusion:
    """Metric of confusion counts (B, K, K) indexed [true, predicted] -> (B,)."""

    fn: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FromRowSums:
    """Metric of sums of per-row terms: `terms(y, pred) -> (n, t)`, `combine(sums (B, t), n) -> (B,)`."""

    terms: Callable[[np.ndarray, np.ndarray], np.ndarray]
    combine: Callable[[np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class FromWeightedRanks:
    """Metric of scores sorted once and weights summed per tie group: `fn(grouped) -> (B,)`."""

    fn: Callable[[GroupedWeights], np.ndarray]


MetricForm = FromConfusion | FromRowSums | FromWeightedRanks


@dataclass(frozen=True)
class MetricSpec:
    """A named metric: which tasks it applies to, its direction, which predictions it needs."""

    name: str
    tasks: frozenset[str]
    greater_is_better: bool
    needs: Needs
    form: MetricForm

    def __call__(self, y_true: np.ndarray, predicted: np.ndarray) -> float:
        """The metric's value on one sample (unit weights)."""
        y, pred = np.asarray(y_true), np.asarray(predicted)
        _check_lengths(y, pred)
        form = self.form
        if isinstance(form, FromConfusion):
            (y_codes, p_codes), k = encode_labels(y, pred)
            return float(form.fn(confusion_counts(y_codes, p_codes, k)[None])[0])
        if isinstance(form, FromRowSums):
            return float(form.combine(form.terms(y, pred).sum(axis=0)[None], float(y.size))[0])
        return float(form.fn(group_weights(rank_scores(y, pred), np.ones((1, y.size))))[0])


def encode_labels(*arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Shared integer codes and class count; small non-negative integers keep their value (1 stays 1)."""
    arrays_ = [np.asarray(a) for a in arrays]
    if all(_small_non_negative_integers(a) for a in arrays_):
        k = max(2, max((int(a.max()) + 1 for a in arrays_ if a.size), default=2))
        return [a.astype(np.intp) for a in arrays_], k
    uniques, inverse = np.unique(np.concatenate(arrays_), return_inverse=True)
    return np.split(inverse, np.cumsum([a.size for a in arrays_])[:-1]), max(2, uniques.size)


def confusion_counts(y_codes: np.ndarray, pred_codes: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrix (K, K) indexed [true, predicted]."""
    return np.bincount(y_codes * k + pred_codes, minlength=k * k).reshape(k, k).astype(float)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """ECE over equal-width bins: 1-D proba is P(y=1) vs the positive rate; 2-D uses top-label confidence."""
    y, p = np.asarray(y_true), np.asarray(proba, dtype=float)
    _check_lengths(y, p)
    if p.ndim == 2:
        confidence, outcome = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    else:
        confidence, outcome = p, _binary_y(y)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, outcome, n_bins) - np.bincount(bins, confidence, n_bins)
    return float(np.abs(gap).sum() / count.sum())


def _small_non_negative_integers(a: np.ndarray) -> bool:
    if a.size == 0 or a.dtype.kind not in "biuf":
        return a.size == 0
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        return False
    return bool(a.min() >= 0 and a.max() < 1024)


def _check_lengths(y: np.ndarray, pred: np.ndarray) -> None:
    if y.ndim != 1 or y.size == 0 or pred.shape[0] != y.size:
        shapes = f"{y.shape} vs {pred.shape}"
        raise ValueError(f"y_true must be non-empty, 1-D and as long as the predictions ({shapes})")
    if pred.dtype.kind == "f" and np.isnan(pred).any():
        raise ValueError("predictions contain NaN")


def _binary_y(y: np.ndarray) -> np.ndarray:
    if not np.isin(y, (0, 1)).all():
        raise ValueError("binary y_true must hold only 0 and 1 (1 = positive class)")
    return y.astype(float)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (sklearn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _binary_cells(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if c.shape[1] != 2:
        raise ValueError("precision, recall and f1 are binary metrics: labels must be 0/1")
    return c[:, 1, 1], c[:, 0, 1], c[:, 1, 0]


def _accuracy(c: np.ndarray) -> np.ndarray:
    return np.trace(c, axis1=1, axis2=2) / c.sum(axis=(1, 2))


def _precision(c: np.ndarray) -> np.ndarray:
    tp, fp, _ = _binary_cells(c)
    return _ratio(tp, tp + fp)


def _recall(c: np.ndarray) -> np.ndarray:
    tp, _, fn = _binary_cells(c)
    return _ratio(tp, tp + fn)


def _f1(c: np.ndarray) -> np.ndarray:
    tp, fp, fn = _binary_cells(c)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _macro_f1(c: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes present in y_true or predictions (as sklearn's average="macro")."""
    tp = np.diagonal(c, axis1=1, axis2=2)
    support = c.sum(axis=2) + c.sum(axis=1)
    present = support > 0
    return (_ratio(2 * tp, support) * present).sum(axis=1) / present.sum(axis=1)


def _squared_error(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return ((pred.astype(float) - y) ** 2)[:, None]


def _brier_terms(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return _squared_error(_binary_y(y), pred)


def _log_loss_terms(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    p = np.clip(pred.astype(float), _EPS, 1 - _EPS)
    if p.ndim == 2:
        if not _small_non_negative_integers(y) or y.max() >= p.shape[1]:
            raise ValueError("multiclass y_true must hold column indices of proba")
        return -np.log(p[np.arange(y.size), y.astype(np.intp)])[:, None]
    yb = _binary_y(y)
    return -(yb * np.log(p) + (1 - yb) * np.log1p(-p))[:, None]


def _r2_terms(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    yf = y.astype(float)
    return np.column_stack([(pred - yf) ** 2, yf, yf**2])


def _r2_combine(s: np.ndarray, n: float) -> np.ndarray:
    """1 - SSE/SST from sums; a constant target gives 1 if fitted exactly, else 0 (as sklearn)."""
    sse, total = s[:, 0], s[:, 2] - s[:, 1] ** 2 / n
    constant = total <= 1e-12 * np.maximum(s[:, 2], 1.0)
    return np.where(constant, np.where(sse == 0, 1.0, 0.0), 1 - sse / np.where(constant, 1.0, total))


def _mean_of_first(s: np.ndarray, n: float) -> np.ndarray:
    return s[:, 0] / n


def _spec(name: str, tasks: str, greater: bool, needs: Needs, form: MetricForm) -> MetricSpec:
    return MetricSpec(name, frozenset(tasks.split()), greater, needs, form)


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        _spec("roc_auc", "binary", True, "scores", FromWeightedRanks(weighted_roc_auc)),
        _spec("pr_auc", "binary", True, "scores", FromWeightedRanks(weighted_average_precision)),
        _spec("f1", "binary", True, "labels", FromConfusion(_f1)),
        _spec("precision", "binary", True, "labels", FromConfusion(_precision)),
        _spec("recall", "binary", True, "labels", FromConfusion(_recall)),
        _spec("accuracy", "binary multiclass", True, "labels", FromConfusion(_accuracy)),
        _spec("macro_f1", "multiclass", True, "labels", FromConfusion(_macro_f1)),
        _spec("log_loss", "binary multiclass", False, "proba", FromRowSums(_log_loss_terms, _mean_of_first)),
        _spec("brier", "binary", False, "proba", FromRowSums(_brier_terms, _mean_of_first)),
        _spec("rmse", "regression", False, "values",
              FromRowSums(_squared_error, lambda s, n: np.sqrt(s[:, 0] / n))),
        _spec("mae", "regression", False, "values",
              FromRowSums(lambda y, p: np.abs(p.astype(float) - y)[:, None], _mean_of_first)),
        _spec("r2", "regression", True, "values", FromRowSums(_r2_terms, _r2_combine)),
    )
}


def metrics_for_task(task: str) -> tuple[str, ...]:
    """Names of the registered metrics that apply to `task` ("binary", "multiclass", "regression")."""
    return tuple(name for name, spec in METRICS.items() if task in spec.tasks)
