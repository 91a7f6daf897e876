"""The prediction log: every prediction of every variant (shadows too) and the feedback joined to it.

Tables (one row per input row per variant): `predictions(request_id, row_index, routing_key,
variant, model_version, shadow, ts, latency_ms, status, error, features, prediction, score,
baseline_ms, forced, route_version, outlier)`,
`feedback(request_id, row_index, label, reward, ts)`, `shadow_shed(variant, model_version, reason,
count, window_start, ts)` (mirrors the server chose not to run, per window), `bandit_arms` (the
bandit's posteriors), `route_table` (the table in force), `route_table_history` (every version's body),
`route_events` (changes a server made by itself, with the reason) and `schema_version`
(`mlgate.serving.log.migrations`).
The store is SQLite or PostgreSQL, named by a SQLAlchemy URL. SQLite, the default, runs in WAL mode so
readers in other processes (the rollout analysis) read while the server writes; it is one file on one
machine. PostgreSQL (`postgresql+psycopg://user:password@host:port/database`; `postgresql://` means the
same) is the store that several server processes and machines share. The server writes through
`mlgate.serving.log.writer.PredictionLog`; the functions here are the readers.

Labels are stored as text: a string as it is, any other JSON value as its JSON (`label_text`);
compare a label with a prediction after passing the prediction through `label_text` too.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import sqlalchemy as sa

SQLITE_BUSY_S = 30.0  # how long a SQLite writer waits for another's lock

PREDICTION_COLUMNS = ("request_id", "row_index", "routing_key", "variant", "model_version", "shadow", "ts",
                      "latency_ms", "status", "error", "features", "prediction", "score", "baseline_ms", "forced",
                      "route_version", "outlier")
FEEDBACK_COLUMNS = ("request_id", "row_index", "label", "reward", "ts", "kind")


class LogText(sa.types.TypeDecorator[str]):
    """Text in every dialect; PostgreSQL's text cannot hold NUL, so there a NUL is stored as the visible
    escape `\\u0000` (what JSON text has already), where SQLite keeps it."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if dialect.name == "postgresql" and isinstance(value, str) and "\x00" in value:
            return value.replace("\x00", "\\u0000")
        return value


METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions", METADATA,
    sa.Column("request_id", LogText, nullable=False), sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("routing_key", LogText), sa.Column("variant", LogText, nullable=False),
    sa.Column("model_version", LogText), sa.Column("shadow", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False), sa.Column("latency_ms", sa.Float),
    sa.Column("status", sa.Integer, nullable=False), sa.Column("error", LogText),
    sa.Column("features", LogText), sa.Column("prediction", LogText), sa.Column("score", sa.Float),
    sa.Column("baseline_ms", sa.Float),
    sa.Column("forced", sa.Integer),  # 1: the caller chose the variant (X-Target-Variant); not in any split
    sa.Column("route_version", sa.Integer),  # the route-table version that routed the request (null: before it)
    sa.Column("outlier", sa.Integer),  # 1: the variant's outlier detector flagged the row (null: no detector)
    sa.Index("ix_predictions_request_id", "request_id"), sa.Index("ix_predictions_ts", "ts"),
    # the earliest row of a routing key in a canary step, found without reading the key's other rows
    sa.Index("ix_predictions_routing_key_ts", "routing_key", "ts"),
)
FEEDBACK = sa.Table(
    "feedback", METADATA,
    sa.Column("request_id", LogText, nullable=False), sa.Column("row_index", sa.Integer, nullable=False, default=0),
    sa.Column("label", LogText), sa.Column("reward", sa.Float), sa.Column("ts", sa.Float, nullable=False),
    # label: the first feedback of a row (it stands); conflict: a later, different one (kept, not used);
    # correction: an explicit correction, which replaces the label (the latest one wins).
    sa.Column("kind", LogText),
    sa.Index("ix_feedback_request_id", "request_id"), sa.Index("ix_feedback_ts", "ts"),
)
# Mirrors the server shed (never attempted), one row per variant, reason and window (mlgate.serving.shadow.shed).
SHADOW_SHED = sa.Table(
    "shadow_shed", METADATA,
    sa.Column("variant", LogText, nullable=False), sa.Column("model_version", LogText),
    sa.Column("reason", LogText, nullable=False), sa.Column("count", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Float, nullable=False), sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_shadow_shed_ts", "ts"),
)
SHED_COLUMNS = ("variant", "model_version", "reason", "count", "window_start", "ts")
# The route table in force, written before a change is swapped in and restored at start (one row).
ROUTES_SCOPE = "server"
ROUTE_TABLES = sa.Table(
    "route_table", METADATA,
    sa.Column("scope", LogText, primary_key=True), sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", LogText, nullable=False), sa.Column("ts", sa.Float, nullable=False),
)
# The body of every route-table version, so an analysis knows the weights that routed each logged row.
ROUTE_HISTORY = sa.Table(
    "route_table_history", METADATA,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", LogText, nullable=False), sa.Column("ts", sa.Float, nullable=False),
)
# Route-table changes a server made by itself (the guard's rollbacks), with the reason.
ROUTE_EVENTS = sa.Table(
    "route_events", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False), sa.Column("kind", LogText, nullable=False),
    sa.Column("route_version", sa.Integer, nullable=False), sa.Column("variant", LogText),
    sa.Column("model_version", LogText), sa.Column("reason", LogText, nullable=False),
    sa.Column("details", LogText),
    sa.Index("ix_route_events_ts", "ts"),
)
# The schema version of the store: the number of the last migration applied (mlgate.serving.log.migrations).
SCHEMA_VERSION = sa.Table(
    "schema_version", METADATA,
    sa.Column("component", LogText, primary_key=True), sa.Column("version", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)
# The rollout analysis's running sums per rollout and phase, with the log position they cover (written by the
# rollout controller, mlgate.pipelines.rollout.incremental; `revision` guards against two controllers at once).
ANALYSIS_STATE = sa.Table(
    "analysis_state", METADATA,
    sa.Column("rollout_id", LogText, primary_key=True), sa.Column("phase", LogText, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False), sa.Column("body", LogText, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)
# The order rows were stored in, for readers that continue where they stopped: SQLite's rowid; on PostgreSQL
# a `seq` identity column (migration 5), which the servers' inserts fill without naming it.
SEQ_COLUMN = {"sqlite": "rowid", "postgresql": "seq"}
EVENT_COLUMNS = ("ts", "kind", "route_version", "variant", "model_version", "reason", "details")
BANDIT_ARMS = sa.Table(
    "bandit_arms", METADATA,
    sa.Column("variant", LogText, primary_key=True), sa.Column("model_version", LogText, primary_key=True),
    sa.Column("alpha", sa.Float, nullable=False), sa.Column("beta", sa.Float, nullable=False),
    sa.Column("pulls", sa.Integer, nullable=False), sa.Column("ts", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class PredictionEntry:
    """One variant's answer to one request, expanded into one row per input row when written.

    `columns` holds the request's features by column (None when the body could not be parsed);
    `predictions` and `scores` hold one value per row (None when the variant failed). On a shadow's
    rows, `latency_ms` is the shadow's model call that included this request and `baseline_ms` the
    answering variant's model on the same rows, timed back to back in the shadow's worker (None when
    not measured); every request of one model call carries the same pair.
    """

    request_id: str
    routing_key: str | None
    variant: str
    model_version: str
    shadow: bool
    ts: float
    latency_ms: float
    status: int
    error: str | None
    columns: Mapping[str, Sequence[Any]] | None
    n_rows: int
    predictions: Sequence[Any] | None = None
    scores: Sequence[float | None] | None = None
    baseline_ms: float | None = None
    forced: bool = False
    route_version: int | None = None  # the version of the route table that routed the request
    outliers: Sequence[bool] | None = None  # per row: flagged by the variant's outlier detector (None: none)

    def rows(self) -> list[dict[str, Any]]:
        """The database rows of this entry (at least one, even for a request without rows)."""
        return [dict(zip(PREDICTION_COLUMNS, values, strict=True)) for values in self.row_values()]

    def row_values(self) -> list[tuple[Any, ...]]:
        """`rows()` as tuples in PREDICTION_COLUMNS order: what the writer inserts, built without a dict
        per row (the writer shares the GIL with the request path)."""
        columns = tuple((self.columns or {}).items()) if self.n_rows else ()
        predictions, scores, outliers = self.predictions, self.scores, self.outliers
        common = (self.routing_key, self.variant, self.model_version, int(self.shadow), self.ts, self.latency_ms,
                  self.status, self.error)  # after request_id and row_index
        tail = (_finite_or_none(self.baseline_ms), int(self.forced), self.route_version)
        rows = []
        for i in range(max(self.n_rows, 1)):
            prediction = predictions[i] if predictions is not None and i < len(predictions) else None
            score = scores[i] if scores is not None and i < len(scores) else None
            outlier = int(outliers[i]) if outliers is not None and i < len(outliers) else None
            rows.append((self.request_id, i, *common, json_text({name: values[i] for name, values in columns}),
                         None if prediction is None else json_text(prediction), _finite_or_none(score), *tail,
                         outlier))
        return rows


def json_text(value: Any) -> str:
    """Compact JSON; NaN and infinities become null, integers beyond 64 bits become floats. A value
    orjson refuses (a lone surrogate, nesting deeper than 255) is written by the standard library with
    escapes; one that nothing can encode (nesting beyond the recursion limit) becomes null."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return json.dumps(_plain(value), ensure_ascii=True, default=str, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return "null"


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return _safe_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_safe_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 63:
        return _finite_or_none(float(value)) if value.bit_length() <= 1023 else None
    return value


def _safe_text(text: str) -> str:
    """Text any JSON reader accepts: a lone surrogate is kept as the visible escape `\\ud800`."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_value(text: str | None) -> Any:
    """A logged JSON value (None for SQL null); a row an older mlgate wrote with escapes orjson refuses
    is read by the standard library."""
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def label_text(value: Any) -> str:
    """How a label (or a prediction, for comparison) is stored: a string as is, else its JSON."""
    return value if isinstance(value, str) else json_text(value)


def open_engine(url: str) -> sa.Engine:
    """An engine for the log; SQLite gets WAL mode, a busy timeout and its directory created;
    PostgreSQL gets the psycopg (3) driver unless the URL names another, and a connect timeout."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_S, "check_same_thread": False})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL and NORMAL sync on every connection. Switching a new file to WAL takes an exclusive lock, and
    SQLite answers "database is locked" at once (without its busy timeout) while another connection holds
    one, as when several servers open a new store together: retried for up to the busy timeout."""
    cursor = connection.cursor()
    deadline = time.monotonic() + SQLITE_BUSY_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def _reader(url: str) -> Iterator[sa.Connection | None]:
    """A connection to an existing store, or None when the SQLite file does not exist yet."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        yield None
        return
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _read(url: str, table: sa.Table, columns: Sequence[str], since: float | None) -> pd.DataFrame:
    with _reader(url) as connection:
        if connection is None or not sa.inspect(connection).has_table(table.name):
            return pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
        present = {column["name"] for column in sa.inspect(connection).get_columns(table.name)}
        query = sa.select(*(table.c[name] for name in columns if name in present))
        if since is not None:
            query = query.where(table.c.ts >= since)
        request_id = table.c.request_id  # in code point order, as SQLite sorts text, whatever the collation
        if connection.dialect.name == "postgresql":
            request_id = request_id.collate("C")
        order = [table.c.ts, request_id, table.c.row_index]
        frame = pd.read_sql(query.order_by(*order), connection)
    for name in columns:  # a store from an older mlgate: its missing columns read as unknown
        if name not in frame.columns:
            frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[list(columns)]


def read_predictions(url: str, *, since: float | None = None) -> pd.DataFrame:
    """Logged predictions (rows with ts >= since), features and prediction JSON-decoded."""
    return decode_json_columns(_read(url, PREDICTIONS, PREDICTION_COLUMNS, since))


def decode_json_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`features` and `prediction` as read from the store, JSON-decoded in place (where present)."""
    for name in ("features", "prediction"):
        if name in frame.columns:
            frame[name] = pd.Series([json_value(text) for text in frame[name]], index=frame.index, dtype=object)
    return frame


def read_feedback(url: str, *, since: float | None = None) -> pd.DataFrame:
    """Feedback rows (ts >= since): request_id, row_index, label (text), reward, ts."""
    return _read(url, FEEDBACK, FEEDBACK_COLUMNS, since)


def read_shed(url: str, *, since: float | None = None) -> pd.DataFrame:
    """Shed-mirror counts (windows that ended at ts >= since): variant, model_version, reason, count."""
    with _reader(url) as connection:
        if connection is None or not sa.inspect(connection).has_table(SHADOW_SHED.name):
            return pd.DataFrame({name: pd.Series([], dtype=object) for name in SHED_COLUMNS})
        query = sa.select(SHADOW_SHED)
        if since is not None:
            query = query.where(SHADOW_SHED.c.ts >= since)
        return pd.read_sql(query.order_by(SHADOW_SHED.c.ts), connection)[list(SHED_COLUMNS)]


def read_routes(url: str) -> tuple[dict[str, Any], int] | None:
    """The persisted route table (body, version), or None when none has been stored."""
    with _reader(url) as connection:
        if connection is None or not sa.inspect(connection).has_table(ROUTE_TABLES.name):
            return None
        query = sa.select(ROUTE_TABLES.c.body, ROUTE_TABLES.c.version).where(ROUTE_TABLES.c.scope == ROUTES_SCOPE)
        row = connection.execute(query).first()
    return (json.loads(row.body), int(row.version)) if row is not None else None


def read_route_history(url: str) -> dict[int, dict[str, Any]]:
    """The body of every stored route-table version, by version (empty for a store from before the history)."""
    with _reader(url) as connection:
        if connection is None or not sa.inspect(connection).has_table(ROUTE_HISTORY.name):
            return {}
        rows = connection.execute(sa.select(ROUTE_HISTORY.c.version, ROUTE_HISTORY.c.body)).all()
    return {int(row.version): json.loads(row.body) for row in rows}


def read_route_events(url: str, *, since: float | None = None) -> pd.DataFrame:
    """Route-table changes servers made by themselves (ts >= since), oldest first: ts, kind, route_version,
    variant, model_version, reason, details (decoded JSON)."""
    with _reader(url) as connection:
        if connection is None or not sa.inspect(connection).has_table(ROUTE_EVENTS.name):
            return pd.DataFrame({name: pd.Series([], dtype=object) for name in EVENT_COLUMNS})
        query = sa.select(*(ROUTE_EVENTS.c[name] for name in EVENT_COLUMNS))
        if since is not None:
            query = query.where(ROUTE_EVENTS.c.ts >= since)
        frame = pd.read_sql(query.order_by(ROUTE_EVENTS.c.ts, ROUTE_EVENTS.c.id), connection)
    frame["details"] = pd.Series([json_value(text) for text in frame["details"]], index=frame.index, dtype=object)
    return frame


def read_bandit_arms(url: str) -> pd.DataFrame:
    """The persisted bandit posteriors: variant, model_version, alpha, beta, pulls, ts."""
    columns = ("variant", "model_version", "alpha", "beta", "pulls", "ts")
    with _reader(url) as connection:
        if connection is None or not sa.inspect(connection).has_table(BANDIT_ARMS.name):
            return pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
        return pd.read_sql(sa.select(BANDIT_ARMS), connection)
