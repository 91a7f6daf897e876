"""A team's setup, for real: an `mlflow server` process (sqlite backend, its own artifact root) reached
through MLFLOW_TRACKING_URI, and DVC outputs pushed to and pulled back from a DVC remote."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlgate.pipelines.registry.registration import REPORTS_ARTIFACT_PATH
from tests.conftest import Project, copy_repository
from tests.pipelines.test_registration import LINEAGE_TAGS, run_cli, write_gate_results

pytestmark = pytest.mark.slow
STARTUP_TIMEOUT_S = 180  # a cold start creates the database schema; on 2 busy cores this takes a while


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real tracking server on 127.0.0.1: (its URI, its artifact root). Stopped after the module."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = (root / "server.log").open("w")
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(exe), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, root / "server.log")
        yield uri, root / "artifacts"
    finally:
        _stop(proc)
        log.close()


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it forks workers), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture()
def restore_tracking_uri():
    import mlflow

    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)
    mlflow.set_registry_uri(before)


def test_train_verdict_register_approve_against_a_tracking_server(
    mlflow_server, tmp_path, churn_frame, base_params, monkeypatch, capsys, restore_tracking_uri
):
    import mlflow

    from mlgate.serving.loading import load_sklearn_model

    uri, artifact_root = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # no --tracking-uri below: the team setting applies
    project = Project.create(tmp_path, churn_frame.sample(1200, random_state=11), base_params)
    params = ["--params", str(project.params_path)]
    for command in ("prepare", "train", "verdict"):
        if command == "verdict":
            write_gate_results(project.root)
        code, out = run_cli(command, *params, capsys=capsys)
        assert code == 0, out
    code, out = run_cli("register", *params, capsys=capsys)
    assert code == 0, out
    version = json.loads((project.root / "reports" / "registration.json").read_text())["version"]
    code, out = run_cli("approve", *params, "--version", version, "--stage", "production",
                        "--approver", "ml-lead", "--comment", "server test", capsys=capsys)
    assert code == 0, out

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = base_params["model"]["name"]
    mv = client.get_model_version(name, version)
    run = json.loads((project.root / "reports" / "train_run.json").read_text())
    assert run["tracking_uri"] == uri and mv.run_id == run["run_id"]
    assert client.get_model_version_by_alias(name, "challenger").version == version
    assert all(mv.tags.get(tag) for tag in LINEAGE_TAGS) and mv.tags["mlgate.verdict"] == "PASS"
    assert json.loads(mv.tags["mlgate.approval.production"])["approver"] == "ml-lead"

    listed = {Path(a.path).name for a in client.list_artifacts(run["run_id"], REPORTS_ARTIFACT_PATH)}
    assert {"verdict.json", "report.md", "report.html", "gates"} <= listed
    report = mlflow.artifacts.download_artifacts(run_id=run["run_id"], tracking_uri=uri,
                                                 artifact_path=f"{REPORTS_ARTIFACT_PATH}/report.md",
                                                 dst_path=str(tmp_path / "downloaded"))
    assert hashlib.sha256(Path(report).read_bytes()).hexdigest() == mv.tags["mlgate.report_digest"]
    stored = {p.name for p in artifact_root.rglob("*") if p.is_file()}
    assert {"report.md", "verdict.json", "MLmodel"} <= stored  # proxied into the server's own artifact root

    mlflow.set_tracking_uri(uri)
    loaded = load_sklearn_model(f"models:/{name}/{version}")
    holdout = project.root / "data" / "test.parquet"
    import pandas as pd

    frame = pd.read_parquet(holdout).head(20)
    assert len(loaded.model.predict(frame)) == 20


def dvc(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_dvc_outputs_round_trip_through_a_local_remote(tmp_path, cli_env):
    repo = copy_repository(tmp_path / "repo")
    remote = tmp_path / "dvc-remote"
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, cli_env, "remote", "add", "--default", "storage", str(remote))
    dvc(repo, cli_env, "repro", "prepare")
    outputs = sorted((repo / "data").glob("*.parquet"))
    digests = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in outputs}
    assert set(digests) == {"train.parquet", "test.parquet", "production.parquet"}
    pushed = dvc(repo, cli_env, "push", "prepare")
    assert "3 files pushed" in pushed.stdout + pushed.stderr and any(remote.rglob("*"))

    shutil.rmtree(repo / ".dvc" / "cache")
    for path in outputs:
        path.unlink()
    dvc(repo, cli_env, "pull", "prepare")
    assert {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in outputs} == digests
    status = dvc(repo, cli_env, "status", "prepare")
    assert "changed" not in status.stdout
