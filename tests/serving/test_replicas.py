"""Three `mlgate serve` replicas sharing one PostgreSQL store (the prediction log and the route table).

Traffic goes to all three (every key to each replica in turn) while a canary step changes from 10% to 50% with one `PUT
/routes` to one replica. Every replica must adopt the new table within the documented bound
(`serving.routing.sync_interval_s` plus the read and the swap; docs/ROUTING.md, "Replicas"), every
logged row must carry the route-table version that routed it, a sticky key must get the same variant
from every replica (and the variant this test process computes: BLAKE2b rendezvous hashing does not
depend on the process), and the canary's split must pass when judged per route version although the
replicas switched tables at different moments, while a broken split is still flagged.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online import AnalysisOutcome, CanaryStep, canary_analysis
from mlgate.gates.online.canary_data import weights_by_version
from mlgate.serving.log.prediction_log import FEEDBACK_COLUMNS, read_predictions, read_route_history
from mlgate.serving.routing.router import sticky_choice
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import PredictionLogConfig, RoutingConfig, ServingConfig

ADMIN_TOKEN = "replicas-admin"
ENV = {"MLGATE_ADMIN_TOKEN": ADMIN_TOKEN}
SYNC_S = 1.0
# The documented bound for a change of weights only (models already loaded): sync_interval_s plus one
# row read and the swap (milliseconds), measured by each replica's own clock (/readyz routes.sync.applied);
# the rest is slack for a shared 2-core machine.
BOUND_S = SYNC_S + 1.0
MAX_REQUESTS = 900


def _table(challenger_weight: int) -> dict[str, Any]:
    return {"mode": "weighted", "variants": [{"name": "champion", "weight": 100 - challenger_weight},
                                             {"name": "challenger", "weight": challenger_weight}]}


class Traffic:
    """One client per replica, until stopped or MAX_REQUESTS in all. Every other request carries a routing
    key, the same keys in the same order from every client (each key meets every replica); the others have
    none (routed at random by weight: each request is a unit of the SRM test, which gives it more units)."""

    def __init__(self, urls: list[str], records: list[dict[str, Any]]) -> None:
        self.urls, self.records = urls, records
        self.answers: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(urls))]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, replica: int) -> None:
        with httpx.Client(base_url=self.urls[replica], timeout=20) as client:
            for i in range(MAX_REQUESTS // len(self.urls)):
                if self._stop.is_set():
                    return
                key, request_id = f"user-{i}" if i % 2 == 0 else None, f"r{replica}-{i}"  # odd: random by weight
                headers = {"X-Request-Id": request_id, **({"X-Routing-Key": key} if key else {})}
                response = client.post("/invocations", json={"dataframe_records": [self.records[i % len(self.records)]]},
                                       headers=headers)
                self.answers.append({"request_id": request_id, "replica": replica, "key": key, "sent": time.time(),
                                     "status": response.status_code, "variant": response.headers.get("x-model-variant"),
                                     "route_version": int(response.headers["x-route-version"])})


def _wait_for_version(urls: list[str], version: int, timeout_s: float = 10.0) -> None:
    """Poll every replica's GET /routes until each shows `version`."""
    deadline = time.monotonic() + timeout_s
    waiting = set(urls)
    while waiting and time.monotonic() < deadline:
        waiting = {url for url in waiting if httpx.get(f"{url}/routes", timeout=5).json()["version"] != version}
        time.sleep(0.02)
    assert not waiting, f"replicas {sorted(waiting)} never showed route table version {version}"


def _srm(rows: pd.DataFrame, weights: dict[int, tuple[float, float]], step_started: float) -> Any:
    config = CanaryConfig(steps=[10, 50, 100], metric_margins={}, latency_tolerance=None)
    feedback = pd.DataFrame({name: pd.Series([], dtype=object) for name in FEEDBACK_COLUMNS})
    result = canary_analysis(rows, feedback, config, CanaryStep.of(config, 1), step_started=step_started,
                             task="binary", route_weights=weights)
    return next(c for c in result.result.checks if c.name == "srm")


@pytest.mark.slow
def test_three_replicas_follow_a_canary_step_change_and_the_split_is_judged_per_route_version(
        model_dir, broken_model_dir, holdout: pd.DataFrame, fresh_postgres_url: str) -> None:
    log = PredictionLogConfig(url=fresh_postgres_url, flush_interval_s=0.1)
    config = ServingConfig(prediction_log=log, routing=RoutingConfig(sync_interval_s=SYNC_S))
    models = {"champion": str(model_dir), "challenger": str(broken_model_dir)}
    replicas = [ServerProcess(models, config, env=ENV, routes=_table(10)) for _ in range(3)]
    records = json.loads(holdout.head(100).to_json(orient="records"))
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(ServerProcess.start, replicas))  # together, on an empty database
        urls = [replica.url for replica in replicas]
        assert [httpx.get(f"{url}/routes").json()["version"] for url in urls] == [1, 1, 1]
        with Traffic(urls, records) as traffic:
            time.sleep(2.0)  # the 10% step
            step_started = time.time()
            changed = httpx.put(f"{urls[0]}/routes", json=_table(50), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert changed.status_code == 200 and changed.json()["version"] == 2, changed.text
            _wait_for_version(urls, 2)
            time.sleep(2.0)  # the 50% step on every replica
        readiness = [httpx.get(f"{url}/readyz").json()["routes"] for url in urls]
    finally:
        for replica in replicas:
            replica.stop()  # SIGTERM: each writes everything it queued
    assert [r["version"] for r in readiness] == [2, 2, 2] and all(r["sync"]["error"] is None for r in readiness)
    assert readiness[0]["sync"]["applied"] is None  # the replica that took the PUT swapped it in itself
    lags = [r["sync"]["applied"]["at"] - step_started for r in readiness[1:]]  # when each adopted the store's v2
    assert [r["sync"]["applied"]["version"] for r in readiness[1:]] == [2, 2]
    assert max(lags) <= BOUND_S, f"seconds from the PUT to the other replicas' swap: {lags}"

    answers = pd.DataFrame(traffic.answers)
    assert len(answers) >= 200 and set(answers["status"]) == {200}
    logged = read_predictions(fresh_postgres_url)
    assert sorted(logged["request_id"]) == sorted(answers["request_id"])  # none lost, none twice
    assert logged["route_version"].notna().all()
    versions = dict(zip(logged["request_id"], logged["route_version"].astype(int), strict=True))
    assert all(versions[a.request_id] == a.route_version for a in answers.itertuples())
    late = answers[(answers["sent"] > step_started) & (answers["route_version"] == 1)]
    assert len(late) > 0, "no replica answered by the old table after the change: the test saw no switch-over"

    history = read_route_history(fresh_postgres_url)
    assert {v: [x["weight"] for x in body["variants"]] for v, body in history.items()} == {1: [90, 10], 2: [50, 50]}
    weights = weights_by_version(history)
    per_version = answers.dropna(subset=["key"]).groupby(["key", "route_version"])
    assert per_version["variant"].nunique().max() == 1  # one variant per key and table, whichever replica
    assert (per_version["replica"].nunique() > 1).sum() >= 30  # ... asked of several replicas
    for (key, version), group in per_version:
        named = list(zip(("champion", "challenger"), weights[version], strict=True))
        assert group["variant"].iloc[0] == sticky_choice(key, named)  # this process agrees with the servers

    srm = _srm(logged, weights, step_started)
    assert srm.details["outcome"] == AnalysisOutcome.SUCCESSFUL, srm.message
    assert {s["version"] for s in srm.details["strata"]} == {1, 2}  # the old table's late rows, judged as its own
    broken = logged.assign(route_version=1)  # a broken split: 50/50 traffic claimed to be routed at 10%
    flagged = _srm(broken, weights, step_started)
    assert flagged.details["outcome"] == AnalysisOutcome.ERROR, flagged.message
    assert "sample ratio mismatch" in flagged.message and "v1 at 90/10" in flagged.message
