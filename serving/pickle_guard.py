"""Which MLflow models unpickle something when they load, read from MLmodel files before anything loads.

MLflow 3.17 allows pickle unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false, and its checks look only
at the flavor being loaded (deleting the `sklearn` flavor from a pickled model's MLmodel made its pyfunc
load it as pickle). mlgate decides from the whole MLmodel instead, before loading: a cloudpickle
PythonModel, an sklearn or LightGBM model in pickle formats, a pyfunc of the sklearn flavor without
that flavor, or any loader mlgate cannot vouch for needs the user's consent (`serving.allow_pickle`).
Models-from-code are not pickle; the MLflow models they carry as artifacts are checked the same way.
`mlflow_pickle_flag` then sets MLflow's own flag to the same consent around a load, a second line for
what the model's code loads itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

MLFLOW_FLAG = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
CONSENT_HINT = "set serving.allow_pickle: true (params.yaml) or run `mlgate --allow-pickle` (MLGATE_ALLOW_PICKLE=1)"
# pyfunc loaders that read native formats (no pickle): XGBoost json/ubj, ONNX protobuf.
_NATIVE_LOADERS = {"mlflow.xgboost", "mlflow.onnx"}
_MAX_DEPTH = 5  # models-from-code wrapping models wrapping models


def pickle_use(path: Path, meta: dict[str, Any], depth: int = 0) -> str | None:
    """What loading the model at `path` (its MLmodel as `meta`) would unpickle, or None when nothing."""
    flavors = meta.get("flavors") or {}
    if "sklearn" in flavors:
        return _sklearn(path, flavors["sklearn"])
    if "lightgbm" in flavors:
        return _lightgbm(path, flavors["lightgbm"])
    pyfunc = flavors.get("python_function") or {}
    loader = str(pyfunc.get("loader_module") or "")
    if "model_code_path" in pyfunc:
        return _artifacts(path, pyfunc, depth)
    if loader.startswith("mlflow.pyfunc."):
        return f"{path / str(pyfunc.get('python_model', 'python_model.pkl'))}: a PythonModel saved with cloudpickle"
    if loader == "mlflow.sklearn":
        return f"{path / str(pyfunc.get('model_path', 'model.pkl'))}: an sklearn pyfunc without its sklearn flavor " \
               "(MLflow loads it as pickle)"
    if loader in _NATIVE_LOADERS:
        return None
    return f"{path}: flavor loader {loader or '(none)'!r}, which mlgate cannot vouch for (it may unpickle)"


def _sklearn(path: Path, flavor: dict[str, Any]) -> str | None:
    fmt = flavor.get("serialization_format", "pickle")  # MLflow's own default when the key is missing
    if fmt == "skops":
        return None
    return f"{path / str(flavor.get('pickled_model', 'model.pkl'))}: an sklearn model serialized with {fmt!r}"


def _lightgbm(path: Path, flavor: dict[str, Any]) -> str | None:
    if flavor.get("model_class", "lightgbm.basic.Booster") == "lightgbm.basic.Booster":
        return None  # LightGBM's own text format
    fmt = flavor.get("serialization_format", "cloudpickle")  # MLflow's default for old models
    if fmt == "skops":
        return None
    return f"{path / str(flavor.get('data', 'model.lgb'))}: a LightGBM scikit-learn model serialized with {fmt!r}"


def _artifacts(path: Path, pyfunc: dict[str, Any], depth: int) -> str | None:
    """The first pickle-based MLflow model among a models-from-code model's artifacts."""
    for entry in (pyfunc.get("artifacts") or {}).values():
        nested = path / str((entry or {}).get("path", ""))
        if not (nested / "MLmodel").is_file():
            continue
        if depth >= _MAX_DEPTH:
            return f"{nested}: models nested more than {_MAX_DEPTH} deep; mlgate cannot vouch for them"
        meta = yaml.safe_load((nested / "MLmodel").read_text(encoding="utf-8")) or {}
        if found := pickle_use(nested, meta, depth + 1):
            return found
    return None


@contextmanager
def mlflow_pickle_flag(allowed: bool) -> Iterator[None]:
    """MLflow's MLFLOW_ALLOW_PICKLE_DESERIALIZATION set to `allowed` for the block, then restored."""
    before = os.environ.get(MLFLOW_FLAG)
    os.environ[MLFLOW_FLAG] = "true" if allowed else "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MLFLOW_FLAG, None)
        else:
            os.environ[MLFLOW_FLAG] = before
