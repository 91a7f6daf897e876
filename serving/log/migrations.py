"""Schema versions of the prediction log's store, and the ordered migrations that bring a store up to date.

`schema_version` holds one row per component (`log`): the number of the last migration applied. A
server opening the store (`migrate`) reads it, and when it is behind applies the missing migrations in
order, in one transaction, with the other servers waiting their turn: on PostgreSQL under a
transaction-scoped advisory lock, on SQLite under `BEGIN IMMEDIATE` (the write lock, taken before the
version is read again). A store at the current version is only read, so nothing that exists is touched
(on PostgreSQL even `CREATE INDEX IF NOT EXISTS` locks a table against the other servers' inserts).

Migrations only add (tables, nullable columns, indexes, rows derived from what is there), never rename
or drop, and each one only creates what is missing, so that:
- readers and servers of an older mlgate keep working on a migrated store during a rolling upgrade
  (their rows lack the new columns, which read as null: "unknown", judged as before);
- a store from before schema versions (no `schema_version` row) is version 0 and an empty store runs
  the same steps from 0;
- a store that a newer mlgate migrated further is used as it is (with a warning).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from mlgate.serving.log.prediction_log import (
    BANDIT_ARMS,
    FEEDBACK,
    PREDICTIONS,
    ROUTE_EVENTS,
    ROUTE_HISTORY,
    ROUTE_TABLES,
    ROUTES_SCOPE,
    SCHEMA_VERSION,
    SHADOW_SHED,
)

log = logging.getLogger(__name__)

COMPONENT = "log"
_LOCK_KEY = 0x6D6C67617465  # "mlgate": the advisory lock the servers take turns under


def _baseline(connection: sa.Connection) -> None:
    """The tables of mlgate before schema versions, and the columns its earlier releases added."""
    for table in (PREDICTIONS, FEEDBACK, SHADOW_SHED, ROUTE_TABLES, BANDIT_ARMS):
        _ensure_table(connection, table)
    _ensure_columns(connection, PREDICTIONS, ("baseline_ms", "forced"))
    _ensure_columns(connection, FEEDBACK, ("kind",))


def _route_version(connection: sa.Connection) -> None:
    _ensure_columns(connection, PREDICTIONS, ("route_version",))


def _route_history(connection: sa.Connection) -> None:
    """The history starts with the table in force (so its weights are known for the rows it routes)."""
    _ensure_table(connection, ROUTE_HISTORY)
    row = connection.execute(sa.select(ROUTE_TABLES).where(ROUTE_TABLES.c.scope == ROUTES_SCOPE)).first()
    known = row is not None and connection.execute(
        sa.select(ROUTE_HISTORY.c.version).where(ROUTE_HISTORY.c.version == row.version)).first()
    if row is not None and not known:
        connection.execute(ROUTE_HISTORY.insert().values(version=row.version, body=row.body, ts=row.ts))


def _route_events(connection: sa.Connection) -> None:
    _ensure_table(connection, ROUTE_EVENTS)


Migration = Callable[[sa.Connection], None]
# Append only: a migration's number is its position here, and a released one is never changed.
MIGRATIONS: Sequence[tuple[str, Migration]] = (
    ("tables of mlgate before schema versions (predictions, feedback, shadow_shed, route_table, bandit_arms)",
     _baseline),
    ("predictions.route_version: the route-table version that routed each row", _route_version),
    ("route_table_history: the body of every route-table version", _route_history),
    ("route_events: route-table changes a server made by itself, with the reason", _route_events),
)
LOG_SCHEMA = len(MIGRATIONS)


def migrate(engine: sa.Engine) -> int:
    """Bring the store to LOG_SCHEMA (several servers may call this at once); the version it is at after."""
    found = stored_version(engine)
    if found is None or found < LOG_SCHEMA:
        with engine.begin() as connection:
            _take_turn(connection)
            _ensure_table(connection, SCHEMA_VERSION)
            found = _version(connection)
            for number, (description, step) in enumerate(MIGRATIONS, start=1):
                if number > found:
                    step(connection)
                    log.info("prediction log schema: migration %d applied: %s", number, description)
            if found < LOG_SCHEMA:
                _stamp(connection, LOG_SCHEMA, found)
                found = LOG_SCHEMA
    if found > LOG_SCHEMA:
        log.warning("the prediction log is at schema version %d, written by a newer mlgate (this one knows %d); "
                    "migrations only add, so this server reads and writes it as it is", found, LOG_SCHEMA)
    return found


def stored_version(engine: sa.Engine) -> int | None:
    """The store's schema version, 0 for a store from before versions, None when there is no version table."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(SCHEMA_VERSION.name):
            return None
        return _version(connection)


def _take_turn(connection: sa.Connection) -> None:
    """Hold the store's schema lock until this transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _version(connection: sa.Connection) -> int:
    query = sa.select(SCHEMA_VERSION.c.version).where(SCHEMA_VERSION.c.component == COMPONENT)
    return int(connection.execute(query).scalar() or 0)


def _stamp(connection: sa.Connection, version: int, before: int) -> None:
    values = {"version": version, "ts": time.time()}
    where = SCHEMA_VERSION.c.component == COMPONENT
    if connection.execute(SCHEMA_VERSION.update().where(where).values(**values)).rowcount == 0:
        connection.execute(SCHEMA_VERSION.insert().values(component=COMPONENT, **values))
    log.info("prediction log schema: version %d (was %d)", version, before)


def _ensure_table(connection: sa.Connection, table: sa.Table) -> None:
    """Create the table and its indexes where missing."""
    inspector = sa.inspect(connection)
    if not inspector.has_table(table.name):
        connection.execute(sa.schema.CreateTable(table, if_not_exists=True))
        inspector = sa.inspect(connection)
    indexed = {index["name"] for index in inspector.get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexed:
            connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))


def _ensure_columns(connection: sa.Connection, table: sa.Table, names: Sequence[str]) -> None:
    """Add the named columns of `table` that the stored table lacks (nullable, no default)."""
    present = {c["name"] for c in sa.inspect(connection).get_columns(table.name)}
    for name in names:
        if name not in present:
            kind = table.c[name].type.compile(dialect=connection.dialect)
            connection.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{name}" {kind}'))
