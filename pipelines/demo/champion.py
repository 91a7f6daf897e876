"""Bootstrap a production model when none exists, so a first candidate has something real to beat."""

from __future__ import annotations

from pathlib import Path

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.mlflow_io import ModelVersionRef
from mlgate.pipelines.params import Params
from mlgate.pipelines.stages.train import fit_and_log

BOOTSTRAP_DIR = "models/bootstrap-champion"


def ensure_champion(params: Params, tracking_uri: str, base_dir: Path, estimator: str) -> tuple[ModelVersionRef, bool]:
    """The current champion, or a newly trained and registered one: (version, created)."""
    current = registry.version_by_alias(tracking_uri, params.model.name, registry.CHAMPION)
    if current is not None:
        return current, False
    simple = params.model_copy(update={
        "train": params.train.model_copy(update={"estimator": estimator, "command": None, "deps": [], "hyperparams": {},
                                                 "model_dir": BOOTSTRAP_DIR}),
    })
    outcome = fit_and_log(simple, tracking_uri, base_dir)
    tags = {**outcome.lineage.tags(), "mlgate.stage": "production", "mlgate.verdict": "bootstrap",
            "mlgate.bootstrap_estimator": estimator}
    ref = registry.register_version(tracking_uri, params.model.name, outcome.run.model_uri, tags)
    registry.set_alias(tracking_uri, params.model.name, registry.CHAMPION, ref.version)
    return ref, True
