"""A fitted model's outputs on a frame, and their encoding for the statistics in mlgate.gates.stats.

Raw outputs keep the model's own class labels (what deepchecks and reports show); the encoding maps
them onto the gate's conventions: binary 0/1 with 1 = `model.positive_class` and scores P(positive),
multiclass indices into one shared class list, regression values. A classifier without
`predict_proba` (a pyfunc that gives labels only) has no probabilities, and `no_scores` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlgate.gates.stats import Predictions
from mlgate.pipelines.params import ModelConfig


@dataclass(frozen=True)
class ModelOutputs:
    """What `predict` and `predict_proba` returned; `classes` orders the probability columns."""

    labels: np.ndarray
    proba: np.ndarray | None
    classes: list[Any] | None
    no_scores: str = ""  # a classifier without probabilities: why


def predict_outputs(model: Any, frame: pd.DataFrame, task: str) -> ModelOutputs:
    """Predictions (and probabilities for classifiers that have them) of `model` on `frame`. Raises ValueError."""
    try:
        labels = np.asarray(model.predict(frame))
        if labels.ndim == 2 and labels.shape[1] == 1:  # a pyfunc answering with a one-column frame
            labels = labels.ravel()
        if task == "regression":
            return ModelOutputs(labels.astype(float), None, None)
        if not hasattr(model, "predict_proba"):
            reason = getattr(model, "no_scores", "") or f"{type(model).__name__} has no predict_proba"
            return ModelOutputs(labels, None, None, reason)
        return ModelOutputs(labels, np.asarray(model.predict_proba(frame), dtype=float), list(model.classes_))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"prediction failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None


def class_list(model_cfg: ModelConfig, y: pd.Series, *outputs: ModelOutputs) -> list[Any]:
    """The shared class order: classes in the labels or known to any model, sorted by their text."""
    seen = {*y.dropna().tolist(), *(c for o in outputs for c in (o.classes or []))}
    if model_cfg.task == "binary":
        return [c for c in sorted(seen, key=str) if c != model_cfg.positive_class] + [model_cfg.positive_class]
    return sorted(seen, key=str)


def encode_target(y: pd.Series, model_cfg: ModelConfig, classes: Sequence[Any]) -> np.ndarray:
    """The target as the gate needs it: 0/1 (binary), class indices (multiclass), floats (regression)."""
    if model_cfg.task == "regression":
        return y.to_numpy(dtype=float)
    if y.isna().any():
        raise ValueError(f"target '{model_cfg.target}' has {int(y.isna().sum())} missing values")
    if model_cfg.task == "binary":
        return (y.to_numpy() == model_cfg.positive_class).astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in y], dtype=np.int64)


def encode_outputs(outputs: ModelOutputs, model_cfg: ModelConfig, classes: Sequence[Any]) -> Predictions:
    """mlgate.gates.stats Predictions from raw outputs. Raises ValueError when the model's classes do not fit."""
    if model_cfg.task == "regression":
        return Predictions(values=outputs.labels)
    own = list(outputs.classes) if outputs.classes is not None else sorted(set(outputs.labels.tolist()), key=str)
    unknown = [c for c in own if c not in classes]
    if unknown:
        raise ValueError(f"model predicts classes {unknown[:10]} that the target does not have")
    if outputs.proba is None:  # labels only: metrics that need scores are skipped by the gate
        index = {c: i for i, c in enumerate(classes)}
        if model_cfg.task == "binary":
            return Predictions(labels=(outputs.labels == model_cfg.positive_class).astype(np.int64))
        return Predictions(labels=np.array([index[v] for v in outputs.labels], dtype=np.int64))
    if model_cfg.task == "binary":
        if model_cfg.positive_class not in own:
            raise ValueError(f"positive_class {model_cfg.positive_class!r} is not a class of the model ({own})")
        score = outputs.proba[:, own.index(model_cfg.positive_class)]
        return Predictions(labels=(outputs.labels == model_cfg.positive_class).astype(np.int64), scores=score,
                           proba=score)
    proba = np.zeros((outputs.labels.size, len(classes)))
    proba[:, [list(classes).index(c) for c in own]] = outputs.proba
    index = {c: i for i, c in enumerate(classes)}
    return Predictions(labels=np.array([index[v] for v in outputs.labels], dtype=np.int64), proba=proba)
