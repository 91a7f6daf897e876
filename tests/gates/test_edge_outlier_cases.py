"""The edge-case gate's check of the bundle's outlier detector, from the answers' X-Outlier-Count."""

from __future__ import annotations

from mlgate.gates.edge_cases.decide import Answer, Case, HttpRequest
from mlgate.gates.edge_cases.outlier_cases import outlier_check
from mlgate.gates.result import Status

REQUEST = HttpRequest(b"{}")
CASES = [Case(f"feature.{name}", REQUEST, "ok", name) for name in ("x.above_max", "x.below_min", "s.unseen_category",
                                                                     "x.null")]


def test_every_out_of_training_case_flagged_passes() -> None:
    answers = [Answer(200, outliers=1), Answer(200, outliers=1), Answer(200, outliers=1), Answer(200, outliers=0)]
    check = outlier_check(CASES, answers)
    assert check.status is Status.PASS and check.observed == 3


def test_a_missed_case_warns_naming_it() -> None:
    answers = [Answer(200, outliers=1), Answer(200, outliers=0), Answer(200, outliers=1), Answer(200, outliers=0)]
    check = outlier_check(CASES, answers)
    assert check.status is Status.WARN and check.details["missed"] == ["feature.x.below_min"]


def test_no_detector_is_skipped_with_the_reason() -> None:
    check = outlier_check(CASES, [Answer(200)] * 4)
    assert check.status is Status.SKIP and "no outlier detector" in check.message
