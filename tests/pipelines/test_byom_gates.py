"""Bring your own model: a models-from-code PythonModel and a LightGBM pipeline through `mlgate gate
quality`, `edge_cases` and `latency` with their scores, a models-from-code candidate through every
gate and the verdict, and a model that gives labels only, judged on labels with every score metric
SKIP and its reason. Real MLflow models, registry and servers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlgate.gates.result import Check, GateResult, Status
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from mlgate.serving.settings import DEFAULT_TRUSTED_TYPES
from tests.conftest import Project
from tests.pipelines.byom_models import LIGHTGBM_TYPES, save_code_model, save_lightgbm_pipeline

pytestmark = pytest.mark.slow
MODEL_NAME = "byom_churn"
SCORE_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")


@pytest.fixture(scope="module")
def byom(tmp_path_factory, churn_frame, base_params, mlflow_uri) -> tuple[Project, dict[str, Path]]:
    """A project with an sklearn champion in the registry, LightGBM types trusted, and three own models."""
    root = tmp_path_factory.mktemp("byom")
    project = Project.create(root, churn_frame.sample(1200, random_state=7), base_params)
    project.params["gates"]["quality"]["deepchecks"]["enabled"] = False
    project.params["gates"]["edge_cases"]["property_rows"] = 10
    project.params["gates"]["latency"].update(rounds=6)
    project.params["serving"].update(max_batch_rows=500, max_body_bytes=1_000_000,
                                     trusted_types=[*DEFAULT_TRUSTED_TYPES, *LIGHTGBM_TYPES])
    project.prepare_and_register_champion(MODEL_NAME, mlflow_uri)
    candidate = root / "models" / "candidate"
    train = pd.read_parquet(root / "data" / "train.parquet")
    models = {"code": save_code_model(candidate, root / "own" / "code"),
              "lightgbm": save_lightgbm_pipeline(train, project.params, candidate, root / "own" / "lightgbm"),
              "labels": save_code_model(candidate, root / "own" / "labels", scores=False)}
    return project, models


def _gate(project: Project, mlflow_uri: str, gate: str, model: Path, params: Path | None = None
          ) -> tuple[int, GateResult, dict[str, Check]]:
    code = main(["gate", gate, "--params", str(params or project.params_path), "--tracking-uri", mlflow_uri,
                 "--candidate", str(model)])
    result = GateResult.read(project.root / "reports" / "gates" / f"{gate}.json")
    return code, result, {c.name: c for c in result.checks}


@pytest.mark.parametrize("kind", ["code", "lightgbm"])
def test_quality_gate_decides_every_score_metric_of_an_own_model(byom, mlflow_uri, kind, capsys):
    project, models = byom
    code, result, checks = _gate(project, mlflow_uri, "quality", models[kind])
    out = capsys.readouterr()
    assert code in (0, 1) and result.status is not Status.ERROR, out
    assert checks["baseline"].status is Status.PASS
    for metric in SCORE_METRICS:
        judged = checks[f"metric.{metric}.vs_baseline"]
        assert judged.status in (Status.PASS, Status.FAIL), judged.message
        low, high = judged.details["ci"]
        assert low <= judged.details["delta"] <= high and judged.details["candidate"] is not None
    assert checks["metric.roc_auc.absolute"].status in (Status.PASS, Status.FAIL)
    assert checks["calibration.ece"].status in (Status.PASS, Status.WARN)
    assert checks["gap.roc_auc"].status in (Status.PASS, Status.FAIL)
    if kind == "code":  # the very candidate, wrapped: the same scores
        assert checks["metric.roc_auc.vs_baseline"].details["delta"] == pytest.approx(
            checks["metric.roc_auc.vs_baseline"].details["candidate"] - checks["metric.roc_auc.vs_baseline"].details["baseline"])
    predictions = pd.read_parquet(project.root / result.artifacts["predictions_test"])
    assert {"candidate_proba_yes", "baseline_proba_yes"} <= set(predictions.columns)


def test_a_labels_only_candidate_is_judged_on_labels_and_score_metrics_skip_with_the_reason(byom, mlflow_uri, capsys):
    project, models = byom
    code, result, checks = _gate(project, mlflow_uri, "quality", models["labels"])
    capsys.readouterr()
    assert result.status is not Status.ERROR
    for metric in SCORE_METRICS:
        for name in (f"metric.{metric}.vs_baseline", f"metric.{metric}.absolute"):
            if name in checks:
                assert checks[name].status is Status.SKIP, checks[name]
                assert f"{metric} needs predicted probabilities; the candidate gives labels only" in checks[name].message
                assert "PythonModel" in checks[name].message
    assert checks["metric.accuracy.vs_baseline"].status in (Status.PASS, Status.FAIL)
    assert checks["metric.accuracy.vs_baseline"].details["delta"] == pytest.approx(0.0)  # the same labels
    assert checks["gap.roc_auc"].status is Status.SKIP and checks["gap.accuracy"].status in (Status.PASS, Status.FAIL)
    assert checks["calibration"].status is Status.SKIP and "labels only" in checks["calibration"].message


def test_a_labels_only_champion_skips_only_the_score_comparisons(byom, mlflow_uri, capsys):
    import mlflow

    project, models = byom
    name = "byom_labels_champion"
    registry.client(mlflow_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(models["labels"]), "model")
    version = registry.register_version(mlflow_uri, name, f"runs:/{run.info.run_id}/model", {})
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, version.version)
    params = yaml.safe_load(yaml.safe_dump(project.params))
    params["model"]["name"] = name
    path = project.root / "labels_champion.yaml"
    path.write_text(yaml.safe_dump(params))
    code, result, checks = _gate(project, mlflow_uri, "quality", project.root / "models" / "candidate", path)
    capsys.readouterr()
    assert checks["baseline"].status is Status.PASS and result.status is not Status.ERROR
    roc = checks["metric.roc_auc.vs_baseline"]
    assert roc.status is Status.SKIP and "the baseline gives labels only" in roc.message
    assert checks["metric.roc_auc.absolute"].status in (Status.PASS, Status.FAIL)  # the candidate's own value
    assert checks["metric.accuracy.vs_baseline"].status in (Status.PASS, Status.FAIL)


@pytest.mark.parametrize("kind", ["code", "lightgbm"])
def test_edge_case_gate_serves_an_own_model_with_scores(byom, mlflow_uri, kind, capsys):
    project, models = byom
    code, result, checks = _gate(project, mlflow_uri, "edge_cases", models[kind])
    out = capsys.readouterr().out
    assert code == 0 and result.status is Status.PASS, out
    assert checks["case.request.proba"].observed == 200
    assert checks["consistency.labels"].status is Status.PASS
    probabilities = checks["consistency.probabilities"]
    assert probabilities.status is Status.PASS and probabilities.observed <= 1e-9


@pytest.mark.parametrize("kind", ["lightgbm"])  # the models-from-code one: in the verdict test below
def test_latency_gate_runs_an_own_model_against_the_champion(byom, mlflow_uri, kind, capsys):
    project, models = byom
    code, result, checks = _gate(project, mlflow_uri, "latency", models[kind])
    out = capsys.readouterr().out
    assert result.status is not Status.ERROR, out
    assert checks["baseline"].status is Status.PASS
    assert checks["rank_test"].status in (Status.PASS, Status.FAIL, Status.WARN)
    assert checks["rank_test"].details["n_candidate"] >= 100 and checks["slo.error_rate"].status is Status.PASS


def test_a_models_from_code_candidate_goes_through_every_gate_and_the_verdict(byom, mlflow_uri, capsys):
    """train.model_dir is the team's own models-from-code pyfunc: each gate decides, all judged that
    model (one digest), and the verdict decides on it."""
    project, models = byom
    params = yaml.safe_load(project.params_path.read_text())
    params["train"]["model_dir"] = str(models["code"].relative_to(project.root))
    own = project.root / "params_own_model.yaml"
    own.write_text(yaml.safe_dump(params))
    assert main(["gate", "data", "--suggest", "--params", str(own)]) == 0  # the project's data contract
    for gate in ("data", "quality", "edge_cases", "latency"):
        code = main(["gate", gate, "--params", str(own), "--tracking-uri", mlflow_uri, "--report-only"])
        assert code == 0, capsys.readouterr()
    results = {g: GateResult.read(project.root / "reports" / "gates" / f"{g}.json")
               for g in ("data", "quality", "edge_cases", "latency")}
    errors = [f"{g}/{c.name}: {c.message}" for g, r in results.items() for c in r.checks if c.status is Status.ERROR]
    assert errors == []
    quality = {c.name: c for c in results["quality"].checks}
    assert all(quality[f"metric.{m}.vs_baseline"].status in (Status.PASS, Status.FAIL) for m in SCORE_METRICS)
    digests = {g: r.subject.candidate.digest for g, r in results.items() if r.subject}
    assert set(digests) == {"quality", "edge_cases", "latency"} and len(set(digests.values())) == 1
    code = main(["verdict", "--params", str(own)])
    verdict = yaml.safe_load((project.root / "reports" / "verdict.json").read_text())
    assert verdict["status"] in ("PASS", "WARN", "FAIL") and code == (1 if verdict["status"] == "FAIL" else 0)
    assert verdict["problems"] == [] and verdict["model"]["digest"] == next(iter(digests.values()))
