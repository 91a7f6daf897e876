"""`mlgate register` against a real MLflow store: refuses what did not pass or is not this model."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
import yaml

from mlgate.gates.result import Check, GateResult, Status
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.report.verdict import EXPECTED_GATES, MODEL_GATES
from tests.conftest import Project
from tests.pipelines.test_verdict import judged_candidate

LINEAGE_TAGS = ("mlgate.git_sha", "mlgate.data_md5", "mlgate.params_md5", "mlgate.verdict", "mlgate.stage",
                "mlgate.report_digest")


def write_gate_results(root: Path, statuses: dict[str, Status] | None = None) -> None:
    """A result file for every expected gate, as the gate stages write them (PASS unless given); the
    model gates name models/candidate as it is now, the model they judged."""
    statuses = statuses or {}
    for gate in EXPECTED_GATES:
        status = statuses.get(gate, Status.PASS)
        checks = [Check(f"{gate}.rule", status, 1.0, "a rule", f"{gate} rule is {status}")]
        subject = judged_candidate(root) if gate in MODEL_GATES else None
        result = replace(GateResult.from_checks(gate, checks, 0.5), subject=subject)
        result.write(root / "reports" / "gates" / f"{gate}.json")


def run_cli(*argv: str, capsys) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err + captured.out  # stdout last: its last line is a command's result


def trained_template_dir(churn_frame, base_params, mlflow_uri: str) -> Path:
    """One trained project per MLflow store (prepare + train into it), kept beside the store's database
    so every test module reuses it; tests copy it before changing anything."""
    root = Path(mlflow_uri.removeprefix("sqlite:///")).parent / "trained-project"
    if not (root / "reports" / "train_run.json").is_file():
        root.mkdir(exist_ok=True)
        project = Project.create(root, churn_frame.sample(1200, random_state=7), base_params)
        assert main(["prepare", "--params", str(project.params_path)]) == 0
        assert main(["train", "--params", str(project.params_path), "--tracking-uri", mlflow_uri]) == 0
    return root


def release_project(template: Path, destination: Path) -> Project:
    """A copy of the trained project under a model name of its own (registrations never collide)."""
    shutil.copytree(template, destination)
    params = yaml.safe_load((destination / "params.yaml").read_text())
    params["model"]["name"] = f"churn_{uuid.uuid4().hex[:10]}"
    project = Project(destination, params)
    project.write()
    return project


def make_passed(project: Project, capsys) -> Project:
    """Give `project` a candidate model directory that passed every gate (no MLflow needed to be refused)."""
    model_dir = project.root / "models" / "candidate"
    model_dir.mkdir(parents=True)
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    write_gate_results(project.root)
    assert run_cli("verdict", "--params", str(project.params_path), capsys=capsys)[0] == 0
    return project


@pytest.fixture()
def passed(project, capsys) -> Project:
    return make_passed(project, capsys)


@pytest.fixture()
def trained_passed(churn_frame, base_params, mlflow_uri, tmp_path, capsys) -> Project:
    """A copy of the trained project whose gates all passed and whose verdict is written."""
    template = trained_template_dir(churn_frame, base_params, mlflow_uri)
    project = release_project(template, tmp_path / "project")
    write_gate_results(project.root)
    assert run_cli("verdict", "--params", str(project.params_path), capsys=capsys)[0] == 0
    return project


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def register(project: Project, uri: str, capsys) -> tuple[int, str]:
    return run_cli("register", "--params", str(project.params_path), "--tracking-uri", uri, capsys=capsys)


@pytest.mark.slow
def test_register_records_lineage_reports_and_the_challenger_alias(trained_passed, mlflow_uri, capsys):
    passed = trained_passed
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 0, out
    name = passed.params["model"]["name"]
    registration = json.loads((passed.root / "reports" / "registration.json").read_text())
    version = registration["version"]
    assert f"registered {name} version {version} (" in out
    assert version not in out.strip().splitlines()  # no bare version line: reports/registration.json has it
    ref = registry.version_by_alias(mlflow_uri, name, registry.CHALLENGER)
    assert ref is not None and ref.version == version
    verdict = json.loads((passed.root / "reports" / "verdict.json").read_text())
    run = json.loads((passed.root / "reports" / "train_run.json").read_text())
    assert all(ref.tags.get(tag) for tag in LINEAGE_TAGS)
    assert ref.tags["mlgate.stage"] == "candidate" and ref.tags["mlgate.verdict"] == "PASS"
    assert ref.tags["mlgate.report_digest"] == verdict["report_digest"]
    assert ref.tags["mlgate.data_md5"] == run["tags"]["mlgate.data_md5"] and ref.run_id == run["run_id"]
    listed = mlflow.MlflowClient(mlflow_uri).list_artifacts(run["run_id"], "mlgate-reports")
    assert {Path(a.path).name for a in listed} >= {"verdict.json", "report.md", "report.html", "gates"}
    gates = mlflow.MlflowClient(mlflow_uri).list_artifacts(run["run_id"], "mlgate-reports/gates")
    assert {Path(a.path).name for a in gates} == {f"{g}.json" for g in EXPECTED_GATES}
    again, out = register(passed, mlflow_uri, capsys)
    assert again == 0 and f"already registered as {name} version {version} (" in out


def test_register_refuses_a_failed_verdict(passed, mlflow_uri, capsys):
    write_gate_results(passed.root, {"quality": Status.FAIL, "latency": Status.ERROR})
    assert run_cli("verdict", "--params", str(passed.params_path), capsys=capsys)[0] == 1
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 1 and "the verdict is ERROR (blocked: quality, latency)" in out
    assert not (passed.root / "reports" / "registration.json").exists()


def test_register_refuses_a_verdict_of_another_model(passed, mlflow_uri, capsys):
    append(passed.root / "models" / "candidate" / "MLmodel", "# edited after the verdict\n")
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 1 and "the model changed since the verdict" in out


def test_register_refuses_without_a_verdict(passed, mlflow_uri, capsys):
    (passed.root / "reports" / "verdict.json").unlink()
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 1 and "no verdict; run `dvc repro`" in out


def test_register_refuses_an_edited_report(passed, mlflow_uri, capsys):
    append(passed.root / "reports" / "report.md", "LGTM\n")
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 1 and "is not the report of the verdict" in out


def test_register_refuses_changed_thresholds_but_not_rollout_settings(passed, mlflow_uri, capsys):
    passed.params["rollout"]["canary"]["steps"] = [5, 25, 100]
    passed.write()
    (passed.root / "reports" / "train_run.json").write_text(json.dumps(
        {"run_id": "r1", "model_uri": "models:/m-1", "tracking_uri": "sqlite:///elsewhere.db"}))
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 2 and "was logged to sqlite:///elsewhere.db" in out  # past every verdict check: rollout is not gated
    passed.params["gates"]["quality"]["metrics"]["roc_auc"]["min_absolute"] = 0.5
    passed.write()
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 1 and "params.yaml changed since the verdict" in out


def test_one_store_spelt_two_ways_is_the_same_store(tmp_path, monkeypatch):
    """`sqlite:///mlflow.db` (as dvc repro trained, in the project) and `sqlite:////<abs>/mlflow.db` (as the
    README's register step spells it) are one file: the training record is accepted, not refused."""
    from mlgate.pipelines.errors import UsageError
    from mlgate.pipelines.mlflow_io import store_location
    from mlgate.pipelines.registry.model_source import read_train_run

    monkeypatch.chdir(tmp_path)
    record = tmp_path / "reports" / "train_run.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"run_id": "r1", "model_uri": "models:/m-1", "tracking_uri": "sqlite:///mlflow.db"}))
    absolute = f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert store_location("sqlite:///mlflow.db") == store_location(absolute)
    assert read_train_run(record, absolute)["run_id"] == "r1"
    assert store_location("HTTP://Tracking.example.com:5000/") == "http://tracking.example.com:5000"
    with pytest.raises(UsageError, match="was logged to sqlite:///mlflow.db, not to sqlite:///other.db"):
        read_train_run(record, "sqlite:///other.db")
