"""The background sample in a model's bundle: training rows the explainers compare each row against.

The server has no training data, so mlgate's train stage writes `BACKGROUND_ROWS` training rows (sampled
with the training seed) into the model directory at `BACKGROUND_FILE`, before the model is logged: the
model digest covers it and the registered version carries it. A model without it (trained by an older
mlgate, or a team's own bundle) is still explained by Tree SHAP, which needs no background; the other
explainers answer 409 naming the missing sample. The rows are training data: whoever can read the
model can read them (docs/EXPLANATIONS.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mlgate.serving.explain import ExplainError
from mlgate.serving.loading import BUNDLE_FOLDER

BACKGROUND_NAME = "background.parquet"  # in mlgate's folder of the model directory (BUNDLE_FOLDER)
BACKGROUND_FILE = f"{BUNDLE_FOLDER}/{BACKGROUND_NAME}"
_REGISTRY_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")


def sample_background(features: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` training rows (all when fewer), drawn with `seed`, in their original order and dtypes."""
    if len(features) <= rows:
        return features.reset_index(drop=True)
    picked = np.sort(np.random.default_rng(seed).choice(len(features), size=rows, replace=False))
    return features.iloc[picked].reset_index(drop=True)


def write_background(bundle: Path, features: pd.DataFrame, rows: int, seed: int) -> Path:
    """Write the sample into mlgate's bundle folder (`<model dir>/mlgate`; Parquet keeps the columns'
    types); its path."""
    path = Path(bundle) / BACKGROUND_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_background(features, rows, seed).to_parquet(path, index=False)
    return path


def read_background(model_dir: Path) -> pd.DataFrame | None:
    """The bundle's background sample, or None when the model directory has none."""
    path = Path(model_dir) / BACKGROUND_FILE
    return pd.read_parquet(path) if path.is_file() else None


def background_of_uri(uri: str, version: str) -> pd.DataFrame | None:
    """The background sample of the model a server loaded from `uri` (a directory or an MLflow URI; an
    alias is pinned to the loaded `version`, so a moved alias never mixes two models)."""
    from mlgate.serving.loading import local_model_path

    if match := _REGISTRY_ALIAS.match(uri):
        uri = f"models:/{match['name']}/{version}"
    return read_background(local_model_path(uri))


def conform_background(background: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The background's columns of `frame`, typed like them (numbers as the frame's numbers, integers kept
    as floats where the sample has nulls); ExplainError 409 when the sample lacks a column."""
    missing = [c for c in frame.columns if c not in background.columns]
    if missing:
        raise ExplainError(409, "background_mismatch", f"the bundle's background sample lacks the column(s) "
                           f"{missing[:10]}; retrain the model so its sample has every input column")
    data = {}
    for name in frame.columns:
        target, values = frame[name].dtype, background[name]
        if pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            fits = pd.api.types.is_integer_dtype(target) and np.isfinite(numbers).all()
            data[name] = numbers.astype(target) if fits or pd.api.types.is_float_dtype(target) else numbers
        else:
            data[name] = _like(values, target)
    return pd.DataFrame(data)


def _like(values: pd.Series, dtype: object) -> object:
    try:
        return values.astype(dtype).to_numpy() if isinstance(dtype, np.dtype) else values.astype(dtype)
    except (TypeError, ValueError):
        return values.to_numpy(dtype=object)
