"""The prediction log: rows per input row, WAL, the batched writer's flush and bounds, the readers.

Tests that take `log_url` run on both stores: a SQLite file and a fresh PostgreSQL database.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from mlgate.serving.log.prediction_log import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTIONS,
    PredictionEntry,
    label_text,
    open_engine,
    read_bandit_arms,
    read_feedback,
    read_predictions,
    read_routes,
    read_shed,
)
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.routing.bandit import ThompsonBandit
from mlgate.serving.settings import BanditConfig, PredictionLogConfig


def _entry(request_id: str, n_rows: int = 2, ts: float = 1000.0, **changes: object) -> PredictionEntry:
    values = {"request_id": request_id, "routing_key": "k", "variant": "champion", "model_version": "3",
              "shadow": False, "ts": ts, "latency_ms": 4.0, "status": 200, "error": None,
              "columns": {"x": [1.5, math.nan][:n_rows], "big": [10**30, 2][:n_rows]}, "n_rows": n_rows,
              "predictions": ["yes", "no"][:n_rows], "scores": [0.9, math.inf][:n_rows]}
    return PredictionEntry(**{**values, **changes})


def _log(url: str, **options: object) -> PredictionLog:
    log = PredictionLog(PredictionLogConfig(url=url, **options))
    log.open()
    return log


def test_an_entry_becomes_one_row_per_input_row_with_json_that_always_parses() -> None:
    rows = _entry("r").rows()
    assert [r["row_index"] for r in rows] == [0, 1]
    assert rows[0]["features"] == '{"x":1.5,"big":1e+30}' and rows[1]["features"] == '{"x":null,"big":2}'
    assert [r["prediction"] for r in rows] == ['"yes"', '"no"'] and [r["score"] for r in rows] == [0.9, None]
    failed = _entry("f", n_rows=0, columns=None, predictions=None, scores=None, status=415, error="415").rows()
    assert len(failed) == 1 and failed[0]["features"] == "{}" and failed[0]["prediction"] is None


def test_the_writer_uses_wal_and_close_writes_everything_queued(log_url: str) -> None:
    log = _log(log_url, batch_size=10_000, flush_interval_s=3600.0)
    for i in range(300):
        log.record(_entry(f"r{i}"))
    log.record_feedback([{"request_id": "r1", "row_index": 1, "label": "no", "reward": None, "ts": 1001.0}])
    url = log.config.url
    assert len(read_predictions(url)) == 0  # nothing is written on the request path
    log.close()
    logged = read_predictions(url)
    assert len(logged) == 600 and list(logged.columns) == list(PREDICTION_COLUMNS)
    assert logged.iloc[1]["features"] == {"x": None, "big": 2} and logged.iloc[0]["prediction"] == "yes"
    assert read_feedback(url).iloc[0][["request_id", "row_index", "label"]].tolist() == ["r1", 1, "no"]
    if url.startswith("sqlite"):
        with sqlite3.connect(sa.make_url(url).database) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_flush_writes_without_stopping_and_readers_filter_by_time(log_url: str) -> None:
    log = _log(log_url, flush_interval_s=3600.0)
    log.record(_entry("old", ts=100.0))
    log.record(_entry("new", ts=200.0))
    assert log.flush(10.0)
    assert set(read_predictions(log.config.url, since=150.0)["request_id"]) == {"new"}
    log.record(_entry("later", ts=300.0))
    log.close()
    assert len(read_predictions(log.config.url)) == 6


def test_beyond_max_pending_rows_entries_are_dropped_and_counted(log_url: str) -> None:
    counted: dict[str, int] = {}
    log = PredictionLog(PredictionLogConfig(url=log_url, max_pending_rows=5,
                                            flush_interval_s=3600.0, batch_size=10_000),
                        count=lambda event, rows: counted.__setitem__(event, counted.get(event, 0) + rows))
    log.open()
    for i in range(4):
        log.record(_entry(f"r{i}"))  # 2 rows each: the third and fourth do not fit
    log.close()
    assert counted == {"dropped": 4, "written": 4}
    assert len(read_predictions(log.config.url)) == 4


def test_readers_of_a_store_that_does_not_exist_yet_return_empty_frames(tmp_path: Path, log_url: str) -> None:
    """A SQLite file not created yet (and not created by reading), or a database without the tables."""
    url = f"sqlite:///{tmp_path / 'absent.db'}" if log_url.startswith("sqlite") else log_url
    assert list(read_predictions(url).columns) == list(PREDICTION_COLUMNS) and read_predictions(url).empty
    assert list(read_feedback(url, since=time.time()).columns) == list(FEEDBACK_COLUMNS)
    assert read_shed(url).empty and read_bandit_arms(url).empty and read_routes(url) is None
    assert not (tmp_path / "absent.db").exists()


def test_labels_are_stored_as_text_comparable_with_predictions() -> None:
    assert [label_text(v) for v in ("yes", 1, 1.5, True, None)] == ["yes", "1", "1.5", "true", "null"]


def test_a_store_from_before_baseline_ms_is_read_and_then_extended_by_the_writer(log_url: str) -> None:
    old_columns = [c for c in PREDICTION_COLUMNS if c not in ("baseline_ms", "forced", "route_version", "outlier")]
    old = sa.Table("predictions", sa.MetaData(), *(sa.Column(c.name, c.type) for c in PREDICTIONS.columns if c.name in old_columns))
    engine = open_engine(log_url)
    with engine.begin() as connection:
        old.create(connection)
        connection.execute(old.insert(), dict(zip(old_columns, ["old", 0, None, "champion", "1", 0, 999.0, 3.0, 200,
                                                                None, "{}", '"no"', None], strict=True)))
    engine.dispose()
    url = log_url
    before = read_predictions(url)
    assert list(before.columns) == list(PREDICTION_COLUMNS) and before["baseline_ms"].isna().all()
    log = _log(url)
    log.record(_entry("new", shadow=True, baseline_ms=2.5))
    log.close()
    after = read_predictions(url)
    assert list(after["request_id"]) == ["old", "new", "new"]
    assert after["baseline_ms"].isna().iloc[0] and list(after["baseline_ms"].iloc[1:]) == [2.5, 2.5]


def test_bandit_arms_of_two_servers_add_up_and_a_restart_resumes_the_sum(log_url: str) -> None:
    """Two servers (writers) reward the same arm: the store keeps every reward of both, not the last
    server's posterior; a third server resumes the sum and adds to it."""
    config = BanditConfig(prior_alpha=2.0, prior_beta=3.0)
    logs = [PredictionLog(PredictionLogConfig(url=log_url), bandit=config) for _ in range(2)]
    bandits = []
    for log in logs:
        log.open()
        bandit = ThompsonBandit(config, random.Random(0), save=log.save_arm)
        bandit.restore(log.load_arms())
        bandits.append(bandit)
    for i in range(10):
        bandits[0].update("good", "1", 1.0)
        bandits[1].update("good", "1", 0.0 if i % 2 else 1.0)
        logs[i % 2].flush()
    bandits[1].update("poor", "1", 0.25)
    for log in logs:
        log.close()
    arms = read_bandit_arms(log_url).set_index("variant")
    assert arms.loc["good", ["alpha", "beta", "pulls"]].tolist() == [2.0 + 15, 3.0 + 5, 20]
    assert arms.loc["poor", ["alpha", "beta", "pulls"]].tolist() == [2.25, 3.75, 1]
    third = PredictionLog(PredictionLogConfig(url=log_url), bandit=config)
    third.open()
    resumed = ThompsonBandit(config, random.Random(0), save=third.save_arm)
    resumed.restore(third.load_arms())
    assert resumed.arm("good", "1").pulls == 20
    resumed.update("good", "1", 1.0)
    third.close()
    assert read_bandit_arms(log_url).set_index("variant").loc["good", "pulls"] == 21


def test_the_route_table_only_moves_forward_except_a_reset(log_url: str) -> None:
    """A server's older table never overwrites another's newer one; a table from the arguments (version 1:
    a first start or `--reset-routes`) replaces what is stored."""
    first, second = _log(log_url), _log(log_url)
    assert first.save_routes({"mode": "single", "n": 1}, 1)
    assert first.save_routes({"mode": "weighted", "n": 3}, 3)
    assert not second.save_routes({"mode": "weighted", "n": 2}, 2)  # a stale server: the store keeps version 3
    assert read_routes(log_url) == ({"mode": "weighted", "n": 3}, 3) == second.load_routes()
    assert second.save_routes({"mode": "single", "n": 1}, 1)  # the operator's reset
    assert read_routes(log_url) == ({"mode": "single", "n": 1}, 1)
    first.close()
    second.close()


def test_odd_text_and_shed_counts_are_stored_and_read_back(log_url: str) -> None:
    """A label with NUL (which PostgreSQL text cannot hold) is stored, as `\\u0000` there, and costs no
    other row; feedback and shed counts read back the same from either store."""
    log = _log(log_url, flush_interval_s=3600.0)
    log.record(_entry("r0", routing_key="k\x00ey", error="bad \x00 byte"))
    log.record_feedback([{"request_id": "r0", "row_index": 0, "label": "a\x00b", "reward": None, "ts": 1001.0,
                          "kind": "label"},
                         {"request_id": "r0", "row_index": 1, "label": "é ✓", "reward": 0.5, "ts": 1002.0,
                          "kind": "label"}])
    log.record_shed([{"variant": "shadow", "model_version": "2", "reason": "queue_full", "count": 7,
                      "window_start": 990.0, "ts": 1000.0}])
    assert log.flush(10.0)
    nul = "a\x00b" if log_url.startswith("sqlite") else "a\\u0000b"
    assert log.feedback_of([("r0", 0), ("r0", 1)]) == {("r0", 0): (nul, None), ("r0", 1): ("é ✓", 0.5)}
    assert [row["row_index"] for row in log.lookup(["r0"])] == [0, 1]
    log.close()
    assert read_predictions(log_url)["routing_key"].tolist() == ["k\x00ey" if log_url.startswith("sqlite")
                                                                 else "k\\u0000ey"] * 2
    assert read_feedback(log_url)["label"].tolist() == [nul, "é ✓"]
    shed = read_shed(log_url)
    assert shed[["variant", "reason", "count"]].values.tolist() == [["shadow", "queue_full", 7]]
