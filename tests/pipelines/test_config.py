"""`mlgate config validate` and the params schema: good config passes, every bad one exits 2 with the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from mlgate.pipelines.cli.main import main
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.params import load_params


def _validate(path, capsys) -> tuple[int, str]:
    code = main(["config", "validate", "--params", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_are_valid(repo_root, capsys):
    code, out = _validate(repo_root / "params.yaml", capsys)
    assert code == 0 and "valid" in out


def test_misspelt_top_level_key_names_path_and_suggests(tmp_path, base_params, capsys):
    params = {**base_params, "gatse": base_params["gates"]}
    code, out = _validate(_write(tmp_path, params), capsys)
    assert code == 2
    assert "unknown key 'gatse'" in out and "did you mean 'gates'" in out


def test_misspelt_nested_key_names_full_path_and_closest_key(tmp_path, base_params, capsys):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["gates"]["quality"]["metrics"]["roc_auc"]["greater_is_beter"] = True
    code, out = _validate(_write(tmp_path, params), capsys)
    assert code == 2
    assert "gates.quality.metrics.roc_auc.greater_is_beter" in out
    assert "did you mean 'greater_is_better'" in out


def test_wrong_type_names_path_and_expected_type(tmp_path, base_params, capsys):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["gates"]["quality"]["bootstrap"]["n_boot"] = "many"
    code, out = _validate(_write(tmp_path, params), capsys)
    assert code == 2
    assert "gates.quality.bootstrap.n_boot" in out and "integer" in out and "'many'" in out


def test_missing_file_is_named(tmp_path, capsys):
    code, out = _validate(tmp_path / "nope.yaml", capsys)
    assert code == 2 and "nope.yaml" in out and "not found" in out


def test_direction_of_a_metric_is_required(tmp_path, base_params, capsys):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    del params["gates"]["quality"]["metrics"]["log_loss"]["greater_is_better"]
    code, out = _validate(_write(tmp_path, params), capsys)
    assert code == 2 and "gates.quality.metrics.log_loss.greater_is_better" in out and "missing" in out


def test_metric_not_valid_for_the_task_is_rejected(tmp_path, base_params):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["gates"]["quality"]["metrics"]["rmse"] = {"greater_is_better": False}
    with pytest.raises(UsageError, match="rmse: not a binary metric"):
        load_params(_write(tmp_path, params))


def test_invalid_yaml_and_non_mapping_are_usage_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(UsageError, match="mapping"):
        load_params(bad)


def test_canary_steps_must_increase_and_approvals_must_name_steps(tmp_path, base_params):
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["rollout"]["canary"]["steps"] = [50, 10]
    with pytest.raises(UsageError, match="rollout.canary: .*strictly increasing"):
        load_params(_write(tmp_path, params))
    params["rollout"]["canary"] = {"steps": [10, 100], "approval_before": [50]}
    with pytest.raises(UsageError, match="approval_before names steps"):
        load_params(_write(tmp_path, params))


def test_params_digest_is_stable_and_changes_with_a_value(tmp_path, base_params):
    first = load_params(_write(tmp_path, base_params)).digest()
    assert load_params(_write(tmp_path, base_params)).digest() == first
    changed = yaml.safe_load(yaml.safe_dump(base_params))
    changed["train"]["seed"] = 7
    assert load_params(_write(tmp_path, changed)).digest() != first


def test_the_installed_command_prints_one_line_and_no_traceback(tmp_path, base_params, cli_env):
    path = _write(tmp_path, {**base_params, "modle": {}})
    proc = subprocess.run([sys.executable, "-m", "mlgate.pipelines.cli.main", "config", "validate", "--params", str(path)],
                          capture_output=True, text=True, env=cli_env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "did you mean 'model'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _regression(base_params: dict) -> dict:
    """The repository's params turned into a regression config on the same data (day charge as target)."""
    params = yaml.safe_load(yaml.safe_dump(base_params))
    params["model"] = {"name": "charge", "task": "regression", "target": "total_day_charge"}
    params["data"]["numeric"] = [c for c in params["data"]["numeric"] if c != "total_day_charge"]
    params["gates"]["quality"]["metrics"] = {"mae": {"greater_is_better": False, "max_regression": 0.5}}
    params["gates"]["quality"]["max_gap"] = {"r2": 0.1}
    params["gates"]["quality"]["slices"]["metrics"] = ["mae"]
    params["rollout"]["canary"].pop("metric_margins", None)
    params["rollout"]["canary"].pop("planning_rates", None)
    return params


def test_a_regression_config_without_canary_metrics_gets_the_mae_not_accuracy(tmp_path, base_params):
    params = load_params(_write(tmp_path, _regression(base_params)))
    assert list(params.rollout.canary.metric_margins) == ["mae"]
    assert "accuracy" not in params.rollout.canary.planning_rates


@pytest.mark.parametrize(("edit", "key"), [
    (lambda p: p["gates"]["data"]["drift"].update(critical=["customerID"]), "gates.data.drift.critical.customerID"),
    (lambda p: p["gates"]["quality"]["slices"].update(categorical=["nope"]), "gates.quality.slices.categorical.nope"),
    (lambda p: p["gates"]["quality"]["slices"].update(numeric={"Contract": 4}), "gates.quality.slices.numeric.Contract"),
    (lambda p: p["gates"]["quality"].update(max_gap={"roc_auc": 0.1}), "gates.quality.max_gap.roc_auc"),
    (lambda p: p["gates"]["quality"]["slices"].update(metrics=["accuracy"]), "slices.metrics ['accuracy']"),
    (lambda p: p["rollout"]["canary"].update(metric_margins={"accuracy": 0.02}),
     "rollout.canary.metric_margins.accuracy"),
    (lambda p: p["model"].update(positive_class="Yes"), "model.positive_class"),
    (lambda p: p["serving"].setdefault("prediction_log", {}).update(omit_columns=["email"]),
     "serving.prediction_log.omit_columns.email"),
])
def test_references_that_do_not_fit_the_features_or_the_task_are_rejected_naming_the_key(
        tmp_path, base_params, capsys, edit, key):
    params = _regression(base_params)
    params["gates"]["quality"]["slices"]["metrics"] = ["mae"]
    params["gates"]["quality"]["metrics"]["mae"] = {"greater_is_better": False, "max_regression": 0.5}
    edit(params)
    code, out = _validate(_write(tmp_path, params), capsys)
    assert code == 2, out
    assert key in out


def test_every_problem_is_named_in_one_message(tmp_path, base_params, capsys):
    params = _regression(base_params)
    params["gates"]["data"]["drift"]["critical"] = ["a1", "a2"]
    params["gates"]["quality"]["max_gap"] = {"roc_auc": 0.1, "accuracy": 0.1}
    code, out = _validate(_write(tmp_path, params), capsys)
    assert code == 2
    for key in ("critical.a1", "critical.a2", "max_gap.roc_auc", "max_gap.accuracy"):
        assert key in out
