"""The route table in the prediction log's store: the table in force, every version's body, and the
changes a server made by itself.

Replicas share one store. The table in force is one row (`route_table`) that only moves forward; each
version's body is kept in `route_table_history`, whose primary key is the version: the first server to
write a version owns it, so two replicas changing the table at the same moment cannot both win (the
loser's `publish_routes` is False and it adopts the winner's table). `route_events` records a change a
server made without being asked (the guard's rollback), in the same transaction as the table it wrote.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy as sa

from mlgate.serving.log.prediction_log import ROUTE_EVENTS, ROUTE_TABLES, ROUTES_SCOPE, json_text
from mlgate.serving.log.upsert import ARGUMENTS_VERSION, history_insert, routes_upsert

log = logging.getLogger(__name__)


class _Lost(Exception):
    """Another server wrote the version first: roll the transaction back."""


def publish_routes(engine: sa.Engine, body: dict[str, Any], version: int, event: dict[str, Any] | None = None) -> bool:
    """Make `body` the route table in force as `version`, with `event` (kind, variant, model_version, reason,
    details) in the same transaction. False, with nothing stored, when another server wrote this version
    or a newer table first."""
    now = time.time()
    row = {"scope": ROUTES_SCOPE, "version": version, "body": json.dumps(body, sort_keys=True), "ts": now}
    try:
        with engine.begin() as connection:
            dialect = connection.dialect.name
            if connection.execute(history_insert(dialect, version, row["body"], now)).first() is None:
                raise _Lost
            if version != ARGUMENTS_VERSION:
                connection.execute(routes_upsert(dialect, row))
            elif _in_force(connection) is None:  # version 1 only ever starts an empty store
                connection.execute(ROUTE_TABLES.insert().values(**row))
            if _in_force(connection) != (version, row["body"]):
                raise _Lost  # a newer table is in force (written without history, by an older mlgate)
            if event is not None:
                connection.execute(ROUTE_EVENTS.insert().values(
                    ts=now, route_version=version, kind=event["kind"], variant=event.get("variant"),
                    model_version=event.get("model_version"), reason=event["reason"],
                    details=json_text(event.get("details", {}))))
    except _Lost:
        return False
    return True


def save_routes(engine: sa.Engine, body: dict[str, Any], version: int) -> bool:
    """Store the table unless the store holds a newer version, which stays; version 1 replaces whatever is
    stored (the reset of mlgate before replicas; servers now use `publish_routes`). False when not stored."""
    row = {"scope": ROUTES_SCOPE, "version": version, "body": json.dumps(body, sort_keys=True), "ts": time.time()}
    with engine.begin() as connection:
        dialect = connection.dialect.name
        connection.execute(routes_upsert(dialect, row))
        stored = _in_force(connection) == (version, row["body"])
        if stored:
            connection.execute(history_insert(dialect, version, row["body"], row["ts"],
                                              replace=version == ARGUMENTS_VERSION))
    if not stored:
        log.warning("route table version %d not persisted: the store already holds a version at least as new "
                    "(another server's change)", version)
    return stored


def stored_version(engine: sa.Engine) -> int | None:
    """The version of the table in force (one row by primary key): what replicas poll."""
    query = sa.select(ROUTE_TABLES.c.version).where(ROUTE_TABLES.c.scope == ROUTES_SCOPE)
    with engine.connect() as connection:
        version = connection.execute(query).scalar()
    return None if version is None else int(version)


def load_routes(engine: sa.Engine) -> tuple[dict[str, Any], int] | None:
    """The table in force (body, version), or None."""
    with engine.connect() as connection:
        found = _in_force(connection)
    return None if found is None else (json.loads(found[1]), found[0])


def _in_force(connection: sa.Connection) -> tuple[int, str] | None:
    query = sa.select(ROUTE_TABLES.c.version, ROUTE_TABLES.c.body).where(ROUTE_TABLES.c.scope == ROUTES_SCOPE)
    row = connection.execute(query).first()
    return None if row is None else (int(row.version), row.body)
