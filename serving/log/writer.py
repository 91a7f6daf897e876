"""The batched background writer of the prediction log.

Request handlers and shadow workers only put entries on a queue (no I/O on the response path). One
writer thread takes them in batches (up to `batch_size` rows or `flush_interval_s`), writes each
batch in one transaction, and on `close()` writes everything still queued, so a graceful shutdown
loses nothing. Beyond `max_pending_rows` waiting rows an entry is dropped and counted, never queued
without bound. A failed write is retried once, then its rows are counted as lost.

Several servers may write one store (PostgreSQL): rows are only ever inserted, and the keyed rows
(bandit arms, the route table) are upserted (`mlgate.serving.log.upsert`), never deleted and re-inserted.
`open()` brings the store's schema up to date first (`mlgate.serving.log.migrations`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from mlgate.gates.result import first_line
from mlgate.serving.log import route_store
from mlgate.serving.log.migrations import migrate
from mlgate.serving.log.prediction_log import (
    BANDIT_ARMS,
    FEEDBACK,
    PREDICTION_COLUMNS,
    PREDICTIONS,
    SHADOW_SHED,
    PredictionEntry,
    open_engine,
)
from mlgate.serving.log.upsert import ArmChange, ArmLedger, arm_upsert, check_dialect
from mlgate.serving.routing.bandit import Arm
from mlgate.serving.settings import BanditConfig, PredictionLogConfig

log = logging.getLogger(__name__)

_EXPIRY_EVERY_S = 600.0


class FeaturePolicy:
    """Which logged input columns are left out and which are stored as a keyed hash (personal data)."""

    def __init__(self, omit: set[str], hashed: set[str], key: bytes) -> None:
        self.omit, self.hashed, self._key = omit, hashed, key

    @classmethod
    def of(cls, config: PredictionLogConfig) -> FeaturePolicy:
        key = os.environ.get("MLGATE_LOG_HASH_KEY", "").encode()[:64]
        return cls(set(config.omit_columns), set(config.hash_columns), key)

    @property
    def active(self) -> bool:
        return bool(self.omit or self.hashed)

    def apply(self, columns: Mapping[str, Sequence[Any]] | None) -> dict[str, list[Any]] | None:
        if columns is None:
            return None
        return {name: ([self._hash(v) for v in values] if name in self.hashed else list(values))
                for name, values in columns.items() if name not in self.omit}

    def _hash(self, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).encode("utf-8", "backslashreplace")
        return "h:" + hashlib.blake2b(text, digest_size=16, key=self._key).hexdigest()


LogCounter = Callable[[str, int], None]  # (event: written | dropped | failed, rows)
_STOP = object()


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class PredictionLog:
    """Queue plus writer thread; `open()` creates the tables (and fails fast if the store is unusable).
    `bandit`: the bandit's prior, from which an arm this server never loaded nor saved started."""

    def __init__(self, config: PredictionLogConfig, count: LogCounter | None = None,
                 bandit: BanditConfig | None = None) -> None:
        self.config = config
        prior = bandit or BanditConfig()
        self._arms = ArmLedger(prior.prior_alpha, prior.prior_beta)
        self._count = count or (lambda event, rows: None)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending_rows = 0
        self._pending_lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._thread: threading.Thread | None = None
        self._features = FeaturePolicy.of(config)
        self._next_expiry = time.monotonic() + _EXPIRY_EVERY_S
        self.schema_version: int | None = None

    def open(self) -> None:
        self._engine = open_engine(self.config.url)
        check_dialect(self._engine.dialect.name)
        self.schema_version = migrate(self._engine)
        self._expire()
        self._thread = threading.Thread(target=self._run, name="mlgate-prediction-log", daemon=True)
        self._thread.start()

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def record(self, entry: PredictionEntry) -> None:
        self._put(("predictions", entry), max(entry.n_rows, 1))

    def record_feedback(self, rows: Sequence[dict[str, Any]]) -> None:
        self._put(("feedback", list(rows)), len(rows))

    def record_shed(self, rows: Sequence[dict[str, Any]]) -> None:
        """Per-window counts of mirrors a shadow shed (a few rows per window, not one per mirror)."""
        self._put(("shed", list(rows)), len(rows))

    def save_arm(self, arm: Arm) -> None:
        """Queue the arm's posterior; the store adds what it gained since this server's previous save."""
        self._put(("arm", self._arms.change(arm)), 1)

    def _put(self, item: tuple[str, Any], rows: int) -> None:
        with self._pending_lock:
            accepted = self._thread is not None and self._pending_rows + rows <= self.config.max_pending_rows
            if accepted:
                self._pending_rows += rows
        if not accepted:
            self._count("dropped", _prediction_rows(item))
            return
        self._queue.put(item)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything queued before this call is written; False on timeout."""
        if self._thread is None:
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("the prediction log writer did not finish within %s s", timeout_s)
        if self._engine is not None:
            self._engine.dispose()

    def lookup(self, request_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Logged rows of these requests (request_id, row_index, variant, model_version, shadow, prediction)."""
        if self._engine is None or not request_ids:
            return []
        c = PREDICTIONS.c
        query = sa.select(c.request_id, c.row_index, c.variant, c.model_version, c.shadow, c.prediction)
        with self._engine.connect() as connection:
            result = connection.execute(query.where(c.request_id.in_(list(request_ids))))
            return [dict(row._mapping) for row in result]

    def feedback_of(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[str | None, float | None]]:
        """The standing feedback (label text, reward) of these rows: the latest correction, else the first."""
        if self._engine is None or not keys:
            return {}
        c = FEEDBACK.c
        query = (sa.select(c.request_id, c.row_index, c.label, c.reward, c.kind)
                 .where(c.request_id.in_(sorted({k[0] for k in keys}))).order_by(c.ts))
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        found: dict[tuple[str, int], tuple[str | None, float | None]] = {}
        for row in rows:
            key = (row.request_id, row.row_index)
            if row.kind == "correction" or (key not in found and row.kind != "conflict"):
                found[key] = (row.label, row.reward)
        return found

    def save_routes(self, body: dict[str, Any], version: int) -> bool:
        """Persist the route table (synchronously: an admin write); see `route_store.save_routes`."""
        return self._engine is not None and route_store.save_routes(self._engine, body, version)

    def publish_routes(self, body: dict[str, Any], version: int, event: dict[str, Any] | None = None) -> bool:
        """Make `body` the table in force as `version` if no server wrote that version first; see
        `route_store.publish_routes`."""
        return self._engine is not None and route_store.publish_routes(self._engine, body, version, event)

    def stored_route_version(self) -> int | None:
        """The version of the route table in force in the store (one row by primary key)."""
        return None if self._engine is None else route_store.stored_version(self._engine)

    def load_routes(self) -> tuple[dict[str, Any], int] | None:
        """The persisted route table body and version, or None."""
        return None if self._engine is None else route_store.load_routes(self._engine)

    def load_arms(self) -> list[Arm]:
        """The stored posteriors (every server's rewards), for the bandit to resume."""
        if self._engine is None:
            return []
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(BANDIT_ARMS)).all()
        arms = [Arm(r.variant, r.model_version, r.alpha, r.beta, r.pulls) for r in rows]
        self._arms.loaded(arms)
        return arms

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items, stopping, flushes = self._next_batch()
            if time.monotonic() >= self._next_expiry:
                self._expire()
            try:
                self._write(items)
            except Exception:  # noqa: BLE001 - the writer thread must outlive any bad entry
                log.exception("prediction log: a batch could not be written")
                self._count("failed", sum(_prediction_rows(item) for item in items))
            with self._pending_lock:
                self._pending_rows -= sum(_rows_of(item) for item in items)
            for marker in flushes:
                marker.done.set()

    def _next_batch(self) -> tuple[list[tuple[str, Any]], bool, list[_Flush]]:
        """Items until batch_size rows, the flush interval, a flush request or the stop signal."""
        items: list[tuple[str, Any]] = []
        flushes: list[_Flush] = []
        rows, deadline = 0, None
        while rows < self.config.batch_size:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if item is _STOP:
                return items + self._drain(), True, flushes
            if isinstance(item, _Flush):
                flushes.append(item)
                break
            items.append(item)
            rows += _rows_of(item)
            deadline = deadline or time.monotonic() + self.config.flush_interval_s
        return items, False, flushes

    def _drain(self) -> list[tuple[str, Any]]:
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rest
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not _STOP:
                rest.append(item)

    def _write(self, items: list[tuple[str, Any]]) -> None:
        """Write a batch in one transaction; if that fails twice, each item alone, so one row that
        cannot be stored costs no other row. Counts prediction rows written or failed."""
        if not items or self._engine is None:
            return
        encoded = []
        for item in items:
            try:
                encoded.append((item, _encoded(item, self._features)))
            except Exception:  # noqa: BLE001 - one entry that cannot be encoded is lost alone, and counted
                log.exception("prediction log: an entry could not be encoded")
                self._count("failed", _prediction_rows(item))
        for attempt in (1, 2):
            try:
                self._insert_items([rows for _, rows in encoded])
                self._count("written", sum(_prediction_rows(item) for item, _ in encoded))
                return
            except sa.exc.SQLAlchemyError as exc:
                log.error("prediction log write failed (attempt %d): %s", attempt, first_line(exc))
        for item, rows in encoded:
            try:
                self._insert_items([rows])
                self._count("written", _prediction_rows(item))
            except sa.exc.SQLAlchemyError as exc:
                log.error("prediction log: a %s item could not be written: %s", item[0], first_line(exc))
                self._count("failed", _prediction_rows(item))

    def _expire(self) -> None:
        """Delete rows older than `retention_days` (predictions, feedback, shed counts)."""
        self._next_expiry = time.monotonic() + _EXPIRY_EVERY_S
        if self.config.retention_days is None or self._engine is None:
            return
        cutoff = time.time() - self.config.retention_days * 86400.0
        try:
            with self._engine.begin() as connection:
                for table in (PREDICTIONS, FEEDBACK, SHADOW_SHED):
                    connection.execute(table.delete().where(table.c.ts < cutoff))
        except sa.exc.SQLAlchemyError as exc:
            log.error("prediction log: expiring old rows failed: %s", first_line(exc))

    def _insert_items(self, encoded: list[tuple[str, Any]]) -> None:
        predictions = [row for kind, rows in encoded if kind == "predictions" for row in rows]
        feedback = [row for kind, rows in encoded if kind == "feedback" for row in rows]
        shed = [row for kind, rows in encoded if kind == "shed" for row in rows]
        arms: dict[tuple[str, str], ArmChange] = {}  # one row write per arm: its changes added up
        for kind, change in encoded:
            if kind == "arm":
                key = change.arm.key
                arms[key] = arms[key].then(change) if key in arms else change
        self._insert(predictions, feedback, [arms[key] for key in sorted(arms)], shed)

    def _insert(self, predictions: list[tuple[Any, ...]], feedback: list[dict[str, Any]], arms: list[ArmChange],
                shed: list[dict[str, Any]]) -> None:
        """One transaction; arms in key order, so two servers updating the same arms never deadlock."""
        assert self._engine is not None
        with self._engine.begin() as connection:
            if shed:
                connection.execute(SHADOW_SHED.insert(), shed)
            if predictions:
                insert_predictions(connection, predictions)
            if feedback:
                connection.execute(FEEDBACK.insert(), feedback)
            now = time.time()
            for change in arms:
                connection.execute(arm_upsert(connection.dialect.name, change, now))


def _encoded(item: tuple[str, Any], features: FeaturePolicy) -> tuple[str, Any]:
    """(kind, database rows) of a queued item; prediction entries are expanded and encoded here, with
    the personal-data columns left out or hashed."""
    kind, payload = item
    if kind != "predictions":
        return kind, payload
    if features.active:
        payload = replace(payload, columns=features.apply(payload.columns))
    return kind, payload.row_values()


_SQLITE_INSERT = (f"INSERT INTO {PREDICTIONS.name} ({', '.join(PREDICTION_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(PREDICTION_COLUMNS))})")


def insert_predictions(connection: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert prediction rows (PREDICTION_COLUMNS tuples). On SQLite straight to the driver's executemany:
    SQLAlchemy's per-row parameter handling cost more than the insert itself, under the GIL the request
    path needs; its text type only changes values on PostgreSQL, which keeps the SQLAlchemy insert."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(_SQLITE_INSERT, rows)
    else:
        connection.execute(PREDICTIONS.insert(), [dict(zip(PREDICTION_COLUMNS, row, strict=True)) for row in rows])


def _prediction_rows(item: tuple[str, Any]) -> int:
    """Prediction-log rows of an item (the counters count these; feedback and shed rows are not)."""
    return max(item[1].n_rows, 1) if item[0] == "predictions" else 0


def _rows_of(item: tuple[str, Any]) -> int:
    kind, payload = item
    if kind == "predictions":
        return max(payload.n_rows, 1)
    return len(payload) if kind in ("feedback", "shed") else 1
