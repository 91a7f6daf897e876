"""Poll cost: the time of one rollout look against the prediction log's size, on SQLite and PostgreSQL.

A log is filled to each size (10^5, 10^6, 10^7 prediction rows by default) with a rollout's traffic since
its phase began: every request served by the champion (v1) or the challenger (v2) by a sticky 50/50 split
of 200,000 routing keys under route-table version 7 (the canary), every champion-served request mirrored
to the challenger as a shadow in calls of 20 (the shadow), 1% server errors, labels for 30% of the served
rows 5 s later, 1,000 requests per second of log time. At each size, `--looks` looks are timed, each after
`--new-rows` new prediction rows (and their labels) were stored: the look `mlgate rollout step` takes,
`LogAnalyser(state, now)` (shadow and canary), with the running sums in the store as a controller that had
kept up would have left them. The same looks, as every look was before (read every row since the phase
began, then analyse the frames), run beside at the sizes up to `--old-max`.

Bulk filling: SQLite `executemany` in one transaction per chunk, PostgreSQL `COPY`; a chunk's sums are
added to the stored sums as the controller's looks would have (checked at the first size against the
look's own count from the log). PostgreSQL is the test suite's throwaway server (`pgserver`'s binaries,
durability off), ANALYZEd after each fill as autovacuum would.

    python -m benchmarks.poll_cost [--sizes 100000,1000000,10000000] [--looks 5] [--new-rows 3000]
                                   [--old-max 1000000] [--stores sqlite,postgresql] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from benchmarks import machine_description, publish

TITLE = "Poll cost"
T0 = 1_700_000_000.0
RATE = 1000.0  # requests per second of log time
KEYS = 200_000
ROUTE_VERSION = 7
CHUNK = 100_000  # requests per bulk chunk
PREDICTION_COLUMNS = ("request_id", "row_index", "routing_key", "variant", "model_version", "shadow", "ts",
                      "latency_ms", "status", "error", "features", "prediction", "score", "baseline_ms", "forced",
                      "route_version")
FEEDBACK_COLUMNS = ("request_id", "row_index", "label", "reward", "ts", "kind")
NUMERIC, CATEGORICAL = ["amount", "visits"], ["plan", "region"]


@dataclass
class Traffic:
    """Seeded requests in time order: served rows, shadow rows and labels (rows as tuples in column order)."""

    seed: int = 7
    requests: int = 0
    calls: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def chunk(self, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The next `n` requests: (prediction rows, feedback rows), text columns as stored."""
        rng, first = self.rng, self.requests
        index = np.arange(first, first + n)
        self.requests += n
        ts = T0 + index / RATE + rng.uniform(0, 0.5 / RATE, n)
        keys = rng.integers(0, KEYS, n)
        champion = keys % 2 == 0
        failed = rng.random(n) < 0.01
        label = np.where(rng.random(n) < 0.3, "yes", "no")
        features = [f'{{"amount":{a:.2f},"visits":{v},"plan":"{p}","region":"{r}"}}' for a, v, p, r in zip(
            rng.gamma(2.0, 30.0, n), rng.poisson(3, n), rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
            rng.choice(["north", "south", "east", "west"], n), strict=True)]
        served = pd.DataFrame({
            "request_id": np.char.add("q", index.astype(str)).astype(object), "row_index": 0,
            "routing_key": np.char.add("c", keys.astype(str)).astype(object),
            "variant": np.where(champion, "champion", "challenger").astype(object),
            "model_version": np.where(champion, "1", "2").astype(object), "shadow": 0, "ts": ts,
            "latency_ms": rng.lognormal(2.5, 0.4, n), "status": np.where(failed, 500, 200),
            "error": np.where(failed, "boom: RuntimeError", None), "features": features,
            "prediction": np.where(failed, None, np.char.add(np.char.add('"', label), '"')),
            "score": np.where(failed, np.nan, rng.random(n)), "baseline_ms": np.nan, "forced": 0,
            "route_version": ROUTE_VERSION})
        mirrored = served[champion].copy()
        calls, call = np.unique((self.calls + np.arange(len(mirrored))) // 20, return_inverse=True)
        self.calls += len(mirrored)
        times = rng.lognormal(2.5, 0.3, (2, calls.size))[:, call]  # one pair of timings per shadow call
        agree = rng.random(len(mirrored)) < 0.95
        flipped = np.where(mirrored["prediction"] == '"yes"', '"no"', '"yes"')
        mirrored = mirrored.assign(variant="challenger", model_version="2", shadow=1, latency_ms=times[0] * 1.1,
                                   baseline_ms=times[1], status=200, error=None,
                                   prediction=np.where(agree, mirrored["prediction"], flipped),
                                   score=np.clip(mirrored["score"] + rng.normal(0, 0.05, len(mirrored)), 0, 1))
        labelled = served[(~failed) & (rng.random(n) < 0.3)]
        truth = np.where(rng.random(len(labelled)) < 0.85, labelled["prediction"].str.strip('"'),
                         np.where(labelled["prediction"] == '"yes"', "no", "yes"))
        feedback = pd.DataFrame({"request_id": labelled["request_id"], "row_index": 0, "label": truth,
                                 "reward": None, "ts": labelled["ts"] + 5.0, "kind": "label"})
        predictions = pd.concat([served, mirrored]).sort_values("ts", kind="stable", ignore_index=True)
        return predictions[list(PREDICTION_COLUMNS)], feedback[list(FEEDBACK_COLUMNS)]

    def reference(self, n: int = 5000) -> pd.DataFrame:
        """Training inputs drawn like the live ones (the shadow's input-drift reference)."""
        rng = np.random.default_rng(self.seed + 1)
        return pd.DataFrame({"amount": rng.gamma(2.0, 30.0, n), "visits": rng.poisson(3, n),
                             "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
                             "region": rng.choice(["north", "south", "east", "west"], n)})


# ---- the stores ----


class Store(ABC):
    url: str

    @abstractmethod
    def insert(self, predictions: pd.DataFrame, feedback: pd.DataFrame) -> None:
        """Bulk-store these rows (each store's fastest way)."""

    @abstractmethod
    def analyze(self) -> None:
        """Planner statistics after a bulk fill (what autovacuum or a DBA would have run)."""


def _tuples(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    columns = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame.columns]
    return list(zip(*columns, strict=True))


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path, self.url = path, f"sqlite:///{path}"

    def analyze(self) -> None:
        """Nothing: the looks' queries use their indexes on SQLite without planner statistics."""

    def insert(self, predictions: pd.DataFrame, feedback: pd.DataFrame) -> None:
        with sqlite3.connect(self.path, timeout=60) as connection:
            for table, frame in (("predictions", predictions), ("feedback", feedback)):
                marks = ",".join("?" * len(frame.columns))
                connection.executemany(f"INSERT INTO {table} ({','.join(frame.columns)}) VALUES ({marks})",
                                       _tuples(frame))

    def size_mb(self) -> float:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*")) / 2**20


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self.conninfo = url.replace("postgresql+psycopg://", "postgresql://")

    def insert(self, predictions: pd.DataFrame, feedback: pd.DataFrame) -> None:
        import psycopg

        with psycopg.connect(self.conninfo) as connection, connection.cursor() as cursor:
            for table, frame in (("predictions", predictions), ("feedback", feedback)):
                with cursor.copy(f"COPY {table} ({','.join(frame.columns)}) FROM STDIN") as copy:
                    for row in _tuples(frame):
                        copy.write_row(row)

    def analyze(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute("ANALYZE predictions")
            connection.execute("ANALYZE feedback")

    def size_mb(self) -> float:
        import psycopg

        with psycopg.connect(self.conninfo) as connection:
            return float(connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]) / 2**20


@contextmanager
def stores(names: list[str], scratch: Path) -> Iterator[dict[str, Store]]:
    from mlgate.serving.log.migrations import migrate
    from mlgate.serving.log.prediction_log import open_engine

    made: dict[str, Store] = {}
    server = None
    try:
        if "sqlite" in names:
            made["SQLite"] = SqliteStore(scratch / "predictions.db")
        if "postgresql" in names:
            from tests.serving.postgres_server import PostgresServer

            server = PostgresServer().start()
            made["PostgreSQL 16"] = PostgresStore(server.create_database("pollcost"))
        for store in made.values():
            engine = open_engine(store.url)
            migrate(engine)
            engine.dispose()
            _route_history(store.url)
        yield made
    finally:
        if server is not None:
            server.stop()


def _route_history(url: str) -> None:
    from mlgate.serving.log.prediction_log import ROUTE_HISTORY, open_engine

    body = {"mode": "weighted", "version": ROUTE_VERSION, "variants": [
        {"name": "champion", "weight": 50, "shadow": False}, {"name": "challenger", "weight": 50, "shadow": False}]}
    engine = open_engine(url)
    with engine.begin() as connection:
        connection.execute(ROUTE_HISTORY.insert().values(version=ROUTE_VERSION, body=orjson.dumps(body).decode(), ts=T0))
    engine.dispose()


# ---- the looks ----


@dataclass
class Rollout:
    """The analyser and the two rollout states a controller would look with (shadow, then canary)."""

    url: str
    reference: pd.DataFrame
    analyser: Any = None
    states: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from mlgate.gates.config import CanaryConfig, DriftConfig, ShadowConfig
        from mlgate.pipelines.rollout.analysis import LogAnalyser
        from mlgate.pipelines.rollout.state import Position, RolloutState

        self.analyser = LogAnalyser(self.url, ShadowConfig(), CanaryConfig(steps=[50, 100]), "binary",
                                    positive_class="yes", numeric=NUMERIC, categorical=CATEGORICAL,
                                    drift=DriftConfig(), reference=lambda: self.reference)
        common = dict(model="bench", version="2", champion_version="1", steps=(50, 100), started=T0,
                      phase_started=T0)
        self.states = {"shadow": RolloutState("bench-shadow", position=Position("shadow", shadow=True), **common),
                       "canary": RolloutState("bench-canary", position=Position("canary", 0, 50),
                                              canary_started=T0, **common)}

    def look(self, phase: str, now: float) -> Any:
        return self.analyser(self.states[phase], now)

    def full_read(self, phase: str) -> Any:
        """The look as it was before: every row since the phase began read into frames, then analysed."""
        from mlgate.gates.online import CanaryStep, canary_analysis, shadow_analysis
        from mlgate.gates.online.canary_data import weights_by_version
        from mlgate.gates.online.log_frames import routed
        from mlgate.serving.log.prediction_log import (
            read_feedback,
            read_predictions,
            read_route_history,
            read_shed,
        )

        a = self.analyser
        preds = read_predictions(self.url, since=T0)
        keep = preds["variant"].map({"champion": "1", "challenger": "2"}) == preds["model_version"].astype(str)
        preds = routed(preds[keep.to_numpy(dtype=bool)])
        if phase == "shadow":
            read_shed(self.url, since=T0)
            return shadow_analysis(preds, a.shadow, self.reference, task="binary", numeric=NUMERIC,
                                   categorical=CATEGORICAL, drift=a.drift)
        weights = weights_by_version(read_route_history(self.url))
        return canary_analysis(preds, read_feedback(self.url, since=T0), a.canary, CanaryStep.of(a.canary, 0),
                               step_started=T0, task="binary", positive_class="yes", route_weights=weights)


class Seeder:
    """Adds a bulk chunk's sums to the stored ones, as the looks a controller took meanwhile would have."""

    def __init__(self, latency_limit: float, latency_slack_ms: float) -> None:
        from mlgate.gates.online.canary_stats import CanaryScope
        from mlgate.gates.online.shadow_stats import ShadowScope

        self.shadow_scope = ShadowScope("binary", tuple(NUMERIC), tuple(CATEGORICAL), latency_limit,
                                        latency_slack_ms=latency_slack_ms)  # as the analyser builds it
        self.canary_scope = CanaryScope(("accuracy",), T0, "yes")
        self.seen_units: set[str] = set()

    def units(self, predictions: pd.DataFrame) -> dict[str, int]:
        """The chunk's new units (routing keys first seen), by route version and arm."""
        served = predictions[predictions["shadow"] == 0]
        fresh = served[~served["routing_key"].isin(self.seen_units)].drop_duplicates("routing_key")
        self.seen_units.update(fresh["routing_key"])
        arm = (fresh["variant"] == "challenger").astype(int)
        return {f"{ROUTE_VERSION}:{a}": int(n) for a, n in arm.value_counts().items()}

    def deltas(self, predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[Any, Any, pd.DataFrame]:
        """A bulk chunk's sums: (shadow, canary, its decoded rows for the row-level parts)."""
        from mlgate.gates.online.canary_stats import CanaryStats, request_stats
        from mlgate.gates.online.shadow_stats import shadow_stats
        from mlgate.serving.log.prediction_log import decode_json_columns

        frame = decode_json_columns(predictions.copy())
        canary = request_stats(frame, feedback, self.canary_scope)
        canary.merge(CanaryStats(units=self.units(predictions)))
        return shadow_stats(frame, self.shadow_scope), canary, frame

    def add(self, rollout: Rollout, deltas: tuple[Any, Any, pd.DataFrame]) -> None:
        shadow, canary, frame = deltas
        self._merge(rollout, "shadow", shadow, frame)
        self._merge(rollout, "canary", canary, None)

    def _merge(self, rollout: Rollout, phase: str, delta: Any, rows: pd.DataFrame | None) -> None:
        from mlgate.gates.online.canary_stats import CanaryStats
        from mlgate.gates.online.shadow_stats import ShadowStats, add_row_level
        from mlgate.pipelines.rollout.phase_sums import Sums
        from mlgate.serving.log import analysis_store
        from mlgate.serving.log import incremental_reads as reads
        from mlgate.serving.log.prediction_log import FEEDBACK, PREDICTIONS, open_engine

        engine = open_engine(rollout.url)
        rollout_id = rollout.states[phase].rollout_id
        with engine.connect() as connection:
            revision, text = analysis_store.load(connection, rollout_id, phase)
            body = orjson.loads(text)
            stats = (ShadowStats if phase == "shadow" else CanaryStats).from_json(body["stats"])
            stats.merge(delta)
            if rows is not None:
                add_row_level(stats, rows, self.shadow_scope)
            marks = [reads.Watermark(reads.newest(connection, table)) for table in (PREDICTIONS, FEEDBACK)]
        sums = Sums(body["key"], *marks, stats, body.get("step_started"))
        assert analysis_store.save(engine, rollout_id, phase, sums.to_json(), revision)
        engine.dispose()


# ---- the run ----


@dataclass
class Figures:
    store: str
    rows: int
    looks: dict[str, list[float]]
    full: dict[str, list[float]]
    megabytes: float
    fill_s: float


def run(made: dict[str, Store], args: argparse.Namespace, say: Callable[[str], None]) -> list[Figures]:
    """Fill every store to each size in step (each chunk generated and summed once), then time the looks."""
    traffic = Traffic()
    rollouts = {name: Rollout(store.url, traffic.reference()) for name, store in made.items()}
    shadow = next(iter(rollouts.values())).analyser.shadow
    seeder = Seeder(shadow.max_latency_ratio, shadow.latency_slack_ms)
    figures: list[Figures] = []
    rows, clock = 0, T0
    pool = ThreadPoolExecutor(max_workers=len(made))  # the stores fill side by side (SQLite and psycopg wait
    # without the GIL), while the chunk's sums are counted
    for size in args.sizes:
        fill = dict.fromkeys(made, 0.0)
        first = rows == 0
        while rows < size:
            predictions, feedback = traffic.chunk(min(CHUNK, max(int((size - rows) / 1.5), 1)))
            rows += len(predictions)
            stored = {name: pool.submit(_timed, store.insert, predictions, feedback) for name, store in made.items()}
            deltas = None if first else seeder.deltas(predictions, feedback)  # meanwhile, on the other core
            if first:
                seeder.units(predictions)
            for name in made:
                fill[name] += stored[name].result()
                if deltas is not None:
                    fill[name] += _timed(seeder.add, rollouts[name], deltas)
        for name, store in made.items():
            store.analyze()
            if first:  # the first looks count everything in the log: the sums the seeder adds to
                for phase in ("shadow", "canary"):
                    rollouts[name].look(phase, clock)
                _check_seeding(rollouts[name], seeder, say)
            say(f"{name}: {rows:,} rows ({fill[name]:.0f} s storing)")
        looks = {name: {"shadow": [], "canary": []} for name in made}
        full = {name: {"shadow": [], "canary": []} for name in made}
        for look in range(args.looks):
            predictions, feedback = traffic.chunk(max(int(args.new_rows / 1.5), 1))
            seeder.units(predictions)
            rows += len(predictions)
            clock = T0 + traffic.requests / RATE
            for name, store in made.items():
                store.insert(predictions, feedback)
                for phase in ("shadow", "canary"):
                    looks[name][phase].append(_timed(rollouts[name].look, phase, clock))
                    if size <= args.old_max and look < args.full_looks:
                        full[name][phase].append(_timed(rollouts[name].full_read, phase))
        for name, store in made.items():
            mine = Figures(name, rows, looks[name], full[name], store.size_mb(), fill[name])
            figures.append(mine)
            say(f"{name} at {rows:,} rows: look shadow {statistics.median(mine.looks['shadow']):.3f} s, canary "
                f"{statistics.median(mine.looks['canary']):.3f} s" + (
                    f"; full re-read shadow {statistics.median(mine.full['shadow']):.2f} s, canary "
                    f"{statistics.median(mine.full['canary']):.2f} s" if mine.full["shadow"] else ""))
    pool.shutdown()
    return sorted(figures, key=lambda f: (list(made).index(f.store), f.rows))


def _timed(call: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def _check_seeding(rollout: Rollout, seeder: Seeder, say: Callable[[str], None]) -> None:
    """The first looks' sums (counted from the log) equal a full count of it, before the seeder adds to them."""
    from mlgate.gates.online.canary_stats import CanaryScope, request_stats, unit_stats
    from mlgate.gates.online.shadow_stats import add_row_level, shadow_stats
    from mlgate.pipelines.rollout.phase_sums import Arms
    from mlgate.serving.log.prediction_log import read_feedback, read_predictions

    log = rollout.analyser.log
    shadow, _ = log.shadow("bench-shadow", Arms("1", "2"), seeder.shadow_scope, T0, T0)
    canary = log.canary("bench-canary", Arms("1", "2"), CanaryScope(("accuracy",), T0, "yes"), T0, T0)
    rows = read_predictions(rollout.url)
    expected = shadow_stats(rows, seeder.shadow_scope)
    add_row_level(expected, rows, seeder.shadow_scope)
    expected_canary = request_stats(rows, read_feedback(rollout.url), seeder.canary_scope)
    expected_canary.units = unit_stats(rows, seeder.canary_scope)
    same = (shadow.served, shadow.attempted, shadow.pairs, shadow.calls.calls) == \
        (expected.served, expected.attempted, expected.pairs, expected.calls.calls) and \
        canary.to_json()["units"] == expected_canary.to_json()["units"] and \
        [a.labels for a in canary.arms] == [a.labels for a in expected_canary.arms]
    if not same:
        raise SystemExit("the first looks' sums differ from the generator's: the seeded sums would be wrong")
    say("checked: the looks' sums equal a full count of the log")


def report(figures: list[Figures], args: argparse.Namespace, load: tuple[float, float], total_s: float) -> str:
    lines = [f"Command: `python -m benchmarks.poll_cost{_flags(args)}`", "",
             f"Machine: {machine_description()}; 1-minute load average {load[0]:.1f} before and {load[1]:.1f} after "
             "(2 cores shared with other work)", "",
             "Workload: a rollout's log since its phase began, filled to each size (prediction rows; labels for 30% "
             "of the served rows come on top): requests served by champion v1 or challenger v2 by a sticky 50/50 "
             "split of 200,000 routing keys (route-table version 7), every champion-served request also mirrored "
             "to the challenger as a shadow (calls of 20), 1% server errors, 1,000 requests per second of log "
             f"time. A look = `LogAnalyser(state, now)` of the shadow phase and of the canary's step (sums, route "
             f"history, shed counts, every check judged), each after {args.new_rows:,} new rows and their labels "
             f"were stored; median of {args.looks} looks. The full re-read: `read_predictions` / `read_feedback` "
             "of every row since the phase began, then `shadow_analysis` / `canary_analysis` on the frames (what "
             f"each look did before), median of {args.full_looks}, at the sizes up to {args.old_max:,} rows.", "",
             "| store | rows | look: shadow (s) | look: canary (s) | full re-read: shadow (s) | full re-read: canary (s) "
             "| store size | time to store the rows |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in figures:
        full = [f"{statistics.median(f.full[p]):.2f}" if f.full[p] else "not run" for p in ("shadow", "canary")]
        lines.append(f"| {f.store} | {f.rows:,} | {statistics.median(f.looks['shadow']):.3f} | "
                     f"{statistics.median(f.looks['canary']):.3f} | {full[0]} | {full[1]} | {f.megabytes:,.0f} MB | "
                     f"{f.fill_s:.0f} s |")
    lines += ["", "Ratio of the largest to the smallest size (median look):", ""]
    for store in dict.fromkeys(f.store for f in figures):
        mine = [f for f in figures if f.store == store]
        small, large = mine[0], mine[-1]
        ratios = ", ".join(f"{p} {statistics.median(large.looks[p]) / statistics.median(small.looks[p]):.2f}x"
                           for p in ("shadow", "canary"))
        worst = max(max(large.looks[p]) for p in ("shadow", "canary"))
        lines.append(f"- {store}: {large.rows:,} / {small.rows:,} rows: {ratios}; slowest single look at "
                     f"{large.rows:,} rows {worst:.3f} s")
    largest = max(f.rows for f in figures)
    met = all(statistics.median(f.looks[p]) < 1.0 for f in figures if f.rows == largest for p in ("shadow", "canary"))
    lines += ["", f"Target (flat, one look under 1 s at {largest:,} rows): "
              f"{'met' if met else 'NOT met'}. Whole benchmark {total_s / 60:.1f} min.", "", NOTES]
    return "\n".join(lines)


NOTES = """Not in a look's time: the first look of a phase (or of a canary step) reads the rows stored since the phase
(step) began by `ts`, once; on a PostgreSQL log that servers of an older mlgate wrote, migration 5 adds `seq` to
`predictions` and `feedback`, which rewrites both tables once (the servers wait for it at start). The full re-read
is not run beyond `--old-max`: it reads every row of the phase into memory at each look, so its time grows with the
rows (the table above). Design and resolution: docs/ROUTING.md, "Incremental analysis"."""


def _flags(args: argparse.Namespace) -> str:
    defaults = parse([])
    flags = []
    for name in ("sizes", "looks", "new_rows", "old_max", "full_looks", "stores"):
        value = getattr(args, name)
        if value != getattr(defaults, name):
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            flags.append(f"--{name.replace('_', '-')} {shown}")
    return (" " + " ".join(flags)) if flags else ""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poll_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")], default=[100_000, 1_000_000,
                                                                                          10_000_000])
    parser.add_argument("--looks", type=int, default=5)
    parser.add_argument("--new-rows", type=int, default=3000)
    parser.add_argument("--old-max", type=int, default=1_000_000, help="largest size for the full re-read")
    parser.add_argument("--full-looks", type=int, default=2, help="full re-reads timed per size")
    parser.add_argument("--stores", type=lambda t: t.split(","), default=["sqlite", "postgresql"])
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlgate-poll-cost-") as scratch, stores(args.stores, Path(scratch)) as made:
        figures = run(made, args, lambda text: print(text, flush=True))
    publish(TITLE, report(figures, args, (load, os.getloadavg()[0]), time.perf_counter() - started),
            write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
