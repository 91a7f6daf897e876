"""Delivery of the model a pull request's reviewers approved, by its digest, against a real MLflow store.

ci.yml's approval job registers the judged model from the gates job's reports alone (no model directory
on its runner, no alias moved) and records the approval on that version; cd.yml then starts the rollout
of the version with that digest, and refuses a digest nobody registered, a verdict that did not pass, a
version without the approval, and a champion that already is that model.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.registry.registration import MODEL_DIGEST_TAG
from tests.conftest import Project
from tests.pipelines.test_registration import (
    release_project,
    run_cli,
    trained_template_dir,
    write_gate_results,
)


def runner_copy(project: Project, destination: Path, *, reports: bool) -> Path:
    """What a later job's runner holds: the checkout's params.yaml and, when downloaded, the gates job's
    reports/ (never models/: the model directory stays on the gates job's runner)."""
    destination.mkdir(parents=True)
    shutil.copy2(project.params_path, destination / "params.yaml")
    if reports:
        shutil.copytree(project.root / "reports", destination / "reports")
    return destination / "params.yaml"


@pytest.fixture(scope="module")
def approved(tmp_path_factory, churn_frame, base_params, mlflow_uri) -> dict:
    """A pull request's model: judged (PASS) on the gates runner, registered and approved as `candidate`
    on the approval runner from the reports alone."""
    from mlgate.pipelines.cli.main import main

    root = tmp_path_factory.mktemp("cd-by-digest")
    project = release_project(trained_template_dir(churn_frame, base_params, mlflow_uri), root / "gates")
    write_gate_results(project.root)
    assert main(["verdict", "--params", str(project.params_path)]) == 0
    params = runner_copy(project, root / "approve-model", reports=True)
    assert not (params.parent / "models").exists()
    uri = ["--params", str(params), "--tracking-uri", mlflow_uri]
    assert main(["register", *uri, "--from-training-run", "--no-alias"]) == 0
    registration = json.loads((params.parent / "reports" / "registration.json").read_text())
    assert main(["approve", *uri, "--version", registration["version"], "--stage", "candidate",
                 "--approver", "ml-lead"]) == 0
    digest = json.loads((project.root / "reports" / "verdict.json").read_text())["model"]["digest"]
    return {"project": project, "root": root, "digest": digest, "version": registration["version"],
            "registration": registration, "name": project.params["model"]["name"]}


def cd_runner(approved: dict, mlflow_uri: str) -> list[str]:
    """cd.yml's runner: the merge commit's params.yaml, nothing else."""
    path = approved["root"] / f"cd-{uuid.uuid4().hex[:6]}"
    return ["--params", str(runner_copy(approved["project"], path, reports=False)), "--tracking-uri", mlflow_uri]


@pytest.mark.slow
def test_the_approval_job_registers_the_judged_model_from_the_reports_alone(approved, mlflow_uri):
    ref = registry.get_version(mlflow_uri, approved["name"], approved["version"])
    run = json.loads((approved["project"].root / "reports" / "train_run.json").read_text())
    assert ref.tags[MODEL_DIGEST_TAG] == approved["digest"] and ref.tags["mlgate.verdict"] == "PASS"
    assert ref.run_id == run["run_id"] and ref.tags["mlgate.stage"] == "candidate"
    assert registry.version_by_alias(mlflow_uri, approved["name"], registry.CHALLENGER) is None  # not merged yet
    assert approved["registration"]["alias"] is None and approved["registration"]["model_digest"] == approved["digest"]
    assert "mlgate.approval.candidate" in ref.tags


@pytest.mark.slow
def test_an_approval_away_from_the_reports_checks_the_registered_report(approved, mlflow_uri, capsys):
    args = [*cd_runner(approved, mlflow_uri), "--version", approved["version"], "--stage", "canary-50",
            "--approver", "ml-lead"]
    code, out = run_cli("approve", *args, capsys=capsys)
    assert code == 1 and "no report to approve" in out  # nothing on disk, and not asked to use the registered one
    code, out = run_cli("approve", *args, "--registered-report", capsys=capsys)
    assert code == 0 and "approved for canary-50 by ml-lead" in out, out
    code, out = run_cli("approve", *args, "--registered-report", "--dry-run", capsys=capsys)
    assert code == 2 and "--registered-report needs a registered --version" in out


@pytest.mark.slow
def test_registering_a_training_run_that_is_not_the_judged_model_is_refused(approved, mlflow_uri, capsys):
    params = runner_copy(approved["project"], approved["root"] / "other-run", reports=True)
    record = params.parent / "reports" / "train_run.json"
    run = json.loads(record.read_text())
    record.write_text(json.dumps({**run, "model_uri": f"runs:/{uuid.uuid4().hex}/model"}))  # not the judged model
    code, out = run_cli("register", "--params", str(params), "--tracking-uri", mlflow_uri, "--from-training-run",
                        "--no-alias", capsys=capsys)
    assert code == 1 and "the verdict is for model digest" in out, out


@pytest.mark.slow
def test_start_by_digest_refuses_a_digest_no_version_has(approved, mlflow_uri, capsys):
    code, out = run_cli("rollout", "start", *cd_runner(approved, mlflow_uri), "--digest", "0" * 64, capsys=capsys)
    assert code == 1 and f"no registered version of {approved['name']!r} has model digest 000000000000" in out
    code, out = run_cli("rollout", "start", *cd_runner(approved, mlflow_uri), "--digest", " ", capsys=capsys)
    assert code == 2 and "--digest is empty" in out
    code, out = run_cli("rollout", "start", *cd_runner(approved, mlflow_uri), "--approved-as", "candidate",
                        capsys=capsys)
    assert code == 2 and "--approved-as goes with --digest" in out


@pytest.mark.slow
def test_start_by_digest_refuses_a_version_whose_verdict_did_not_pass(approved, mlflow_uri, capsys):
    failed_digest = uuid.uuid4().hex
    run = json.loads((approved["project"].root / "reports" / "train_run.json").read_text())
    failed = registry.register_version(mlflow_uri, approved["name"], run["model_uri"],
                                       {MODEL_DIGEST_TAG: failed_digest, "mlgate.verdict": "FAIL"})
    code, out = run_cli("rollout", "start", *cd_runner(approved, mlflow_uri), "--digest", failed_digest,
                        capsys=capsys)
    assert code == 1 and f"no version with a passing verdict (v{failed.version}: FAIL)" in out, out


@pytest.mark.slow
def test_start_by_digest_refuses_a_version_without_the_required_approval(approved, mlflow_uri, capsys):
    code, out = run_cli("rollout", "start", *cd_runner(approved, mlflow_uri), "--digest", approved["digest"],
                        "--approved-as", "production", capsys=capsys)
    assert code == 1 and "has no approval of stage production by an allowed approver" in out, out


@pytest.mark.slow
def test_start_by_digest_of_the_champion_has_nothing_to_roll_out(approved, mlflow_uri, capsys):
    """A pull request that left the model as it is (docs, CI settings): its digest is the champion's."""
    name = f"churn_{uuid.uuid4().hex[:10]}"
    params = approved["project"].params | {"model": {**approved["project"].params["model"], "name": name}}
    path = approved["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    run = json.loads((approved["project"].root / "reports" / "train_run.json").read_text())
    tags = {MODEL_DIGEST_TAG: approved["digest"], "mlgate.verdict": "PASS"}
    champion = registry.register_version(mlflow_uri, name, run["model_uri"], tags)
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, champion.version)
    registry.register_version(mlflow_uri, name, run["model_uri"], tags)  # the same model registered again
    code, out = run_cli("rollout", "start", "--params", str(path), "--tracking-uri", mlflow_uri,
                        "--digest", approved["digest"], capsys=capsys)
    assert code == 0 and f"version {champion.version}, the champion, is the model of digest" in out, out
    assert registry.registered_model_tags(mlflow_uri, name).get("mlgate.rollout.current") is None
