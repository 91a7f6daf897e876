"""Holdout metrics of a fitted model, logged by `train` (the quality gate computes its own, with CIs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlgate.pipelines.params import ModelConfig


def compute(model_cfg: ModelConfig, model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Point metrics on one dataset, by task. A classifier without `predict_proba` (a pyfunc that gives
    labels only) gets the label metrics only."""
    predicted = np.asarray(model.predict(x))
    if predicted.ndim == 2 and predicted.shape[1] == 1:  # a pyfunc answering with a one-column frame
        predicted = predicted.ravel()
    if model_cfg.task == "regression":
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
            "mae": float(skm.mean_absolute_error(y, predicted)),
            "r2": float(skm.r2_score(y, predicted)),
        }
    scores = {"accuracy": float(skm.accuracy_score(y, predicted))}
    proba = model.predict_proba(x) if hasattr(model, "predict_proba") else None
    if proba is not None:
        scores["log_loss"] = float(skm.log_loss(y, proba, labels=model.classes_))
    if model_cfg.task == "multiclass":
        scores["macro_f1"] = float(skm.f1_score(y, predicted, average="macro"))
        return scores
    positive = model_cfg.positive_class
    classes = list(model.classes_) if proba is not None else sorted({*pd.unique(y), *pd.unique(predicted)}, key=str)
    if positive not in classes:
        raise ValueError(f"positive_class {positive!r} is not a class of the target (classes: {classes})")
    scores.update({
        "f1": float(skm.f1_score(y, predicted, pos_label=positive)),
        "precision": float(skm.precision_score(y, predicted, pos_label=positive, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, pos_label=positive)),
    })
    if proba is not None:
        p_pos = proba[:, classes.index(positive)]
        is_pos = (np.asarray(y) == positive).astype(int)
        scores.update({
            "roc_auc": float(skm.roc_auc_score(is_pos, p_pos)),
            "pr_auc": float(skm.average_precision_score(is_pos, p_pos)),
            "brier": float(skm.brier_score_loss(is_pos, p_pos)),
        })
    return scores
