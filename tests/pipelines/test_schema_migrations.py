"""Schema versions: upgrading mlgate between two looks of a running rollout.

The prediction log's store (SQLite and a real PostgreSQL) written by mlgate before schema versions is
readable as it is and migrated in order when a server opens it, by several servers at once, once; a
store a newer mlgate migrated further is used as it is. A rollout state an older mlgate wrote in MLflow
is read, stepped and written back in the current format by the new controller.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlgate.gates.online import AnalysisOutcome
from mlgate.gates.online.core import analysis, check
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.rollout.backend import ModelSpec, Split
from mlgate.pipelines.rollout.controller import RolloutController
from mlgate.pipelines.rollout.state import STATE_SCHEMA, RolloutState, StateSchemaError
from mlgate.pipelines.rollout.store import CURRENT_TAG, STATE_TAG, RolloutStore
from mlgate.serving.log.migrations import LOG_SCHEMA, MIGRATIONS, stored_version
from mlgate.serving.log.prediction_log import (
    FEEDBACK,
    PREDICTIONS,
    ROUTE_TABLES,
    SCHEMA_VERSION,
    PredictionEntry,
    open_engine,
    read_predictions,
    read_route_events,
    read_route_history,
    read_routes,
)
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.settings import PredictionLogConfig

OLD_TABLE = {"mode": "weighted", "version": 3, "variants": [
    {"name": "champion", "model_uri": "models:/churn/1", "model_version": "1", "weight": 90, "shadow": False},
    {"name": "challenger", "model_uri": "models:/churn/2", "model_version": "2", "weight": 10, "shadow": False}]}


def _old_store(url: str) -> None:
    """The tables as mlgate wrote them before schema versions, with a prediction and a route table (v3)."""
    old = sa.MetaData()
    for table in (PREDICTIONS, FEEDBACK, ROUTE_TABLES):
        sa.Table(table.name, old, *(sa.Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns
                                    if c.name != "route_version"))
    engine = open_engine(url)
    with engine.begin() as connection:
        old.create_all(connection)
        row = {c.name: None for c in PREDICTIONS.columns if c.name != "route_version"}
        connection.execute(old.tables["predictions"].insert(), {**row, "request_id": "old", "row_index": 0,
                                                                "variant": "champion", "shadow": 0, "ts": 100.0,
                                                                "status": 200, "features": "{}"})
        connection.execute(old.tables["route_table"].insert(), {"scope": "server", "version": 3, "ts": 99.0,
                                                                "body": json.dumps(OLD_TABLE, sort_keys=True)})
    engine.dispose()


def _open(url: str) -> PredictionLog:
    log = PredictionLog(PredictionLogConfig(url=url, flush_interval_s=0.05))
    log.open()
    return log


def test_an_old_store_is_read_as_it_is_then_migrated_in_order(log_url: str, caplog: pytest.LogCaptureFixture) -> None:
    _old_store(log_url)
    before = read_predictions(log_url)  # readers never migrate: the new column reads as unknown
    assert list(before["request_id"]) == ["old"] and before["route_version"].isna().all()
    assert read_route_history(log_url) == {} and read_route_events(log_url).empty
    assert read_routes(log_url) == (OLD_TABLE, 3)

    with caplog.at_level(logging.INFO, logger="mlgate.serving.log.migrations"):
        log = _open(log_url)
    applied = [r.getMessage() for r in caplog.records if " applied: " in r.getMessage()]
    assert [m.split(" applied")[0] for m in applied] == [f"prediction log schema: migration {n}" for n in range(1, LOG_SCHEMA + 1)]
    assert log.schema_version == LOG_SCHEMA == len(MIGRATIONS)
    assert read_route_history(log_url) == {3: OLD_TABLE}  # the table in force is the history's first entry
    log.record(PredictionEntry("new", None, "challenger", "2", False, 200.0, 1.0, 200, None, {"x": [1]}, 1,
                               ["no"], route_version=3))
    log.close()
    after = read_predictions(log_url)
    assert list(after["request_id"]) == ["old", "new"]
    assert after["route_version"].isna().iloc[0] and after["route_version"].iloc[1] == 3

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlgate.serving.log.migrations"):
        _open(log_url).close()  # at the current version: only read
    assert not caplog.records


def test_servers_opening_an_old_store_together_migrate_it_once(log_url: str) -> None:
    _old_store(log_url)
    start = threading.Barrier(4)

    def open_together(_: int) -> int | None:
        start.wait()
        log = _open(log_url)
        log.close()
        return log.schema_version

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_together, range(4))) == [LOG_SCHEMA] * 4
    engine = open_engine(log_url)
    try:
        assert stored_version(engine) == LOG_SCHEMA
        with engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(SCHEMA_VERSION)).scalar() == 1
    finally:
        engine.dispose()
    assert read_route_history(log_url) == {3: OLD_TABLE}


def test_a_store_a_newer_mlgate_migrated_further_is_used_as_it_is(log_url: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    _open(log_url).close()
    engine = open_engine(log_url)
    with engine.begin() as connection:
        connection.execute(SCHEMA_VERSION.update().values(version=LOG_SCHEMA + 5))
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="mlgate.serving.log.migrations"):
        log = _open(log_url)
    assert log.schema_version == LOG_SCHEMA + 5 and "written by a newer mlgate" in caplog.text
    assert log.publish_routes(OLD_TABLE, 1)
    log.close()
    assert read_routes(log_url) == (OLD_TABLE, 1)


# ---- the rollout state ----

# A state as mlgate before state schemas wrote it (no "schema" key): canary step 1 of [50, 100].
OLD_STATE: dict[str, Any] = {
    "rollout_id": "r-old", "model": "", "version": "2", "champion_version": "1",
    "position": {"phase": "canary", "step": 0, "weight": 50, "shadow": False}, "steps": [50, 100],
    "approval_before": [], "approve_promotion": False, "status": "running", "reason": "canary step 1 (50%): collecting",
    "started": 100.0, "updated": 200.0, "phase_started": 150.0, "canary_started": 150.0, "seq": 2, "events": 0,
    "pending": None, "last": None,
}


class RecordingBackend:
    """A traffic backend that keeps the split it was given (the controller only calls these two)."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def set_split(self, champion: ModelSpec, challenger: ModelSpec | None, weight: int, shadow: bool) -> bool:
        new = Split(champion, challenger, weight, shadow)
        changed, self.split = new != self.split, new
        return changed

    def current(self) -> Split:
        return self.split


def _successful(state: RolloutState, now: float) -> Any:
    item = check("srm", AnalysisOutcome.SUCCESSFUL, "fine", value=1.0, threshold=0.001, expected="p >= 0.001")
    return analysis("canary", [item], time.perf_counter(), {})


def test_a_rollout_state_an_older_mlgate_wrote_is_read_stepped_and_written_in_the_current_format(
        mlflow_uri: str, tmp_path: Path) -> None:
    name = f"schema-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        registry.register_version(mlflow_uri, name, str(tmp_path), {})
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, "1")
    old = {**OLD_STATE, "model": name}
    registry.set_version_tags(mlflow_uri, name, "2", {STATE_TAG: json.dumps(old)})  # as the older mlgate left it
    registry.set_registered_model_tag(mlflow_uri, name, CURRENT_TAG, json.dumps({"version": "2", "rollout_id": "r-old"}))
    store = RolloutStore(mlflow_uri, name)
    assert store.current().schema == STATE_SCHEMA == 2

    uris = [ModelSpec(v, f"models:/{name}/{v}") for v in ("1", "2")]
    backend = RecordingBackend(Split(*uris, 50, False))
    controller = RolloutController(store, backend, _successful, lambda version, stage: None, shadow_limit_s=60,
                                   step_limit_s=60)
    report = controller.step()
    assert report.action == "advanced" and report.state.position.label() == "canary step 2 (100%)"
    assert backend.split.weight == 100 and report.state.seq == 3
    written = json.loads(registry.get_version(mlflow_uri, name, "2").tags[STATE_TAG])
    assert written["schema"] == STATE_SCHEMA and written["started"] == 100.0 and written["rollout_id"] == "r-old"

    newer = {**written, "schema": STATE_SCHEMA + 1}
    with pytest.raises(StateSchemaError, match="newer mlgate"):
        RolloutState.from_json(json.dumps(newer))
    registry.set_version_tags(mlflow_uri, name, "2", {STATE_TAG: json.dumps(newer)})
    with pytest.raises(UsageError, match="upgrade mlgate to continue this rollout"):
        store.current()
