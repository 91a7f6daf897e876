"""Paired comparison of two models on the same rows: metric values and the CI of their difference.

The method follows the metric: DeLong for ROC AUC, McNemar (Newcombe CI) for accuracy, and one shared
paired bootstrap for every other metric. Statistics come from mlgate.gates.stats; this module only picks
the method, batches the bootstrap and keeps one metric's failure from hiding the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlgate.gates.config import BootstrapConfig, MetricThreshold
from mlgate.gates.stats import (
    METRICS,
    Interval,
    Predictions,
    delong_roc_auc_test,
    mcnemar_accuracy_test,
    paired_bootstrap_cis,
)

CLOSED_FORM = {"roc_auc": "DeLong", "accuracy": "McNemar"}
BOOTSTRAP = "bootstrap"


def method_label(metric: str) -> str:
    """Short name of the test deciding `metric`, as shown in messages."""
    return CLOSED_FORM.get(metric, BOOTSTRAP)


@dataclass(frozen=True)
class MetricComparison:
    """One metric on both models, and the CI of delta = candidate - baseline (or why it is missing)."""

    metric: str
    candidate: float | None
    baseline: float | None
    interval: Interval | None
    error: str | None = None

    @property
    def method(self) -> str:
        return method_label(self.metric)


def needs_scores(metric: str) -> bool:
    """`metric` needs predicted probabilities (ROC/PR AUC, log loss, Brier), not just labels."""
    spec = METRICS.get(metric)
    return spec is not None and spec.needs in ("scores", "proba")


def labels_only(metric: str, candidate_no_scores: str, baseline_no_scores: str = "") -> str:
    """Why `metric` does not apply ("" when it does): it needs scores and a model gives labels only."""
    if not needs_scores(metric):
        return ""
    if candidate_no_scores:
        return f"{metric} needs predicted probabilities; the candidate gives labels only: {candidate_no_scores}"
    if baseline_no_scores:
        return f"{metric} needs predicted probabilities; the baseline gives labels only: {baseline_no_scores}"
    return ""


def metric_value(metric: str, y_true: np.ndarray, predictions: Predictions) -> float:
    """The metric on one model's predictions. Raises ValueError when it cannot be computed."""
    spec = METRICS[metric]
    return spec(y_true, predictions.get(spec.needs, metric))


def compare_models(
    metrics: Sequence[str], y_true: np.ndarray, candidate: Predictions, baseline: Predictions,
    bootstrap: BootstrapConfig,
) -> dict[str, MetricComparison]:
    """Values and paired CIs of `metrics`; a metric that cannot be computed carries its error."""
    values = {m: _values(m, y_true, candidate, baseline) for m in metrics}
    computable = [m for m in metrics if not isinstance(values[m], str)]
    intervals = _intervals(computable, y_true, candidate, baseline, bootstrap)
    out = {}
    for m in metrics:
        problem = values[m] if isinstance(values[m], str) else intervals.get(m)
        if isinstance(problem, str):
            out[m] = MetricComparison(m, None, None, None, problem)
        else:
            out[m] = MetricComparison(m, *values[m], problem)
    return out


def _values(metric: str, y: np.ndarray, candidate: Predictions, baseline: Predictions) -> tuple[float, float] | str:
    try:
        return metric_value(metric, y, candidate), metric_value(metric, y, baseline)
    except ValueError as exc:
        return f"{metric} cannot be computed: {exc}"


def _intervals(
    metrics: Sequence[str], y: np.ndarray, candidate: Predictions, baseline: Predictions, cfg: BootstrapConfig
) -> dict[str, Interval | str]:
    out: dict[str, Interval | str] = {}
    for metric in [m for m in metrics if m in CLOSED_FORM]:
        out[metric] = _closed_form(metric, y, candidate, baseline, cfg.level)
    by_bootstrap = [m for m in metrics if m not in CLOSED_FORM]
    if by_bootstrap:
        out |= _bootstrap(by_bootstrap, y, candidate, baseline, cfg)
    return out


def _closed_form(metric: str, y: np.ndarray, candidate: Predictions, baseline: Predictions, level: float):
    spec = METRICS[metric]
    test = delong_roc_auc_test if metric == "roc_auc" else mcnemar_accuracy_test
    try:
        # Baseline first: every stats function returns delta = second - first.
        return test(y, baseline.get(spec.needs, metric), candidate.get(spec.needs, metric), level=level)
    except ValueError as exc:
        return f"{metric} delta cannot be computed ({CLOSED_FORM[metric]}): {exc}"


def _bootstrap(
    metrics: list[str], y: np.ndarray, candidate: Predictions, baseline: Predictions, cfg: BootstrapConfig
) -> dict[str, Interval | str]:
    """One shared bootstrap for all metrics; on failure, one run per metric to name the culprit."""
    try:
        return dict(_run_bootstrap(metrics, y, candidate, baseline, cfg))
    except ValueError:
        if len(metrics) == 1:
            return _bootstrap_one(metrics[0], y, candidate, baseline, cfg)
    out: dict[str, Interval | str] = {}
    for metric in metrics:
        out |= _bootstrap_one(metric, y, candidate, baseline, cfg)
    return out


def _bootstrap_one(metric, y, candidate, baseline, cfg) -> dict[str, Interval | str]:
    try:
        return dict(_run_bootstrap([metric], y, candidate, baseline, cfg))
    except ValueError as exc:
        return {metric: f"{metric} delta cannot be computed (paired bootstrap): {exc}"}


def _run_bootstrap(metrics, y, candidate, baseline, cfg: BootstrapConfig) -> dict[str, Interval]:
    return paired_bootstrap_cis(
        metrics, y, baseline, candidate, n_boot=cfg.n_boot, level=cfg.level, seed=cfg.seed, max_rows=cfg.max_rows
    )


def comparison_details(comparison: MetricComparison, rule: MetricThreshold) -> dict[str, Any]:
    """What a report needs to show a comparison: both values, delta, CI, p-value and method."""
    interval = comparison.interval
    if interval is None:
        return {"metric": comparison.metric, "error": comparison.error}
    return {
        "metric": comparison.metric, "candidate": comparison.candidate, "baseline": comparison.baseline,
        "delta": interval.estimate, "ci": [interval.low, interval.high], "level": interval.level,
        "p_value": interval.p_value, "p_value_for": "delta = 0", "test": comparison.method,
        "method": interval.method, "greater_is_better": rule.greater_is_better,
        "max_regression": rule.max_regression, "min_improvement": rule.min_improvement,
    }


def p_text(p: float | None, name: str = "p") -> str:
    """`p=0.002`, `p<0.001`, or `p n/a`."""
    if p is None or not np.isfinite(p):
        return f"{name} n/a"
    return f"{name}<0.001" if p < 0.001 else f"{name}={p:.3f}"
