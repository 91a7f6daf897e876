"""Incremental rollout analysis: each look adds the rows stored since the previous look to running sums.

A phase's sums (`ShadowStats`, `CanaryStats`) and the log position they cover (a `Watermark` per table)
are one row of the log store's `analysis_state`, written after each look (`phase_sums.Sums`). A look reads:
- the rows stored since the watermark (an index range on storage order; still-open writes are read at
  the next look, `incremental_reads`), keeps this rollout's,
- the earlier rows of the requests those rows belong to (predictions and feedback, by request id) and,
  in a canary step, the earliest earlier row of each routing key they belong to (by routing key and ts),
and adds stats(earlier + new rows) - stats(earlier rows) for those requests and keys (`shadow_fold`,
`canary_fold`). The sums are sums over requests and keys, so the result is the full re-read's, at a cost
set by the new rows.

A phase starts with one read of its rows by ts (the phase just began: few rows); a new canary step recounts
its step parts from the step's rows the same way. A store without storage order (PostgreSQL migrated by an
older mlgate) is re-read in full at every look, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from mlgate.gates.online.canary_stats import CanaryScope, CanaryStats
from mlgate.gates.online.shadow_stats import ShadowScope, ShadowStats
from mlgate.pipelines.rollout.canary_fold import canary_in_full, fold_canary
from mlgate.pipelines.rollout.phase_sums import FORMAT, Arms, Sums, canary_key, shadow_key
from mlgate.pipelines.rollout.shadow_fold import fold_shadow, settled, shadow_in_full
from mlgate.serving.log import analysis_store
from mlgate.serving.log import incremental_reads as reads
from mlgate.serving.log.prediction_log import FEEDBACK, PREDICTIONS, open_engine

log = logging.getLogger(__name__)

SETTLE_S = 60.0  # how long a storage number skipped by an open transaction is awaited (then: rolled back)
__all__ = ["SETTLE_S", "Arms", "IncrementalLog", "Sums"]


@dataclass
class IncrementalLog:
    """Running sums of a rollout's phases over the prediction log at `log_url`."""

    log_url: str
    settle_s: float = SETTLE_S
    _engine: sa.Engine | None = field(default=None, init=False, repr=False)
    _memory: dict[tuple[str, str], tuple[int | None, str]] = field(default_factory=dict, init=False, repr=False)
    _writable: bool = field(default=True, init=False, repr=False)

    def shadow(self, rollout_id: str, arms: Arms, scope: ShadowScope, since: float,
               now: float | None = None) -> tuple[ShadowStats, int]:
        """The shadow phase's sums since `since`, and its settled served requests (coverage's denominator)."""
        now = time.time() if now is None else now
        key = shadow_key(arms, scope, since)
        with self.connect() as connection:
            if not reads.ordered(connection, PREDICTIONS):
                return shadow_in_full(self.log_url, arms, scope, since)
            stored, revision = self._load(connection, rollout_id, "shadow", key, ShadowStats.from_json)
            sums = fold_shadow(connection, stored, key, arms, scope, since, now, self.settle_s)
            served = settled(connection, sums, arms, since)
        self._save(rollout_id, "shadow", sums, revision)
        return sums.stats, served

    def canary(self, rollout_id: str, arms: Arms, scope: CanaryScope, since: float,
               now: float | None = None) -> CanaryStats:
        """The canary's sums since `since` (the canary's start), step parts since `scope.step_started`."""
        now = time.time() if now is None else now
        key = canary_key(arms, scope, since)
        with self.connect() as connection:
            if not (reads.ordered(connection, PREDICTIONS) and reads.ordered(connection, FEEDBACK)):
                return canary_in_full(self.log_url, arms, scope, since)
            stored, revision = self._load(connection, rollout_id, "canary", key, CanaryStats.from_json)
            sums = fold_canary(connection, stored, key, arms, scope, since, now, self.settle_s)
        self._save(rollout_id, "canary", sums, revision)
        return sums.stats

    def connect(self) -> AbstractContextManager[sa.Connection]:
        return self._open().connect()

    def _open(self) -> sa.Engine:
        if self._engine is None:
            self._engine = open_engine(self.log_url)
            try:
                analysis_store.ensure_table(self._engine)
            except sa.exc.SQLAlchemyError as exc:
                self._read_only(exc)
        return self._engine

    def _load(self, connection: sa.Connection, rollout_id: str, phase: str, key: dict[str, Any],
              stats_of: Callable[[Any], Any]) -> tuple[Sums | None, int | None]:
        found = self._memory.get((rollout_id, phase))
        if self._writable:
            try:
                found = analysis_store.load(connection, rollout_id, phase)
            except sa.exc.SQLAlchemyError as exc:
                self._read_only(exc)
        if found is None:
            return None, None
        revision, text = found
        body = orjson.loads(text)
        if body.get("format") != FORMAT or body.get("key") != orjson.loads(orjson.dumps(key)):
            return None, revision
        if reads.newest(connection, PREDICTIONS) < body["predictions"]["high"]:  # the log was emptied or replaced
            return None, revision
        return Sums(body["key"], reads.Watermark.from_json(body["predictions"]),
                    reads.Watermark.from_json(body["feedback"]), stats_of(body["stats"]),
                    body.get("step_started")), revision

    def _save(self, rollout_id: str, phase: str, sums: Sums, revision: int | None) -> None:
        body = sums.to_json()
        if self._writable:
            try:
                if not analysis_store.save(self._open(), rollout_id, phase, body, revision):
                    log.info("another controller stored the %s sums of rollout %s first; this look's are not kept",
                             phase, rollout_id)
                return
            except sa.exc.SQLAlchemyError as exc:
                self._read_only(exc)
        self._memory[(rollout_id, phase)] = (revision, body)

    def _read_only(self, exc: Exception) -> None:
        if self._writable:
            log.warning("cannot store the rollout analysis's sums in the prediction log (%s); keeping them in "
                        "this process only: a restarted controller counts the phase again", str(exc)[:200])
        self._writable = False
