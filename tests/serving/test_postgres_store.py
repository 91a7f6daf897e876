"""PostgreSQL as the shared store: a real server logging to it over HTTP, and concurrent writers.

The PostgreSQL server is the session's (tests/serving/postgres_server.py), each test in a database of
its own; the real model server is `python -m mlgate.serving` (the command behind `mlgate serve`) on
127.0.0.1.
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest

from mlgate.serving.log.prediction_log import (
    PredictionEntry,
    read_bandit_arms,
    read_feedback,
    read_predictions,
    read_routes,
)
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.routing.bandit import ThompsonBandit
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import BanditConfig, PredictionLogConfig, ServingConfig
from tests.serving.conftest import FEEDBACK_TOKEN, LABELS

ADMIN_TOKEN = "postgres-store-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENV = {"MLGATE_ADMIN_TOKEN": ADMIN_TOKEN, "MLGATE_FEEDBACK_TOKEN": FEEDBACK_TOKEN}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


@pytest.mark.slow
def test_a_real_server_logs_predictions_feedback_arms_and_routes_to_postgresql(
        model_dir, holdout: pd.DataFrame, fresh_postgres_url: str) -> None:
    """Predictions, feedback (labels and rewards), the bandit's posteriors and a route change made over
    HTTP are read back from PostgreSQL by the log's readers (what a restart restores: test_prediction_log)."""
    config = ServingConfig(prediction_log=PredictionLogConfig(url=fresh_postgres_url, flush_interval_s=0.1))
    uris = {"a": str(model_dir), "b": str(model_dir)}
    bandit = {"mode": "bandit",
              "variants": [{"name": name, "model_uri": uri, "weight": 50} for name, uri in uris.items()]}
    records = _records(holdout.head(20))
    with ServerProcess(uris, config, env=ENV, routes=bandit) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        answers = {f"pg-{i}": client.post("/invocations", json={"dataframe_records": [record]},
                                          headers={"X-Request-Id": f"pg-{i}"}) for i, record in enumerate(records)}
        assert {a.status_code for a in answers.values()} == {200}
        served = {rid: a.headers["x-model-variant"] for rid, a in answers.items()}
        items = [{"request_id": rid, "label": a.json()["predictions"][0],
                  "reward": 1.0 if served[rid] == "a" else 0.0} for rid, a in answers.items()]
        feedback = client.post("/feedback", json=items, headers=LABELS)
        assert feedback.status_code == 200 and feedback.json()["accepted"] == 20, feedback.text
        weighted = {"mode": "weighted", "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]}
        changed = client.put("/routes", json=weighted, headers=ADMIN)
        assert changed.status_code == 200 and changed.json()["version"] == 2, changed.text
    logged = read_predictions(fresh_postgres_url)  # the server stopped: everything it queued is written
    assert sorted(logged["request_id"]) == sorted(answers)
    assert dict(zip(logged["request_id"], logged["variant"], strict=True)) == served
    assert logged["features"].iloc[0] == records[int(logged["request_id"].iloc[0].split("-")[1])]
    stored = read_feedback(fresh_postgres_url)
    assert len(stored) == 20 and set(stored["kind"]) == {"label"}
    assert dict(zip(stored["request_id"], stored["reward"], strict=True)) == {i["request_id"]: i["reward"] for i in items}
    arms = read_bandit_arms(fresh_postgres_url).set_index("variant")  # prior Beta(1, 1), reward 1 for `a`
    assert arms["pulls"].sum() == 20
    assert arms["alpha"].sum() == pytest.approx(len(arms) + sum(v == "a" for v in served.values()))
    body, version = read_routes(fresh_postgres_url)
    assert version == 2 and body["mode"] == "weighted" and [v["weight"] for v in body["variants"]] == [90, 10]


WRITERS, ENTRIES = 4, 150


def _write(url: str, writer: int, start: threading.Barrier, config: BanditConfig, lost: list[str]) -> None:
    """One server's writer: small batches (many transactions), feedback, rewards on shared arms, routes."""

    def count(event: str, rows: int) -> None:
        if event != "written":
            lost.append(f"writer {writer}: {rows} rows {event}")

    log = PredictionLog(PredictionLogConfig(url=url, batch_size=16, flush_interval_s=0.005), count, bandit=config)
    start.wait()
    log.open()  # all at once, on a store without tables
    bandit = ThompsonBandit(config, random.Random(writer), save=log.save_arm)
    bandit.restore(log.load_arms())
    for i in range(ENTRIES):
        request_id = f"w{writer}-{i}"
        log.record(PredictionEntry(request_id, None, "champion", "1", False, 1000.0 + i, 1.0, 200, None,
                                   {"x": [i, -i]}, 2, ["yes", "no"], [0.5, 0.25]))
        log.record_feedback([{"request_id": request_id, "row_index": 1, "label": "no", "reward": None,
                              "ts": 2000.0 + i, "kind": "label"}])
        bandit.update("a" if i % 2 else "b", "1", 1.0 if i % 3 == 0 else 0.0)
        if i % 50 == 49:
            log.save_routes({"writer": writer, "i": i}, 2 + i // 50 + writer * 10)
    log.close()


def test_concurrent_writers_lose_and_duplicate_no_row_and_no_reward(log_url: str) -> None:
    """Four writers (each its own PredictionLog, as four servers) on one store: every prediction and
    feedback row once, every reward in the arms, and the route table of the highest version."""
    config, start, lost = BanditConfig(), threading.Barrier(WRITERS), []
    with ThreadPoolExecutor(WRITERS) as pool:
        writers = [pool.submit(_write, log_url, w, start, config, lost) for w in range(WRITERS)]
        for writer in writers:
            writer.result(timeout=60)  # a writer's exception fails the test here
    assert lost == []
    logged = read_predictions(log_url)
    assert len(logged) == WRITERS * ENTRIES * 2
    assert not logged.duplicated(["request_id", "row_index"]).any()
    feedback = read_feedback(log_url)
    assert len(feedback) == WRITERS * ENTRIES and not feedback.duplicated(["request_id", "row_index"]).any()
    arms = read_bandit_arms(log_url).set_index("variant")
    rewards = {"a": sum(i % 3 == 0 for i in range(ENTRIES) if i % 2),
               "b": sum(i % 3 == 0 for i in range(ENTRIES) if not i % 2)}
    for name, won in rewards.items():
        pulls = WRITERS * ENTRIES // 2
        assert arms.loc[name, ["alpha", "beta", "pulls"]].tolist() == [1.0 + WRITERS * won,
                                                                       1.0 + pulls - WRITERS * won, pulls]
    assert read_routes(log_url) == ({"writer": WRITERS - 1, "i": ENTRIES - 1}, 2 + 2 + (WRITERS - 1) * 10)
