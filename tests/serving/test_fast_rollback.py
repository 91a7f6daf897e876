"""Fast rollback without the controller (`serving.routing.guard`), on a real server and a real MLflow registry.

A canary at 50% whose challenger raises on some rows (the broken churn pipeline fails on a null
number): the server itself gives the challenger's traffic back to the champion once its 5xx share in
the window passes the hard limit, writes that table through the store with the reason, and the
rollout controller, at its next look, marks the rollout rolled back with that reason instead of
re-applying the canary's split.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pandas as pd
import pytest

from mlgate.gates.config import CanaryConfig, ShadowConfig
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.rollout.analysis import LogAnalyser
from mlgate.pipelines.rollout.backend import LocalBackend, ModelSpec, route_table
from mlgate.pipelines.rollout.controller import RolloutController
from mlgate.pipelines.rollout.state import Position, committed, new_rollout, transition_to
from mlgate.pipelines.rollout.store import ROLLBACK_REASON_TAG, STAGE_TAG, RolloutStore
from mlgate.serving.log.prediction_log import read_predictions, read_route_events
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import GuardConfig, PredictionLogConfig, RoutingConfig, ServingConfig

TOKEN = "fast-rollback-admin"
GUARD = GuardConfig(window_s=30.0, min_requests=10, max_error_rate=0.3)
CANARY = CanaryConfig(steps=[50, 100], min_requests_per_step=100)


def _post(client: httpx.Client, record: dict[str, Any], request_id: str) -> httpx.Response:
    return client.post("/invocations", json={"dataframe_records": [record]}, headers={"X-Request-Id": request_id})


def _canary_state(store: RolloutStore, challenger: str, champion: str, now: float) -> None:
    """A rollout an earlier controller moved to the first canary step (50%)."""
    state, start = new_rollout("guarded", store.model, challenger, champion, CANARY, now - 60)
    state = committed(state, start, now - 60)
    advance = transition_to(state, "advance", Position("canary", 0, 50), {"actor": "controller", "reason": "ok"}, now)
    store.save(committed(state, advance, now))


@pytest.mark.slow
def test_the_server_rolls_a_failing_challenger_back_and_the_controller_records_why(
        model_dir, broken_model_dir, holdout: pd.DataFrame, mlflow_uri: str, tmp_path) -> None:
    name = f"guarded-{uuid.uuid4().hex[:8]}"
    champion = registry.register_version(mlflow_uri, name, str(model_dir), {})
    challenger = registry.register_version(mlflow_uri, name, str(broken_model_dir), {})
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, champion.version)
    store = RolloutStore(mlflow_uri, name)
    _canary_state(store, challenger.version, champion.version, time.time())
    specs = [ModelSpec(v.version, f"models:/{name}/{v.version}") for v in (champion, challenger)]
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    config = ServingConfig(prediction_log=PredictionLogConfig(url=log_url, flush_interval_s=0.1),
                           routing=RoutingConfig(guard=GUARD))
    records = json.loads(holdout.head(60).to_json(orient="records"))
    failing = [{**r, "total_day_minutes": None} if i % 5 < 3 else r for i, r in enumerate(records)]  # 60% null
    env = {"MLGATE_ADMIN_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": mlflow_uri}
    uris = {"champion": specs[0].model_uri, "challenger": specs[1].model_uri}
    with ServerProcess(uris, config, env=env, routes=route_table(*specs, 50, False)) as server, \
            httpx.Client(base_url=server.url, timeout=20) as client:
        answers = [_post(client, failing[i % len(failing)], f"g-{i}") for i in range(80)]
        deadline = time.monotonic() + 5.0
        while (routes := client.get("/routes").json())["version"] == 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        guard = client.get("/readyz").json()["routes"]["guard"]
        after = [_post(client, failing[i % len(failing)], f"after-{i}") for i in range(20)]

        weights = {v["name"]: v["weight"] for v in routes["variants"]}
        assert routes["version"] == 2 and routes["mode"] == "single" and weights == {"champion": 100, "challenger": 0}
        assert guard["variant"] == "challenger" and guard["model_version"] == challenger.version
        assert "0.3" in guard["reason"] and guard["details"]["value"] > 0.3, guard
        failed = [a for a in answers if a.status_code == 500]
        assert failed and {a.headers["x-model-variant"] for a in failed} == {"challenger"}
        assert all(a.headers["x-route-version"] == "1" for a in failed)  # none routed by the new table
        assert {(a.status_code, a.headers["x-model-variant"]) for a in after} == {(200, "champion")}

        events = read_route_events(log_url)  # the reason is in the store, for every replica and the controller
        assert list(events["kind"]) == ["guard_rollback"] and events["route_version"].iloc[0] == 2
        assert events["reason"].iloc[0] == guard["reason"]

        analyser = LogAnalyser(log_url, ShadowConfig(), CANARY, "binary")
        controller = RolloutController(store, LocalBackend(server.url, TOKEN), analyser, lambda version, stage: None,
                                       shadow_limit_s=600, step_limit_s=600, server_rollback=analyser.server_rollback)
        report = controller.step()  # the next look
        final = client.get("/routes").json()

    assert report.action == "rolled_back" and report.state.position.phase == "rolled_back"
    assert guard["reason"] in report.state.reason
    kinds = [e["kind"] for e in store.events(report.state)]
    assert "reassert" not in kinds and kinds[-1] == "rollback"  # it never sent traffic back to the challenger
    tags = registry.get_version(mlflow_uri, name, challenger.version).tags
    reason = json.loads(tags[ROLLBACK_REASON_TAG])
    assert tags[STAGE_TAG] == "rolled_back" and reason["metric"] == "error_rate (server guard)"
    assert reason["threshold"] == 0.3 and reason["value"] > 0.3 and reason["at"] == "canary step 1 (50%)"
    assert final["version"] == 3 and [v["name"] for v in final["variants"]] == ["champion"]
    logged = read_predictions(log_url)
    assert set(logged.loc[logged["route_version"] == 2, "variant"]) == {"champion"}
