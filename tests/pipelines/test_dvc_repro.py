"""`dvc repro` in a fresh copy of the repository: stages run, dvc.lock is written, metrics are listed."""

from __future__ import annotations

import subprocess

import pytest
import yaml

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
    # The stages depend on the installed mlgate through its stamp: dvc.lock records it, not source files.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert (repo / ".mlgate" / "version").read_text().startswith("mlgate ")
    assert ".mlgate/version" in {d["path"] for d in lock["train"]["deps"]}
    assert not [d["path"] for d in lock["train"]["deps"] if d["path"].endswith(".py")]
    again = subprocess.run(["dvc", "repro", "train"], cwd=repo, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    # The stamp stage always runs; it rewrites nothing while mlgate is the same, so nothing else runs.
    ran = {line.split("'")[1] for line in again.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"mlgate_version"}, again.stdout
    assert "Stage 'train' didn't change, skipping" in again.stdout


def test_a_different_mlgate_reruns_the_stages(tmp_path, cli_env, mlflow_uri):
    """An upgrade changes the stamp: DVC sees a changed dependency and re-runs the stages after it."""
    repo = copy_repository(tmp_path / "repo")
    env = {**cli_env, "MLFLOW_TRACKING_URI": mlflow_uri}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert subprocess.run(["dvc", "repro", "prepare"], cwd=repo, env=env, capture_output=True).returncode == 0
    # dvc.lock as another mlgate left it: its stamp differs from the installed one's.
    lock_path = repo / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    for dep in lock["stages"]["prepare"]["deps"]:
        if dep["path"] == ".mlgate/version":
            dep["md5"] = "f" * 32
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    status = subprocess.run(["dvc", "status", "prepare"], cwd=repo, env=env, capture_output=True, text=True)
    assert "modified:           .mlgate/version" in status.stdout, status.stdout
    # Without the run cache (which holds this very stamp's run), the stage really runs again.
    again = subprocess.run(["dvc", "repro", "--no-run-cache", "prepare"], cwd=repo, env=env, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Running stage 'prepare'" in again.stdout
