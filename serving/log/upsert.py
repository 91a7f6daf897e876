"""Atomic upserts of the prediction log's keyed rows (bandit arms, the route table), per database.

SQLite and PostgreSQL both have `INSERT ... ON CONFLICT DO UPDATE`, and SQLAlchemy gives each its own
`insert`; nothing here deletes and re-inserts a row, so several server processes writing one store
neither lose an update nor fail on a duplicate key.

- A bandit arm's row adds this writer's increments to whatever the row holds, so the rewards that
  several servers record for one arm all count (`ArmLedger` turns each saved posterior into the
  increment since the one before).
- The route table's row only moves forward: a table is stored when its version is above the stored one,
  except by `save_routes` with version 1 (how mlgate before replicas reset the table), which replaces it.
- Each route-table version's body is kept in `route_table_history`; the first server to write a version
  owns it (`INSERT ... ON CONFLICT DO NOTHING`), which is how two replicas changing the table at the same
  moment find out that one of them lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mlgate.serving.log.prediction_log import BANDIT_ARMS, ROUTE_HISTORY, ROUTE_TABLES
from mlgate.serving.routing.bandit import Arm

ARGUMENTS_VERSION = 1  # the version of a route table the server built from its arguments
_INSERTS: Mapping[str, Callable[[sa.Table], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def check_dialect(name: str) -> None:
    """ValueError unless the store is one the writer's upserts support."""
    if name not in _INSERTS:
        raise ValueError(f"the prediction log supports SQLite and PostgreSQL, not {name!r}: use a "
                         "sqlite:///path or postgresql+psycopg://user:password@host:port/database URL")


@dataclass(frozen=True, slots=True)
class ArmChange:
    """An arm's latest posterior and what it added since the writer last stored it."""

    arm: Arm
    alpha: float
    beta: float
    pulls: int

    def then(self, later: ArmChange) -> ArmChange:
        """This change followed by a later one of the same arm (one row write for both)."""
        return ArmChange(later.arm, self.alpha + later.alpha, self.beta + later.beta, self.pulls + later.pulls)


class ArmLedger:
    """The last posterior of each arm this server stored or loaded, to turn saves into increments.

    An arm it has not seen started from the prior (the bandit starts every arm there unless restored)."""

    def __init__(self, prior_alpha: float, prior_beta: float) -> None:
        self._prior = (prior_alpha, prior_beta)
        self._last: dict[tuple[str, str], Arm] = {}
        self._lock = threading.Lock()

    def loaded(self, arms: Iterable[Arm]) -> None:
        """Arms read from the store (the bandit resumes them); an arm already saved here keeps its state."""
        with self._lock:
            for arm in arms:
                self._last.setdefault(arm.key, arm)

    def change(self, arm: Arm) -> ArmChange:
        with self._lock:
            before = self._last.get(arm.key) or Arm(arm.variant, arm.model_version, *self._prior)
            self._last[arm.key] = arm
        return ArmChange(arm, arm.alpha - before.alpha, arm.beta - before.beta, arm.pulls - before.pulls)


def arm_upsert(dialect: str, change: ArmChange, ts: float) -> sa.Executable:
    """Insert the arm's posterior, or add its increments to the stored row (one atomic statement)."""
    arm, c = change.arm, BANDIT_ARMS.c
    statement = _INSERTS[dialect](BANDIT_ARMS).values(
        variant=arm.variant, model_version=arm.model_version, alpha=arm.alpha, beta=arm.beta, pulls=arm.pulls, ts=ts)
    return statement.on_conflict_do_update(
        index_elements=[c.variant, c.model_version],
        set_={"alpha": c.alpha + change.alpha, "beta": c.beta + change.beta, "pulls": c.pulls + change.pulls,
              "ts": statement.excluded.ts})


def routes_upsert(dialect: str, row: Mapping[str, Any]) -> sa.Executable:
    """Store the route table row unless the store holds a newer version (see the module's docstring)."""
    statement = _INSERTS[dialect](ROUTE_TABLES).values(**row)
    newer = None if row["version"] == ARGUMENTS_VERSION else ROUTE_TABLES.c.version < statement.excluded.version
    return statement.on_conflict_do_update(
        index_elements=[ROUTE_TABLES.c.scope], where=newer,
        set_={"version": statement.excluded.version, "body": statement.excluded.body, "ts": statement.excluded.ts})


def history_insert(dialect: str, version: int, body: str, ts: float, *, replace: bool = False) -> sa.Executable:
    """Record a version's body: only if the version is new (the statement returns the version when this call
    wrote it, nothing otherwise; psycopg's rowcount is -1 here), or replacing it (`replace`, the version-1
    reset of `save_routes`)."""
    statement = _INSERTS[dialect](ROUTE_HISTORY).values(version=version, body=body, ts=ts)
    if replace:
        return statement.on_conflict_do_update(index_elements=[ROUTE_HISTORY.c.version],
                                               set_={"body": statement.excluded.body, "ts": statement.excluded.ts})
    return statement.on_conflict_do_nothing(index_elements=[ROUTE_HISTORY.c.version]).returning(ROUTE_HISTORY.c.version)
