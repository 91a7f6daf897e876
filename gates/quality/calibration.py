"""Calibration of the candidate's probabilities (ECE, Brier): a warning, never a block."""

from __future__ import annotations

import numpy as np

from mlgate.gates.config import CalibrationConfig
from mlgate.gates.quality.model_comparison import metric_value
from mlgate.gates.result import Check, Status
from mlgate.gates.stats import Predictions, expected_calibration_error


def calibration_checks(
    task: str, y: np.ndarray, candidate: Predictions, baseline: Predictions | None, config: CalibrationConfig,
    unscored: tuple[str, str] = ("", ""),
) -> list[Check]:
    """`calibration.ece` for classifiers, `calibration.brier` for binary ones when a ceiling is set; SKIP
    when the candidate gives labels only (`unscored`: the candidate's and the baseline's reasons)."""
    if task == "regression":
        return [Check("calibration", Status.SKIP, None, "a classifier", "calibration applies to classifiers only")]
    candidate_none, baseline_none = unscored
    if candidate_none:
        reason = f"calibration needs predicted probabilities; the candidate gives labels only: {candidate_none}"
        return [Check("calibration", Status.SKIP, None, "a classifier with probabilities", reason)]
    if baseline_none:
        baseline = None  # shown beside the candidate only when it has probabilities
    checks = [ece_check(y, candidate, baseline, config)]
    if task == "binary" and config.max_brier is not None:
        checks.append(brier_check(y, candidate, baseline, config.max_brier))
    return checks


def ece_check(y: np.ndarray, candidate: Predictions, baseline: Predictions | None, config: CalibrationConfig) -> Check:
    expected = f"ECE <= {config.max_ece:.3f}"
    if candidate.proba is None:
        return Check("calibration.ece", Status.ERROR, None, expected, "ECE needs predicted probabilities")
    try:
        ece = expected_calibration_error(y, candidate.proba, n_bins=config.n_bins)
        base = None if baseline is None or baseline.proba is None else expected_calibration_error(
            y, baseline.proba, n_bins=config.n_bins)
    except ValueError as exc:
        return Check("calibration.ece", Status.ERROR, None, expected, f"ECE cannot be computed: {exc}")
    return _warn_above("calibration.ece", "ECE", ece, base, config.max_ece, {"n_bins": config.n_bins})


def brier_check(y: np.ndarray, candidate: Predictions, baseline: Predictions | None, ceiling: float) -> Check:
    try:
        brier = metric_value("brier", y, candidate)
        base = None if baseline is None else metric_value("brier", y, baseline)
    except ValueError as exc:
        return Check("calibration.brier", Status.ERROR, None, f"Brier <= {ceiling:.3f}", f"Brier score: {exc}")
    return _warn_above("calibration.brier", "Brier score", brier, base, ceiling, {})


def _warn_above(name: str, label: str, value: float, baseline: float | None, ceiling: float, extra: dict) -> Check:
    status = Status.PASS if value <= ceiling else Status.WARN
    relation = "within" if status is Status.PASS else "above"
    versus = "" if baseline is None else f" (baseline {baseline:.3f})"
    message = f"{label} {value:.3f} {relation} max {ceiling:.3f}{versus}"
    details = {"candidate": value, "baseline": baseline, "max": ceiling, **extra}
    return Check(name, status, value, f"{label} <= {ceiling:.3f}", message, details)
