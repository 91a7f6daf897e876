"""Readers that continue where they stopped: the rows stored since a watermark, and the rows of given
requests or routing keys that an earlier look already read.

The watermark is the storage order (`SEQ_COLUMN`: SQLite's rowid, PostgreSQL's `seq` identity), never a
row's `ts`: `ts` is when the request arrived, and a shadow's rows are stored with their request's time up
to minutes later (queue, CPU budget), so any `ts` watermark would need an overlap that long. Storage
order is off only while a transaction is open: PostgreSQL hands out `seq` at insert and a concurrent
writer may commit a higher number first. A `Watermark` therefore keeps the numbers below its high mark
that it has not seen yet (`gaps`) and reads them again at every look until they appear (a late commit) or
are older than `settle_s` (a rolled-back write). SQLite has one writer at a time: no gaps.

Every query here is an index range or lookup (rowid/seq, ts, request_id, routing_key + ts), so its cost
follows the rows it returns, not the size of the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from mlgate.serving.log.prediction_log import SEQ_COLUMN

SEQ = "_seq"  # the storage-order column of the frames returned here
_CHUNK = 5000  # ids per lookup statement
Where = Callable[[sa.FromClause], Iterable[sa.ColumnElement[bool]]]  # conditions on a table (or alias of it)


@dataclass
class Watermark:
    """Rows of one table already read: every storage number up to `high`, except the `gaps`
    ([first, last, first seen at], numbers not visible when they were passed)."""

    high: int = 0
    gaps: list[list[float]] = field(default_factory=list)

    def unread(self, seq: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Rows not read yet: above the high mark or in a gap."""
        return sa.or_(seq > self.high, *(seq.between(int(a), int(b)) for a, b, _ in self.gaps))

    def read(self, seq: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Rows read already: up to the high mark, outside the gaps."""
        return sa.and_(seq <= self.high, *(sa.not_(seq.between(int(a), int(b))) for a, b, _ in self.gaps))

    def advance(self, seen: np.ndarray, now: float, settle_s: float) -> Watermark:
        """The watermark after reading the rows numbered `seen` (every unread row visible now): the high
        mark moves to the newest, numbers skipped on the way become gaps, gaps older than `settle_s` go."""
        seen = np.unique(np.asarray(seen, dtype=np.int64))
        gaps = [g for a, b, t in self.gaps for g in _split(int(a), int(b), t, seen)]
        high = max(self.high, int(seen[-1])) if seen.size else self.high
        above = seen[seen > self.high]
        gaps += _missing(np.concatenate([[self.high], above]), now)
        return Watermark(high, [g for g in gaps if now - g[2] <= settle_s])

    def to_json(self) -> dict[str, Any]:
        return {"high": self.high, "gaps": self.gaps}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Watermark:
        return cls(int(data["high"]), [list(g) for g in data["gaps"]])


def _split(first: int, last: int, seen_at: float, seen: np.ndarray) -> list[list[float]]:
    """The parts of gap [first, last] still unseen."""
    inside = seen[(seen >= first) & (seen <= last)]
    bounds = np.concatenate([[first - 1], inside, [last + 1]])
    return [[int(a) + 1, int(b) - 1, seen_at] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b - a > 1]


def _missing(ordered: np.ndarray, now: float) -> list[list[float]]:
    steps = np.diff(ordered)
    return [[int(ordered[i]) + 1, int(ordered[i + 1]) - 1, now] for i in np.flatnonzero(steps > 1)]


def seq_of(table: sa.FromClause, dialect: str, *, filter_only: bool = False) -> sa.ColumnElement[Any]:
    """The storage-order column of `table` (or an alias of it). `filter_only`: as a condition checked on rows
    an index on another column found (SQLite's unary + keeps it from choosing a rowid range instead, which
    for "read already" would be the whole table)."""
    plus = "+" if filter_only and dialect == "sqlite" else ""
    return sa.literal_column(f"{plus}{table.name}.{SEQ_COLUMN[dialect]}")


def ordered(connection: sa.Connection, table: sa.Table) -> bool:
    """Whether the store keeps `table` in storage order (SQLite always; PostgreSQL after migration 5)."""
    dialect = connection.dialect.name
    if dialect not in SEQ_COLUMN:
        return False
    return dialect == "sqlite" and bool(_present(connection, table)) or "seq" in _present(connection, table)


def start(connection: sa.Connection, table: sa.Table, *, now: float, window: int = 20_000) -> Watermark:
    """A watermark at the newest stored row, with the numbers among the last `window` that are not visible
    (transactions still open) as gaps."""
    high = newest(connection, table)
    if not high:
        return Watermark()
    seq = seq_of(table, connection.dialect.name)
    present = pd.read_sql(sa.select(seq.label(SEQ)).select_from(table).where(seq > high - window, seq <= high),
                          connection)[SEQ].to_numpy(dtype=np.int64)
    return Watermark(high, _missing(np.concatenate([[max(high - window, 0)], np.sort(present)]), now))


def newest(connection: sa.Connection, table: sa.Table) -> int:
    seq = seq_of(table, connection.dialect.name)
    return int(connection.execute(sa.select(sa.func.max(seq)).select_from(table)).scalar() or 0)


def unread_rows(connection: sa.Connection, table: sa.Table, columns: Sequence[str], mark: Watermark) -> pd.DataFrame:
    """Every row stored since `mark` (all of them: the caller filters), with its number in SEQ."""
    seq = seq_of(table, connection.dialect.name)
    query = sa.select(*_columns(connection, table, columns), seq.label(SEQ)).where(mark.unread(seq))
    return _frame(pd.read_sql(query.order_by(seq), connection), columns)


def read_rows_since(connection: sa.Connection, table: sa.Table, columns: Sequence[str], since: float,
                    mark: Watermark, where: Where = lambda t: ()) -> pd.DataFrame:
    """Rows with ts >= since that `mark` has read, meeting `where` (an index range on ts)."""
    seq, filtered = seq_of(table, connection.dialect.name), seq_of(table, connection.dialect.name, filter_only=True)
    query = sa.select(*_columns(connection, table, columns), seq.label(SEQ)).where(
        table.c.ts >= since, mark.read(filtered), *where(table))
    return _frame(pd.read_sql(query, connection), columns)


def read_rows_of(connection: sa.Connection, table: sa.Table, columns: Sequence[str], request_ids: Iterable[str],
                 since: float, mark: Watermark, where: Where = lambda t: ()) -> pd.DataFrame:
    """Rows of these requests with ts >= since that `mark` has read, meeting `where` (request_id lookups)."""
    seq, filtered = seq_of(table, connection.dialect.name), seq_of(table, connection.dialect.name, filter_only=True)
    frames = [pd.read_sql(sa.select(*_columns(connection, table, columns), seq.label(SEQ)).where(
        _member(table.c.request_id, chunk, connection.dialect.name), table.c.ts >= since, mark.read(filtered),
        *where(table)), connection) for chunk in _chunks(sorted(set(request_ids)))]
    return _frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), columns)


def read_rows_by_seq(connection: sa.Connection, table: sa.Table, columns: Sequence[str],
                     numbers: Iterable[int]) -> pd.DataFrame:
    seq = seq_of(table, connection.dialect.name)
    frames = [pd.read_sql(sa.select(*_columns(connection, table, columns), seq.label(SEQ)).where(
        _member(seq, chunk, connection.dialect.name)), connection) for chunk in _chunks(sorted({int(n) for n in numbers}))]
    return _frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), columns)


def first_rows_of_units(connection: sa.Connection, table: sa.Table, columns: Sequence[str], units: Iterable[str],
                        since: float, mark: Watermark, where: Where) -> pd.DataFrame:
    """For each unit (a routing key, or the request id of a row without one), its earliest row with
    ts >= since that `mark` has read and that meets `where`: one index probe per unit on (routing_key, ts)
    or request_id, however many rows the unit has."""
    dialect = connection.dialect.name
    rows = table.alias("first_of_unit")
    seq, filtered = seq_of(rows, dialect), seq_of(rows, dialect, filter_only=True)
    numbers: list[int] = []
    for chunk in _chunks(sorted(set(units))):
        source = _listed(chunk, dialect)

        def earliest(match: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
            return (sa.select(seq).where(match, rows.c.ts >= since, mark.read(filtered), *where(rows))
                    .order_by(rows.c.ts).limit(1).scalar_subquery())

        found = connection.execute(sa.select(
            source.c.value, earliest(rows.c.routing_key == source.c.value),
            earliest(sa.and_(rows.c.routing_key.is_(None), rows.c.request_id == source.c.value)))).all()
        numbers += [int(n) for _, *pair in found for n in pair if n is not None]
    return read_rows_by_seq(connection, table, columns, numbers)


def count_requests(connection: sa.Connection, table: sa.Table, low: float, high: float, mark: Watermark,
                   where: Where) -> int:
    """Distinct requests with a row meeting `where` with low <= ts <= high that `mark` has read."""
    seq = seq_of(table, connection.dialect.name, filter_only=True)
    query = sa.select(sa.func.count(sa.distinct(table.c.request_id))).where(
        table.c.ts >= low, table.c.ts <= high, mark.read(seq), *where(table))
    return int(connection.execute(query).scalar() or 0)


def _columns(connection: sa.Connection, table: sa.Table, names: Sequence[str]) -> list[sa.ColumnElement[Any]]:
    present = _present(connection, table)
    return [table.c[name] for name in names if name in present]


def _present(connection: sa.Connection, table: sa.Table) -> set[str]:
    """The stored table's columns (none when it does not exist), looked up once per pooled connection
    (migrations only add columns; a store migrated meanwhile is seen by the next process)."""
    known = connection.info.setdefault("mlgate.columns", {})
    if table.name not in known:
        inspector = sa.inspect(connection)
        known[table.name] = {c["name"] for c in inspector.get_columns(table.name)} \
            if inspector.has_table(table.name) else set()
    return known[table.name]


def _frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Every asked column (a store from an older mlgate reads a missing one as unknown), plus SEQ."""
    for name in (*columns, SEQ):
        if name not in frame.columns:
            frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[[*columns, SEQ]]


def _listed(values: list[Any], dialect: str) -> sa.TableValuedAlias:
    """The values as a one-column table (`value`), passed as one JSON parameter: a statement with thousands
    of bound values costs more to build than to run."""
    text = sa.bindparam("listed", orjson.dumps(values).decode(), type_=sa.Text)
    if dialect == "postgresql":
        return sa.func.jsonb_array_elements_text(sa.cast(text, JSONB)).table_valued("value")
    return sa.func.json_each(text).table_valued("value")


def _member(column: sa.ColumnElement[Any], values: list[Any], dialect: str) -> sa.ColumnElement[bool]:
    """column IN values, through the column's index."""
    if dialect == "postgresql":
        kind = ARRAY(sa.BigInteger) if values and isinstance(values[0], int) else ARRAY(sa.Text)
        return column == sa.func.any(sa.bindparam("members", values, type_=kind))
    listed = _listed(values, dialect)
    return column.in_(sa.select(listed.c.value))


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
