"""Quality gate on the real churn data: models fitted here, judged against each other by gates.quality."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlgate.gates.config import QualityGateConfig
from mlgate.gates.quality.decide import BaselineOutputs, QualityInputs, check
from mlgate.gates.quality.slices import define_slices, margin_p_values
from mlgate.gates.result import GateResult, Status
from mlgate.gates.stats import Interval, Predictions
from mlgate.pipelines.params import Params
from mlgate.pipelines.stages.prepare import make_splits
from mlgate.pipelines.stages.train import build_pipeline

CI_MESSAGE = re.compile(
    r"^(?P<metric>\w+) delta [+-]\d\.\d{3} \[95% CI [+-]\d\.\d{3}, [+-]\d\.\d{3}\]: CI (lower|upper) bound "
    r"[+-]\d\.\d{3} (<=|>=|<|>) margin [+-]0\.\d{3}: .*\((DeLong|McNemar|bootstrap) test of no difference: "
    r"p[=<]\d\.\d{3}\)$"
)


@pytest.fixture(scope="module")
def params(base_params) -> Params:
    return Params.model_validate(base_params)


@pytest.fixture(scope="module")
def config(params) -> QualityGateConfig:
    return params.gates.quality


@pytest.fixture(scope="module")
def splits(churn_frame, params) -> dict[str, pd.DataFrame]:
    return make_splits(churn_frame, params)


def _fit_logistic(params: Params, frame: pd.DataFrame, labels: pd.Series):
    pipeline = build_pipeline(params.model_copy(update={
        "train": params.train.model_copy(update={"estimator": "logistic_regression", "hyperparams": {}})}))
    return pipeline.fit(frame[params.data.features], labels)


def _predictions(model, frame: pd.DataFrame, features: list[str]) -> Predictions:
    score = model.predict_proba(frame[features])[:, list(model.classes_).index("yes")]
    return Predictions(labels=(model.predict(frame[features]) == "yes").astype(int), scores=score, proba=score)


def _y(frame: pd.DataFrame) -> np.ndarray:
    return (frame["churn"] == "yes").astype(int).to_numpy()


@pytest.fixture(scope="module")
def champion_model(splits, params):
    return _fit_logistic(params, splits["train"], splits["train"]["churn"])


@pytest.fixture(scope="module")
def champion(splits, params, champion_model) -> Predictions:
    return _predictions(champion_model, splits["test"], params.data.features)


@pytest.fixture(scope="module")
def on_train(splits, params, champion_model) -> dict:
    """The champion's own training predictions, for the overfitting gap."""
    return {"y_train": _y(splits["train"]),
            "candidate_train": _predictions(champion_model, splits["train"], params.data.features)}


@pytest.fixture(scope="module")
def noisy_candidate(splits, params) -> Predictions:
    """A candidate trained on the same rows with 30% of the labels flipped (seeded)."""
    train = splits["train"]
    flipped = np.random.default_rng(0).random(len(train)) < 0.3
    labels = train["churn"].where(~flipped, train["churn"].map({"yes": "no", "no": "yes"}))
    return _predictions(_fit_logistic(params, train, labels), splits["test"], params.data.features)


def _inputs(splits, candidate: Predictions, baseline: Predictions | None, **extra) -> QualityInputs:
    base = BaselineOutputs("churn", "7", "models:/churn/7", baseline, "run123", {"mlgate.git_sha": "abc"}) \
        if baseline is not None else None
    return QualityInputs("binary", _y(splits["test"]), candidate, base, slice_frame=splits["test"], **extra)


def _by_name(result: GateResult) -> dict:
    return {c.name: c for c in result.checks}


def test_candidate_identical_to_champion_passes_non_inferiority(splits, config, champion, on_train):
    result = check(_inputs(splits, champion, champion, **on_train), config)
    checks = _by_name(result)
    for metric in config.metrics:
        relative = checks[f"metric.{metric}.vs_baseline"]
        assert relative.status is Status.PASS, relative.message
        assert relative.details["delta"] == 0.0 and relative.details["ci"][0] <= 0.0 <= relative.details["ci"][1]
        assert CI_MESSAGE.match(relative.message), relative.message
    assert not result.status.blocks
    assert not result.by_status(Status.FAIL, Status.ERROR)
    assert checks["baseline"].details["version"] == "7" and checks["baseline"].details["lineage"]["mlgate.git_sha"] == "abc"


def test_candidate_trained_on_30pct_flipped_labels_fails_naming_metric_and_ci(
    splits, config, champion, noisy_candidate, on_train
):
    result = check(_inputs(splits, noisy_candidate, champion, **on_train), config)
    checks = _by_name(result)
    assert result.status is Status.FAIL
    for metric in config.metrics:
        relative = checks[f"metric.{metric}.vs_baseline"]
        assert relative.status is Status.FAIL, relative.message
        match = CI_MESSAGE.match(relative.message)
        assert match and match["metric"] == metric, relative.message
    auc = checks["metric.roc_auc.vs_baseline"]
    low, high = auc.details["ci"]
    assert high < -0.01 and auc.details["test"] == "DeLong" and auc.details["p_value"] < 0.05
    assert f"[95% CI {low:+.3f}, {high:+.3f}]: CI lower bound {low:+.3f} <= margin -0.010" in auc.message
    assert "(DeLong test of no difference: p" in auc.message
    assert checks["metric.accuracy.vs_baseline"].details["test"] == "McNemar"
    assert checks["metric.log_loss.vs_baseline"].details["test"] == "bootstrap"
    assert checks["metric.log_loss.vs_baseline"].details["delta"] > 0  # lower is better: worse is positive


def test_without_baseline_floors_apply_and_relative_checks_skip_with_reason(splits, config, noisy_candidate, on_train):
    inputs = _inputs(splits, noisy_candidate, None, missing_baseline="no version has alias 'champion'", **on_train)
    result = check(inputs, config)
    checks = _by_name(result)
    assert checks["baseline"].status is Status.SKIP and "no version has alias 'champion'" in checks["baseline"].message
    assert checks["metric.roc_auc.absolute"].status is Status.FAIL  # 30% noise: AUC falls under the 0.80 floor
    assert "below floor 0.800" in checks["metric.roc_auc.absolute"].message
    for metric in config.metrics:
        skipped = checks[f"metric.{metric}.vs_baseline"]
        assert skipped.status is Status.SKIP and "no version has alias 'champion'" in skipped.message
    assert checks["slices"].status is Status.SKIP
    assert result.status is Status.FAIL


def test_require_baseline_turns_a_missing_baseline_into_error(splits, config, champion):
    strict = config.model_copy(update={"require_baseline": True})
    result = check(_inputs(splits, champion, None, missing_baseline="no champion"), strict)
    checks = _by_name(result)
    assert result.status is Status.ERROR
    assert checks["baseline"].status is Status.ERROR and "require_baseline: true" in checks["baseline"].message
    assert checks["metric.accuracy.vs_baseline"].status is Status.ERROR


def test_an_unusable_baseline_is_error_even_when_not_required(splits, config, champion):
    inputs = _inputs(splits, champion, None, missing_baseline="baseline cannot be loaded", baseline_failed=True)
    result = check(inputs, config)
    assert result.status is Status.ERROR and _by_name(result)["baseline"].status is Status.ERROR


def test_required_improvement_is_not_met_by_an_identical_candidate(splits, config, champion):
    rule = config.metrics["roc_auc"].model_copy(update={"max_regression": None, "min_improvement": 0.005})
    improving = config.model_copy(update={"metrics": {**config.metrics, "roc_auc": rule}})
    relative = _by_name(check(_inputs(splits, champion, champion), improving))["metric.roc_auc.vs_baseline"]
    assert relative.status is Status.FAIL
    assert "does not clear required improvement +0.005" in relative.message


def test_a_rule_contradicting_the_metric_direction_is_error(splits, config, champion):
    wrong = config.metrics["log_loss"].model_copy(update={"greater_is_better": True})
    bad = config.model_copy(update={"metrics": {**config.metrics, "log_loss": wrong}})
    result = check(_inputs(splits, champion, champion), bad)
    assert _by_name(result)["metric.log_loss"].status is Status.ERROR
    assert "lower is better" in _by_name(result)["metric.log_loss"].message


def test_a_metric_that_cannot_be_computed_is_error_not_pass(splits, config, champion):
    broken_scores = champion.scores.copy()
    broken_scores[:5] = np.nan
    broken = Predictions(labels=champion.labels, scores=broken_scores, proba=broken_scores)
    checks = _by_name(check(_inputs(splits, broken, champion), config))
    for name in ("metric.roc_auc.absolute", "metric.roc_auc.vs_baseline", "metric.log_loss.vs_baseline"):
        assert checks[name].status is Status.ERROR and "NaN" in checks[name].message
    assert checks["metric.accuracy.vs_baseline"].status is Status.PASS  # labels are intact


def test_slices_are_category_values_and_quantile_bins_of_the_real_columns(splits, config):
    test = splits["test"].copy()
    test.loc[test.index[:3], "total_day_minutes"] = np.nan
    slices = define_slices(test, config.slices.categorical, config.slices.numeric)
    names = [s.name for s in slices]
    assert {"international_plan=yes", "international_plan=no", "area_code=area_code_415"} <= set(names)
    day = [s for s in slices if s.column == "total_day_minutes"]
    assert len(day) == 5 and day[-1].name == "total_day_minutes is <missing>" and day[-1].mask.sum() == 3
    assert sum(s.mask.sum() for s in day) == len(test)
    assert not np.any(np.sum([s.mask for s in day], axis=0) > 1)  # bins do not overlap
    assert all(abs(s.mask.sum() - len(test) / 4) < 20 for s in day[:4])  # quartiles


def test_a_slice_where_the_candidate_regresses_fails_and_is_listed_worst(splits, config, champion):
    intl = (splits["test"]["international_plan"] == "yes").to_numpy()
    y = _y(splits["test"])
    labels = champion.labels.copy()
    labels[intl] = 1 - y[intl]  # wrong on every international-plan row, unchanged elsewhere
    candidate = Predictions(labels=labels, scores=champion.scores, proba=champion.proba)
    checks = _by_name(check(_inputs(splits, candidate, champion), config))
    bad = checks["slice.accuracy.international_plan=yes"]
    assert bad.status is Status.FAIL and "worse than margin 0.010" in bad.message and "Holm over 14" in bad.message
    assert bad.details["p_worse_holm"] < 0.025 and bad.details["n"] == intl.sum()
    summary = checks["slices"]
    assert summary.status is Status.FAIL and summary.details["worst"][0]["slice"] == "international_plan=yes"
    # international-plan rows are in every other slice too (about 9% of each), so each of those regresses
    assert summary.details["counts"] == {"non-inferior": 1, "inconclusive": 0, "worse": 13, "undecided": 0}
    assert "1 non-inferior, 0 inconclusive, 13 worse" in summary.message
    assert checks["slice.accuracy.international_plan=no"].status is Status.PASS  # identical there, n > 1000


def test_slices_below_min_size_are_listed_not_judged(splits, config, champion):
    cfg = config.model_copy(update={"slices": config.slices.model_copy(update={"min_slice_size": 400})})
    checks = _by_name(check(_inputs(splits, champion, champion), cfg))
    too_small = checks["slices"].details["too_small"]
    assert too_small["international_plan=yes"] < 400 and "slice.accuracy.international_plan=yes" not in checks
    assert "slice.accuracy.international_plan=no" in checks


@pytest.mark.parametrize("greater", [True, False])
def test_one_slice_comparison_at_half_alpha_reproduces_the_ci_rule(greater):
    rng = np.random.default_rng(1)
    for _ in range(200):
        estimate = rng.normal(0, 0.03)
        low, high = estimate - rng.uniform(0.001, 0.05), estimate + rng.uniform(0.001, 0.05)
        interval = Interval(estimate, low, high, 0.95, None, "test")
        p_ni, p_worse = margin_p_values(interval, 0.01, greater)
        shown_ni = low > -0.01 if greater else high < 0.01
        shown_worse = high < -0.01 if greater else low > 0.01
        assert (p_ni < 0.025) == shown_ni and (p_worse < 0.025) == shown_worse


def test_overfitting_gap(splits, config, champion, on_train):
    y_train = _y(splits["train"])
    memorised = Predictions(labels=y_train, scores=y_train.astype(float), proba=y_train.astype(float))
    checks = _by_name(check(_inputs(splits, champion, champion, y_train=y_train, candidate_train=memorised), config))
    assert checks["gap.roc_auc"].status is Status.FAIL and checks["gap.roc_auc"].details["train"] == 1.0
    assert "above max 0.080" in checks["gap.roc_auc"].message
    checks = _by_name(check(_inputs(splits, champion, champion, **on_train), config))
    assert checks["gap.roc_auc"].status is Status.PASS and abs(checks["gap.roc_auc"].observed) < 0.08
    missing = _by_name(check(_inputs(splits, champion, champion), config))["gap.accuracy"]
    assert missing.status is Status.ERROR and "no predictions on the training split" in missing.message


def test_poor_calibration_warns_and_does_not_block(splits, config, champion, on_train):
    squashed = champion.scores**3  # same ranking, probabilities pushed towards 0
    candidate = Predictions(labels=champion.labels, scores=champion.scores, proba=squashed)
    ranking_only = {m: config.metrics[m] for m in ("roc_auc", "accuracy")}  # log_loss/brier would fail
    result = check(_inputs(splits, candidate, champion, **on_train), config.model_copy(update={"metrics": ranking_only}))
    ece = _by_name(result)["calibration.ece"]
    assert ece.status is Status.WARN and ece.observed > 0.05 and ece.details["baseline"] < 0.05
    assert not result.status.blocks


def test_the_result_survives_json(splits, config, champion, noisy_candidate):
    result = check(_inputs(splits, noisy_candidate, champion), config)
    assert GateResult.from_json(result.to_json()) == result


def test_multiclass_and_regression_metrics(churn_frame):
    """Multiclass: area_code from the other columns; regression: day charge from minutes vs from length."""
    train, test = churn_frame.iloc[:3500], churn_frame.iloc[3500:]
    numeric = ["total_day_minutes", "total_eve_minutes", "total_night_minutes", "number_customer_service_calls"]
    codes = {c: i for i, c in enumerate(sorted(churn_frame["area_code"].unique()))}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(train[numeric], train["area_code"])
    proba = model.predict_proba(test[numeric])
    multi = Predictions(labels=np.array([codes[v] for v in model.predict(test[numeric])]), proba=proba)
    cfg = QualityGateConfig.model_validate({"metrics": {
        "accuracy": {"greater_is_better": True, "max_regression": 0.02},
        "macro_f1": {"greater_is_better": True, "max_regression": 0.02},
        "log_loss": {"greater_is_better": False, "max_regression": 0.02}}})
    y_multi = test["area_code"].map(codes).to_numpy()
    result = check(QualityInputs("multiclass", y_multi, multi, BaselineOutputs("m", "1", "u", multi)), cfg)
    assert {c.name: c.status for c in result.checks if c.name.startswith("metric.")} == {
        f"metric.{m}.vs_baseline": Status.PASS for m in ("accuracy", "macro_f1", "log_loss")}
    good = LinearRegression().fit(train[["total_day_minutes"]], train["total_day_charge"])
    poor = LinearRegression().fit(train[["account_length"]], train["total_day_charge"])
    values = {name: Predictions(values=m.predict(test[[col]])) for name, m, col in (
        ("good", good, "total_day_minutes"), ("poor", poor, "account_length"))}
    reg_cfg = QualityGateConfig.model_validate({"metrics": {
        m: {"greater_is_better": m == "r2", "max_regression": 0.01} for m in ("rmse", "mae", "r2")}})
    y_reg = test["total_day_charge"].to_numpy()
    better = check(QualityInputs("regression", y_reg, values["good"], BaselineOutputs("r", "1", "u", values["poor"])), reg_cfg)
    worse = check(QualityInputs("regression", y_reg, values["poor"], BaselineOutputs("r", "1", "u", values["good"])), reg_cfg)
    assert better.status is Status.PASS and worse.status is Status.FAIL
    assert _by_name(better)["calibration"].status is Status.SKIP
    assert _by_name(worse)["metric.r2.vs_baseline"].details["delta"] < -0.9
