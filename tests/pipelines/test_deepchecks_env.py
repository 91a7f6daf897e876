"""The deepchecks side environment (DESIGN §9): built once, real suites on the real churn data.

Tests marked `deepchecks` build the pinned env into the default cache (`$MLGATE_CACHE_DIR` or
~/.cache/mlgate) once per session (about 1.5 min the first time, cached afterwards) or need PyPI.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlgate.gates.result import Status
from mlgate.pipelines.deepchecks import runner as deepchecks_runner
from mlgate.pipelines.deepchecks.env import (
    DEEPCHECKS_PINS,
    READY_MARKER,
    EnvBuildError,
    build_lock,
    ensure_env,
    env_path,
    python_tag,
)
from mlgate.pipelines.deepchecks.suites import (
    OUTPUT_FILE,
    DeepchecksRequest,
    Predictions,
    check_name,
    checks_from_output,
    run_suites,
)

CAT = ["state", "area_code", "international_plan", "voice_mail_plan"]


def record(suite: str, check: str, kind: str, **fields) -> dict:
    return {"suite": suite, "check": check, "header": check, "dataset": None, "kind": kind, **fields}


def test_runner_imports_only_stdlib_numpy_pandas_and_deepchecks():
    tree = ast.parse(Path(deepchecks_runner.__file__).read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    allowed = set(sys.stdlib_module_names) | {"__future__", "numpy", "pandas", "deepchecks"}
    assert imported - allowed == set()
    assert "deepchecks" in imported


def test_every_deepchecks_category_maps_to_its_status_and_failures_are_errors():
    suite = "model_evaluation"
    records = [record(suite, f"C{cat}", "condition", condition=f"rule {cat}", category=cat, details="d")
               for cat in ("PASS", "WARN", "FAIL", "ERROR", "SOMETHING_NEW")]
    records += [record(suite, "Broken", "failure", details="ValueError: x"),
                record(suite, "BoostingOverfit", "not_applicable", details="needs the model"),
                record(suite, "ConfusionMatrixReport", "informational", details="no condition")]
    statuses = [c.status for c in checks_from_output({"records": records}, [suite])]
    assert statuses == [Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.ERROR, Status.ERROR,
                        Status.SKIP, Status.SKIP]


def test_a_requested_suite_without_any_evaluated_condition_is_an_error():
    records = [record("train_test_validation", "IndexTrainTestLeakage", "not_applicable", details="no index")]
    checks = checks_from_output({"records": records}, ["train_test_validation", "model_evaluation"])
    errors = {c.name for c in checks if c.status is Status.ERROR}
    assert errors == {"deepchecks.train_test_validation", "deepchecks.model_evaluation"}


def test_checks_that_cannot_apply_to_precomputed_predictions_are_named_with_a_reason():
    spec = {"task": "binary", "y_proba_test": "p.npy", "exclude_checks": ["FeatureDrift"]}
    reason = deepchecks_runner.not_applicable_reason
    assert "live model" in reason("BoostingOverfit", spec)
    assert "feature importance" in reason("UnusedFeatures", spec)
    assert reason("UnusedFeatures", {**spec, "feature_importance": {"a": 1.0}}) is None
    assert "configuration" in reason("FeatureDrift", spec)
    assert "regression" in reason("RocReport", {**spec, "task": "regression"})
    assert "probabilities" in reason("WeakSegmentsPerformance", {**spec, "y_proba_test": None})
    assert reason("RocReport", spec) is None and reason("LabelDrift", spec) is None


def test_a_bad_request_is_an_error_before_any_environment_work(tmp_path):
    request = DeepchecksRequest(tmp_path / "a.parquet", tmp_path / "b.parquet", "churn", "binary")
    no_python = tmp_path / "no-python"
    for bad in (replace(request, suites=("nonsense",)), request, replace(request, task="ranking")):
        outcome = run_suites(bad, out_dir=tmp_path / "out", python=no_python)
        assert [c.status for c in outcome.checks] == [Status.ERROR]
        assert outcome.error and outcome.checks[0].name == "deepchecks.input"


def test_an_invalid_base_python_is_a_clean_build_error(tmp_path):
    with pytest.raises(EnvBuildError, match="cannot run"):
        ensure_env(tmp_path, base_python=str(tmp_path / "no-python"))


def test_an_unusable_cache_directory_is_a_clean_build_error(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(EnvBuildError, match="cannot build in"):
        ensure_env(tmp_path / "a-file" / "cache", log=print)


def test_a_finished_env_in_the_cache_is_reused_without_building(tmp_path):
    env = env_path(tmp_path, DEEPCHECKS_PINS, python_tag(sys.executable))
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    (env / READY_MARKER).write_text("{}")
    messages: list[str] = []
    assert ensure_env(tmp_path, log=messages.append) == env / "bin" / "python"
    assert messages == []


def test_a_build_in_progress_elsewhere_is_waited_for_then_times_out(tmp_path):
    env = env_path(tmp_path, ("deepchecks==0.19.1",), python_tag(sys.executable))
    held, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with build_lock(tmp_path / f"{env.name}.lock", deadline=float("inf"), log=print):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    held.wait(5)
    messages: list[str] = []
    try:
        with pytest.raises(EnvBuildError, match="timed out waiting"):
            ensure_env(tmp_path, pins=("deepchecks==0.19.1",), log=messages.append, timeout_s=1.5)
    finally:
        release.set()
        holder.join()
    assert any("waiting for another process" in m for m in messages)
    assert not env.exists()


@pytest.mark.deepchecks
def test_unbuildable_pins_give_one_clean_error_and_remove_the_half_built_env(tmp_path):
    pins = ("deepchecks==0.0.0",)  # no such release on PyPI
    half_built = env_path(tmp_path / "cache", pins, python_tag(sys.executable))
    (half_built / "bin").mkdir(parents=True)
    (half_built / "bin" / "python").symlink_to(sys.executable)  # looks usable, but has no ready marker
    request = DeepchecksRequest(tmp_path / "a.parquet", tmp_path / "b.parquet", "churn", "binary",
                                suites=("train_test_validation",))
    outcome = run_suites(request, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", pins=pins, log=print)
    assert [(c.name, c.status) for c in outcome.checks] == [("deepchecks.environment", Status.ERROR)]
    assert "deepchecks==0.0.0" in outcome.error and "Traceback" not in outcome.error
    assert not half_built.exists()


@pytest.fixture(scope="session")
def side_python() -> Path:
    """The real pinned env in the default cache location: built once, reused by later runs."""
    return ensure_env()


@pytest.fixture(scope="session")
def churn_request(tmp_path_factory, churn_frame: pd.DataFrame) -> DeepchecksRequest:
    """1,500 rows of the real churn data as Parquet, with predictions of a model trained here."""
    root = tmp_path_factory.mktemp("deepchecks-data")
    frame = churn_frame.sample(1500, random_state=3)
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["churn"])
    encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore", sparse_output=False), CAT),
                                     remainder="passthrough")
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=50, random_state=0))
    model.fit(train.drop(columns="churn"), train["churn"])
    train.to_parquet(root / "train.parquet")
    test.to_parquet(root / "test.parquet")
    x_train, x_test = train.drop(columns="churn"), test.drop(columns="churn")
    predictions = Predictions(model.predict(x_train), model.predict(x_test), model.predict_proba(x_train),
                              model.predict_proba(x_test), model.classes_)
    return DeepchecksRequest(root / "train.parquet", root / "test.parquet", "churn", "binary",
                             cat_features=CAT, predictions=predictions)


@pytest.mark.deepchecks
def test_real_suites_map_every_condition_and_write_the_html_report(side_python, churn_request, tmp_path):
    outcome = run_suites(churn_request, out_dir=tmp_path, python=side_python)
    assert outcome.error is None, outcome.error
    records = json.loads((tmp_path / OUTPUT_FILE).read_text(encoding="utf-8"))["records"]
    by_name = {c.name: c for c in outcome.checks}
    assert len(by_name) == len(outcome.checks) == len(records)
    conditions = [r for r in records if r["kind"] == "condition"]
    assert {r["suite"] for r in conditions} == {"train_test_validation", "model_evaluation"}
    for rec in conditions:
        assert by_name[check_name(rec)].status == Status(rec["category"])
    for rec in (r for r in records if r["kind"] == "failure"):
        assert by_name[check_name(rec)].status is Status.ERROR
    assert by_name["deepchecks.train_test_validation.label_drift.label_drift_score_0_15"].status is Status.PASS
    assert by_name["deepchecks.model_evaluation.boosting_overfit"].status is Status.SKIP
    assert set(outcome.timings_s) == {"train_test_validation", "model_evaluation"}
    assert outcome.html_report is not None and outcome.html_report.stat().st_size > 100_000
    assert "Label Drift" in outcome.html_report.read_text(encoding="utf-8", errors="replace")


def assert_only_errors(outcome, *words: str) -> None:
    assert outcome.checks and all(c.status is Status.ERROR for c in outcome.checks)
    assert all(w in outcome.error for w in words), outcome.error


@pytest.mark.deepchecks
def test_a_missing_data_file_is_an_error(side_python, churn_request, tmp_path):
    request = replace(churn_request, test_path=tmp_path / "missing.parquet")
    assert_only_errors(run_suites(request, out_dir=tmp_path, python=side_python), "not found", "missing.parquet")


@pytest.mark.deepchecks
def test_an_absent_label_column_is_an_error(side_python, churn_request, tmp_path):
    request = replace(churn_request, label="churned")
    assert_only_errors(run_suites(request, out_dir=tmp_path, python=side_python), "churned", "not found")


@pytest.mark.deepchecks
def test_predictions_of_the_wrong_length_make_the_model_suite_an_error(side_python, churn_request, tmp_path):
    short = replace(churn_request.predictions, test=churn_request.predictions.test[:-5])
    request = replace(churn_request, predictions=short, suites=("model_evaluation",))
    outcome = run_suites(request, out_dir=tmp_path, python=side_python)
    assert outcome.checks and all(c.status is Status.ERROR for c in outcome.checks if c.status is not Status.SKIP)
    assert not any(c.status is Status.PASS for c in outcome.checks)
    assert any("suite could not run" in c.message for c in outcome.checks)


@pytest.mark.deepchecks
def test_a_crashing_runner_is_an_error_even_with_a_previous_result_on_disk(side_python, churn_request, tmp_path):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"this is not parquet")
    stale = {"records": [record("train_test_validation", "LabelDrift", "condition", category="PASS")]}
    (tmp_path / OUTPUT_FILE).write_text(json.dumps(stale), encoding="utf-8")
    outcome = run_suites(replace(churn_request, train_path=corrupt), out_dir=tmp_path, python=side_python)
    assert [c.name for c in outcome.checks] == ["deepchecks.runner"]
    assert_only_errors(outcome, "exited 3", "stderr tail")
