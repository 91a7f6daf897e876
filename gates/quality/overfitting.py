"""Overfitting check: how much worse the candidate is on the holdout than on its own training rows."""

from __future__ import annotations

import numpy as np

from mlgate.gates.quality.model_comparison import labels_only, metric_value
from mlgate.gates.result import Check, Status
from mlgate.gates.stats import METRICS, Predictions


def gap_checks(
    task: str, y_train: np.ndarray | None, train: Predictions | None, y_test: np.ndarray, test: Predictions,
    max_gap: dict[str, float], no_scores: str = "",
) -> list[Check]:
    """`gap.<metric>`: train value minus holdout value (in the metric's good direction) <= max_gap; SKIP
    for a metric that needs probabilities when the candidate gives labels only (`no_scores`: why)."""
    checks = []
    for metric, limit in max_gap.items():
        if reason := labels_only(metric, no_scores):
            checks.append(Check(f"gap.{metric}", Status.SKIP, None, f"train - holdout <= {limit:.3f}", reason))
        else:
            checks.append(gap_check(task, metric, limit, y_train, train, y_test, test))
    return checks


def gap_check(
    task: str, metric: str, limit: float, y_train: np.ndarray | None, train: Predictions | None,
    y_test: np.ndarray, test: Predictions,
) -> Check:
    name, expected = f"gap.{metric}", f"train - holdout <= {limit:.3f}"
    spec = METRICS.get(metric)
    if spec is None or task not in spec.tasks:
        return Check(name, Status.ERROR, None, expected, f"gates.quality.max_gap.{metric}: not a {task} metric")
    if y_train is None or train is None:
        return Check(name, Status.ERROR, None, expected, f"{metric} gap: no predictions on the training split")
    try:
        on_train, on_test = metric_value(metric, y_train, train), metric_value(metric, y_test, test)
    except ValueError as exc:
        return Check(name, Status.ERROR, None, expected, f"{metric} gap cannot be computed: {exc}")
    gap = on_train - on_test if spec.greater_is_better else on_test - on_train
    passed = gap <= limit
    relation = "within" if passed else "above"
    message = f"{metric} train {on_train:.3f} vs holdout {on_test:.3f}: gap {gap:+.3f} {relation} max {limit:.3f}"
    details = {"train": on_train, "holdout": on_test, "gap": gap, "max_gap": limit,
               "greater_is_better": spec.greater_is_better}
    return Check(name, Status.PASS if passed else Status.FAIL, gap, expected, message, details)
