"""The result model: aggregation, JSON round-trip without loss, and the exit-code contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlgate.gates.result import Check, ExitCode, GateResult, Status, exit_code_for, worst


def _check(name: str, status: Status, observed=0.5) -> Check:
    return Check(name, status, observed, ">= 0.8", f"{name} observed {observed}", {"n": 10})


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([Status.PASS, Status.WARN], Status.WARN),
        ([Status.PASS, Status.FAIL, Status.WARN], Status.FAIL),
        ([Status.FAIL, Status.ERROR], Status.ERROR),
        ([Status.SKIP, Status.PASS], Status.PASS),
        ([Status.SKIP], Status.SKIP),
        ([], Status.ERROR),
    ],
)
def test_gate_status_is_its_worst_check(statuses, expected):
    result = GateResult.from_checks("quality", [_check(f"c{i}", s) for i, s in enumerate(statuses)], 1.0)
    assert result.status == expected
    assert worst(statuses) == expected


def test_a_gate_without_checks_could_not_decide_so_it_is_error():
    assert GateResult.from_checks("data", [], 0.1).status == Status.ERROR


def test_json_round_trip_keeps_every_field_including_nonfinite_and_numpy_values(tmp_path):
    checks = [
        Check("psi.total_day_minutes", Status.FAIL, np.float64(0.31), "< 0.2", "drifted",
              {"p_value": np.float32(0.001), "bins": np.arange(3), "inf": math.inf, "nan": math.nan}),
        Check("rows", Status.PASS, np.int64(1200), ">= 100", "enough rows", {}),
        Check("baseline", Status.SKIP, None, "a champion", "no champion registered", {"reason": "first model"}),
    ]
    result = GateResult.from_checks("data", checks, 2.5, {"report": "reports/data.html"})
    path = result.write(tmp_path / "gates" / "data.json")
    restored = GateResult.read(path)
    assert restored.gate == "data" and restored.status == Status.FAIL
    assert restored.duration_s == 2.5 and restored.artifacts == {"report": "reports/data.html"}
    first = restored.checks[0]
    assert first.observed == pytest.approx(0.31) and first.details["bins"] == [0, 1, 2]
    assert first.details["inf"] == math.inf and math.isnan(first.details["nan"])
    assert restored.checks[1].observed == 1200 and restored.checks[2].observed is None
    assert GateResult.from_json(restored.to_json()).to_dict() == restored.to_dict()


def test_exit_codes_follow_the_contract():
    assert exit_code_for(Status.PASS) == ExitCode.OK == 0
    assert exit_code_for(Status.WARN) == ExitCode.OK
    assert exit_code_for(Status.SKIP) == ExitCode.OK
    assert exit_code_for(Status.FAIL) == ExitCode.GATE_FAILED == 1
    assert exit_code_for(Status.ERROR) == ExitCode.GATE_FAILED
    assert (ExitCode.USAGE, ExitCode.INTERNAL) == (2, 3)


def test_error_result_names_the_reason():
    result = GateResult.error("latency", "baseline server did not start: port in use")
    assert result.status == Status.ERROR
    assert "port in use" in result.checks[0].message
