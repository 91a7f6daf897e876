"""Which logged model `register` registers: exactly the one the gates judged (DESIGN §5).

The training run's logged model (reports/train_run.json) when its files hash to the judged digest;
otherwise — an own model written to train.model_dir, or one that replaced the trained model — the
directory itself, copied aside, hashed again and logged unchanged to a new MLflow run, so what is
registered is byte for byte what was judged, even if the directory changes meanwhile.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import GateRefused, UsageError
from mlgate.pipelines.lineage import TAG_PREFIX, Lineage, data_md5, git_state, model_digest, model_uri_digest


@dataclass(frozen=True)
class ModelSource:
    """A logged model to register: its run, its URI and the lineage tags of that run."""

    run_id: str
    model_uri: str
    lineage: dict[str, str]
    logged_now: bool  # logged by `register` from train.model_dir (not the training run's model)


def judged_model_source(ctx: RunContext, digest: str) -> ModelSource:
    """The training run's model when its digest is `digest`, else train.model_dir logged to a new run."""
    run = read_train_run(ctx.path("reports/train_run.json"), ctx.tracking_uri)
    if run is not None and _digest_or_none(ctx.tracking_uri, run["model_uri"]) == digest:
        return ModelSource(run["run_id"], run["model_uri"], dict(run.get("tags") or {}), False)
    return log_judged_directory(ctx, digest)


def read_train_run(path: Path, tracking_uri: str) -> dict[str, Any] | None:
    """reports/train_run.json (None when absent: a model not trained by `mlgate train`); it must live
    in this tracking store."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        run_id, model_uri = str(run["run_id"]), str(run["model_uri"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: malformed training record ({type(exc).__name__}: {exc})") from None
    logged_to = run.get("tracking_uri")
    # The same store spelt two ways (sqlite:///mlflow.db and sqlite:////abs/mlflow.db) is the same store;
    # a relative location in the record is relative to the project, where `dvc repro` trained.
    if logged_to and registry.store_location(logged_to, path.parent.parent) != registry.store_location(tracking_uri):
        raise UsageError(f"{path}: run {run_id} was logged to {logged_to}, not to {tracking_uri}; re-run "
                         "`dvc repro --force` with MLFLOW_TRACKING_URI set to the registry you register into")
    return {**run, "run_id": run_id, "model_uri": model_uri}


def log_judged_directory(ctx: RunContext, digest: str) -> ModelSource:
    """train.model_dir, copied aside and checked against `digest`, logged to a new run with its lineage."""
    model_dir = ctx.path(ctx.params.train.model_dir)
    with tempfile.TemporaryDirectory(prefix="mlgate-register-") as scratch:
        copy = Path(scratch) / "model"
        shutil.copytree(model_dir, copy)
        if model_digest(copy) != digest:
            raise GateRefused(f"{ctx.params.train.model_dir} changed while registering (digest "
                              f"{model_digest(copy)[:12]}, judged {digest[:12]}); re-run `dvc repro`")
        lineage = _lineage(ctx).tags()
        tags = {**lineage, TAG_PREFIX + "stage": "judged", TAG_PREFIX + "model_name": ctx.params.model.name,
                TAG_PREFIX + "model_source": str(ctx.params.train.model_dir), TAG_PREFIX + "model_digest": digest}
        logged = registry.log_model_directory(ctx.tracking_uri, ctx.params.model.name, copy, tags)
    return ModelSource(logged.run_id, logged.model_uri, lineage, True)


def _lineage(ctx: RunContext) -> Lineage:
    """Git state, training-data md5 and params md5 now: the ones the verdict was checked against."""
    sha, dirty = git_state(ctx.base_dir)
    train_rel = Path(ctx.params.data.dir) / "train.parquet"
    data = data_md5(ctx.base_dir, train_rel) if ctx.path(train_rel).is_file() else "unknown"
    return Lineage(sha, dirty, data, ctx.params.digest())


def _digest_or_none(tracking_uri: str, model_uri: str) -> str | None:
    try:
        return model_uri_digest(tracking_uri, model_uri)
    except Exception:  # noqa: BLE001 - an unreadable training run is simply not the judged model
        return None
