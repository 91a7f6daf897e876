"""Stage `train`: a real MLflow store in tmp_path gets the run, its lineage tags and a skops model."""

from __future__ import annotations

import json

import mlflow
import pytest

from mlgate.pipelines.cli.main import main
from mlgate.pipelines.datasets import file_md5
from mlgate.serving.loading import ModelLoadError, load_sklearn_model


@pytest.fixture()
def prepared(project, capsys):
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    capsys.readouterr()
    return project


def _train(project, uri, capsys) -> tuple[int, str]:
    code = main(["train", "--params", str(project.params_path), "--tracking-uri", uri])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_train_logs_run_with_lineage_tags_metrics_and_skops_model(prepared, mlflow_uri, capsys):
    code, out = _train(prepared, mlflow_uri, capsys)
    assert code == 0, out
    run_info = json.loads((prepared.root / "reports" / "train_run.json").read_text())
    run = mlflow.MlflowClient(mlflow_uri).get_run(run_info["run_id"])
    tags = run.data.tags
    assert tags["mlgate.data_md5"] == file_md5(prepared.root / "data" / "train.parquet")
    assert len(tags["mlgate.params_md5"]) == 32 and tags["mlgate.git_sha"]
    assert run.data.params["train.estimator"] == "hist_gradient_boosting"
    assert set(run.data.metrics) >= {"roc_auc", "accuracy", "log_loss", "brier", "f1"}
    assert 0.7 < run.data.metrics["roc_auc"] <= 1.0
    metrics_file = json.loads((prepared.root / "metrics" / "train.json").read_text())
    assert metrics_file["roc_auc"] == pytest.approx(run.data.metrics["roc_auc"])
    loaded = load_sklearn_model(str(prepared.root / "models" / "candidate"))
    assert loaded.run_id == run_info["run_id"]
    assert {c["name"] for c in loaded.input_columns} >= {"state", "total_day_minutes"}
    assert all(c["type"] != "long" for c in loaded.input_columns)  # integers declared nullable doubles
    assert "MLflow run" in out and mlflow_uri in out


def test_models_load_with_unseen_categories_and_nulls(prepared, mlflow_uri, capsys, churn_frame):
    assert _train(prepared, mlflow_uri, capsys)[0] == 0
    model = load_sklearn_model(str(prepared.root / "models" / "candidate")).model
    rows = churn_frame.head(3).drop(columns=["churn"]).copy()
    rows.loc[rows.index[0], "state"] = "ZZ"
    rows.loc[rows.index[1], "total_day_minutes"] = None
    assert list(model.predict(rows)) and model.predict_proba(rows).shape == (3, 2)


@pytest.mark.parametrize("estimator", ["logistic_regression", "random_forest"])
def test_every_configured_estimator_trains(prepared, mlflow_uri, capsys, estimator):
    prepared.params["train"] = {**prepared.params["train"], "estimator": estimator, "hyperparams": {}}
    prepared.write()
    code, out = _train(prepared, mlflow_uri, capsys)
    assert code == 0, out
    assert f"train: {estimator} holdout metrics" in out


def test_unknown_hyperparameter_exits_2_naming_it(prepared, mlflow_uri, capsys):
    prepared.params["train"]["hyperparams"] = {"max_iterations": 10}
    prepared.write()
    code, out = _train(prepared, mlflow_uri, capsys)
    assert code == 2 and "train.hyperparams.max_iterations" in out


def test_failed_training_keeps_the_previous_model_dir(prepared, mlflow_uri, capsys):
    assert _train(prepared, mlflow_uri, capsys)[0] == 0
    model_file = prepared.root / "models" / "candidate" / "model.skops"
    before = file_md5(model_file)
    prepared.params["train"]["hyperparams"] = {"learning_rate": -1}
    prepared.write()
    code, out = _train(prepared, mlflow_uri, capsys)
    assert code == 2 and "learning_rate" in out
    assert file_md5(model_file) == before


def test_missing_split_says_how_to_make_it(project, mlflow_uri, capsys):
    code, out = _train(project, mlflow_uri, capsys)
    assert code == 2 and "train.parquet: split not found" in out and "prepare" in out


def test_loader_refuses_pickle_models(tmp_path):
    import mlflow.sklearn
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0], [1]], [0, 1])
    mlflow.sklearn.save_model(model, tmp_path / "m", serialization_format="cloudpickle")
    with pytest.raises(ModelLoadError, match="serialized with 'cloudpickle': refusing to load a pickle-based model"):
        load_sklearn_model(str(tmp_path / "m"))


def test_a_number_coded_category_with_nulls_trains_and_serves_as_a_category(base_params, churn_frame):
    """A 0/1 or code column declared categorical: the text fill value of the imputer cannot go into it (it
    ended train with exit 3); it is one-hot encoded with NaN as its own category, and the server's doubles,
    an unseen code and a null all predict."""
    from mlgate.pipelines.params import Params
    from mlgate.pipelines.stages.train import build_pipeline

    raw = json.loads(json.dumps(base_params))
    raw["data"]["numeric"].remove("number_customer_service_calls")
    raw["data"]["categorical"].append("number_customer_service_calls")
    raw["gates"]["quality"]["slices"]["numeric"].pop("number_customer_service_calls")
    raw["train"] = {**raw["train"], "estimator": "logistic_regression", "hyperparams": {}}
    params = Params.model_validate(raw)
    frame = churn_frame.head(400).copy()
    frame["number_customer_service_calls"] = frame["number_customer_service_calls"].astype("float64")
    frame.loc[frame.index[:20], "number_customer_service_calls"] = None
    model = build_pipeline(params, frame).fit(frame[params.data.features], frame["churn"])
    coded = model.named_steps["features"].named_transformers_["coded"]
    assert list(coded.feature_names_in_) == ["number_customer_service_calls"]
    served = frame[params.data.features].head(3).copy()
    served["number_customer_service_calls"] = [1.0, 99.0, None]  # as the server builds it: doubles
    assert model.predict_proba(served).shape == (3, 2)
    ones = model.named_steps["features"].transform(served)
    assert ones.shape[0] == 3
