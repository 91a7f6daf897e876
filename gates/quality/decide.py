"""Quality gate: is the candidate at least as good as the production baseline on the same holdout?

Pure: takes labels, both models' predictions, the slice columns and the config; returns a GateResult.
Every configured metric gets an absolute floor check (when a floor is set) and a check against the
baseline decided on the CI of the paired difference (DeLong, McNemar or paired bootstrap). Slices,
the train/holdout gap and calibration are judged in mlgate.gates.quality.slices, mlgate.gates.quality.overfitting, mlgate.gates.quality.calibration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgate.gates.config import MetricThreshold, QualityGateConfig
from mlgate.gates.quality.calibration import calibration_checks
from mlgate.gates.quality.model_comparison import (
    MetricComparison,
    compare_models,
    comparison_details,
    labels_only,
    metric_value,
    p_text,
)
from mlgate.gates.quality.overfitting import gap_checks
from mlgate.gates.quality.slices import slice_checks
from mlgate.gates.result import Check, GateResult, Status
from mlgate.gates.stats import METRICS, Predictions, non_inferiority, required_improvement

GATE = "quality"


@dataclass(frozen=True)
class BaselineOutputs:
    """The production model compared against: its registry identity, lineage and holdout predictions."""

    name: str
    version: str
    uri: str
    predictions: Predictions
    run_id: str | None = None
    lineage: dict[str, str] = field(default_factory=dict)
    no_scores: str = ""  # why this model gives labels only ("" when it has probabilities)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "uri": self.uri, "run_id": self.run_id,
                "lineage": dict(self.lineage)}


@dataclass(frozen=True)
class QualityInputs:
    """Everything the gate judges. Binary labels are 0/1 (1 = positive class), scores are P(y=1).
    `candidate_no_scores` (and the baseline's `no_scores`) say why a model gives labels only: metrics
    that need probabilities are then SKIP with that reason."""

    task: str
    y_test: np.ndarray
    candidate: Predictions
    baseline: BaselineOutputs | None = None
    missing_baseline: str = "no baseline model was given"
    baseline_failed: bool = False  # a baseline exists but could not be used: ERROR, never SKIP
    slice_frame: pd.DataFrame | None = None
    y_train: np.ndarray | None = None
    candidate_train: Predictions | None = None
    candidate_no_scores: str = ""

    @property
    def baseline_no_scores(self) -> str:
        return self.baseline.no_scores if self.baseline is not None else ""


def check(inputs: QualityInputs, config: QualityGateConfig) -> GateResult:
    """Judge the candidate: baseline, per-metric floors and CIs, slices, overfitting gap, calibration."""
    started = time.perf_counter()
    absent = Status.ERROR if config.require_baseline or inputs.baseline_failed else Status.SKIP
    comparisons = _comparisons(inputs, config)
    checks = [baseline_check(inputs, config, absent)]
    for name, rule in config.metrics.items():
        checks += metric_checks(name, rule, inputs, comparisons.get(name), absent)
    base = inputs.baseline.predictions if inputs.baseline else None
    unscored = (inputs.candidate_no_scores, inputs.baseline_no_scores)
    checks += slice_checks(inputs.task, inputs.y_test, inputs.candidate, base, inputs.missing_baseline,
                           inputs.slice_frame, config, absent, unscored)
    checks += gap_checks(inputs.task, inputs.y_train, inputs.candidate_train, inputs.y_test, inputs.candidate,
                         config.max_gap, inputs.candidate_no_scores)
    checks += calibration_checks(inputs.task, inputs.y_test, inputs.candidate, base, config.calibration, unscored)
    return GateResult.from_checks(GATE, checks, time.perf_counter() - started)


def _comparisons(inputs: QualityInputs, config: QualityGateConfig) -> dict[str, MetricComparison]:
    if inputs.baseline is None:
        return {}
    valid = [m for m in config.metrics if _rule_problem(m, config.metrics[m], inputs.task) is None
             and not labels_only(m, inputs.candidate_no_scores, inputs.baseline_no_scores)]
    return compare_models(valid, inputs.y_test, inputs.candidate, inputs.baseline.predictions, config.bootstrap)


def baseline_check(inputs: QualityInputs, config: QualityGateConfig, absent: Status) -> Check:
    """Which production model the candidate is judged against, with its version and lineage."""
    expected = f"a model version behind alias '{config.baseline_alias}'"
    if inputs.baseline is None:
        rule = ("" if inputs.baseline_failed else " (require_baseline: true)" if config.require_baseline
                else "; relative checks are skipped")
        return Check("baseline", absent, None, expected, f"{inputs.missing_baseline}{rule}",
                     {"alias": config.baseline_alias, "require_baseline": config.require_baseline})
    base = inputs.baseline
    sha = base.lineage.get("mlgate.git_sha", "unknown")
    message = f"baseline {base.uri} (alias '{config.baseline_alias}', run {base.run_id}, git {sha[:12]})"
    return Check("baseline", Status.PASS, base.uri, expected, message,
                 {"alias": config.baseline_alias, **base.describe()})


def metric_checks(
    name: str, rule: MetricThreshold, inputs: QualityInputs, comparison: MetricComparison | None, absent: Status
) -> list[Check]:
    """`metric.<name>.absolute` (when a floor is set) and `metric.<name>.vs_baseline`."""
    problem = _rule_problem(name, rule, inputs.task)
    if problem:
        return [Check(f"metric.{name}", Status.ERROR, None, "a valid metric rule", problem)]
    if skipped := labels_only(name, inputs.candidate_no_scores):
        return _labels_only_checks(name, rule, skipped)
    value = _candidate_value(name, inputs, comparison)
    checks = [absolute_check(name, rule, value)] if rule.min_absolute is not None else []
    if inputs.baseline is None:
        reason = f"{name}: no comparison, {inputs.missing_baseline}"
        details = {"candidate": value} if isinstance(value, float) else {}
        return [*checks, Check(f"metric.{name}.vs_baseline", absent, None, _relative_rule(rule), reason, details)]
    if skipped := labels_only(name, "", inputs.baseline_no_scores):
        details = {"candidate": value} if isinstance(value, float) else {}
        return [*checks, Check(f"metric.{name}.vs_baseline", Status.SKIP, None, _relative_rule(rule),
                               f"{name}: no comparison, {skipped}", details)]
    if comparison is None:
        return [*checks, Check(f"metric.{name}.vs_baseline", Status.ERROR, None, _relative_rule(rule),
                               f"{name}: the comparison with the baseline was not computed")]
    return [*checks, relative_check(name, rule, comparison)]


def _labels_only_checks(name: str, rule: MetricThreshold, reason: str) -> list[Check]:
    """SKIP for the floor (when set) and the comparison: the metric does not apply to a labels-only model."""
    floor = ([Check(f"metric.{name}.absolute", Status.SKIP, None, f"{name} floor {rule.min_absolute}", reason)]
             if rule.min_absolute is not None else [])
    return [*floor, Check(f"metric.{name}.vs_baseline", Status.SKIP, None, _relative_rule(rule), reason)]


def _candidate_value(name: str, inputs: QualityInputs, comparison: MetricComparison | None) -> float | str:
    """The candidate's value, reused from the comparison when there is one (rank metrics sort 1e6 rows)."""
    if comparison is not None and comparison.candidate is not None:
        return comparison.candidate
    try:
        return metric_value(name, inputs.y_test, inputs.candidate)
    except ValueError as exc:
        return f"{name} cannot be computed on the candidate: {exc}"


def _rule_problem(name: str, rule: MetricThreshold, task: str) -> str | None:
    spec = METRICS.get(name)
    if spec is None or task not in spec.tasks:
        return f"gates.quality.metrics.{name}: not a {task} metric"
    if rule.greater_is_better != spec.greater_is_better:
        direction = "higher" if spec.greater_is_better else "lower"
        return (f"gates.quality.metrics.{name}.greater_is_better: {str(rule.greater_is_better).lower()} "
                f"contradicts {name}, where {direction} is better")
    return None


def absolute_check(name: str, rule: MetricThreshold, value: float | str) -> Check:
    """The candidate's value against the absolute floor (a ceiling when lower is better)."""
    floor = float(rule.min_absolute)  # type: ignore[arg-type]
    op = ">=" if rule.greater_is_better else "<="
    expected = f"{name} {op} {floor:.3f}"
    check_name = f"metric.{name}.absolute"
    if isinstance(value, str):
        return Check(check_name, Status.ERROR, None, expected, value)
    passed = value >= floor if rule.greater_is_better else value <= floor
    word = ("floor" if rule.greater_is_better else "ceiling")
    relation = ("meets" if passed else ("below" if rule.greater_is_better else "above"))
    return Check(check_name, Status.PASS if passed else Status.FAIL, value, expected,
                 f"{name} {value:.3f} {relation} {word} {floor:.3f}", {"candidate": value, "floor": floor})


def relative_check(name: str, rule: MetricThreshold, comparison: MetricComparison) -> Check:
    """The paired difference's CI against the non-inferiority margin or the required improvement."""
    check_name, expected = f"metric.{name}.vs_baseline", _relative_rule(rule)
    if comparison.interval is None:
        return Check(check_name, Status.ERROR, None, expected, comparison.error or f"{name}: no interval")
    interval, greater = comparison.interval, rule.greater_is_better
    if rule.max_regression is not None:
        decision = non_inferiority(name, interval, rule.max_regression, greater_is_better=greater)
    elif rule.min_improvement is not None:
        decision = required_improvement(name, interval, rule.min_improvement, greater_is_better=greater)
    else:
        decision = None
    status = Status.SKIP if decision is None else (Status.PASS if decision.passed else Status.FAIL)
    text = decision.message if decision else f"{interval.describe(name)}; no relative rule configured"
    message = f"{text} ({comparison.method} test of no difference: {p_text(interval.p_value)})"
    return Check(check_name, status, interval.estimate, expected, message, comparison_details(comparison, rule))


def _relative_rule(rule: MetricThreshold) -> str:
    bound = "lower" if rule.greater_is_better else "upper"
    sign = 1.0 if rule.greater_is_better else -1.0
    op = ">" if rule.greater_is_better else "<"
    if rule.max_regression is not None:
        return f"CI {bound} bound of delta {op} {-sign * rule.max_regression:+.3f} (non-inferiority)"
    if rule.min_improvement is not None:
        return f"CI {bound} bound of delta {op} {sign * rule.min_improvement:+.3f} (required improvement)"
    return "no relative rule (set max_regression or min_improvement)"
