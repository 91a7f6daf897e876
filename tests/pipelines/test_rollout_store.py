"""Rollout state, history and lock in a real MLflow store, and the `mlgate rollout` commands' refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
import yaml

from mlgate.gates.config import CanaryConfig
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.rollout.lock import LOCK_TAG, LockHeld, RolloutLock, read_lock
from mlgate.pipelines.rollout.state import committed, new_rollout
from mlgate.pipelines.rollout.store import RolloutStore
from tests.pipelines.test_registration import run_cli, trained_template_dir


@pytest.fixture()
def model(churn_frame, base_params, mlflow_uri, tmp_path) -> tuple[str, str]:
    """A registered model of its own with two versions of the same trained model: (name, params path)."""
    template = trained_template_dir(churn_frame, base_params, mlflow_uri)
    run = json.loads((template / "reports" / "train_run.json").read_text())
    name = f"churn-store-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        registry.register_version(mlflow_uri, name, run["model_uri"], {"mlgate.stage": "candidate"})
    params = yaml.safe_load((template / "params.yaml").read_text())
    params["model"]["name"] = name
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return name, str(path)


def test_state_and_events_round_trip_through_mlflow_tags(model, mlflow_uri):
    name, _ = model
    store = RolloutStore(mlflow_uri, name)
    assert store.current() is None
    state, start = new_rollout("abc123", name, "2", "1", CanaryConfig(), 10.0)
    store.save(state)
    assert store.current().pending == start
    state = store.append_event(state, {"time": 10.0, "kind": "start", "reason": "go"})
    state = store.save(committed(state, start, 11.0))
    again = store.current()
    assert again == state and again.position.phase == "shadow" and again.pending is None
    assert [e["kind"] for e in store.events(again)] == ["start"]


def test_a_held_lock_refuses_a_second_controller_and_can_be_broken(model, mlflow_uri, capsys):
    name, params = model
    first = RolloutLock(mlflow_uri, name, "mlgate rollout run")
    first.acquire()
    with pytest.raises(LockHeld, match=r"locked by `mlgate rollout run` \(pid \d+ on .*\); .*mlgate rollout unlock"):
        RolloutLock(mlflow_uri, name, "mlgate rollout step").acquire()
    code, out = run_cli("rollout", "unlock", "--params", params, "--tracking-uri", mlflow_uri, capsys=capsys)
    assert code == 0 and "broke the lock of `mlgate rollout run`" in out
    assert read_lock(mlflow_uri, name) is None
    with pytest.raises(LockHeld, match="broken or taken over"):
        first.refresh()


def test_the_lock_of_a_dead_process_or_a_silent_one_is_taken_over(model, mlflow_uri):
    name, _ = model
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    crashed = RolloutLock(mlflow_uri, name, "mlgate rollout step")
    crashed.acquire()
    record = json.loads(registry.registered_model_tags(mlflow_uri, name)[LOCK_TAG])
    record["pid"] = int(dead.stdout)
    registry.set_registered_model_tag(mlflow_uri, name, LOCK_TAG, json.dumps(record))
    notes = []
    with RolloutLock(mlflow_uri, name, "mlgate rollout step", on_takeover=notes.append) as lock:
        assert read_lock(mlflow_uri, name).token == lock.token
    assert "is not running on this host" in notes[0]
    silent = RolloutLock(mlflow_uri, name, "mlgate rollout run", clock=lambda: 0.0)  # heartbeat at t=0
    silent.acquire()
    RolloutLock(mlflow_uri, name, "mlgate rollout step", ttl_s=60).acquire()  # now - 0 > 60 s: stale
    assert read_lock(mlflow_uri, name).command == "mlgate rollout step"


def test_start_without_a_champion_or_with_an_unknown_version_is_refused(model, mlflow_uri, capsys):
    name, params = model
    base = ("rollout", "start", "--params", params, "--tracking-uri", mlflow_uri)
    code, out = run_cli(*base, "--version", "2", capsys=capsys)
    assert code == 1 and "has no alias champion" in out
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, "1")
    code, out = run_cli(*base, "--version", "9", capsys=capsys)
    assert code == 2 and "has no version '9'" in out
    code, out = run_cli(*base, capsys=capsys)
    assert code == 2 and "has no alias challenger" in out
    code, out = run_cli("rollout", "step", "--params", params, "--tracking-uri", mlflow_uri, capsys=capsys)
    assert code == 2 and "has no rollout; start one" in out
    assert main(["rollout", "status", "--params", params, "--tracking-uri", mlflow_uri]) == 0


def test_replay_refuses_anything_but_a_loopback_server(model, capsys):
    _, params = model
    code, out = run_cli("replay", "--params", params, "--endpoint", "http://192.0.2.1:8080", capsys=capsys)
    assert code == 2 and "only a loopback server (127.0.0.1) is replayed to" in out
