"""Run deepchecks suites on Parquet data with precomputed predictions (DESIGN §9).

Executed by the pinned deepchecks environment's python as `python deepchecks_runner.py SPEC.json`,
never imported by mlgate code (tests read its pure parts). It must import only the standard library, numpy, pandas and deepchecks:
the side environment has no mlgate installed. It writes one JSON entry per condition result, per
check that failed to run, per check that does not apply, and per informational check, plus one
HTML report. Exit 0 when the output was written, 2 for bad input (also written as "error").

The default suites run with mlgate's settings where deepchecks' own do not fit precomputed
predictions or small test splits (see `configured`): averaged scorers per task, a train-test
degradation judged beyond the test split's sampling noise, a systematic error judged the same way,
and the feature-label correlation's leakage suspicions reported as WARN (questions about the data,
not model defects).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

SUITES = ("train_test_validation", "model_evaluation", "data_integrity")
PREDICTION_KEYS = ("y_pred_train", "y_pred_test", "y_proba_train", "y_proba_test")
TRAIN_SUFFIX, TEST_SUFFIX = " - Train Dataset", " - Test Dataset"
NOISE_Z = 2.326            # one-sided 99%: a score's sampling noise allowance, in standard errors
MAX_DEGRADATION = 0.1      # deepchecks' default relative train-test degradation
MAX_BIAS_RATIO = 0.01      # deepchecks' default |mean error| / RMSE
DEGRADATION_CONDITION = "Train-Test relative degradation is less than 10% beyond the test split's sampling noise"
BIAS_CONDITION = "Systematic error ratio lower than 0.01 beyond the test split's sampling noise"
# deepchecks' built-in scorer names, all averaged: its per-class defaults carry pos_label=1, which
# scikit-learn rejects for string classes ("pos_label=1 is not a valid label"), and its binary
# precision/recall take the second class in sort order as positive, not model.positive_class.
TRAIN_TEST_SCORERS = {"binary": {"Accuracy": "accuracy", "F1 - Macro Average": "f1_macro"},
                      "multiclass": {"Accuracy": "accuracy", "F1 - Macro Average": "f1_macro"},
                      # not RMSE/MAE: their relative change is unbounded as the train error nears 0
                      "regression": {"R2": "r2"}}
BASELINE_SCORERS = {"binary": {"F1 - Macro Average": "f1_macro"},  # not accuracy: no gain on rare classes
                    "multiclass": {"F1 - Macro Average": "f1_macro"},
                    "regression": {"Neg RMSE": "neg_rmse", "Neg MAE": "neg_mae", "R2": "r2"}}
AUC_SCORERS = {"binary": {"ROC AUC": "roc_auc"}, "multiclass": {"ROC AUC - OvR Macro": "roc_auc_ovr"}}
# (check, condition name prefix) -> why its FAIL is reported as WARN
DATA_SUSPICIONS = {
    ("FeatureLabelCorrelationChange", "Train features' Predictive Power Score is less than"):
        "a feature that predicts the label this well is a leakage question about the data, not a model defect",
    ("FeatureLabelCorrelationChange", "Train-Test features' Predictive Power Score difference"):
        "on a random split this is the PPS's sampling noise or a leakage question about the data, not a model defect",
}


class InputError(Exception):
    """The spec or the data it points at is unusable; the message says which part."""


def not_applicable_reason(check_class: str, spec: dict[str, Any]) -> str | None:
    """Why a check of a default suite cannot apply to these inputs, or None when it can."""
    task, has_proba = spec["task"], bool(spec.get("y_proba_test"))
    if check_class in spec.get("exclude_checks", ()):
        return "excluded by configuration"
    if check_class == "BoostingOverfit":
        return "needs the live model object; mlgate passes precomputed predictions only"
    if check_class == "ModelInferenceTime":
        return "would time a lookup of precomputed predictions, not the model (the latency gate times the model)"
    if check_class == "UnusedFeatures" and not spec.get("feature_importance"):
        return "needs feature importance, none was given"
    if check_class.startswith("Regression") and task != "regression":
        return f"regression-only check, task is {task}"
    if check_class in ("RocReport", "ConfusionMatrixReport", "CalibrationScore", "NewLabelTrainTest",
                       "ClassImbalance", "ConflictingLabels") and task == "regression":
        return "classification-only check, task is regression"
    if check_class in ("RocReport", "CalibrationScore", "WeakSegmentsPerformance") and not has_proba \
            and task != "regression":  # regression weak segments use the squared error, no probabilities
        return "needs predicted probabilities, none were given"
    if check_class.startswith("DateTrainTestLeakage") and not spec.get("datetime_column"):
        return "the data has no datetime column"
    if check_class == "IndexTrainTestLeakage" and not spec.get("index_column"):
        return "the data has no index column"
    return None


def failure_kind(check_class: str, error: str, rows: int | None) -> tuple[str, str]:
    """("not_applicable", why) for deepchecks' own "nothing to judge in this data" failures, else ("failure", error)."""
    if check_class == "WeakSegmentsPerformance" and "unable to train an error model" in error:
        return "not_applicable", (f"no segment to judge in {rows} rows: deepchecks' error trees found no split of "
                                  "the model's per-row loss (too few rows or errors, e.g. a near-perfect fit)")
    if check_class == "WeakSegmentsPerformance" and "at least two features" in error:
        return "not_applicable", "needs at least two features"
    return "failure", error


def noise(score: float, rows: int, standard_error: float | None = None) -> float:
    """NOISE_Z standard errors of a score: the given one, else binomial at the score (a share in [0, 1])."""
    if standard_error is None:
        p = min(max(float(score), 0.0), 1.0)
        standard_error = math.sqrt(p * (1 - p) / max(rows, 1))
    return NOISE_Z * standard_error


def r2_standard_error(y_true: Any, y_pred: Any) -> float | None:
    """Delta-method standard error of R2 = 1 - mean(e²) / mean((y - ȳ)²) on these rows; unlike a binomial
    guess it widens with heavy-tailed errors (Boston: 0.085, against 0.081 by bootstrap and 0.040 binomial)."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:  # deepchecks itself reports the mismatch
        return None
    keep = ~(np.isnan(y_true) | np.isnan(y_pred))
    errors, spread = (y_true[keep] - y_pred[keep]) ** 2, (y_true[keep] - y_true[keep].mean()) ** 2
    if keep.sum() < 3 or spread.mean() == 0:
        return None
    ratio, cov = errors.mean() / spread.mean(), np.cov(errors, spread)
    variance = cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]
    return float(math.sqrt(max(variance, 0.0) / keep.sum()) / spread.mean())


def number(value: Any) -> float | None:
    """A score as a float; None for a score deepchecks could not compute (None, NaN, pd.NA)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def degradation_verdict(scores: list[tuple[str, float, float, int]],
                        standard_errors: dict[str, float] | None = None) -> tuple[str, str]:
    """(category, details) for (metric, train, test, test rows): FAIL when a score's relative drop from
    train to test exceeds MAX_DEGRADATION by more than the test score's sampling noise."""
    failed, passed, missing = [], [], []
    for metric, train, test, rows in scores:
        train, test = number(train), number(test)
        if train is None or test is None or train == 0:
            missing.append(f"{metric}: not computed")
            continue
        drop, allowance = (train - test) / abs(train), noise(test, rows, (standard_errors or {}).get(metric)) / abs(train)
        text = f"{metric} {train:.3f} (train) -> {test:.3f} (test): {drop:.1%} lower, noise ±{allowance:.1%} on {rows} rows"
        (failed if drop - allowance >= MAX_DEGRADATION else passed).append(text)
    if not failed and not passed:
        return "ERROR", "no score was computed on both train and test"
    return ("FAIL" if failed else "PASS"), "; ".join(failed + passed + missing)


def bias_verdict(mean_error: float, rmse: float, rows: int) -> tuple[str, str]:
    """(category, details): FAIL when |mean error| / RMSE is at least 0.01 and beyond its noise (≈ 1/sqrt(rows))."""
    ratio, limit = (abs(mean_error) / rmse if rmse else 0.0), max(MAX_BIAS_RATIO, NOISE_Z / math.sqrt(max(rows, 1)))
    details = f"systematic error to RMSE ratio {ratio:.3f}, allowed below {limit:.3f} for {rows} test rows"
    return ("FAIL" if ratio >= limit else "PASS"), details


def condition_result(category: str, details: str) -> Any:
    """A deepchecks ConditionResult from a verdict's category name and details."""
    from deepchecks.core import ConditionCategory, ConditionResult

    return ConditionResult(ConditionCategory(category), details)


def degradation_condition(value: Any, standard_errors: dict[str, float]) -> Any:
    """TrainTestPerformance's condition: its result table (Dataset, Metric, Value, Number of samples) judged."""
    scores = []
    for metric, rows in value.groupby("Metric", sort=False):
        by_set = {r["Dataset"]: r for _, r in rows.iterrows()}
        train, test = by_set.get("Train"), by_set.get("Test")
        scores.append((metric, None if train is None else train["Value"], None if test is None else test["Value"],
                       0 if test is None else int(test["Number of samples"])))
    return condition_result(*degradation_verdict(scores, standard_errors))


def bias_condition(value: dict[str, float], test_rows: int) -> Any:
    return condition_result(*bias_verdict(value["Mean Prediction Error"], value["RMSE"], test_rows))


def warn_instead_of_fail(function: Any, why: str) -> Any:
    """A condition function whose FAIL is reported as WARN, saying why."""
    def condition(value: Any, **params: Any) -> Any:
        result = function(value, **params)
        if getattr(result, "category", None) is not None and result.category.value == "FAIL":
            from deepchecks.core import ConditionCategory

            result.category, result.details = ConditionCategory.WARN, f"{result.details} (WARN, not FAIL: {why})"
        return result
    return condition


def task_scorers(table: dict[str, dict[str, str]], spec: dict[str, Any]) -> dict[str, str]:
    """The task's scorers from `table`, with ROC AUC when probabilities were given."""
    auc = AUC_SCORERS.get(spec["task"], {}) if spec.get("y_proba_test") else {}
    return {**table[spec["task"]], **auc}


def split_facts(spec: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """What the noise-aware conditions need about the test split: its labelled rows, R2's standard error."""
    label = data["test_dataset"].label_col
    facts: dict[str, Any] = {"rows": int(label.notna().sum()), "standard_errors": {}}
    if spec["task"] == "regression" and data.get("y_pred_test") is not None:
        se = r2_standard_error(label.to_numpy(dtype=float), data["y_pred_test"])
        facts["standard_errors"] = {"R2": se} if se is not None else {}
    return facts


def configured(check: Any, spec: dict[str, Any], facts: dict[str, Any]) -> Any:
    """The default suite's check, or mlgate's replacement where deepchecks' default cannot decide here."""
    from deepchecks.tabular import checks

    name = type(check).__name__
    if name == "TrainTestPerformance":
        return checks.TrainTestPerformance(scorers=task_scorers(TRAIN_TEST_SCORERS, spec)).add_condition(
            DEGRADATION_CONDITION, degradation_condition, standard_errors=facts["standard_errors"])
    if name == "SimpleModelComparison":
        return checks.SimpleModelComparison(scorers=task_scorers(BASELINE_SCORERS, spec)).add_condition_gain_greater_than()
    if name == "RegressionErrorDistribution":  # 1% of RMSE is below the mean error's noise (≈ 2.3/sqrt(rows)) under 54,000 rows
        return checks.RegressionErrorDistribution().add_condition_kurtosis_greater_than().add_condition(
            BIAS_CONDITION, bias_condition, test_rows=facts["rows"])
    for condition in check._conditions.values():  # deepchecks 0.19.1 has no public accessor
        why = next((w for (c, prefix), w in DATA_SUSPICIONS.items() if c == name and condition.name.startswith(prefix)), None)
        if why:
            condition.function = warn_instead_of_fail(condition.function, why)
    return check


def read_frame(path: str, spec: dict[str, Any]) -> Any:
    """A Parquet file as a DataFrame, after checking that it has every column the spec names."""
    import pandas as pd

    if not Path(path).is_file():
        raise InputError(f"data file not found: {path}")
    frame = pd.read_parquet(path)
    wanted = [spec["label"], *(spec.get("features") or []), *spec.get("cat_features", [])]
    wanted += [c for c in (spec.get("datetime_column"), spec.get("index_column")) if c]
    missing = sorted({c for c in wanted if c not in frame.columns})
    if missing:
        raise InputError(f"{path}: column(s) {missing} not found; columns are {list(frame.columns)}")
    return frame


def load_array(path: str | None) -> Any:
    """A saved numpy array (no pickles: allow_pickle=False), or None when not given."""
    import numpy as np

    if not path:
        return None
    if not Path(path).is_file():
        raise InputError(f"prediction file not found: {path}")
    return np.load(path, allow_pickle=False)


def read_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """Data frames and prediction arrays, read and checked before the slow deepchecks import."""
    unknown = [name for name in spec["suites"] if name not in SUITES]
    if unknown:
        raise InputError(f"unknown suite(s) {unknown}; known suites are {list(SUITES)}")
    train, test = read_frame(spec["train_path"], spec), read_frame(spec["test_path"], spec)
    test.index = range(len(train), len(train) + len(test))  # disjoint row keys for deepchecks' prediction lookup
    inputs = {"train_dataset": train, "test_dataset": test}
    for key in PREDICTION_KEYS:
        inputs[key] = load_array(spec.get(key))
    return inputs


def suite_arguments(spec: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for Suite.run: deepchecks Datasets, predictions, classes, feature importance."""
    import pandas as pd
    from deepchecks.tabular import Dataset

    arguments = dict(inputs)
    for key in ("train_dataset", "test_dataset"):
        arguments[key] = Dataset(inputs[key], label=spec["label"], features=spec.get("features") or None,
                                 cat_features=spec.get("cat_features", []), label_type=spec["task"],
                                 datetime_name=spec.get("datetime_column"), index_name=spec.get("index_column"))
    if spec.get("model_classes"):  # deepchecks wants them sorted; probability columns follow their order
        classes = list(spec["model_classes"])
        order = sorted(range(len(classes)), key=lambda i: classes[i])
        arguments["model_classes"] = [classes[i] for i in order]
        for key in ("y_proba_train", "y_proba_test"):
            if arguments[key] is not None and arguments[key].ndim == 2 and arguments[key].shape[1] == len(classes):
                arguments[key] = arguments[key][:, order]
    if spec.get("feature_importance"):  # deepchecks rejects negative (permutation) importances
        arguments["feature_importance"] = pd.Series(spec["feature_importance"], dtype=float).clip(lower=0)
    return arguments


def build_suite(name: str, spec: dict[str, Any], facts: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The default deepchecks suite `name` with mlgate's settings, without the checks that cannot apply
    (and their SKIP entries)."""
    from deepchecks.tabular import suites

    suite = getattr(suites, name)()
    skipped = []
    for index, check in list(suite.checks.items()):
        reason = not_applicable_reason(type(check).__name__, spec)
        if reason:
            suite.remove(index)
            skipped.append(entry(name, check, check.name(), "not_applicable", details=reason))
        else:
            suite.checks[index] = configured(check, spec, facts)
    return suite, skipped


def dataset_of(header: str) -> str | None:
    """train/test for a check run on each dataset separately (its header says which), else None."""
    return "train" if header.endswith(TRAIN_SUFFIX) else "test" if header.endswith(TEST_SUFFIX) else None


def entry(suite: str, check: Any, header: str, kind: str, **fields: Any) -> dict[str, Any]:
    """One output record; `dataset` is train/test for checks run on each dataset separately."""
    record = {"suite": suite, "check": type(check).__name__, "header": header, "dataset": dataset_of(header),
              "kind": kind}
    record.update(fields)
    return record


def result_entries(suite: str, result: Any, rows: dict[str, int]) -> list[dict[str, Any]]:
    """Condition results, failures and condition-less checks of one suite result."""
    from deepchecks.core.check_result import CheckFailure

    records = []
    for item in result.results:
        header = item.get_header()
        if isinstance(item, CheckFailure):
            text = f"{type(item.exception).__name__}: {item.exception}"
            kind, text = failure_kind(type(item.check).__name__, text, rows.get(dataset_of(header) or "test"))
            records.append(entry(suite, item.check, header, kind, details=text))
        elif not item.conditions_results:
            records.append(entry(suite, item.check, header, "informational",
                                 details="no pass/fail condition; see the HTML report"))
        for cond in getattr(item, "conditions_results", ()):
            records.append(entry(suite, item.check, header, "condition", condition=cond.name,
                                 category=cond.category.value, details=strip_html(cond.details)))
    return records


def strip_html(text: str) -> str:
    """Condition details sometimes carry <br> tags; reports want plain text."""
    return re.sub(r"<[^>]+>", " ", str(text)).strip()


def run_suite(name: str, spec: dict[str, Any], data: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """Run one suite; a suite that cannot start at all becomes one suite_error record."""
    facts = split_facts(spec, data)
    rows = {"train": int(data["train_dataset"].label_col.notna().sum()), "test": facts["rows"]}
    suite, records = build_suite(name, spec, facts)
    try:
        result = suite.run(**data)
    except Exception as exc:  # deepchecks raises many types when the inputs do not fit together
        detail = f"{type(exc).__name__}: {exc}"
        return [*records, {"suite": name, "kind": "suite_error", "details": detail}], None
    return records + result_entries(name, result, rows), result


def import_deepchecks() -> str:
    """Import deepchecks without its network version check or progress bars; its version."""
    os.environ.setdefault("DISABLE_DEEPCHECKS_ANONYMOUS_TELEMETRY", "True")
    import deepchecks
    from deepchecks.tabular.context import _DummyModel

    deepchecks.set_verbosity(logging.WARNING)  # also turns off the progress bars
    # deepchecks serves precomputed predictions as `self.predict = self._predict`; scikit-learn >= 1.4
    # scorers call a non-classifier's method by its __name__ and accept only "predict", so every
    # regression scorer failed ("_DummyModel should either be a classifier ... Got a regressor").
    _DummyModel._predict.__name__, _DummyModel._predict_proba.__name__ = "predict", "predict_proba"
    return deepchecks.__version__


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Every requested suite's records, timings and the combined HTML report."""
    inputs = read_inputs(spec)
    output = {"deepchecks_version": import_deepchecks(), "records": [], "timings_s": {}, "html": None}
    from deepchecks.core.suite import SuiteResult

    arguments, results = suite_arguments(spec, inputs), []
    for name in spec["suites"]:
        started = time.perf_counter()
        records, result = run_suite(name, spec, arguments)
        output["records"] += records
        output["timings_s"][name] = round(time.perf_counter() - started, 2)
        print(f"deepchecks: {name} done in {output['timings_s'][name]} s", file=sys.stderr)
        results += result.results if result is not None else []
    if results and spec.get("html_path"):
        title = "mlgate deepchecks: " + ", ".join(spec["suites"])
        Path(spec["html_path"]).unlink(missing_ok=True)  # deepchecks would write "name (1).html" beside it
        # Plain HTML with plotly inlined: self-contained offline, unlike the ipywidgets variant.
        output["html"] = SuiteResult(title, results).save_as_html(spec["html_path"], as_widget=False)
    return output


def main(argv: list[str]) -> int:
    """Read the spec, run, write the output JSON; input problems are reported without a traceback."""
    warnings.simplefilter("ignore")  # deepchecks on old pins is noisy; keep stderr for real errors
    if len(argv) != 1:
        print("usage: deepchecks_runner.py SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        output = run(spec)
        code = 0
    except InputError as exc:
        output, code = {"error": str(exc)}, 2
        print(f"deepchecks runner: {exc}", file=sys.stderr)
    Path(spec["output_path"]).write_text(json.dumps(output, indent=1, default=str), encoding="utf-8")
    return code


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:  # the caller shows this tail as the reason for an ERROR check
        traceback.print_exc()
        sys.exit(3)
