"""`dvc repro` in a fresh copy of the repository: stages run, dvc.lock is written, metrics are listed."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import copy_repository

pytestmark = pytest.mark.slow


def test_dvc_repro_on_a_copy_runs_prepare_and_train(tmp_path, cli_env, mlflow_uri):
    repo = copy_repository(tmp_path / "repo")
    env = {**cli_env, "MLFLOW_TRACKING_URI": mlflow_uri}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    proc = subprocess.run(["dvc", "repro", "train"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "dvc.lock").is_file() and (repo / "models" / "candidate" / "MLmodel").is_file()
    shown = subprocess.run(["dvc", "metrics", "show"], cwd=repo, env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and "roc_auc" in shown.stdout and "metrics/train.json" in shown.stdout
    again = subprocess.run(["dvc", "repro", "train"], cwd=repo, env=env, capture_output=True, text=True)
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
