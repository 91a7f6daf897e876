"""The prediction log: rows per input row, WAL, the batched writer's flush and bounds, the readers."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

from mlgate.serving.log.prediction_log import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    PredictionEntry,
    label_text,
    read_feedback,
    read_predictions,
)
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.settings import PredictionLogConfig


def _entry(request_id: str, n_rows: int = 2, ts: float = 1000.0, **changes: object) -> PredictionEntry:
    values = {"request_id": request_id, "routing_key": "k", "variant": "champion", "model_version": "3",
              "shadow": False, "ts": ts, "latency_ms": 4.0, "status": 200, "error": None,
              "columns": {"x": [1.5, math.nan][:n_rows], "big": [10**30, 2][:n_rows]}, "n_rows": n_rows,
              "predictions": ["yes", "no"][:n_rows], "scores": [0.9, math.inf][:n_rows]}
    return PredictionEntry(**{**values, **changes})


def _log(tmp_path: Path, **options: object) -> PredictionLog:
    log = PredictionLog(PredictionLogConfig(url=f"sqlite:///{tmp_path / 'sub' / 'p.db'}", **options))
    log.open()
    return log


def test_an_entry_becomes_one_row_per_input_row_with_json_that_always_parses() -> None:
    rows = _entry("r").rows()
    assert [r["row_index"] for r in rows] == [0, 1]
    assert rows[0]["features"] == '{"x":1.5,"big":1e+30}' and rows[1]["features"] == '{"x":null,"big":2}'
    assert [r["prediction"] for r in rows] == ['"yes"', '"no"'] and [r["score"] for r in rows] == [0.9, None]
    failed = _entry("f", n_rows=0, columns=None, predictions=None, scores=None, status=415, error="415").rows()
    assert len(failed) == 1 and failed[0]["features"] == "{}" and failed[0]["prediction"] is None


def test_the_writer_uses_wal_and_close_writes_everything_queued(tmp_path: Path) -> None:
    log = _log(tmp_path, batch_size=10_000, flush_interval_s=3600.0)
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
    with sqlite3.connect(tmp_path / "sub" / "p.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_flush_writes_without_stopping_and_readers_filter_by_time(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_interval_s=3600.0)
    log.record(_entry("old", ts=100.0))
    log.record(_entry("new", ts=200.0))
    assert log.flush(10.0)
    assert set(read_predictions(log.config.url, since=150.0)["request_id"]) == {"new"}
    log.record(_entry("later", ts=300.0))
    log.close()
    assert len(read_predictions(log.config.url)) == 6


def test_beyond_max_pending_rows_entries_are_dropped_and_counted(tmp_path: Path) -> None:
    counted: dict[str, int] = {}
    log = PredictionLog(PredictionLogConfig(url=f"sqlite:///{tmp_path / 'p.db'}", max_pending_rows=5,
                                            flush_interval_s=3600.0, batch_size=10_000),
                        count=lambda event, rows: counted.__setitem__(event, counted.get(event, 0) + rows))
    log.open()
    for i in range(4):
        log.record(_entry(f"r{i}"))  # 2 rows each: the third and fourth do not fit
    log.close()
    assert counted == {"dropped": 4, "written": 4}
    assert len(read_predictions(log.config.url)) == 4


def test_readers_of_a_store_that_does_not_exist_yet_return_empty_frames(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    assert list(read_predictions(url).columns) == list(PREDICTION_COLUMNS) and read_predictions(url).empty
    assert list(read_feedback(url, since=time.time()).columns) == list(FEEDBACK_COLUMNS)
    assert not (tmp_path / "absent.db").exists()


def test_labels_are_stored_as_text_comparable_with_predictions() -> None:
    assert [label_text(v) for v in ("yes", 1, 1.5, True, None)] == ["yes", "1", "1.5", "true", "null"]


def test_a_store_from_before_baseline_ms_is_read_and_then_extended_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "p.db"
    path.parent.mkdir()
    old_columns = [c for c in PREDICTION_COLUMNS if c not in ("baseline_ms", "forced")]
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE predictions ({', '.join(old_columns)})")
        db.execute(f"INSERT INTO predictions VALUES ({', '.join('?' * len(old_columns))})",
                   ["old", 0, None, "champion", "1", 0, 999.0, 3.0, 200, None, "{}", '"no"', None])
    url = f"sqlite:///{path}"
    before = read_predictions(url)
    assert list(before.columns) == list(PREDICTION_COLUMNS) and before["baseline_ms"].isna().all()
    log = _log(tmp_path)
    log.record(_entry("new", shadow=True, baseline_ms=2.5))
    log.close()
    after = read_predictions(url)
    assert list(after["request_id"]) == ["old", "new", "new"]
    assert after["baseline_ms"].isna().iloc[0] and list(after["baseline_ms"].iloc[1:]) == [2.5, 2.5]
