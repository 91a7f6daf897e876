"""The live outlier-rate check of the shadow and canary analyses: warn by default, fail by config."""

from __future__ import annotations

from mlgate.gates.config import OutlierRateConfig
from mlgate.gates.online.outlier_rate import outlier_rate_check
from mlgate.gates.result import Status


def test_a_challenger_without_a_detector_is_skipped_with_the_reason() -> None:
    check = outlier_rate_check(0, 0, None, OutlierRateConfig(), 0.05)
    assert check.status is Status.SKIP and "no outlier detector" in check.message


def test_live_traffic_far_above_the_training_share_warns_by_default_and_fails_by_config() -> None:
    warned = outlier_rate_check(150, 1000, 0.01, OutlierRateConfig(), 0.05)  # 15% live vs 3% allowed
    assert warned.status is Status.WARN and warned.details["outcome"] == "Successful"
    assert "live outlier rate 0.1500" in warned.message and "unlike the training data" in warned.message
    failed = outlier_rate_check(150, 1000, 0.01, OutlierRateConfig(on_exceed="fail"), 0.05)
    assert failed.status is Status.FAIL and failed.details["outcome"] == "Failed"
    assert failed.details["threshold"] == 0.03 and failed.details["flagged"] == 150


def test_a_rate_near_the_training_share_passes() -> None:
    check = outlier_rate_check(10, 1000, 0.01, OutlierRateConfig(on_exceed="fail"), 0.05)
    assert check.status is Status.PASS and "within the limit" in check.message


def test_too_few_rows_wait_when_failing_is_configured_and_are_skipped_when_warning() -> None:
    assert outlier_rate_check(5, 20, 0.01, OutlierRateConfig(), 0.05).status is Status.SKIP
    waiting = outlier_rate_check(5, 20, 0.01, OutlierRateConfig(on_exceed="fail"), 0.05)
    assert waiting.status is Status.ERROR and waiting.details["outcome"] == "Inconclusive"


def test_a_warning_is_named_in_a_successful_looks_reason() -> None:
    from mlgate.gates.online.core import AnalysisOutcome, analysis, check

    fine = check("error_rate", AnalysisOutcome.SUCCESSFUL, "error rate fine", value=0.0, threshold=0.01, expected="low")
    warned = outlier_rate_check(150, 1000, 0.01, OutlierRateConfig(), 0.05)
    look = analysis("canary", [fine, warned], 0.0, {})
    assert look.outcome is AnalysisOutcome.SUCCESSFUL
    assert look.reason.startswith("every canary check passed (2 checks); warning: outlier_rate: live outlier rate 0.15")
