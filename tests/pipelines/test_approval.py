"""`mlgate approve` / `mlgate approvals`: only allowed approvers, only for the report that was registered."""

from __future__ import annotations

import json

import pytest

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.registry.approval import codeowners
from tests.conftest import Project
from tests.pipelines.test_registration import (
    append,
    make_passed,
    release_project,
    run_cli,
    trained_template_dir,
    write_gate_results,
)

CODEOWNERS = """\
# Owners of the model configuration
*                @platform-bot
params.yaml      @ML-Lead @acme/ml-reviewers   # inline comment @not-an-owner
/dvc.yaml        data.steward@example.com @ml-lead

"""


@pytest.fixture()
def passed(project, capsys) -> Project:
    return make_passed(project, capsys)


def approve(project: Project, uri: str, capsys, *extra: str) -> tuple[int, str]:
    return run_cli("approve", "--params", str(project.params_path), "--tracking-uri", uri, *extra, capsys=capsys)


def test_codeowners_owners_without_at_signs_comments_or_duplicates(tmp_path):
    path = tmp_path / "CODEOWNERS"
    path.write_text(CODEOWNERS)
    assert codeowners(path) == ["platform-bot", "ML-Lead", "acme/ml-reviewers", "data.steward@example.com",
                                "ml-lead"]


def test_an_unknown_approver_is_refused_naming_the_allowed_list(passed, mlflow_uri, capsys):
    code, out = approve(passed, mlflow_uri, capsys, "--version", "1", "--stage", "production", "--approver", "mallory")
    assert code == 1 and "approver 'mallory' is not allowed to approve; allowed: ml-lead, release-manager" in out


def test_a_malformed_stage_or_missing_version_is_bad_usage(passed, mlflow_uri, capsys):
    code, out = approve(passed, mlflow_uri, capsys, "--version", "1", "--stage", "Canary 50", "--approver", "ml-lead")
    assert code == 2 and "--stage 'Canary 50'" in out
    code, out = approve(passed, mlflow_uri, capsys, "--stage", "production", "--approver", "ml-lead")
    assert code == 2 and "--version is required" in out


def test_dry_run_checks_the_approver_and_the_report_of_the_candidate(passed, mlflow_uri, capsys):
    code, out = approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "candidate", "--approver", "@ML-Lead")
    assert code == 0 and "ml-lead may approve stage candidate" in out and "nothing recorded" in out
    assert approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "candidate", "--approver", "eve")[0] == 1
    append(passed.root / "reports" / "report.md", "edited\n")
    code, out = approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "candidate", "--approver", "ml-lead")
    assert code == 1 and "reports/report.md changed since the verdict was written" in out


def test_codeowners_extend_the_approvers_when_configured(passed, mlflow_uri, capsys):
    (passed.root / "CODEOWNERS").write_text(CODEOWNERS)
    passed.params["approvals"] = {"approvers": [], "codeowners": "CODEOWNERS"}
    passed.write()
    code, out = approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "canary-50", "--approver", "platform-bot")
    assert code == 0, out
    assert approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "canary-50", "--approver", "ML-LEAD")[0] == 0
    code, out = approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "canary-50",
                        "--approver", "release-manager")
    assert code == 1 and "allowed: platform-bot, ML-Lead, acme/ml-reviewers" in out
    passed.params["approvals"]["codeowners"] = "missing/CODEOWNERS"
    passed.write()
    code, out = approve(passed, mlflow_uri, capsys, "--dry-run", "--stage", "canary-50", "--approver", "ml-lead")
    assert code == 2 and "missing/CODEOWNERS: CODEOWNERS file not found" in out


@pytest.fixture(scope="module")
def registered(tmp_path_factory, churn_frame, base_params, mlflow_uri) -> tuple[Project, str]:
    """A trained copy with a PASS verdict, registered once for the approval tests of this module."""
    from mlgate.pipelines.cli.main import main

    template = trained_template_dir(churn_frame, base_params, mlflow_uri)
    project = release_project(template, tmp_path_factory.mktemp("approval") / "project")
    write_gate_results(project.root)
    assert main(["verdict", "--params", str(project.params_path)]) == 0
    assert main(["register", "--params", str(project.params_path), "--tracking-uri", mlflow_uri]) == 0
    version = json.loads((project.root / "reports" / "registration.json").read_text())["version"]
    return project, version


@pytest.mark.slow
def test_approve_records_approver_time_report_and_comment(registered, mlflow_uri, capsys):
    project, version = registered
    code, out = approve(project, mlflow_uri, capsys, "--version", version, "--stage", "canary-50",
                        "--approver", "Release-Manager", "--comment", "looks good")
    assert code == 0, out
    ref = registry.get_version(mlflow_uri, project.params["model"]["name"], version)
    record = json.loads(ref.tags["mlgate.approval.canary-50"])
    assert record["approver"] == "release-manager" and record["comment"] == "looks good"
    assert record["report_digest"] == ref.tags["mlgate.report_digest"] and record["time"].endswith("+00:00")
    code, out = run_cli("approvals", "--params", str(project.params_path), "--tracking-uri", mlflow_uri,
                        "--version", version, capsys=capsys)
    assert code == 0 and "canary-50" in out and "release-manager" in out and "current" in out


@pytest.mark.slow
def test_approve_refuses_a_report_changed_since_registration(registered, mlflow_uri, capsys):
    project, version = registered
    report = project.root / "reports" / "report.md"
    original = report.read_text()
    try:
        append(report, "\nedited after registration\n")
        code, out = approve(project, mlflow_uri, capsys, "--version", version, "--stage", "production",
                            "--approver", "ml-lead")
        assert code == 1 and "reports/report.md changed since version" in out
    finally:
        report.write_text(original)
    ref = registry.get_version(mlflow_uri, project.params["model"]["name"], version)
    assert "mlgate.approval.production" not in ref.tags


@pytest.mark.slow
def test_unknown_versions_and_empty_listings(registered, mlflow_uri, capsys):
    project, _ = registered
    code, out = approve(project, mlflow_uri, capsys, "--version", "999", "--stage", "production", "--approver", "ml-lead")
    assert code == 2 and "has no version '999'" in out
    listing = ["approvals", "--params", str(project.params_path), "--tracking-uri", mlflow_uri, "--version"]
    assert run_cli(*listing, "999", capsys=capsys)[0] == 2
