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
