"""The quality gate on a model that gives labels only: judged on labels, every check that needs
probabilities SKIP with the reason (candidate or baseline), never ERROR and never PASS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlgate.gates.config import QualityGateConfig
from mlgate.gates.quality.decide import BaselineOutputs, QualityInputs, check
from mlgate.gates.result import Status
from mlgate.gates.stats import Predictions

REASON = "a PythonModel without scores (no predict_proba)"


@pytest.fixture(scope="module")
def config(base_params) -> QualityGateConfig:
    cfg = dict(base_params["gates"]["quality"])
    cfg["slices"] = {**cfg["slices"], "metrics": ["accuracy", "roc_auc"], "categorical": ["plan"], "numeric": {}}
    cfg["deepchecks"] = {"enabled": False}
    return QualityGateConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, Predictions, Predictions, pd.DataFrame]:
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(np.int64)
    scores = np.clip(y * 0.5 + rng.random(600) * 0.6, 0, 1)
    scored = Predictions(labels=(scores > 0.5).astype(np.int64), scores=scores, proba=scores)
    labels = Predictions(labels=(scores > 0.5).astype(np.int64))
    return y, scored, labels, pd.DataFrame({"plan": np.where(rng.random(600) < 0.5, "a", "b")})


def _checks(config, y, candidate, baseline, frame, *, candidate_reason="", baseline_reason=""):
    base = BaselineOutputs("m", "1", "models:/m/1", baseline, no_scores=baseline_reason)
    inputs = QualityInputs("binary", y, candidate, base, slice_frame=frame, y_train=y, candidate_train=candidate,
                           candidate_no_scores=candidate_reason)
    result = check(inputs, config)
    return result, {c.name: c for c in result.checks}


def test_a_labels_only_candidate_skips_every_probability_check_with_the_reason(config, rows):
    y, scored, labels, frame = rows
    result, checks = _checks(config, y, labels, scored, frame, candidate_reason=REASON)
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier"):
        for name in (f"metric.{metric}.vs_baseline", f"metric.{metric}.absolute"):
            if name in checks:
                assert checks[name].status is Status.SKIP
                assert checks[name].message == (f"{metric} needs predicted probabilities; the candidate gives "
                                                f"labels only: {REASON}")
    assert checks["metric.accuracy.vs_baseline"].status is Status.PASS  # the same labels
    assert checks["slice.roc_auc"].status is Status.SKIP and checks["slices"].status is not Status.ERROR
    assert checks["gap.roc_auc"].status is Status.SKIP and checks["gap.accuracy"].status is Status.PASS
    assert checks["calibration"].status is Status.SKIP and REASON in checks["calibration"].message
    assert result.status is not Status.ERROR


def test_a_labels_only_baseline_skips_only_the_comparisons_that_need_probabilities(config, rows):
    y, scored, labels, frame = rows
    result, checks = _checks(config, y, scored, labels, frame, baseline_reason=REASON)
    roc = checks["metric.roc_auc.vs_baseline"]
    assert roc.status is Status.SKIP and roc.message.startswith("roc_auc: no comparison, roc_auc needs predicted")
    assert "the baseline gives labels only" in roc.message and roc.details["candidate"] > 0.5
    assert checks["metric.roc_auc.absolute"].status in (Status.PASS, Status.FAIL)
    assert checks["metric.accuracy.vs_baseline"].status is Status.PASS
    assert checks["slice.roc_auc"].status is Status.SKIP
    assert checks["calibration.ece"].status in (Status.PASS, Status.WARN)
    assert checks["calibration.ece"].details["baseline"] is None
    assert result.status is not Status.ERROR


def test_without_a_reason_missing_probabilities_stay_an_error(config, rows):
    y, scored, labels, frame = rows
    _, checks = _checks(config, y, labels, scored, frame)
    assert checks["metric.roc_auc.vs_baseline"].status is Status.ERROR
