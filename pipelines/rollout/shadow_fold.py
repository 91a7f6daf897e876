"""The shadow phase's part of the incremental analysis (`incremental.IncrementalLog`): fold the rows stored
since the last look into the shadow's sums, and count coverage's settled requests."""

from __future__ import annotations

import math

import pandas as pd
import sqlalchemy as sa

from mlgate.gates.online.log_frames import forced_requests, routed
from mlgate.gates.online.shadow_stats import ShadowScope, ShadowStats, add_row_level, shadow_stats
from mlgate.pipelines.rollout.phase_sums import Arms, Sums
from mlgate.serving.log import incremental_reads as reads
from mlgate.serving.log.prediction_log import PREDICTIONS, decode_json_columns, read_predictions

SHADOW_COLUMNS = ("request_id", "row_index", "variant", "model_version", "shadow", "ts", "latency_ms", "status",
                  "error", "prediction", "score", "baseline_ms", "forced", "features", "outlier")


def fold_shadow(connection: sa.Connection, stored: Sums | None, key: dict, arms: Arms, scope: ShadowScope,
                since: float, now: float, settle_s: float) -> Sums:
    """The stored sums with the rows stored since their position added (or, with none stored, the sums of
    the phase's rows read by ts)."""
    if stored is None:
        mark = reads.start(connection, PREDICTIONS, now=now)
        rows = decode_json_columns(reads.read_rows_since(connection, PREDICTIONS, SHADOW_COLUMNS, since, mark,
                                                         arms.where))
        stats = shadow_sums(rows, scope)
        add_row_level(stats, routed(rows), scope)
        return Sums(key, mark, reads.Watermark(), stats)
    new = reads.unread_rows(connection, PREDICTIONS, SHADOW_COLUMNS, stored.predictions)
    mine = decode_json_columns(arms.mine(new[new["ts"] >= since]).copy())
    if len(mine):
        old = _earlier_rows(connection, mine, stored.predictions, arms, scope, since)
        stored.stats.merge(shadow_sums(pd.concat([old, mine], ignore_index=True), scope))
        stored.stats.merge(shadow_sums(old, scope), -1)
        add_row_level(stored.stats, routed(mine), scope)
    stored.predictions = stored.predictions.advance(new[reads.SEQ].to_numpy(), now, settle_s)
    return stored


def _earlier_rows(connection: sa.Connection, mine: pd.DataFrame, mark: reads.Watermark, arms: Arms,
                  scope: ShadowScope, since: float) -> pd.DataFrame:
    """The earlier rows of the new rows' requests; inputs only where a served row of the request is new
    (else the request's served inputs are unchanged and cancel out)."""
    columns = tuple(c for c in SHADOW_COLUMNS if c != "features")
    old = reads.read_rows_of(connection, PREDICTIONS, columns, mine["request_id"].unique(), since, mark, arms.where)
    old["features"] = None
    served_new = mine.loc[(mine["variant"] == scope.champion) & (mine["shadow"].astype(int) == 0), "request_id"]
    need = old[(old["variant"] == scope.champion) & (old["shadow"].astype(int) == 0)
               & old["request_id"].isin(set(served_new))]
    if len(need):
        inputs = reads.read_rows_by_seq(connection, PREDICTIONS, ("features",), need[reads.SEQ])
        old["features"] = old[reads.SEQ].map(dict(zip(inputs[reads.SEQ], inputs["features"], strict=True)))
    return decode_json_columns(old)


def settled(connection: sa.Connection, sums: Sums, arms: Arms, since: float) -> int:
    """Served requests logged no later than the newest attempted mirror: whole seconds from the sums, the
    newest mirror's own second counted in the store."""
    newest = sums.stats.newest_attempted
    if not math.isfinite(newest):
        return 0
    second = math.floor(newest)

    def served(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        c = table.c
        return [c.variant == arms.champion, c.model_version == arms.champion_version, c.shadow == 0,
                c.status == 200, sa.or_(c.forced.is_(None), c.forced == 0), c.ts >= since]

    partial = reads.count_requests(connection, PREDICTIONS, max(second, since), newest, sums.predictions, served)
    return sums.stats.settled_before(second) + partial


def shadow_in_full(log_url: str, arms: Arms, scope: ShadowScope, since: float) -> tuple[ShadowStats, int]:
    """The sums and settled requests from every row since `since` (a store without storage order)."""
    from mlgate.gates.online.shadow import settled_requests

    rows = arms.mine(read_predictions(log_url, since=since))
    stats = shadow_sums(rows, scope)
    add_row_level(stats, routed(rows), scope)
    return stats, settled_requests(routed(rows), scope, stats.newest_attempted)


def shadow_sums(rows: pd.DataFrame, scope: ShadowScope) -> ShadowStats:
    """The shadow sums of the routed rows; requests the caller forced are counted apart, left out."""
    stats = shadow_stats(routed(rows), scope)
    stats.forced = forced_requests(rows)
    return stats
