"""`mlgate verdict`: the worst gate decides, a missing result is ERROR, the files are written before exiting."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from mlgate.gates.result import Check, GateResult, JudgedModel, Status, Subject
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.lineage import directory_digest, model_digest
from mlgate.pipelines.report.verdict import EXPECTED_GATES, MODEL_GATES, decide

BASELINE_DETAILS = {"alias": "champion", "name": "churn", "version": "7", "uri": "models:/churn/7",
                    "run_id": "0123456789abcdef", "lineage": {"mlgate.git_sha": "feedface" * 5}}


def judged_candidate(root: Path) -> Subject | None:
    """What a gate that judged models/candidate as it is now records (None when there is no model)."""
    model_dir = root / "models" / "candidate"
    return Subject(JudgedModel("models/candidate", model_digest(model_dir))) if model_dir.is_dir() else None


def write_gate(root: Path, gate: str, *statuses: Status, details: dict | None = None) -> Path:
    checks = [Check(f"{gate}.check_{i}", s, i, "a rule", f"{gate} check {i} is {s}", details or {})
              for i, s in enumerate(statuses)]
    subject = judged_candidate(root) if gate in MODEL_GATES else None
    result = replace(GateResult.from_checks(gate, checks, 1.5), subject=subject)
    return result.write(root / "reports" / "gates" / f"{gate}.json")


@pytest.fixture()
def verdict_project(project):
    """A project with a candidate model directory and every expected gate passing."""
    model_dir = project.root / "models" / "candidate"
    model_dir.mkdir(parents=True)
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    for gate in EXPECTED_GATES:
        write_gate(project.root, gate, Status.PASS, Status.PASS)
    return project


def run_verdict(project, capsys) -> tuple[int, dict]:
    code = main(["verdict", "--params", str(project.params_path)])
    capsys.readouterr()
    return code, json.loads((project.root / "reports" / "verdict.json").read_text())


def test_all_gates_pass_records_model_params_and_report_digests(verdict_project, capsys):
    code, verdict = run_verdict(verdict_project, capsys)
    reports = verdict_project.root / "reports"
    assert code == 0 and verdict["status"] == "PASS"
    assert list(verdict["gates"]) == list(EXPECTED_GATES)
    assert verdict["gates"]["data"] == {"status": "PASS", "duration_s": 1.5,
                                        "checks": {"PASS": 2, "WARN": 0, "FAIL": 0, "ERROR": 0, "SKIP": 0}}
    assert verdict["model"]["digest"] == directory_digest(verdict_project.root / "models" / "candidate")
    assert verdict["report_digest"] == hashlib.sha256((reports / "report.md").read_bytes()).hexdigest()
    assert len(verdict["params_md5"]) == 32 and verdict["created"].endswith("+00:00")
    assert verdict["baseline"] is None and (reports / "report.html").is_file()


def test_a_failed_gate_fails_the_verdict_after_writing_every_file(verdict_project, capsys):
    write_gate(verdict_project.root, "quality", Status.PASS, Status.FAIL)
    code, verdict = run_verdict(verdict_project, capsys)
    assert code == 1 and verdict["status"] == "FAIL"
    assert verdict["gates"]["quality"]["status"] == "FAIL"
    assert "FAIL — 1 of 4 gates blocked" in (verdict_project.root / "reports" / "report.md").read_text()


def test_warnings_pass_with_exit_zero(verdict_project, capsys):
    write_gate(verdict_project.root, "latency", Status.PASS, Status.WARN)
    code, verdict = run_verdict(verdict_project, capsys)
    assert (code, verdict["status"]) == (0, "WARN")


def test_a_missing_gate_result_is_an_error_naming_the_gate(verdict_project, capsys):
    (verdict_project.root / "reports" / "gates" / "edge_cases.json").unlink()
    code = main(["verdict", "--params", str(verdict_project.params_path)])
    out = capsys.readouterr().out
    verdict = json.loads((verdict_project.root / "reports" / "verdict.json").read_text())
    assert code == 1 and verdict["status"] == "ERROR"
    assert verdict["gates"]["edge_cases"]["status"] == "ERROR"
    assert "reports/gates/edge_cases.json: no result file" in out
    assert "mlgate gate edge_cases" in (verdict_project.root / "reports" / "report.md").read_text()


def test_no_gate_results_at_all_is_an_error_not_a_pass(verdict_project, capsys):
    for path in (verdict_project.root / "reports" / "gates").glob("*.json"):
        path.unlink()
    code, verdict = run_verdict(verdict_project, capsys)
    assert code == 1 and all(g["status"] == "ERROR" for g in verdict["gates"].values())


def test_corrupt_or_misnamed_result_files_are_errors(verdict_project, capsys):
    gates = verdict_project.root / "reports" / "gates"
    (gates / "data.json").write_text("{not json")
    (gates / "latency.json").write_text((gates / "quality.json").read_text())
    code, verdict = run_verdict(verdict_project, capsys)
    report = (verdict_project.root / "reports" / "report.md").read_text()
    assert code == 1 and verdict["gates"]["data"]["status"] == "ERROR"
    assert verdict["gates"]["latency"]["status"] == "ERROR"
    assert "reports/gates/data.json: not a gate result" in report
    assert "holds the result of gate 'quality', not 'latency'" in report


def test_a_recorded_status_milder_than_its_checks_is_corrected(verdict_project, capsys):
    path = verdict_project.root / "reports" / "gates" / "data.json"
    data = json.loads(path.read_text())
    data["checks"][0]["status"] = "FAIL"  # the file still says PASS at gate level
    path.write_text(json.dumps(data))
    code, verdict = run_verdict(verdict_project, capsys)
    assert code == 1 and verdict["gates"]["data"]["status"] == "FAIL"


def test_an_extra_gate_result_counts_too(verdict_project, capsys):
    write_gate(verdict_project.root, "fairness", Status.FAIL)
    code, verdict = run_verdict(verdict_project, capsys)
    assert code == 1 and list(verdict["gates"])[-1] == "fairness"


def test_a_missing_candidate_model_is_an_error(verdict_project, capsys):
    for file in (verdict_project.root / "models" / "candidate").iterdir():
        file.unlink()
    code, verdict = run_verdict(verdict_project, capsys)
    assert code == 1 and verdict["status"] == "ERROR" and verdict["model"]["digest"] is None
    assert "candidate model directory not found" in verdict["problems"][0]


def test_the_baseline_version_is_read_from_a_gate_baseline_check(verdict_project, capsys):
    checks = [Check("baseline", Status.PASS, "models:/churn/7", "a version", "baseline models:/churn/7",
                    BASELINE_DETAILS), Check("metric.roc_auc.absolute", Status.PASS, 0.9, ">= 0.8", "ok")]
    result = GateResult.from_checks("quality", checks, 2.0)
    replace(result, subject=judged_candidate(verdict_project.root)).write(
        verdict_project.root / "reports" / "gates" / "quality.json")
    code, verdict = run_verdict(verdict_project, capsys)
    assert code == 0 and verdict["baseline"]["version"] == "7" and verdict["baseline"]["gate"] == "quality"


def test_decide_is_the_worst_status_and_never_passes_on_nothing():
    ok = GateResult.from_checks("a", [Check("c", Status.PASS, 1, "", "")], 0.0)
    skipped = GateResult.from_checks("b", [Check("c", Status.SKIP, None, "", "n/a")], 0.0)
    assert decide({"a": ok, "b": skipped}) == Status.PASS
    assert decide({"b": skipped}) == Status.ERROR
    assert decide({}) == Status.ERROR
    assert decide({"a": ok}, ("model missing",)) == Status.ERROR


def test_the_dvc_stage_reads_every_expected_gate_and_the_gated_params(repo_root):
    """The stage re-runs when any gate result or any section a verdict depends on changes."""
    import yaml

    from mlgate.pipelines.params import Params
    from mlgate.pipelines.report.verdict import NOT_GATED_SECTIONS

    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["verdict"]
    assert stage["cmd"] == "mlgate verdict"
    assert {f"reports/gates/{g}.json" for g in EXPECTED_GATES} <= set(stage["deps"])
    assert set(stage["params"]) == set(Params.model_fields) - set(NOT_GATED_SECTIONS)
    outs = {next(iter(o)): o[next(iter(o))] for o in stage["outs"]}
    assert set(outs) == {"reports/verdict.json", "reports/report.md", "reports/report.html"}
    assert all(spec == {"cache": False} for spec in outs.values())
