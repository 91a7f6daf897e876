"""Holdout metrics of a fitted model, logged by `train` (the quality gate computes its own, with CIs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlgate.pipelines.params import ModelConfig


def compute(model_cfg: ModelConfig, model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Point metrics on one dataset, by task."""
    predicted = model.predict(x)
    if model_cfg.task == "regression":
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
            "mae": float(skm.mean_absolute_error(y, predicted)),
            "r2": float(skm.r2_score(y, predicted)),
        }
    proba = model.predict_proba(x)
    scores = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "log_loss": float(skm.log_loss(y, proba, labels=model.classes_)),
    }
    if model_cfg.task == "multiclass":
        scores["macro_f1"] = float(skm.f1_score(y, predicted, average="macro"))
        return scores
    positive = model_cfg.positive_class
    classes = list(model.classes_)
    if positive not in classes:
        raise ValueError(f"positive_class {positive!r} is not a class of the target (classes: {classes})")
    p_pos = proba[:, classes.index(positive)]
    is_pos = (np.asarray(y) == positive).astype(int)
    scores.update({
        "roc_auc": float(skm.roc_auc_score(is_pos, p_pos)),
        "pr_auc": float(skm.average_precision_score(is_pos, p_pos)),
        "f1": float(skm.f1_score(y, predicted, pos_label=positive)),
        "precision": float(skm.precision_score(y, predicted, pos_label=positive, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, pos_label=positive)),
        "brier": float(skm.brier_score_loss(is_pos, p_pos)),
    })
    return scores
