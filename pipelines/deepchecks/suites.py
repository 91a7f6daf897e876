"""Run deepchecks suites in the side environment and turn their conditions into Checks (DESIGN §9).

Writes predictions as .npy (no pickles) and a JSON spec, runs `deepchecks_runner.py` with the side
env's python, and maps its output: each condition -> a Check with deepchecks' PASS/WARN/FAIL/ERROR;
a check that failed to run -> ERROR; a check that does not apply to these inputs or has no condition
(informational) -> SKIP with the reason. A crashed, silent or unreadable runner is ERROR, never PASS.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlgate.gates.result import Check, Status
from mlgate.pipelines.deepchecks.env import (
    DEEPCHECKS_PINS,
    EnvBuildError,
    Log,
    ensure_env,
    log_to_stderr,
    side_env_vars,
)

RUNNER = Path(__file__).with_name("runner.py")  # run as a script by the side env's python
SUITES = ("train_test_validation", "model_evaluation", "data_integrity")
DEFAULT_SUITES = ("train_test_validation", "model_evaluation")
TASKS = ("binary", "multiclass", "regression")
SPEC_FILE, OUTPUT_FILE, HTML_FILE = "deepchecks_spec.json", "deepchecks_output.json", "deepchecks.html"
_CATEGORY = {"PASS": Status.PASS, "WARN": Status.WARN, "FAIL": Status.FAIL, "ERROR": Status.ERROR}


@dataclass(frozen=True)
class Predictions:
    """Precomputed model outputs, in the row order of the train and test Parquet files."""

    train: Any
    test: Any
    train_proba: Any = None
    test_proba: Any = None
    classes: Sequence[Any] | None = None  # the order of the probability columns


@dataclass(frozen=True)
class DeepchecksRequest:
    """What to check: the data files, their label and columns, and the model's predictions."""

    train_path: Path
    test_path: Path
    label: str
    task: str  # binary, multiclass or regression
    cat_features: Sequence[str] = ()
    features: Sequence[str] | None = None  # None: every column but the label
    predictions: Predictions | None = None
    suites: Sequence[str] = DEFAULT_SUITES
    feature_importance: Mapping[str, float] | None = None
    exclude_checks: Sequence[str] = ()  # deepchecks class names, e.g. "WeakSegmentsPerformance"
    datetime_column: str | None = None
    index_column: str | None = None


@dataclass(frozen=True)
class DeepchecksOutcome:
    """The suites' checks, the HTML report, and `error` when the suites could not run at all."""

    checks: tuple[Check, ...]
    html_report: Path | None = None
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)


def run_suites(
    request: DeepchecksRequest,
    *,
    out_dir: Path,
    python: Path | None = None,
    cache_dir: Path | None = None,
    pins: Sequence[str] = DEEPCHECKS_PINS,
    timeout_s: float = 900.0,
    log: Log = log_to_stderr,
) -> DeepchecksOutcome:
    """Run the requested suites in the side env (built on first use unless `python` is given)."""
    problem = request_problem(request)
    if problem:
        return failed("deepchecks.input", problem)
    try:
        python = python or ensure_env(cache_dir, pins=pins, log=log)
    except EnvBuildError as exc:
        return failed("deepchecks.environment", f"the deepchecks environment could not be built: {exc}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        write_spec(request, out_dir)
    except (ValueError, OSError) as exc:
        return failed("deepchecks.input", f"cannot write the runner's inputs: {exc}")
    return run_runner(python, out_dir, request.suites, timeout_s)


def request_problem(request: DeepchecksRequest) -> str | None:
    """What makes the request unusable before anything runs, or None."""
    unknown = [s for s in request.suites if s not in SUITES]
    if unknown or not request.suites:
        return f"unknown or no suites {unknown}; known suites are {list(SUITES)}"
    if request.task not in TASKS:
        return f"unknown task {request.task!r}; expected one of {list(TASKS)}"
    if "model_evaluation" in request.suites and request.predictions is None:
        return "model_evaluation needs the model's predictions on train and test"
    return None


def write_spec(request: DeepchecksRequest, out_dir: Path) -> Path:
    """The runner's JSON spec, with predictions saved next to it as .npy files; old outputs removed."""
    for stale in (OUTPUT_FILE, HTML_FILE):  # a crashed run must not leave a previous run's result to read
        (out_dir / stale).unlink(missing_ok=True)
    importance = {str(k): float(v) for k, v in (request.feature_importance or {}).items()}
    spec = {"train_path": str(Path(request.train_path).resolve()),
            "test_path": str(Path(request.test_path).resolve()),
            "label": request.label, "task": request.task, "cat_features": list(request.cat_features),
            "features": list(request.features) if request.features is not None else None,
            "suites": list(request.suites), "exclude_checks": list(request.exclude_checks),
            "feature_importance": importance or None,
            "datetime_column": request.datetime_column, "index_column": request.index_column,
            "output_path": str((out_dir / OUTPUT_FILE).resolve()),
            "html_path": str((out_dir / HTML_FILE).resolve())}
    spec.update(save_predictions(request.predictions, out_dir))
    path = out_dir / SPEC_FILE
    path.write_text(json.dumps(spec, indent=1, default=str), encoding="utf-8")
    return path


def save_predictions(predictions: Predictions | None, out_dir: Path) -> dict[str, Any]:
    """Spec entries for the prediction arrays; object arrays become str/number arrays (never pickled)."""
    if predictions is None:
        return {}
    arrays = {"y_pred_train": predictions.train, "y_pred_test": predictions.test,
              "y_proba_train": predictions.train_proba, "y_proba_test": predictions.test_proba}
    entries: dict[str, Any] = {"model_classes": plain_list(predictions.classes)}
    for key, values in arrays.items():
        if values is not None:
            entries[key] = str((out_dir / f"deepchecks_{key}.npy").resolve())
            np.save(entries[key], np.asarray(plain_list(values)), allow_pickle=False)
    return entries


def plain_list(values: Any) -> list[Any] | None:
    """numpy/pandas values as plain Python values, so JSON and np.save(allow_pickle=False) take them."""
    return None if values is None else np.asarray(values).tolist()


def run_runner(python: Path, out_dir: Path, suites: Sequence[str], timeout_s: float) -> DeepchecksOutcome:
    """Run the runner script and read its output; any way it can fail becomes one ERROR check."""
    command = [str(python), str(RUNNER), str(out_dir / SPEC_FILE)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=side_env_vars())
    except subprocess.TimeoutExpired:
        return failed("deepchecks.runner", f"the deepchecks runner did not finish within {timeout_s:.0f} s")
    except OSError as exc:
        return failed("deepchecks.runner", f"cannot start the deepchecks runner with {python}: {exc}")
    output = read_output(out_dir / OUTPUT_FILE)
    stderr_tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    if output is None or (done.returncode != 0 and "error" not in output):
        return failed("deepchecks.runner", f"the deepchecks runner exited {done.returncode} without a "
                      f"readable result; stderr tail:\n{stderr_tail}")
    if "error" in output:
        return failed("deepchecks.input", f"deepchecks could not read its inputs: {output['error']}")
    html = Path(output["html"]) if output.get("html") and Path(output["html"]).is_file() else None
    return DeepchecksOutcome(tuple(checks_from_output(output, suites)), html, None, output.get("timings_s", {}))


def read_output(path: Path) -> dict[str, Any] | None:
    try:
        output = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return output if isinstance(output, dict) and ("records" in output or "error" in output) else None


def failed(name: str, message: str) -> DeepchecksOutcome:
    """An outcome that could not decide: one ERROR check carrying the cause."""
    return DeepchecksOutcome((Check(name, Status.ERROR, None, "deepchecks suites run", message),), error=message)


def checks_from_output(output: Mapping[str, Any], suites: Sequence[str]) -> list[Check]:
    """One Check per record, plus an ERROR for each requested suite that evaluated no condition."""
    records = list(output.get("records", []))
    checks = [check_from_record(r) for r in records]
    decided = {r["suite"] for r in records if r.get("kind") in ("condition", "failure", "suite_error")}
    for suite in suites:
        if suite not in decided:
            checks.append(Check(f"deepchecks.{suite}", Status.ERROR, None, "at least one condition evaluated",
                                f"deepchecks suite {suite} evaluated no condition"))
    return checks


def check_from_record(record: Mapping[str, Any]) -> Check:
    """Map one runner record; an unknown kind or category is ERROR (never a silent PASS)."""
    kind, header, text = record.get("kind"), record.get("header", ""), record.get("details", "")
    name = check_name(record)
    details = {k: record.get(k) for k in ("suite", "check", "header", "dataset", "condition", "category")}
    if kind == "condition":
        status = _CATEGORY.get(str(record.get("category")), Status.ERROR)
        message = f"{header}: {text} (condition: {record.get('condition')}; deepchecks {record.get('category')})"
        return Check(name, status, text, str(record.get("condition")), message, details)
    if kind in ("not_applicable", "informational"):
        reason = "does not apply" if kind == "not_applicable" else "is informational"
        return Check(name, Status.SKIP, None, "no condition", f"{header} {reason}: {text}", details)
    what = "could not run" if kind == "failure" else "suite could not run" if kind == "suite_error" else "unknown result"
    return Check(name, Status.ERROR, None, "the check runs", f"{header or record.get('suite')} {what}: {text}", details)


def check_name(record: Mapping[str, Any]) -> str:
    """deepchecks.<suite>.<check>[.<train|test>][.<condition>], in snake case."""
    parts = ["deepchecks", str(record.get("suite")), snake(str(record.get("check") or ""))]
    parts += [record["dataset"]] if record.get("dataset") else []
    parts += [slug(record["condition"])] if record.get("condition") else []
    return ".".join(p for p in parts if p)


def snake(class_name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")

