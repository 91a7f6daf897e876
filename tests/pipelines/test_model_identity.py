"""The model judged is the model registered (DESIGN §5): every gate result names the candidate and baseline
it judged; the verdict refuses results about another model, or about a model that changed since; a gate
that cannot run replaces its old result with an ERROR; `register` registers exactly the judged model.

Real CLI, a real MLflow store and a real quality gate (deepchecks off); the edge-case and latency results,
whose real runs take a minute, are written as those gates write them, naming the model they judged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from mlgate.gates.result import Check, GateResult, JudgedBaseline, JudgedModel, Status, Subject
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.checks.subject import with_subject
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.lineage import model_digest, model_uri_digest
from mlgate.pipelines.report.identity import identity_problems
from tests.conftest import Project
from tests.pipelines.test_registration import (
    make_passed,
    register,
    release_project,
    run_cli,
    trained_template_dir,
    write_gate_results,
)

CANDIDATE = "models/candidate"


@pytest.fixture()
def trained(churn_frame, base_params, mlflow_uri, tmp_path) -> Project:
    """A trained project of its own (model name unique), quality gate without deepchecks and with margins
    its small holdout can show, champion = the trained model registered as version 1."""
    template = trained_template_dir(churn_frame, base_params, mlflow_uri)
    project = release_project(template, tmp_path / "project")
    quality = project.params["gates"]["quality"]
    quality["deepchecks"]["enabled"] = False
    quality["metrics"]["accuracy"]["max_regression"] = 0.05  # a 240-row holdout: the champion itself must pass
    quality["max_gap"] = {"roc_auc": 0.2, "accuracy": 0.1}
    project.write()
    run = json.loads((project.root / "reports" / "train_run.json").read_text())
    champion = registry.register_version(mlflow_uri, project.params["model"]["name"], run["model_uri"], run["tags"])
    registry.set_alias(mlflow_uri, champion.name, registry.CHAMPION, champion.version)
    return project


def own_model(project: Project, where: str) -> Path:
    """Another good model: the trained one re-saved as a team's own (no training run named in its MLmodel,
    a file of its own), so its files and digest differ from models/candidate's."""
    staging = project.root / "own_model.tmp"
    shutil.copytree(project.root / CANDIDATE, staging)
    mlmodel = staging / "MLmodel"
    kept = [line for line in mlmodel.read_text().splitlines() if not line.startswith("run_id:")]
    mlmodel.write_text("\n".join(kept) + "\n")
    (staging / "NOTES.md").write_text("trained by the team's own script\n")
    target = project.root / where
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    return staging.replace(target)


def quality_gate(project: Project, uri: str, *extra: str, capsys) -> tuple[int, GateResult]:
    code, out = run_cli("gate", "quality", "--params", str(project.params_path), "--tracking-uri", uri, *extra,
                        capsys=capsys)
    return code, GateResult.read(project.root / "reports" / "gates" / "quality.json")


def write_other_gates(project: Project, judged: Path) -> None:
    """data, edge_cases and latency PASS as their stages write them; the model gates name `judged`."""
    subject = Subject(JudgedModel(judged.relative_to(project.root).as_posix(), model_digest(judged)))
    for gate in ("data", "edge_cases", "latency"):
        result = GateResult.from_checks(gate, [Check(f"{gate}.rule", Status.PASS, 1.0, "a rule", "ok")], 0.5)
        result = replace(result, subject=None if gate == "data" else subject)
        result.write(project.root / "reports" / "gates" / f"{gate}.json")


def verdict(project: Project, capsys) -> tuple[int, dict]:
    code, _ = run_cli("verdict", "--params", str(project.params_path), capsys=capsys)
    return code, json.loads((project.root / "reports" / "verdict.json").read_text())


@pytest.mark.slow
def _registered(project) -> str:
    """The version `register` wrote to reports/registration.json (its output names it in a sentence)."""
    return json.loads((project.root / "reports" / "registration.json").read_text())["version"]


def test_register_registers_the_very_model_the_gates_judged(trained, mlflow_uri, capsys, tmp_path):
    code, quality = quality_gate(trained, mlflow_uri, capsys=capsys)
    judged = model_digest(trained.root / CANDIDATE)
    name = trained.params["model"]["name"]
    assert code == 0 and quality.subject is not None, [c.message for c in quality.by_status(Status.ERROR, Status.FAIL)]
    assert quality.subject.candidate == JudgedModel(CANDIDATE, judged)
    assert quality.subject.baseline == JudgedBaseline("champion", name, "1", f"models:/{name}/1",
                                                      model_uri_digest(mlflow_uri, f"models:/{name}/1"))
    write_other_gates(trained, trained.root / CANDIDATE)
    code, record = verdict(trained, capsys)
    assert code == 0 and record["model"]["digest"] == judged
    assert record["gates"]["quality"]["subject"]["candidate"] == {"uri": CANDIDATE, "digest": judged}
    report = (trained.root / "reports" / "report.md").read_text()
    assert f"judged `{CANDIDATE}` (digest `{judged[:12]}`) against `{name}` version 1 (digest" in report

    code, out = register(trained, mlflow_uri, capsys)
    assert code == 0, out
    version = registry.get_version(mlflow_uri, name, _registered(trained))
    run = json.loads((trained.root / "reports" / "train_run.json").read_text())
    assert version.tags["mlgate.model_digest"] == judged and version.run_id == run["run_id"]  # the training run's
    assert model_uri_digest(mlflow_uri, version.uri) == judged


@pytest.mark.slow
def test_an_own_model_in_the_model_dir_is_logged_to_a_run_and_registered_as_judged(trained, mlflow_uri, capsys):
    """models/candidate replaced by a team's own model before the gates: the training run's model is not
    the judged one, so `register` logs the judged directory to a new run and registers that."""
    own_model(trained, CANDIDATE)
    judged = model_digest(trained.root / CANDIDATE)
    code, quality = quality_gate(trained, mlflow_uri, capsys=capsys)
    assert code == 0 and quality.subject.candidate == JudgedModel(CANDIDATE, judged)
    write_other_gates(trained, trained.root / CANDIDATE)
    code, record = verdict(trained, capsys)
    assert code == 0 and record["model"]["run_id"] is None  # the report names no training run it is not from
    code, out = register(trained, mlflow_uri, capsys)
    assert code == 0 and "is not the training run's model; logged it unchanged to run" in out, out
    name = trained.params["model"]["name"]
    version = registry.get_version(mlflow_uri, name, _registered(trained))
    run = json.loads((trained.root / "reports" / "train_run.json").read_text())
    assert version.run_id != run["run_id"] and version.tags["mlgate.model_digest"] == judged
    assert model_uri_digest(mlflow_uri, version.uri) == judged
    assert registry.run_tags(mlflow_uri, version.run_id)["mlgate.model_source"] == CANDIDATE
    again, out = register(trained, mlflow_uri, capsys)
    assert again == 0 and f"already registered as {name} version {version.version} (" in out


@pytest.mark.slow
def test_gates_run_on_another_model_make_the_verdict_an_error_and_register_refuse(trained, mlflow_uri, capsys):
    """(a) every gate run with --candidate on another good model: no gate judged models/candidate."""
    other = own_model(trained, "elsewhere/other_model")
    code, quality = quality_gate(trained, mlflow_uri, "--candidate", str(other), capsys=capsys)
    assert code == 0 and quality.subject.candidate == JudgedModel("elsewhere/other_model", model_digest(other))
    write_other_gates(trained, other)
    code, record = verdict(trained, capsys)
    assert code == 1 and record["status"] == "ERROR"
    problem, = record["problems"]
    assert problem.startswith("the gates judged another model than the candidate: `quality`, `edge_cases`, "
                              f"`latency` judged `elsewhere/other_model` (digest {model_digest(other)[:12]}), "
                              f"but the candidate `{CANDIDATE}` is now digest "
                              f"{model_digest(trained.root / CANDIDATE)[:12]}")
    code, out = register(trained, mlflow_uri, capsys)
    assert code == 1 and "the verdict is ERROR" in out
    assert not (trained.root / "reports" / "registration.json").exists()


@pytest.mark.slow
def test_a_model_swapped_after_the_gates_is_refused_by_verdict_and_register(trained, mlflow_uri, capsys):
    """(b) models/candidate replaced after the gates ran (before or after the verdict)."""
    code, _ = quality_gate(trained, mlflow_uri, capsys=capsys)
    write_other_gates(trained, trained.root / CANDIDATE)
    assert code == 0 and verdict(trained, capsys)[0] == 0
    own_model(trained, CANDIDATE)  # swapped after the verdict: register refuses
    code, out = register(trained, mlflow_uri, capsys)
    assert code == 1 and "the model changed since the verdict" in out
    code, record = verdict(trained, capsys)  # and a verdict taken now refuses the gates' results
    assert code == 1 and record["status"] == "ERROR"
    assert "the model changed since the gates judged it: `quality`, `edge_cases`, `latency` judged " \
           f"`{CANDIDATE}`" in record["problems"][0]
    assert "the model changed since the gates judged it" in (trained.root / "reports" / "report.md").read_text()
    code, out = register(trained, mlflow_uri, capsys)
    assert code == 1 and "the verdict is ERROR" in out
    assert not (trained.root / "reports" / "registration.json").exists()


def test_a_gate_refused_for_bad_usage_replaces_an_old_pass_with_an_error(project, mlflow_uri, capsys):
    """(c) under --report-only a gate that cannot run writes an ERROR result naming why and exits 0 (the
    verdict decides); without it, it exits 2 and still replaces the old result."""
    passed = make_passed(project, capsys)
    gates = passed.root / "reports" / "gates"
    (passed.root / "not_a_model").mkdir()
    code, out = run_cli("gate", "quality", "--params", str(passed.params_path), "--tracking-uri", mlflow_uri,
                        "--candidate", str(passed.root / "not_a_model"), "--report-only", capsys=capsys)
    quality = GateResult.read(gates / "quality.json")
    assert code == 0 and quality.status is Status.ERROR and quality.subject is None
    assert "the gate could not run: candidate model:" in quality.checks[0].message
    assert "not_a_model is not an MLflow model directory" in quality.checks[0].message
    code, record = verdict(passed, capsys)
    assert code == 1 and record["gates"]["quality"]["status"] == "ERROR"
    code, out = register(passed, mlflow_uri, capsys)
    assert code == 1 and "the verdict is ERROR (blocked: quality)" in out

    passed.params["gates"]["data"]["no_such_key"] = 1
    passed.write()
    code, _ = run_cli("gate", "data", "--params", str(passed.params_path), "--report-only", capsys=capsys)
    data = GateResult.read(gates / "data.json")
    assert code == 0 and data.status is Status.ERROR and "no_such_key" in data.checks[0].message
    (gates / "data.json").unlink()
    code, out = run_cli("gate", "data", "--params", str(passed.params_path), capsys=capsys)
    assert code == 2 and "no_such_key" in out and GateResult.read(gates / "data.json").status is Status.ERROR


def test_a_result_without_a_subject_or_about_other_baselines_is_an_error(passed_project, capsys):
    gates = passed_project.root / "reports" / "gates"
    latency = GateResult.read(gates / "latency.json")
    replace(latency, subject=None).write(gates / "latency.json")  # as an older mlgate wrote it
    code, record = verdict(passed_project, capsys)
    assert code == 1 and "latency: the result does not name the model it judged" in record["problems"][0]
    quality = GateResult.read(gates / "quality.json")
    for gate, version in (("quality", "3"), ("latency", "4")):  # the champion moved between the two gates
        base = JudgedBaseline("champion", "churn", version, f"models:/churn/{version}", version * 32)
        replace(quality, gate=gate, subject=replace(quality.subject, baseline=base)).write(gates / f"{gate}.json")
    code, record = verdict(passed_project, capsys)
    assert code == 1 and record["problems"] == [
        "the gates compared with different baselines behind alias 'champion': `quality` with version 3 "
        f"(digest {'3' * 12}); `latency` with version 4 (digest {'4' * 12}); re-run the gates on the "
        "candidate (`dvc repro`)"]


def test_a_candidate_changed_while_the_gate_ran_is_an_error(passed_project):
    ctx = RunContext.load(passed_project.params_path)
    result = GateResult.from_checks("edge_cases", [Check("rule", Status.PASS, 1, "a rule", "ok")], 0.1)
    judged = with_subject(ctx, result, JudgedModel(CANDIDATE, "0" * 32), None)  # digest before the run
    assert judged.status is Status.ERROR and judged.subject == Subject(JudgedModel(CANDIDATE, "0" * 32))
    assert "changed while the gate ran (digest 000000000000 before" in judged.checks[-1].message
    unchanged = with_subject(ctx, result, JudgedModel(CANDIDATE, model_digest(passed_project.root / CANDIDATE)), None)
    assert unchanged.status is Status.PASS


def test_results_without_a_subject_still_read_and_subjects_round_trip(tmp_path):
    old = {"gate": "quality", "status": "PASS", "duration_s": 1.0, "artifacts": {},
           "checks": [{"name": "c", "status": "PASS", "observed": 1, "expected": "", "message": ""}]}
    assert GateResult.from_dict(old).subject is None and "subject" not in GateResult.from_dict(old).to_dict()
    subject = Subject(JudgedModel("models:/own/2", "a" * 32), JudgedBaseline("champion"))
    result = replace(GateResult.from_dict(old), subject=subject)
    assert GateResult.read(result.write(tmp_path / "quality.json")) == result
    assert identity_problems({"quality": result}, ("quality",), CANDIDATE, "a" * 32) == []


@pytest.fixture()
def passed_project(project, capsys) -> Project:
    """A project with a stand-in model directory and every gate PASS, judged on it (no MLflow needed)."""
    passed = make_passed(project, capsys)
    write_gate_results(passed.root)
    return passed
