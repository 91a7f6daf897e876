"""MLflow adapter: tracking URI, training runs, logged models. All MLflow I/O of mlgate goes through here."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.pipelines.files import replace_directory

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(environ: Mapping[str, str] | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set (a team's server), else the embedded SQLite store in the repo root."""
    environ = os.environ if environ is None else environ
    return environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def store_location(uri: str, base_dir: Path | None = None) -> str:
    """Where a tracking URI points, for comparing two spellings of one store: a SQLite or file store as
    its absolute, resolved path (relative paths against `base_dir`, default the working directory, as
    MLflow reads them); a server URL with its scheme and host lower-cased and no trailing slash."""
    from urllib.parse import urlsplit, urlunsplit

    def resolved(path: str) -> str:
        return str(Path(path).resolve() if Path(path).is_absolute() else ((base_dir or Path.cwd()) / path).resolve())

    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return uri if path in ("", ":memory:") else "sqlite:///" + resolved(path)
    if uri.startswith("file://"):
        return "file://" + resolved(uri.removeprefix("file://"))
    if "://" not in uri:
        return "file://" + resolved(uri)
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def client(tracking_uri: str):  # -> mlflow.MlflowClient (imported lazily: mlflow is slow to import)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str
    model_id: str | None
    tracking_uri: str


def log_training_run(
    tracking_uri: str,
    experiment: str,
    *,
    model: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    input_example: Any,
    model_dir: Path,
    bundle_dir: Path | None = None,
) -> LoggedRun:
    """Log params, metrics, tags and the skops-serialized model as one run; copy the model to `model_dir`.
    `bundle_dir`: a folder logged into the model as its subfolder of that name (mlgate's part of the bundle).

    The model directory is written atomically: on any failure the previous one stays in place.
    """
    import mlflow
    from mlflow.models import infer_signature

    from mlgate.serving.loading import trusted_types_for
    from mlgate.serving.pickle_guard import mlflow_pickle_flag

    client(tracking_uri)
    mlflow.set_experiment(experiment)
    # Integer features are declared as doubles: a null in them must stay valid at serving time.
    ints = input_example.select_dtypes(include="integer").columns
    input_example = input_example.astype({c: "float64" for c in ints})
    signature = infer_signature(input_example, model.predict(input_example))
    # MLflow validates the input example by loading the model it just wrote with its own loader, which
    # is off without pickle consent: allowed here for the skops file this process wrote itself.
    with mlflow.start_run(tags=tags) as run, mlflow_pickle_flag(True):
        mlflow.log_params(_flat(params))
        mlflow.log_metrics(metrics)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            serialization_format="skops",
            skops_trusted_types=trusted_types_for(model),
            pip_requirements=_pip_requirements(),
        )
        if bundle_dir is not None:
            mlflow.MlflowClient().log_model_artifacts(info.model_id, str(bundle_dir), Path(bundle_dir).name)
        _download_atomically(info.model_uri, model_dir)
    return LoggedRun(run.info.run_id, run.info.experiment_id, info.model_uri, info.model_id, tracking_uri)


def download_model(tracking_uri: str, model_uri: str, dst: Path) -> Path:
    """Download the model at `model_uri` (any MLflow model URI) into the existing directory `dst`."""
    import mlflow.artifacts

    client(tracking_uri)  # models:/ URIs resolve against the registry of this tracking URI
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))


def log_model_directory(tracking_uri: str, experiment: str, model_dir: Path, tags: dict[str, str], *,
                        params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None) -> LoggedRun:
    """A new run holding the files of the MLflow model directory `model_dir`, unchanged, under `model`
    (a model judged from a path is registered from it, a model your training command wrote is logged
    with its holdout metrics: runs:/<run>/model)."""
    import mlflow

    client(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(tags=tags) as run:
        if params:
            mlflow.log_params(_flat(params))
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(model_dir), "model")
    return LoggedRun(run.info.run_id, run.info.experiment_id, f"runs:/{run.info.run_id}/model", None, tracking_uri)


def _download_atomically(model_uri: str, model_dir: Path) -> None:
    import mlflow.artifacts

    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir.parent))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staging)))
        replace_directory(local, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pip_requirements() -> list[str]:
    """Pinned runtime requirements, given explicitly: MLflow's inference imports the model in a subprocess."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "skops", "numpy", "pandas", "scipy")]


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flat(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


# ---- Model registry: aliases and version tags are the state of a model's lifecycle (DESIGN §5). ----

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered version: what the gates compare against and what the rollout moves."""

    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _ref(mv: Any) -> ModelVersionRef:
    return ModelVersionRef(mv.name, str(mv.version), mv.run_id, mv.source, dict(mv.tags or {}))


def version_by_alias(tracking_uri: str, name: str, alias: str) -> ModelVersionRef | None:
    """The version behind `alias`, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _ref(client(tracking_uri).get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def get_version(tracking_uri: str, name: str, version: str) -> ModelVersionRef:
    return _ref(client(tracking_uri).get_model_version(name, str(version)))


def register_version(tracking_uri: str, name: str, model_uri: str, tags: dict[str, str]) -> ModelVersionRef:
    """Register `model_uri` as a new version of `name` (creating the registered model if needed)."""
    import mlflow

    client(tracking_uri)
    mv = mlflow.register_model(model_uri, name, tags=tags, await_registration_for=60)
    return get_version(tracking_uri, name, mv.version)


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def delete_alias(tracking_uri: str, name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already absent: deleting is idempotent
        client(tracking_uri).delete_registered_model_alias(name, alias)


def set_version_tags(tracking_uri: str, name: str, version: str, tags: dict[str, str]) -> None:
    mlflow_client = client(tracking_uri)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)


def run_tags(tracking_uri: str, run_id: str) -> dict[str, str]:
    """Tags of a tracking run (e.g. the lineage of the run a registered version came from)."""
    return dict(client(tracking_uri).get_run(run_id).data.tags)


def log_run_artifact(tracking_uri: str, run_id: str, path: Path, artifact_dir: str) -> None:
    client(tracking_uri).log_artifact(run_id, str(path), artifact_dir)


def versions_tagged(tracking_uri: str, name: str, key: str, value: str) -> list[ModelVersionRef]:
    """Every registered version of `name` whose tag `key` is `value`."""
    found = client(tracking_uri).search_model_versions(f"name = '{name}' and tags.`{key}` = '{value}'")
    return [_ref(mv) for mv in found]


# ---- Registered-model tags and version search: the rollout's state, lock and history (DESIGN §8). ----


def registered_model_tags(tracking_uri: str, name: str) -> dict[str, str] | None:
    """The registered model's tags, or None when the model is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client(tracking_uri).get_registered_model(name).tags or {})
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise


def set_registered_model_tag(tracking_uri: str, name: str, key: str, value: str) -> None:
    client(tracking_uri).set_registered_model_tag(name, key, value)


def delete_registered_model_tag(tracking_uri: str, name: str, key: str) -> None:
    """Remove a tag; removing one that is absent is not an error (idempotent)."""
    from contextlib import suppress

    from mlflow.exceptions import MlflowException

    with suppress(MlflowException):
        client(tracking_uri).delete_registered_model_tag(name, key)

