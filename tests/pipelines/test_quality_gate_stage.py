"""`mlgate gate quality` end to end: a logistic-regression champion in a real MLflow registry, a
gradient-boosting candidate, the real churn data; reports, metrics and plots on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlgate.gates.quality.slices import define_slices
from mlgate.gates.result import Check, GateResult, Status
from mlgate.gates.stats import Predictions
from mlgate.pipelines.checks.quality.deepchecks_check import ENVIRONMENT_CHECK, on_unavailable
from mlgate.pipelines.checks.quality.plots import curve_figure
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.deepchecks.suites import failed
from tests.conftest import REPO, Project

MODEL_NAME = "quality_stage_churn"
CI_TEXT = re.compile(r"delta [+-]\d\.\d{3} \[95% CI [+-]\d\.\d{3}, [+-]\d\.\d{3}\]")


def _run(*argv: str) -> int:
    return main(list(argv))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn_frame, base_params, mlflow_uri):
    """A project whose champion is a logistic regression and whose candidate is gradient boosting."""
    root = tmp_path_factory.mktemp("quality_stage")
    project = Project.create(root, churn_frame.sample(1200, random_state=7), base_params)
    return project, project.logistic_champion_boosted_candidate(MODEL_NAME, mlflow_uri)


def _checks(root: Path) -> tuple[GateResult, dict[str, Check]]:
    result = GateResult.read(root / "reports" / "gates" / "quality.json")
    return result, {c.name: c for c in result.checks}


@pytest.mark.slow
def test_gradient_boosting_candidate_is_judged_against_the_logistic_champion(trained, mlflow_uri, capsys):
    project, champion = trained
    from mlgate.pipelines import mlflow_io

    # A champion that was rolled out carries its rollout history as version tags: not lineage.
    mlflow_io.set_version_tags(mlflow_uri, MODEL_NAME, champion.version,
                               {"mlgate.rollout.abc123.event.0001": '{"kind": "start"}'})
    code = _run("gate", "quality", "--params", str(project.params_path), "--tracking-uri", mlflow_uri,
                "--report-only")
    out = capsys.readouterr().out
    assert code == 0 and "gate quality:" in out and "reports/gates/quality.json" in out
    result, checks = _checks(project.root)
    baseline = checks["baseline"]
    assert baseline.status is Status.PASS and baseline.details["version"] == champion.version
    assert baseline.details["run_id"] == champion.run_id
    assert {"mlgate.git_sha", "mlgate.data_md5", "mlgate.params_md5"} <= set(baseline.details["lineage"])
    assert not [k for k in baseline.details["lineage"] if k.startswith("mlgate.rollout.")]
    for metric in project.params["gates"]["quality"]["metrics"]:
        judged = checks[f"metric.{metric}.vs_baseline"]
        low, high = judged.details["ci"]
        assert judged.status in (Status.PASS, Status.FAIL) and low <= judged.details["delta"] <= high
        assert judged.message.startswith(metric) and CI_TEXT.search(judged.message), judged.message
        assert judged.details["candidate"] != judged.details["baseline"]
    test = pd.read_parquet(project.root / "data" / "test.parquet")
    slices_cfg = project.params["gates"]["quality"]["slices"]
    expected = [s.name for s in define_slices(test, slices_cfg["categorical"], slices_cfg["numeric"])
                if s.mask.sum() >= slices_cfg["min_slice_size"]]
    for name in expected:
        judged = checks[f"slice.accuracy.{name}"]
        assert CI_TEXT.search(judged.message) and "Holm over" in judged.message and "ci" in judged.details
    assert checks["slices"].details["worst"]
    metrics = json.loads((project.root / "metrics" / "quality.json").read_text())
    assert metrics["baseline"]["version"] == champion.version and metrics["candidate"]["run_id"]
    roc = metrics["metrics"]["roc_auc"]
    assert roc["test"] == "DeLong" and roc["ci_low"] <= roc["delta"] <= roc["ci_high"]
    for key in ("roc_curve", "pr_curve", "forest_plot", "slice_plot", "slice_table", "metrics"):
        assert (project.root / result.artifacts[key]).stat().st_size > 0, key
    assert len(pd.read_csv(project.root / result.artifacts["slice_table"])) == len(expected)
    assert result.artifacts["baseline_model"] == champion.uri
    _curves_show_both_models(project.root / result.artifacts["predictions_test"], checks)


def _curves_show_both_models(predictions_path: Path, checks: dict[str, Check]) -> None:
    """The ROC figure drawn from the saved predictions has one curve per model, with the judged AUCs."""
    table = pd.read_parquet(predictions_path)
    y = (table["y_true"] == "yes").astype(int).to_numpy()
    models = {name: Predictions(scores=table[f"{name}_proba_yes"].to_numpy()) for name in ("candidate", "baseline")}
    _, labels = curve_figure("roc", y, models, "binary").axes[0].get_legend_handles_labels()
    auc = checks["metric.roc_auc.vs_baseline"].details
    assert labels[:2] == [f"candidate (AUC {auc['candidate']:.3f})", f"baseline (AUC {auc['baseline']:.3f})"]


@pytest.mark.slow
def test_without_a_champion_floors_apply_and_require_baseline_makes_it_an_error(trained, mlflow_uri, capsys):
    project, _ = trained
    params = yaml.safe_load(yaml.safe_dump(project.params))
    params["model"]["name"] = "quality_stage_never_registered"
    lenient = project.root / "no_champion.yaml"
    lenient.write_text(yaml.safe_dump(params))
    assert _run("gate", "quality", "--params", str(lenient), "--tracking-uri", mlflow_uri, "--report-only") == 0
    _, checks = _checks(project.root)
    assert checks["baseline"].status is Status.SKIP
    assert "no version of model 'quality_stage_never_registered' has alias 'champion'" in checks["baseline"].message
    assert checks["metric.roc_auc.absolute"].status in (Status.PASS, Status.FAIL)
    assert checks["metric.roc_auc.vs_baseline"].status is Status.SKIP
    params["gates"]["quality"]["require_baseline"] = True
    strict = project.root / "require_baseline.yaml"
    strict.write_text(yaml.safe_dump(params))
    assert _run("gate", "quality", "--params", str(strict), "--tracking-uri", mlflow_uri) == 1
    result, checks = _checks(project.root)
    assert result.status is Status.ERROR and checks["baseline"].status is Status.ERROR
    capsys.readouterr()


@pytest.mark.slow
def test_an_unreachable_registry_is_an_error_not_a_skip(trained, monkeypatch, capsys):
    project, _ = trained
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    code = _run("gate", "quality", "--params", str(project.params_path), "--tracking-uri", "http://127.0.0.1:9")
    assert code == 1
    _, checks = _checks(project.root)
    assert checks["baseline"].status is Status.ERROR and "cannot read alias 'champion'" in checks["baseline"].message
    assert checks["metric.roc_auc.vs_baseline"].status is Status.ERROR
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.parametrize("change, named", [
    ({"gates": {"slices": {"categorical": ["no_such_column"]}}}, "no_such_column"),
    ({"train": {"model_dir": "models/not_trained"}}, "mlgate train"),
])
def test_bad_inputs_are_usage_errors_naming_the_problem(trained, mlflow_uri, capsys, change, named):
    project, _ = trained
    params = yaml.safe_load(yaml.safe_dump(project.params))
    if "gates" in change:
        params["gates"]["quality"]["slices"].update(change["gates"]["slices"])
    else:
        params["train"].update(change["train"])
    path = project.root / "bad.yaml"
    path.write_text(yaml.safe_dump(params))
    assert _run("gate", "quality", "--params", str(path), "--tracking-uri", mlflow_uri) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.deepchecks
def test_deepchecks_suites_become_checks_with_the_html_report(trained, mlflow_uri, capsys):
    project, _ = trained
    params = yaml.safe_load(yaml.safe_dump(project.params))
    params["gates"]["quality"]["deepchecks"]["enabled"] = True
    path = project.root / "deepchecks.yaml"
    path.write_text(yaml.safe_dump(params))
    assert _run("gate", "quality", "--params", str(path), "--tracking-uri", mlflow_uri, "--report-only") == 0
    result, checks = _checks(project.root)
    deep = [c for c in result.checks if c.name.startswith("deepchecks.")]
    suites = {c.details.get("suite") for c in deep}
    assert suites == {"train_test_validation", "model_evaluation"}
    assert not [c for c in deep if c.status is Status.ERROR], [c.message for c in deep if c.status is Status.ERROR]
    assert any(c.status is Status.PASS for c in deep)
    html = project.root / result.artifacts["deepchecks_report"]
    assert html.suffix == ".html" and html.stat().st_size > 10_000
    assert (project.root / "reports" / "quality" / "deepchecks_test.parquet").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("policy, status", [("error", Status.ERROR), ("warn", Status.WARN), ("skip", Status.SKIP)])
def test_an_environment_that_cannot_be_built_follows_on_unavailable(policy, status):
    outcome = failed(ENVIRONMENT_CHECK, "the deepchecks environment could not be built: pip exited 1")
    mapped = on_unavailable(outcome.checks[0], policy)
    assert mapped.status is status and "could not be built" in mapped.message
    runner_crash = failed("deepchecks.runner", "the runner exited 3").checks[0]
    assert on_unavailable(runner_crash, policy).status is Status.ERROR  # only the environment is excusable


def test_dvc_stage_evaluate_runs_the_quality_gate_on_its_declared_inputs():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]
    assert stage["cmd"] == "mlgate gate quality --report-only"
    assert {".mlgate/version", "models/candidate", "data/train.parquet", "data/test.parquet"} <= set(stage["deps"])
    assert not [d for d in stage["deps"] if d.endswith(".py")]  # mlgate's code is behind its version stamp
    assert set(stage["params"]) == {"gates.quality", "model", "serving"}  # serving: pickle consent, trust list
    assert [next(iter(m)) for m in stage["metrics"]] == ["metrics/quality.json"]
    plots = [next(iter(p)) for p in stage["plots"]]
    assert {"plots/quality/roc.png", "plots/quality/pr.png", "plots/quality/forest.png"} <= set(plots)
