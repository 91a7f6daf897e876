"""Trained and registered models for the rollout tests: a real project on the full churn data.

Three logged models from one prepared project: `weak` (logistic regression), `strong` (gradient boosting)
and `degraded` (gradient boosting trained with 45% of its training labels flipped). Tests register them
under model names of their own, so rollouts never collide.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from tests.conftest import Project

ROLLOUT_PARAMS = {
    "endpoint": "http://127.0.0.1:9",
    "poll_interval_s": 0.5,
    "lock_ttl_s": 60,
    "shadow": {"min_requests": 150, "min_agreement": 0.5, "min_score_correlation": -1.0, "max_output_psi": 10.0,
               "max_latency_ratio": 5.0, "max_duration_s": 120},
    "canary": {"steps": [50, 100], "approval_before": [], "min_requests_per_step": 100, "min_labels_per_step": 50,
               "metric_margins": {"accuracy": 0.05}, "planned_labels": 500, "planned_requests": 500,
               "error_rate_margin": 0.02, "latency_tolerance": 0.45, "max_step_duration_s": 120},
}


@dataclass(frozen=True)
class TrainedModels:
    project: Project
    uris: dict[str, str]  # weak / strong / degraded -> logged model URI
    log_url: str


def train_models(root: Path, churn_frame: pd.DataFrame, base_params: dict, tracking_uri: str) -> TrainedModels:
    project = Project.create(root, churn_frame, base_params)
    log_url = f"sqlite:///{root / 'reports' / 'predictions.db'}"
    project.params["rollout"] = json.loads(json.dumps(ROLLOUT_PARAMS))
    project.params["serving"]["prediction_log"] = {"url": log_url, "flush_interval_s": 0.1}
    # Shadows may use 10% of the wall clock (default 1%): enough timed model calls within seconds.
    project.params["serving"]["routing"] = {"shadow": {"max_busy_share": 0.1}}
    project.write()
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    uris = {"weak": _train(project, tracking_uri, "logistic_regression", {}),
            "strong": _train(project, tracking_uri, "hist_gradient_boosting", {"max_iter": 60})}
    train_file = root / "data" / "train.parquet"
    clean = train_file.read_bytes()
    frame = pd.read_parquet(train_file)
    flip = np.random.default_rng(0).random(len(frame)) < 0.45
    frame.loc[flip, "churn"] = np.where(frame.loc[flip, "churn"] == "yes", "no", "yes")
    frame.to_parquet(train_file)
    try:
        uris["degraded"] = _train(project, tracking_uri, "hist_gradient_boosting", {"max_iter": 60})
    finally:
        train_file.write_bytes(clean)
    return TrainedModels(project, uris, log_url)


def _train(project: Project, tracking_uri: str, estimator: str, hyperparams: dict) -> str:
    project.params["train"]["estimator"], project.params["train"]["hyperparams"] = estimator, hyperparams
    project.write()
    assert main(["train", "--params", str(project.params_path), "--tracking-uri", tracking_uri]) == 0
    return json.loads((project.root / "reports" / "train_run.json").read_text())["model_uri"]


@dataclass(frozen=True)
class RegisteredModel:
    """A params file of its own (own model name) beside the trained project's data."""

    params_path: Path
    name: str


def register_models(models: TrainedModels, tracking_uri: str, kinds: list[str], suffix: str) -> RegisteredModel:
    """Register `kinds` in order as versions 1, 2, ...; alias champion on 1 and challenger on 2."""
    params = yaml.safe_load(yaml.safe_dump(models.project.params))
    name = f"churn-{suffix}-{uuid.uuid4().hex[:6]}"
    params["model"]["name"] = name
    path = models.project.root / f"params-{suffix}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    for kind in kinds:
        registry.register_version(tracking_uri, name, models.uris[kind], {"mlgate.stage": "candidate"})
    registry.set_alias(tracking_uri, name, registry.CHAMPION, "1")
    registry.set_alias(tracking_uri, name, registry.CHALLENGER, "2")
    return RegisteredModel(path, name)
