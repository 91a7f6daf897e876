"""`mlgate gate edge_cases` end to end: a candidate trained in a tmp project, served by the real server on
127.0.0.1, attacked with every generated case; and a deliberately broken model that raises on nulls."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlgate.gates.result import GateResult, Status
from mlgate.pipelines.cli.main import main
from tests.conftest import Project

NUMERIC_CASES = {"null", "nan", "pos_inf", "neg_inf", "below_min", "above_max", "zero", "empty_string",
                 "long_string", "non_ascii", "wrong_type"}
STRING_CASES = {"null", "nan", "pos_inf", "neg_inf", "unseen_category", "empty_string", "long_string",
                "non_ascii", "wrong_type"}
REQUEST_CASES = {"empty_batch", "one_row", "max_batch_rows", "too_many_rows", "missing_column", "extra_column",
                 "shuffled_columns", "duplicate_column", "malformed_json", "wrong_content_type", "body_too_large",
                 "format_dataframe_records", "format_instances", "format_inputs", "csv", "proba"}
PROPERTY_ROWS = 15


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn_frame, base_params, mlflow_uri) -> Project:
    """A prepared project with a trained candidate in models/candidate; small serving limits keep it quick."""
    root = tmp_path_factory.mktemp("edge_cases_stage")
    project = Project.create(root, churn_frame.sample(1200, random_state=7), base_params)
    project.params["model"]["name"] = "edge_cases_churn"
    project.params["gates"]["edge_cases"]["property_rows"] = PROPERTY_ROWS
    project.params["serving"].update(max_batch_rows=500, max_body_bytes=1_000_000)
    path = str(project.write())
    assert main(["prepare", "--params", path]) == 0
    assert main(["train", "--params", path, "--tracking-uri", mlflow_uri]) == 0
    return project


def _gate(project: Project, mlflow_uri: str, *extra: str) -> tuple[int, GateResult]:
    code = main(["gate", "edge_cases", "--params", str(project.params_path), "--tracking-uri", mlflow_uri, *extra])
    return code, GateResult.read(project.root / "reports" / "gates" / "edge_cases.json")


def _broken_model(project: Project, destination: Path) -> Path:
    """The candidate's twin without imputation: LogisticRegression raises on a null number."""
    import mlflow.sklearn
    from mlflow.models import Model

    from mlgate.serving.loading import trusted_types_for

    data = project.params["data"]
    train = pd.read_parquet(project.root / "data" / "train.parquet")
    features = ColumnTransformer([("numeric", StandardScaler(), data["numeric"]),
                                  ("categorical", OneHotEncoder(handle_unknown="ignore"), data["categorical"])])
    model = Pipeline([("features", features), ("model", LogisticRegression(max_iter=500))])
    model.fit(train[data["numeric"] + data["categorical"]], train[project.params["model"]["target"]])
    signature = Model.load(str(project.root / "models" / "candidate")).signature
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.sklearn.save_model(model, str(destination), serialization_format="skops",
                                  skops_trusted_types=trusted_types_for(model), signature=signature,
                                  pip_requirements=["scikit-learn"])
    return destination


@pytest.mark.slow
def test_gate_passes_the_real_candidate_without_a_single_5xx(trained, mlflow_uri, capsys):
    code, result = _gate(trained, mlflow_uri)
    out = capsys.readouterr().out
    assert code == 0 and result.status is Status.PASS, out
    assert "gate edge_cases: PASS" in out and "reports/gates/edge_cases.json" in out
    checks = {c.name: c for c in result.checks}
    cases = {name.removeprefix("case."): c for name, c in checks.items() if name.startswith("case.")}
    data = trained.params["data"]
    expected = {f"feature.{n}.{s}" for n in data["numeric"] for s in NUMERIC_CASES}
    expected |= {f"feature.{n}.{s}" for n in data["categorical"] for s in STRING_CASES}
    expected |= {f"request.{s}" for s in REQUEST_CASES} | {f"property.row_{i:03d}" for i in range(PROPERTY_ROWS)}
    assert set(cases) == expected
    assert all(isinstance(c.observed, int) and c.observed < 500 for c in cases.values())
    assert cases["request.max_batch_rows"].observed == 200 and cases["request.too_many_rows"].observed == 413
    assert cases["feature.total_day_minutes.pos_inf"].observed == 400
    assert "total_day_minutes" in cases["feature.total_day_minutes.pos_inf"].details["body"]
    assert cases["feature.state.unseen_category"].observed == 200
    assert checks["cases"].message == f"all {len(expected)} cases answered as expected, none with a 5xx"
    assert checks["server.healthy_after_cases"].status is Status.PASS
    holdout_rows = len(pd.read_parquet(trained.root / "data" / "test.parquet"))
    assert checks["consistency.labels"].status is Status.PASS and checks["consistency.labels"].details["rows"] == holdout_rows
    assert checks["consistency.probabilities"].status is Status.PASS
    assert checks["consistency.probabilities"].observed <= 1e-9
    flagged = checks["outliers.flagged"]  # the detector mlgate's trainer put in the bundle
    assert flagged.status is Status.PASS and flagged.observed == 2 * len(data["numeric"]) + len(data["categorical"])
    log = trained.root / result.artifacts["server_log"]
    assert "loaded" in log.read_text()


@pytest.mark.slow
def test_gate_fails_a_model_that_raises_on_nulls_naming_the_cases(trained, mlflow_uri, tmp_path, capsys):
    broken = _broken_model(trained, tmp_path / "broken")
    code, result = _gate(trained, mlflow_uri, "--candidate", str(broken))
    out = capsys.readouterr().out
    assert code == 1 and result.status is Status.FAIL
    checks = {c.name: c for c in result.checks}
    failed = {c.name.removeprefix("case.") for c in result.checks if c.name.startswith("case.") and c.status is Status.FAIL}
    raising = {f"feature.{n}.{s}" for n in trained.params["data"]["numeric"] for s in ("null", "nan")}
    assert raising <= failed
    for name in raising:
        check = checks[f"case.{name}"]
        assert check.observed == 500 and "server error 500: prediction_failed" in check.message, check.message
    assert all(name.startswith("property.") for name in failed - raising), failed - raising
    summary = checks["cases"]
    assert summary.status is Status.FAIL and f"{len(failed)} of " in summary.message
    assert "feature.account_length.null" in summary.message and "feature.account_length.null" in out
    assert set(summary.details["server_errors_or_no_answer"]) == failed
    assert checks["server.healthy_after_cases"].status is Status.PASS  # a raising model never kills the server
    assert checks["consistency.labels"].status is Status.PASS  # the holdout has no nulls
    assert checks["outliers.flagged"].status is Status.SKIP  # a model saved without mlgate's bundle


def test_a_missing_candidate_is_a_usage_error_naming_it(project, capsys):
    code = main(["gate", "edge_cases", "--params", str(project.params_path),
                 "--candidate", str(project.root / "no_such_model")])
    assert code == 2
    assert "no_such_model" in capsys.readouterr().err


def test_the_gate_logs_its_traffic_to_a_scratch_store_not_production(tmp_path):
    from mlgate.pipelines.checks.edge_cases.stage import gate_serving_config
    from mlgate.serving.settings import ServingConfig

    project = ServingConfig(max_batch_rows=123, runtime="docker")
    config = gate_serving_config(project, tmp_path)
    assert config.prediction_log.url == f"sqlite:///{tmp_path / 'predictions.db'}"
    assert config.runtime == "process" and config.max_batch_rows == 123
    assert config.prediction_log.batch_size == project.prediction_log.batch_size


def test_dvc_stage_runs_the_gate_and_depends_on_the_installed_mlgate(repo_root):
    """The gate's code and the server are mlgate's: the stage depends on their version stamp."""
    import yaml

    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["edge_cases"]
    assert stage["cmd"] == "mlgate gate edge_cases --report-only"
    assert {".mlgate/version", "models/candidate", "data/train.parquet", "data/test.parquet"} <= set(stage["deps"])
    assert not [d for d in stage["deps"] if d.endswith(".py") or d == "serving"]
    assert {"gates.edge_cases", "serving"} <= set(stage["params"])
    assert {"reports/gates/edge_cases.json": {"cache": False}} in stage["outs"]
