"""Run deepchecks suites on Parquet data with precomputed predictions (DESIGN §9).

Executed by the pinned deepchecks environment's python as `python deepchecks_runner.py SPEC.json`,
never imported by mlgate code (tests read its pure parts). It must import only the standard library, numpy, pandas and deepchecks:
the side environment has no mlgate installed. It writes one JSON entry per condition result, per
check that failed to run, per check that does not apply, and per informational check, plus one
HTML report. Exit 0 when the output was written, 2 for bad input (also written as "error").
"""

from __future__ import annotations

import json
import logging
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
    if check_class in ("RocReport", "CalibrationScore", "WeakSegmentsPerformance") and not has_proba:
        return "needs predicted probabilities, none were given"
    if check_class.startswith("DateTrainTestLeakage") and not spec.get("datetime_column"):
        return "the data has no datetime column"
    if check_class == "IndexTrainTestLeakage" and not spec.get("index_column"):
        return "the data has no index column"
    return None


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
    inputs = {"train_dataset": read_frame(spec["train_path"], spec),
              "test_dataset": read_frame(spec["test_path"], spec)}
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
    if spec.get("model_classes"):
        arguments["model_classes"] = list(spec["model_classes"])
    if spec.get("feature_importance"):  # deepchecks rejects negative (permutation) importances
        arguments["feature_importance"] = pd.Series(spec["feature_importance"], dtype=float).clip(lower=0)
    return arguments


def build_suite(name: str, spec: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The default deepchecks suite `name` without the checks that cannot apply, and their SKIP entries."""
    from deepchecks.tabular import suites

    suite = getattr(suites, name)()
    skipped = []
    for index, check in list(suite.checks.items()):
        reason = not_applicable_reason(type(check).__name__, spec)
        if reason:
            suite.remove(index)
            skipped.append(entry(name, check, check.name(), "not_applicable", details=reason))
    return suite, skipped


def entry(suite: str, check: Any, header: str, kind: str, **fields: Any) -> dict[str, Any]:
    """One output record; `dataset` is train/test for checks run on each dataset separately."""
    dataset = "train" if header.endswith(TRAIN_SUFFIX) else "test" if header.endswith(TEST_SUFFIX) else None
    record = {"suite": suite, "check": type(check).__name__, "header": header, "dataset": dataset, "kind": kind}
    record.update(fields)
    return record


def result_entries(suite: str, result: Any) -> list[dict[str, Any]]:
    """Condition results, failures and condition-less checks of one suite result."""
    from deepchecks.core.check_result import CheckFailure

    records = []
    for item in result.results:
        header = item.get_header()
        if isinstance(item, CheckFailure):
            text = f"{type(item.exception).__name__}: {item.exception}"
            records.append(entry(suite, item.check, header, "failure", details=text))
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
    suite, records = build_suite(name, spec)
    try:
        result = suite.run(**data)
    except Exception as exc:  # deepchecks raises many types when the inputs do not fit together
        detail = f"{type(exc).__name__}: {exc}"
        return [*records, {"suite": name, "kind": "suite_error", "details": detail}], None
    return records + result_entries(name, result), result


def import_deepchecks() -> str:
    """Import deepchecks without its network version check or progress bars; its version."""
    os.environ.setdefault("DISABLE_DEEPCHECKS_ANONYMOUS_TELEMETRY", "True")
    import deepchecks

    deepchecks.set_verbosity(logging.WARNING)  # also turns off the progress bars
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
