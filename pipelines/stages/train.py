"""Stage `train`: fit the sklearn pipeline from params (or run `train.command`), log it to MLflow with lineage,
write the model dir."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlgate.pipelines.datasets import check_dataset, load_split, split_path
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import write_text_atomic
from mlgate.pipelines.lineage import Lineage, data_md5, git_state, model_digest
from mlgate.pipelines.mlflow_io import LoggedRun, log_training_run
from mlgate.pipelines.params import Params
from mlgate.pipelines.stages import holdout_metrics
from mlgate.pipelines.stages.bundle import write_bundle
from mlgate.serving.loading import BUNDLE_FOLDER

MISSING_CATEGORY = "__missing__"
_ESTIMATORS = {
    ("logistic_regression", False): lambda: LogisticRegression(max_iter=2000),
    ("logistic_regression", True): LinearRegression,
    ("hist_gradient_boosting", False): HistGradientBoostingClassifier,
    ("hist_gradient_boosting", True): HistGradientBoostingRegressor,
    ("random_forest", False): lambda: RandomForestClassifier(n_estimators=200, n_jobs=1),
    ("random_forest", True): lambda: RandomForestRegressor(n_estimators=200, n_jobs=1),
}
_NEEDS_SCALING = {"logistic_regression"}


def build_pipeline(params: Params, frame: pd.DataFrame | None = None) -> Pipeline:
    """Imputation, one-hot encoding that ignores unseen categories, scaling where the estimator needs it.

    Categorical columns are categories whatever their dtype. Text ones have nulls imputed as their own
    category; number-coded ones (0/1 flags, codes; known from `frame`, the training rows) go straight to
    the encoder, which keeps NaN as its own category (a text fill value cannot go into a number column,
    and the server sends them as numbers).
    """
    name, seed = params.train.estimator, params.train.seed
    estimator = _ESTIMATORS[(name, params.model.task == "regression")]()
    _set_hyperparams(estimator, {**_seed_param(estimator, seed), **params.train.hyperparams})
    numeric_steps = [("impute", SimpleImputer(strategy="median"))]
    if name in _NEEDS_SCALING:
        numeric_steps.append(("scale", StandardScaler()))
    coded = [c for c in params.data.categorical if frame is not None and c in frame.columns
             and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    text = [c for c in params.data.categorical if c not in coded]
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    transformers = [("numeric", Pipeline(numeric_steps), params.data.numeric),
                    ("categorical", categorical, text)]
    if coded:
        transformers.append(("coded", OneHotEncoder(handle_unknown="ignore", sparse_output=False), coded))
    features = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("features", features), ("estimator", estimator)])


def _seed_param(estimator: Any, seed: int) -> dict[str, int]:
    return {"random_state": seed} if "random_state" in estimator.get_params() else {}


def _set_hyperparams(estimator: Any, hyperparams: dict[str, Any]) -> None:
    valid = estimator.get_params()
    for key in hyperparams:
        if key not in valid:
            raise UsageError(
                f"train.hyperparams.{key}: not a parameter of {type(estimator).__name__} "
                f"(valid: {', '.join(sorted(valid))})"
            )
    try:
        estimator.set_params(**hyperparams)
        estimator._validate_params()  # sklearn's own checks of value types and ranges
    except (ValueError, TypeError) as exc:
        raise UsageError(f"train.hyperparams: {' '.join(str(exc).split())}") from None


def features_and_target(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.Series]:
    return frame[params.data.features], frame[params.model.target]


@dataclass(frozen=True)
class TrainOutcome:
    run: LoggedRun
    metrics: dict[str, float]
    lineage: Lineage


def run_train(params: Params, tracking_uri: str, base_dir: Path = Path("."),
              params_path: Path | None = None) -> TrainOutcome:
    """Stage `train`: fit (or run `train.command`), log, and write the model dir, metrics/train.json and
    reports/train_run.json (the run `register` uses, and the digest of the model it logged)."""
    if params.train.command is not None:
        from mlgate.pipelines.stages.train_command import run_and_log

        outcome = run_and_log(params, params_path or base_dir / "params.yaml", tracking_uri, base_dir)
    else:
        outcome = fit_and_log(params, tracking_uri, base_dir)
    _write_json(base_dir / "metrics" / "train.json", outcome.metrics)
    _write_json(base_dir / "reports" / "train_run.json", {
        "run_id": outcome.run.run_id, "experiment_id": outcome.run.experiment_id,
        "model_uri": outcome.run.model_uri, "model_id": outcome.run.model_id, "tracking_uri": tracking_uri,
        "estimator": params.train.estimator, "command": params.train.command, "tags": outcome.lineage.tags(),
        "model_digest": model_digest(base_dir / params.train.model_dir),
    })
    return outcome


def load_checked_splits(params: Params, base_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test splits, checked for the configured columns (UsageError naming file and column)."""
    frames = []
    for split in ("train", "test"):
        frame = load_split(params.data, split, base_dir)
        check_dataset(frame, params.model, params.data, str(split_path(params.data, split, base_dir)))
        frames.append(frame)
    return frames[0], frames[1]


def current_lineage(params: Params, base_dir: Path) -> Lineage:
    """Git state, the training split's md5 (as dvc.lock records it) and the params md5, now."""
    sha, dirty = git_state(base_dir)
    return Lineage(sha, dirty, data_md5(base_dir, Path(params.data.dir) / "train.parquet"), params.digest())


def fit_and_log(params: Params, tracking_uri: str, base_dir: Path = Path(".")) -> TrainOutcome:
    """Fit on `train`, measure on `test`, log the run and model to MLflow, write `train.model_dir`."""
    train, test = load_checked_splits(params, base_dir)
    x_train, y_train = features_and_target(train, params)
    pipeline = build_pipeline(params, x_train)
    pipeline.fit(x_train, y_train)
    metrics = holdout_metrics.compute(params.model, pipeline, *features_and_target(test, params))
    lineage = current_lineage(params, base_dir)
    with tempfile.TemporaryDirectory(prefix="mlgate-bundle-") as scratch:
        bundle = Path(scratch) / BUNDLE_FOLDER
        write_bundle(bundle, params, train, test)
        run = log_training_run(
            tracking_uri,
            params.model.name,
            model=pipeline,
            params={"model": params.model.model_dump(), "train": params.train.model_dump()},
            metrics=metrics,
            tags={**lineage.tags(), "mlgate.stage": "trained", "mlgate.model_name": params.model.name},
            input_example=x_train.head(5),
            model_dir=base_dir / params.train.model_dir,
            bundle_dir=bundle,
        )
    return TrainOutcome(run, metrics, lineage)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
