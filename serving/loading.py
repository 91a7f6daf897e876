"""Loading an MLflow sklearn model safely: skops with mlgate's own allow-list, never pickle.

MLflow 3.x refuses every sklearn load unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set, because a
skops model's trusted-types list is read from the model itself. mlgate does not trust that list: it
reads the types the file needs and loads only when each one comes from a module on ALLOWED_MODULES.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlgate.gates.result import first_line

ALLOWED_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.", "pandas.")


class ModelLoadError(Exception):
    """The model could not be loaded; the message names the URI or file and the reason."""


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # the fitted sklearn estimator or pipeline
    path: Path
    run_id: str | None
    model_id: str | None
    signature: dict[str, Any] | None

    @property
    def input_columns(self) -> list[dict[str, Any]]:
        """The signature's input columns as dicts with 'name', 'type' and 'required'."""
        return signature_inputs({"signature": self.signature}, str(self.path)) or []


def signature_inputs(meta: dict[str, Any], where: str) -> list[dict[str, Any]] | None:
    """The input columns of an MLmodel's signature (None without one); ModelLoadError naming `where`
    when the signature is not valid JSON. The one place mlgate parses an MLflow signature."""
    inputs = (meta.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    try:
        parsed = json.loads(inputs)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{where}: unreadable model signature ({exc})") from None
    if not isinstance(parsed, list):
        raise ModelLoadError(f"{where}: unsupported model signature (inputs are not a list of columns)")
    return parsed


def local_model_path(model_uri: str) -> Path:
    """A local directory holding the MLflow model for a path, file:// URI or any MLflow model URI."""
    candidate = Path(model_uri.removeprefix("file://"))
    if candidate.is_dir():
        return candidate
    import mlflow.artifacts  # imported here: importing mlflow costs about a second

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; the caller needs one
        raise ModelLoadError(f"{model_uri}: cannot fetch the model ({first_line(exc)})") from None


def load_sklearn_model(model_uri: str) -> LoadedModel:
    """Load the sklearn flavor of an MLflow model saved with serialization_format="skops"."""
    path = local_model_path(model_uri)
    meta = read_mlmodel(path)
    flavor = (meta.get("flavors") or {}).get("sklearn")
    if not flavor:
        raise ModelLoadError(f"{path}: not an MLflow sklearn model (no sklearn flavor in MLmodel)")
    if flavor.get("serialization_format") != "skops":
        raise ModelLoadError(
            f"{path}: serialized as {flavor.get('serialization_format')!r}; mlgate loads only 'skops' (no pickle)"
        )
    model_file = path / flavor.get("pickled_model", "model.skops")
    return LoadedModel(
        model=_load_skops(model_file),
        path=path,
        run_id=meta.get("run_id"),
        model_id=meta.get("model_id"),
        signature=meta.get("signature"),
    )


def trusted_types_for(model: Any) -> list[str]:
    """The skops types `model` needs beyond skops' defaults, if all are on the allow-list (for saving)."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=sio.dumps(model))
    refused = [t for t in untrusted if not t.startswith(ALLOWED_MODULES)]
    if refused:
        raise ModelLoadError(f"model uses types outside the allow-list: {', '.join(refused)}")
    return untrusted


def read_mlmodel(path: Path) -> dict[str, Any]:
    """The MLmodel file of a model directory as a dict; ModelLoadError when there is none."""
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise ModelLoadError(f"{path}: no MLmodel file; not an MLflow model directory")
    return yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}


def _load_skops(model_file: Path) -> Any:
    import skops.io as sio

    if not model_file.is_file():
        raise ModelLoadError(f"{model_file}: model file missing")
    untrusted = sio.get_untrusted_types(file=str(model_file))
    refused = [t for t in untrusted if not t.startswith(ALLOWED_MODULES)]
    if refused:
        raise ModelLoadError(f"{model_file}: refusing to load types outside the allow-list: {', '.join(refused)}")
    try:
        return sio.load(str(model_file), trusted=untrusted)
    except Exception as exc:  # noqa: BLE001 - skops raises many types for corrupt files
        raise ModelLoadError(f"{model_file}: cannot be loaded ({first_line(exc)})") from None

