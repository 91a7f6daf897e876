"""`mlgate gate data`: the suite file workflow, outputs, exit codes, bad files and skew, on real data."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest

from mlgate.gates.result import GateResult, Status
from mlgate.pipelines.cli.main import main
from tests.conftest import REPO, Project, copy_repository


@pytest.fixture()
def prepared(project):
    """A project whose splits are written and whose suite was suggested from its training split."""
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    assert main(["gate", "data", "--suggest", "--params", str(project.params_path)]) == 0
    return project


def gate(project: Project, *extra: str) -> tuple[int, GateResult | None]:
    code = main(["gate", "data", "--params", str(project.params_path), *extra])
    report = project.root / "reports" / "gates" / "data.json"
    return code, (GateResult.read(report) if report.is_file() else None)


def blocking_messages(result: GateResult) -> str:
    return "\n".join(c.message for c in result.by_status(Status.FAIL, Status.ERROR))


# --- the suite file ---------------------------------------------------------------------------------

def test_suggest_shows_changes_and_keeps_a_curated_suite_unless_forced(prepared, capsys):
    path, params = prepared.root / "expectations" / "churn.json", str(prepared.params_path)
    suite = json.loads(path.read_text())
    assert suite["name"] == "churn" and len(suite["expectations"]) > 80
    capsys.readouterr()
    assert main(["gate", "data", "--suggest", "--params", params]) == 0
    assert "up to date" in capsys.readouterr().out
    for item in suite["expectations"]:  # a reviewer narrows one set and drops one rule
        if item["type"] == "expect_column_values_to_be_in_set" and item["kwargs"]["column"] == "area_code":
            item["kwargs"]["value_set"] = item["kwargs"]["value_set"][:2]
    suite["expectations"] = [e for e in suite["expectations"] if e["kwargs"].get("column") != "total_eve_calls"
                             or e["type"] != "expect_column_values_to_be_between"]
    curated = json.dumps(suite, indent=2)
    path.write_text(curated)
    assert main(["gate", "data", "--suggest", "--params", params]) == 0  # shown and kept: no gate failed
    out = capsys.readouterr()
    assert "~ area_code: expect_column_values_to_be_in_set: value_set added [\"area_code_510\"]" in out.out
    assert "+ total_eve_calls: expect_column_values_to_be_between: min_value=" in out.out
    assert "--force" in out.err and path.read_text() == curated
    assert main(["gate", "data", "--suggest", "--force", "--params", params]) == 0
    assert "overwrote" in capsys.readouterr().out and path.read_text() != curated


def test_missing_or_invalid_suite_is_a_usage_error(prepared, capsys):
    path = prepared.root / "expectations" / "churn.json"
    path.write_text('{"expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]}')
    assert gate(prepared)[0] == 2
    assert "churn.json: expectations[0] (expect_no_such_thing) is not a valid Great Expectations 1.x" \
        " expectation: expect_no_such_thing not found" in capsys.readouterr().err
    path.unlink()
    assert gate(prepared)[0] == 2
    assert "mlgate gate data --suggest" in capsys.readouterr().err


def test_force_without_suggest_is_a_usage_error(prepared, capsys):
    assert gate(prepared, "--force")[0] == 2
    assert "--force only applies with --suggest" in capsys.readouterr().err


def test_missing_training_split_and_unknown_critical_feature_are_usage_errors(prepared, capsys):
    prepared.params["gates"]["data"]["drift"]["critical"] = ["total_day_minutess"]
    prepared.write()
    assert gate(prepared)[0] == 2
    assert "gates.data.drift.critical.total_day_minutess: not a declared feature" in capsys.readouterr().err
    prepared.params["gates"]["data"]["drift"]["critical"] = []
    prepared.write()
    (prepared.root / "data" / "train.parquet").unlink()
    assert gate(prepared)[0] == 2
    assert "train.parquet: split not found" in capsys.readouterr().err


# --- the gate -----------------------------------------------------------------------------------------

def test_clean_project_passes_and_writes_report_metrics_and_drift_chart(prepared):
    code, result = gate(prepared)
    assert code == 0 and result.status is Status.PASS, blocking_messages(result)
    splits = {c.name.split(".")[1] for c in result.checks if c.name.startswith("contract.")}
    assert splits == {"train", "test", "production"}
    metrics = json.loads((prepared.root / "metrics" / "data.json").read_text())
    assert metrics["status"] == "PASS" and metrics["drift"]["features"] == 19
    rows = (prepared.root / "plots" / "data" / "drift.csv").read_text().splitlines()
    assert rows[0].startswith("feature,kind,psi") and len(rows) == 1 + 19
    assert (prepared.root / "plots" / "data" / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert result.artifacts == {"metrics": "metrics/data.json", "drift_csv": "plots/data/drift.csv",
                                "drift_png": "plots/data/drift.png"}


def test_corrupted_batch_exits_1_and_report_only_exits_0(prepared, tmp_path):
    batch = pd.read_parquet(prepared.root / "data" / "production.parquet").drop(columns=["area_code"])
    batch.to_parquet(tmp_path / "batch.parquet")
    code, result = gate(prepared, "--batch", str(tmp_path / "batch.parquet"))
    assert code == 1 and result.status is Status.FAIL
    assert "columns: missing area_code" in blocking_messages(result)
    code, again = gate(prepared, "--batch", str(tmp_path / "batch.parquet"), "--report-only")
    assert code == 0 and again.status is Status.FAIL


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


BAD_BATCHES = {
    "empty_file": (lambda f: b"", "batch.csv: data file is empty"),
    "not_utf8": (lambda f: f.assign(state="Ñ").to_csv(index=False).encode("latin-1"), "batch.csv: not UTF-8"),
    "duplicate_columns": (lambda f: _csv_bytes(pd.concat([f, f[["state"]]], axis=1)),
                          "duplicate column names: state"),
    "zero_rows": (lambda f: _csv_bytes(f.iloc[:0]), "row count 0"),
    "strings_in_numeric": (lambda f: _csv_bytes(f.assign(total_day_calls="many")), "total_day_calls: type str"),
    "all_null_column": (lambda f: _csv_bytes(f.assign(total_eve_calls=None)), "total_eve_calls: 240 of 240"),
    "missing_column": (lambda f: _csv_bytes(f.drop(columns=["number_vmail_messages"])),
                       "column 'number_vmail_messages' is missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batch_file_blocks_naming_file_or_column(prepared, tmp_path, case):
    make, needle = BAD_BATCHES[case]
    production = pd.read_parquet(prepared.root / "data" / "production.parquet")
    path = tmp_path / "batch.csv"
    path.write_bytes(make(production))
    code, result = gate(prepared, "--batch", str(path))
    assert code == 1 and result.status in (Status.FAIL, Status.ERROR)
    assert needle in blocking_messages(result)


# --- skew -------------------------------------------------------------------------------------------

def test_logged_rows_with_a_unit_change_fail_the_skew_check(prepared, tmp_path):
    rows = pd.read_parquet(prepared.root / "data" / "production.parquet")
    rows = rows.assign(request_id=rows["row_id"].astype(str)).drop(columns=["row_id", "churn"])
    rows.assign(total_day_minutes=rows["total_day_minutes"] * 60).to_json(
        tmp_path / "logged.jsonl", orient="records", lines=True)
    code, result = gate(prepared, "--logged", str(tmp_path / "logged.jsonl"))
    assert code == 1 and named_status(result, "skew.total_day_minutes") is Status.FAIL
    assert named_status(result, "skew.keys") is Status.PASS
    assert named_status(result, "skew.total_eve_minutes") is Status.PASS  # JSON round trip of floats is exact
    assert named_status(result, "skew.state") is Status.PASS
    assert "total_day_minutes:" in blocking_messages(result) and "max rel diff 59" in blocking_messages(result)


def test_unreadable_logged_file_is_an_error(prepared, tmp_path):
    (tmp_path / "logged.jsonl").write_text("{not json\n")
    code, result = gate(prepared, "--logged", str(tmp_path / "logged.jsonl"))
    assert code == 1 and named_status(result, "skew.keys") is Status.ERROR
    assert "logged.jsonl: cannot be read as JSON lines" in blocking_messages(result)


def named_status(result: GateResult, name: str) -> Status:
    return next(c.status for c in result.checks if c.name == name)


# --- the real data and the committed suite ---------------------------------------------------------

@pytest.mark.slow
def test_committed_suite_matches_the_real_training_split_and_gate_passes_then_fails_corruption(
        tmp_path, churn_frame, base_params):
    project = Project.create(tmp_path, churn_frame, base_params)  # all 5,000 real rows, as prepare splits them
    (tmp_path / "expectations").mkdir()
    shutil.copy(REPO / "expectations" / "churn.json", tmp_path / "expectations" / "churn.json")
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    assert main(["gate", "data", "--suggest", "--params", str(project.params_path)]) == 0
    code, result = gate(project)
    assert code == 0 and result.status is Status.PASS, blocking_messages(result)
    train = pd.read_parquet(tmp_path / "data" / "train.parquet")
    batch = pd.read_parquet(tmp_path / "data" / "production.parquet").drop(columns=["voice_mail_plan"])
    batch["state"] = batch["state"].replace({"TX": "Texas"})
    batch["number_customer_service_calls"] += train["number_customer_service_calls"].std()
    batch.to_parquet(tmp_path / "corrupt.parquet")
    code, result = gate(project, "--batch", str(tmp_path / "corrupt.parquet"))
    messages = blocking_messages(result)
    assert code == 1 and result.status is Status.FAIL
    assert "missing voice_mail_plan" in messages and "'Texas'" in messages
    assert "number_customer_service_calls: PSI" in messages and "critical feature" in messages


@pytest.mark.slow
def test_dvc_repro_validate_data_writes_metrics_and_plots(tmp_path, cli_env):
    repo = copy_repository(tmp_path / "repo")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    proc = subprocess.run(["dvc", "repro", "validate_data"], cwd=repo, env=cli_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert GateResult.read(repo / "reports" / "gates" / "data.json").status is Status.PASS
    shown = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=repo, env=cli_env, capture_output=True,
                           text=True)
    assert shown.returncode == 0 and "metrics/data.json" in shown.stdout
    plots = subprocess.run(["dvc", "plots", "show", "--json", "plots/data/drift.csv"], cwd=repo, env=cli_env,
                           capture_output=True, text=True)
    assert plots.returncode == 0 and "total_day_minutes" in plots.stdout


def test_a_suggested_suite_passes_the_projects_own_small_splits(project, churn_frame, capsys):
    """Under 100 rows a split cannot meet `mostly: 0.99` with one rare value: the suggestion is sized to
    the smallest split (one row out of range at least), and its value sets hold every split's values."""
    small = churn_frame.sample(300, random_state=3)
    small.to_csv(project.root / "churn.csv", index=False)
    project.params["gates"]["data"]["min_batch_rows"] = 1
    project.params["data"]["splits"] = {"test": 0.2, "production": 0.2}
    project.write()
    params = str(project.params_path)
    assert main(["prepare", "--params", params]) == 0
    assert main(["gate", "data", "--suggest", "--force", "--params", params]) == 0
    suite = json.loads((project.root / "expectations" / "churn.json").read_text())
    ranges = [e for e in suite["expectations"] if e["type"] == "expect_column_values_to_be_between"]
    assert ranges and all(e["kwargs"]["mostly"] <= 1 - 1 / 60 for e in ranges)
    assert main(["gate", "data", "--params", params]) == 0
    report = json.loads((project.root / "reports" / "gates" / "data.json").read_text())
    contract = [c for c in report["checks"] if c["name"].startswith("contract.")]
    assert contract and all(c["status"] in ("PASS", "SKIP") for c in contract), \
        [(c["name"], c["message"]) for c in contract if c["status"] not in ("PASS", "SKIP")]
