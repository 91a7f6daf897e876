"""The rollout against a real server, real MLflow and replayed production traffic with late labels.

One promotion (through an approval pause) and one automatic rollback of a degraded challenger, and a
controller killed with SIGKILL at its write-ahead points that a new process resumes exactly once.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mlgate.gates.online import AnalysisOutcome
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import load_split
from mlgate.pipelines.demo.lifecycle import roll_out_live
from mlgate.pipelines.registry.approval import REPORT_DIGEST_TAG, approve_version
from mlgate.pipelines.report.verdict import file_sha256
from mlgate.pipelines.rollout.replay import ReplayPlan, replay_rows
from mlgate.pipelines.rollout.store import ROLLBACK_REASON_TAG, STAGE_TAG, RolloutStore
from mlgate.pipelines.rollout.wiring import RolloutSettings, build_controller
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import ServingConfig
from tests.conftest import REPO
from tests.pipelines.rollout_fixtures import TrainedModels, register_models, train_models

pytestmark = pytest.mark.slow
LABELS_TOKEN = "rollout-live-labels"


@pytest.fixture(scope="module")
def models(tmp_path_factory, churn_frame, base_params, mlflow_uri) -> TrainedModels:
    return train_models(tmp_path_factory.mktemp("rollout-live"), churn_frame, base_params, mlflow_uri)


def champion_server(ctx: RunContext, token: str, log_url: str, tracking_uri: str, *, restore: bool = False,
                    port: int | None = None) -> ServerProcess:
    serving = ctx.params.serving.model_dump()
    config = ServingConfig.model_validate({**serving, "prediction_log": {"url": log_url, "flush_interval_s": 0.1},
                                           "routing": {**serving["routing"], "restore_routes": restore}})
    name = ctx.params.model.name
    champion = registry.version_by_alias(tracking_uri, name, registry.CHAMPION).version
    return ServerProcess({"champion": f"models:/{name}/{champion}"}, config, port=port,
                         env={"MLGATE_ADMIN_TOKEN": token, "MLGATE_FEEDBACK_TOKEN": LABELS_TOKEN,
                              "MLFLOW_TRACKING_URI": tracking_uri})


def routes(server: ServerProcess) -> dict:
    return httpx.get(f"{server.url}/routes", timeout=10).json()


def approve(ctx: RunContext, version: str, stage: str) -> None:
    """Approve as `mlgate approve` does: the version carries the digest of the report on disk."""
    report = ctx.base_dir / "reports" / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("# gates passed\n")
    registry.set_version_tags(ctx.tracking_uri, ctx.params.model.name, version, {REPORT_DIGEST_TAG: file_sha256(report)})
    approve_version(ctx, version, stage, "ml-lead", "looks good")


def test_promotion_through_an_approval_then_an_online_rollback(models, mlflow_uri):
    model = register_models(models, mlflow_uri, ["weak", "strong", "degraded"], "live")
    params = yaml.safe_load(model.params_path.read_text())
    params["rollout"]["canary"]["approval_before"] = [100]
    model.params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    ctx = RunContext.load(model.params_path, mlflow_uri)
    token, lines = secrets.token_hex(8), []
    drive = {"rate_rps": 150, "feedback_delay_s": 0.5, "poll_s": 0.5, "max_duration_s": 60, "out": lines.append,
             "feedback_token": LABELS_TOKEN}
    with champion_server(ctx, token, models.log_url, mlflow_uri) as server:
        settings = RolloutSettings(server.url, token, models.log_url)
        paused = roll_out_live(ctx, settings, "2", "1", **drive)
        assert paused.state.status == "paused", "\n".join(lines)
        assert paused.state.position.weight == 50 and "awaiting approval canary-100" in paused.state.reason
        approve(ctx, "2", "canary-100")
        promoted = roll_out_live(ctx, settings, "2", "1", resume=True, **drive)
        assert promoted.promoted, "\n".join(lines)
        assert [e["kind"] for e in promoted.events] == ["start", "advance", "pause", "advance", "promote"]
        assert promoted.events[3]["approval"]["approver"] == "ml-lead"
        name = model.name
        assert registry.version_by_alias(mlflow_uri, name, registry.CHAMPION).version == "2"
        assert registry.version_by_alias(mlflow_uri, name, registry.PREVIOUS).version == "1"
        assert registry.version_by_alias(mlflow_uri, name, registry.CHALLENGER) is None
        assert registry.get_version(mlflow_uri, name, "2").tags[STAGE_TAG] == "production"
        table = routes(server)
        assert table["mode"] == "single" and table["variants"][0]["model_uri"] == f"models:/{name}/2"

        registry.set_alias(mlflow_uri, name, registry.CHALLENGER, "3")
        rolled = roll_out_live(ctx, settings, "3", "2", **drive)
        assert rolled.state.position.phase == "rolled_back", "\n".join(lines)
        reason = json.loads(registry.get_version(mlflow_uri, name, "3").tags[ROLLBACK_REASON_TAG])
        assert reason["metric"] == "accuracy delta" and reason["threshold"] == -0.05 and reason["value"] < -0.05
        assert "inferior" in reason["message"] and reason["at"].startswith("canary step 1")
        assert registry.version_by_alias(mlflow_uri, name, registry.CHAMPION).version == "2"
        assert registry.get_version(mlflow_uri, name, "3").tags[STAGE_TAG] == "rolled_back"
        table = routes(server)
        assert table["mode"] == "single" and [v["name"] for v in table["variants"]] == ["champion"]
    assert rolled.report_md.is_file() and rolled.plot.stat().st_size > 10_000
    assert "was rolled back" in rolled.report_md.read_text()
    print("\n".join(lines))


def test_a_controller_killed_at_its_write_ahead_points_resumes_exactly_once(models, mlflow_uri):
    model = register_models(models, mlflow_uri, ["weak", "strong"], "crash")
    ctx = RunContext.load(model.params_path, mlflow_uri)
    token = secrets.token_hex(8)
    store = RolloutStore(mlflow_uri, model.name)
    with champion_server(ctx, token, models.log_url, mlflow_uri) as server:
        controller = build_controller(ctx, RolloutSettings(server.url, token, models.log_url))
        controller.start("2", "1", ctx.params.rollout.canary, "crashtest01")
        traffic(ctx, server, rows=300, prefix="a-")

        killed = mlgate_step(model.params_path, mlflow_uri, server.url, token, kill_at="after_intent")
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        pending = store.current()
        assert pending.pending is not None and pending.pending.kind == "advance" and pending.events == 1
        assert routes(server)["mode"] == "shadow"  # decided and recorded, not applied

        resumed = mlgate_step(model.params_path, mlflow_uri, server.url, token)  # a new process
        assert resumed.returncode == 0 and "resumed the pending advance" in resumed.stdout, resumed.stdout
        state = store.current()
        assert state.pending is None and state.position.weight == 50 and state.events == 2
        advance = store.events(state)[1]
        assert advance["kind"] == "advance" and advance["time"] == pending.pending.time and advance["resumed"]
        assert advance["outcome"] == "Successful" and advance["reason"].startswith("shadow: every shadow check")
        assert routes(server)["mode"] == "weighted"

        again = controller.step()
        assert again.action == "collecting" and "inconclusive" in again.message
        assert store.current().position.weight == 50 and store.current().events == 2  # no second step

        traffic(ctx, server, rows=400, prefix="b-")
        look = controller.analyser(store.current(), time.time())
        assert look.outcome is AnalysisOutcome.SUCCESSFUL
        outliers = next(c for c in look.result.checks if c.name == "outlier_rate")  # from the challenger's bundle
        assert outliers.details["training_share"] == 0.01 and outliers.details["checked"] >= 100, outliers
        assert "live outlier rate" in outliers.message and outliers.status.value in ("PASS", "WARN")
        killed = mlgate_step(model.params_path, mlflow_uri, server.url, token, kill_at="after_apply")
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        assert store.current().pending.target.weight == 100
        assert [v["weight"] for v in routes(server)["variants"]] == [0, 100]  # applied, not committed
        finished = controller.step()
        assert finished.action == "resumed" and finished.state.position.weight == 100
        final = store.current()
        assert final.pending is None and final.events == 3
        assert [e["kind"] for e in store.events(final)] == ["start", "advance", "advance"]


def traffic(ctx: RunContext, server: ServerProcess, *, rows: int, prefix: str) -> None:
    frame = load_split(ctx.params.data, "production", ctx.base_dir)
    plan = ReplayPlan(server.url, rate_rps=200, feedback_delay_s=0.2, max_rows=rows, loops=2, id_prefix=prefix,
                      feedback_token=LABELS_TOKEN)
    stats = replay_rows(frame, ctx.params.data.features, ctx.params.model.target, "row_id", plan)
    assert stats.statuses[200] == rows and stats.feedback_accepted == rows


def mlgate_step(params: Path, tracking_uri: str, endpoint: str, token: str,
                kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLGATE_ADMIN_TOKEN": token, "PYTHONPATH": str(REPO)}
    env.pop("MLGATE_ROLLOUT_KILL_AT", None)
    if kill_at:
        env["MLGATE_ROLLOUT_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "mlgate.pipelines.cli.main", "rollout", "step", "--params", str(params),
               "--tracking-uri", tracking_uri, "--endpoint", endpoint]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_server_restarted_mid_canary_restores_its_routes_and_the_rollout_goes_on(models, mlflow_uri):
    """Stopped and started again at 50%, the server comes back with the persisted table (not single mode),
    so the controller sees no sample ratio mismatch and promotes the better model. A table changed by
    hand is re-asserted by the controller at its next look, with an event."""
    from mlgate.serving.runtime import free_port

    model = register_models(models, mlflow_uri, ["weak", "strong"], "restart")
    ctx = RunContext.load(model.params_path, mlflow_uri)
    token, port = secrets.token_hex(8), free_port()
    store = RolloutStore(mlflow_uri, model.name)
    with champion_server(ctx, token, models.log_url, mlflow_uri, port=port) as server:
        controller = build_controller(ctx, RolloutSettings(server.url, token, models.log_url))
        controller.start("2", "1", ctx.params.rollout.canary, "restart0001")
        traffic(ctx, server, rows=300, prefix="r1-")
        assert controller.step().state.position.phase == "canary"
        weighted = routes(server)
    with champion_server(ctx, token, models.log_url, mlflow_uri, port=port, restore=True) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert ready["routes"]["source"] == "restored"
        assert routes(server)["mode"] == "weighted" and routes(server)["variants"] == weighted["variants"]
        champion_only = {"name": "champion", "model_uri": weighted["variants"][0]["model_uri"], "weight": 100}
        httpx.put(f"{server.url}/routes", json={"mode": "single", "variants": [champion_only]},
                  headers={"Authorization": f"Bearer {token}"}, timeout=60).raise_for_status()
        report = controller.step()
        assert report.state.position.phase == "canary", report.message
        assert routes(server)["mode"] == "weighted"
        assert store.events(store.current())[-1]["kind"] == "reassert"
        for prefix in ("r2-", "r3-", "r4-"):
            traffic(ctx, server, rows=400, prefix=prefix)
            final = controller.run(0.2, max_duration_s=20)
            if final.state.terminal:
                break
    assert final.state.position.phase == "production", final.message
