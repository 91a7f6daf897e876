"""The canary's part of the incremental analysis (`incremental.IncrementalLog`): fold the predictions and
feedback stored since the last look into the canary's sums; a new step recounts its step parts."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from mlgate.gates.online.canary_stats import CanaryScope, CanaryStats, request_stats, unit_stats, units_of
from mlgate.gates.online.log_frames import forced_requests, routed
from mlgate.pipelines.rollout.phase_sums import Arms, Sums
from mlgate.serving.log import incremental_reads as reads
from mlgate.serving.log.prediction_log import (
    FEEDBACK,
    PREDICTIONS,
    decode_json_columns,
    read_feedback,
    read_predictions,
)

CANARY_COLUMNS = ("request_id", "row_index", "routing_key", "variant", "model_version", "shadow", "ts",
                  "latency_ms", "status", "prediction", "forced", "route_version", "outlier")
FEEDBACK_READ = ("request_id", "row_index", "label", "ts", "kind")


def fold_canary(connection: sa.Connection, stored: Sums | None, key: dict, arms: Arms, scope: CanaryScope,
                since: float, now: float, settle_s: float) -> Sums:
    """The stored sums with the predictions and feedback stored since their positions added (or, with none
    stored, the sums of the canary's rows read by ts)."""
    def served(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        return [*arms.where(table), table.c.shadow == 0]

    if stored is None:
        marks = reads.start(connection, PREDICTIONS, now=now), reads.start(connection, FEEDBACK, now=now)
        rows = decode_json_columns(reads.read_rows_since(connection, PREDICTIONS, CANARY_COLUMNS, since, marks[0],
                                                         served))
        feedback = reads.read_rows_since(connection, FEEDBACK, FEEDBACK_READ, since, marks[1])
        stats = canary_sums(rows, feedback, scope)
        stats.units = unit_stats(routed(rows), scope)
        return Sums(key, *marks, stats, scope.step_started)
    if stored.step_started != scope.step_started:
        _recount_step(connection, stored, scope, since, served)
    new = reads.unread_rows(connection, PREDICTIONS, CANARY_COLUMNS, stored.predictions)
    new_feedback = reads.unread_rows(connection, FEEDBACK, FEEDBACK_READ, stored.feedback)
    mine = decode_json_columns(arms.mine(new[(new["ts"] >= since) & (new["shadow"].astype(int) == 0)]).copy())
    feedback = new_feedback[new_feedback["ts"] >= since]
    touched = set(mine["request_id"]) | set(feedback["request_id"])
    if touched:
        old = decode_json_columns(reads.read_rows_of(connection, PREDICTIONS, CANARY_COLUMNS, touched, since,
                                                     stored.predictions, served))
        old_feedback = reads.read_rows_of(connection, FEEDBACK, FEEDBACK_READ, touched, since, stored.feedback)
        stored.stats.merge(canary_sums(pd.concat([old, mine], ignore_index=True),
                                       pd.concat([old_feedback, feedback], ignore_index=True), scope))
        stored.stats.merge(canary_sums(old, old_feedback, scope), -1)
        _add_units(connection, stored, mine, scope, max(since, scope.step_started), served)
    stored.predictions = stored.predictions.advance(new[reads.SEQ].to_numpy(), now, settle_s)
    stored.feedback = stored.feedback.advance(new_feedback[reads.SEQ].to_numpy(), now, settle_s)
    return stored


def _recount_step(connection: sa.Connection, stored: Sums, scope: CanaryScope, since: float,
                  served: reads.Where) -> None:
    """A new step (or a restarted one): its parts counted again from the rows read so far in it."""
    stats = stored.stats.without_step()
    rows = decode_json_columns(reads.read_rows_since(connection, PREDICTIONS, CANARY_COLUMNS,
                                                     max(since, scope.step_started), stored.predictions, served))
    feedback = reads.read_rows_of(connection, FEEDBACK, FEEDBACK_READ, rows["request_id"].unique(), since,
                                  stored.feedback)
    stats.merge(request_stats(routed(rows), feedback, scope, cumulative=False))
    stats.units = unit_stats(routed(rows), scope)
    stored.stats, stored.step_started = stats, scope.step_started


def _add_units(connection: sa.Connection, stored: Sums, mine: pd.DataFrame, scope: CanaryScope, step_since: float,
               served: reads.Where) -> None:
    """The step's units the new rows belong to: their earliest earlier row (with a route version, and per arm
    without one) against the new rows."""
    rows = routed(mine)
    rows = rows[rows["ts"] >= scope.step_started]
    if rows.empty:
        return

    def routed_rows(table: sa.FromClause, versioned: bool, variant: str | None = None) -> list:
        version = table.c.route_version.isnot(None) if versioned else table.c.route_version.is_(None)
        arm = [table.c.variant == variant] if variant is not None else []
        return [*served(table), version, sa.or_(table.c.forced.is_(None), table.c.forced == 0), *arm]

    earlier = [reads.first_rows_of_units(connection, PREDICTIONS, CANARY_COLUMNS, set(units_of(rows)), step_since,
                                         stored.predictions, lambda t: routed_rows(t, True))]
    unversioned = rows[pd.to_numeric(rows["route_version"], errors="coerce").isna().to_numpy()]
    for variant in unversioned["variant"].unique():
        units = set(units_of(unversioned[unversioned["variant"] == variant]))
        earlier.append(reads.first_rows_of_units(connection, PREDICTIONS, CANARY_COLUMNS, units, step_since,
                                                 stored.predictions, lambda t, v=str(variant): routed_rows(t, False, v)))
    old = pd.concat(earlier, ignore_index=True).drop_duplicates(reads.SEQ)
    add, remove = unit_stats(pd.concat([old, rows], ignore_index=True), scope), unit_stats(old, scope)
    stored.stats.merge(CanaryStats(units=add)).merge(CanaryStats(units=remove), -1)


def canary_in_full(log_url: str, arms: Arms, scope: CanaryScope, since: float) -> CanaryStats:
    """The sums from every row and label since `since` (a store without storage order)."""
    rows = arms.mine(read_predictions(log_url, since=since))
    stats = canary_sums(rows, read_feedback(log_url, since=since), scope)
    stats.units = unit_stats(routed(rows), scope)
    return stats


def canary_sums(rows: pd.DataFrame, feedback: pd.DataFrame, scope: CanaryScope) -> CanaryStats:
    """The canary sums of the routed rows; requests the caller forced are counted apart, left out."""
    stats = request_stats(routed(rows), feedback, scope)
    stats.forced = forced_requests(rows)
    return stats
