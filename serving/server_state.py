"""The live state of one server: loaded variants, the active route table, the log and the bandit.

`ServerState.routes` is an immutable `ActiveRoutes` (the table plus the loaded variants it names).
A request reads that reference once and uses only what it got; a table change builds a new
ActiveRoutes (loading any new model first) and replaces the reference in one assignment, so every
request sees the old table or the new one, never a mix. Models load in the background after
startup: /healthz answers at once and /readyz is 503 until every variant of the table is loaded.

The prediction log's store holds the table in force for every replica. A table changes in three ways,
all through `_swap` after the new models are loaded: `PUT /routes` (written to the store first, as the
next version), another replica's change read from the store (`RouteSync`, every
`routing.sync_interval_s`), and the guard's rollback (`ErrorGuard`: a variant failing past the hard
limit loses its traffic to the champion, with the reason stored as a route event).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from mlgate.serving.batching import MicroBatcher
from mlgate.serving.feedback import FeedbackJoin, RecentPredictions
from mlgate.serving.log.prediction_log import PredictionEntry
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.probing import ProbingWatch
from mlgate.serving.routing.active import (
    ActiveRoutes,
    RouteTableConflict,
    Runtime,
    close_runtime,
    stop_mirroring,
)
from mlgate.serving.routing.bandit import Arm, ThompsonBandit
from mlgate.serving.routing.guard import GUARD_EVENT, ErrorGuard, GuardTrip, rolled_back_table
from mlgate.serving.routing.router import Router, TableRouter
from mlgate.serving.routing.routes import RouteTable, RouteTableError, initial_table, parse_table, table_json
from mlgate.serving.routing.sync import RouteSync
from mlgate.serving.settings import ServingConfig
from mlgate.serving.shadow.mirror import ShadowRunner
from mlgate.serving.telemetry import ServerMetrics
from mlgate.serving.variants import Variant, variant_loader, with_positive_class

log = logging.getLogger(__name__)

VariantLoader = Callable[[str, str], Variant]  # (variant name, model URI) -> loaded Variant


class ServerState:
    """Everything the request handlers share; `routes` is the one reference a table change replaces."""

    def __init__(self, model_uris: Mapping[str, str], config: ServingConfig, metrics: ServerMetrics,
                 loader: VariantLoader | None = None, router: Router | None = None,
                 routes: RouteTable | None = None, admin_token: str | None = None,
                 feedback_token: str | None = None) -> None:
        self.config, self.metrics, self.admin_token = config, metrics, admin_token
        self.feedback_token = feedback_token
        self.rng = random.Random(config.routing.seed)
        self.log = (PredictionLog(config.prediction_log, metrics.routing.count_log, bandit=config.routing.bandit)
                    if config.prediction_log.enabled else None)
        self.bandit = ThompsonBandit(config.routing.bandit, self.rng, save=self._save_arm)
        self.router: Router = router or TableRouter(self.bandit, self.rng)
        self.recent = RecentPredictions()
        self.feedback = FeedbackJoin(metrics.routing, self.bandit, self.log, self.recent)
        self.routes = ActiveRoutes(initial_table(model_uris, routes))
        self.routes_source = "arguments"  # or "restored": which table the server started with
        self._loader = loader or variant_loader(config)  # the config's pickle consent and trust list
        self._loaded: dict[tuple[str, str], Runtime] = {}
        self._failed: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.guard = ErrorGuard(config.routing.guard)
        self.probing = ProbingWatch(config.probing) if config.probing.enabled else None
        if self.probing is not None:
            metrics.probing_source = self.probing.top
        self.guard_event: dict[str, Any] | None = None  # the last rollback this server's guard made
        self.sync = RouteSync(config.routing.sync_interval_s if self.log is not None else None,
                              self._stored_version, self._follow_store, lambda: self.routes.table.version)
        self._publish(self.routes.table)

    @property
    def ready(self) -> bool:
        return len(self.routes.runtimes) == len(self.routes.table.variants)

    def status(self) -> dict[str, Any]:
        """Per variant of the table: state (loading, ready, failed), version or error."""
        out: dict[str, Any] = {}
        for route in self.routes.table.variants:
            runtime = self.routes.runtimes.get(route.name)
            if runtime is not None:
                out[route.name] = {"state": "ready", **runtime.variant.describe()}
            elif route.name in self.routes.failures:
                out[route.name] = {"state": "failed", "uri": route.model_uri, "error": self.routes.failures[route.name]}
            else:
                out[route.name] = {"state": "loading", "uri": route.model_uri}
        return out

    async def open_log(self) -> None:
        """Open the prediction log (fails fast when the store is unusable), resume the bandit and take the
        route table (`_start_table`), before any model loads."""
        self._loop = asyncio.get_running_loop()
        if self.log is not None:
            await asyncio.to_thread(self.log.open)
            self.bandit.restore(await asyncio.to_thread(self.log.load_arms))
            await self._start_table()
        self.guard.watch(self.routes.table)

    async def _start_table(self) -> None:
        """The stored table (unless `routing.restore_routes` is off), else the arguments' table as the store's
        next version, so the other replicas follow it (the operator's reset). When another server wrote that
        version first (replicas starting together), its table."""
        assert self.log is not None
        saved = await asyncio.to_thread(self.log.load_routes)
        if self.config.routing.restore_routes and saved is not None and self._restore(saved):
            return
        arguments = self.routes.table
        table = RouteTable(arguments.mode, arguments.variants, (saved[1] if saved else 0) + 1)
        if await asyncio.to_thread(self.log.publish_routes, table_json(table), table.version):
            self._set_start_table(table, "arguments")
            return
        saved = await asyncio.to_thread(self.log.load_routes)
        if saved is None or not self._restore(saved):
            log.error("route table version %d was written by another server first and its table cannot be "
                      "served here; routing by the arguments until the store has a table this server can serve",
                      table.version)

    def _restore(self, saved: tuple[dict[str, Any], int]) -> bool:
        body, version = saved
        try:
            self._set_start_table(parse_table(body, version=version), "restored")
        except RouteTableError as exc:
            log.error("the persisted route table version %d cannot be served (%s)", version, exc)
            return False
        return True

    def _set_start_table(self, table: RouteTable, source: str) -> None:
        self.routes, self.routes_source = ActiveRoutes(table), source
        self._publish(table)
        origin = "the prediction log (persisted)" if source == "restored" else "the command line"
        log.info("route table version %d from %s: %s", table.version, origin, table_json(table))

    async def run_background(self) -> None:
        """Load the table's models, then follow the store's table (until cancelled)."""
        await self.load_all()
        await self.sync.run()

    async def load_all(self) -> None:
        """Load every variant of the table in a worker thread; a failure is recorded, never raised."""
        for route in self.routes.table.variants:
            key = (route.name, route.model_uri)
            try:
                variant = await asyncio.to_thread(self._loader, route.name, route.model_uri)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, the server stays up
                self._failed[key] = str(exc) or type(exc).__name__
                log.error("variant %s (%s) failed to load: %s", route.name, route.model_uri, exc)
            else:
                self._loaded[key] = self._runtime(variant)
                log.info("variant %s loaded: %s version %s", route.name, route.model_uri, variant.version)
            async with self._lock:
                self.routes = self._bind(self.routes.table)

    async def replace_table(self, table: RouteTable, expected_version: int | None = None) -> ActiveRoutes:
        """Load the table's new models, write it to the store as the next version, then swap it in;
        RouteTableError (table unchanged) on failure, RouteTableConflict when the version is not current."""
        if self.log is not None:
            await self.sync.check()  # versions are the store's: catch up with the other replicas first
        async with self._lock:
            current = self.routes.table
            if expected_version is not None and expected_version != current.version:
                raise RouteTableConflict(f"the table is at version {current.version}, not {expected_version}")
            await self._load_missing(table)
            new_table = RouteTable(table.mode, table.variants, current.version + 1)
            if self.log is not None:  # written before the swap: a restart never comes back to an older table
                try:
                    published = await asyncio.to_thread(self.log.publish_routes, table_json(new_table), new_table.version)
                except Exception as exc:  # noqa: BLE001 - any store failure refuses the change
                    raise RouteTableError(f"the route table could not be persisted ({exc}); unchanged") from None
                if not published:
                    raise RouteTableConflict(self._lost_version(new_table.version))
            self._swap(new_table)
            return self.routes

    def _lost_version(self, version: int) -> str:
        failure = self.sync.failure
        unusable = (f"; this server cannot serve the store's version {failure.version}: {failure.message}"
                    if failure is not None and failure.version is not None else "")
        return (f"another replica wrote route table version {version} (or a newer one) first; read GET /routes "
                f"and send the change again{unusable}")

    async def _follow_store(self, version: int) -> None:
        """Adopt the store's table when it is newer than this server's (another replica's change)."""
        assert self.log is not None
        async with self._lock:
            saved = await asyncio.to_thread(self.log.load_routes)  # the newest body (it may be above `version`)
            if saved is None or saved[1] <= self.routes.table.version:
                return
            body, stored = saved
            table = parse_table(body, version=stored)
            await self._load_missing(table)
            self._swap(table)
            log.info("route table version %d from the store (another replica's change): %s", stored, body)

    def _stored_version(self) -> int | None:
        return self.log.stored_route_version() if self.log is not None else None

    async def _load_missing(self, table: RouteTable) -> None:
        for route in table.variants:
            if (route.name, route.model_uri) not in self._loaded:
                await self._load_for_table(route.name, route.model_uri)

    def _swap(self, table: RouteTable) -> None:
        """Put `table` in force (its models are loaded): one assignment, then the bookkeeping."""
        current = self.routes
        self.routes = self._bind(table)  # the atomic swap
        self._publish(table)
        stop_mirroring(current, table)
        self._retire_unused()
        self.guard.watch(table)

    async def _load_for_table(self, name: str, uri: str) -> None:
        try:
            variant = await asyncio.to_thread(self._loader, name, uri)
        except Exception as exc:  # noqa: BLE001 - reported to the caller of PUT /routes
            raise RouteTableError(f"variant {name!r}: cannot load {uri}: {str(exc) or type(exc).__name__}") from None
        self._loaded[(name, uri)] = self._runtime(variant)
        log.info("variant %s loaded for a new route table: %s version %s", name, uri, variant.version)

    def _guard_tripped(self, trip: GuardTrip) -> None:
        """Start the rollback on the event loop (record() may run on another thread)."""
        if self._loop is None or self._loop.is_closed():
            return

        def start() -> None:
            task = asyncio.ensure_future(self._guard_rollback(trip))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._loop.call_soon_threadsafe(start)

    async def _guard_rollback(self, trip: GuardTrip) -> None:
        """Write the table that gives the failing variant's traffic to the champion, with the reason, and swap."""
        champion = self.config.routing.guard.champion
        async with self._lock:
            current = self.routes
            if current.table.version != trip.route_version:
                return  # the table changed meanwhile: the guard watches the new one
            table = rolled_back_table(current.table, trip.variant, champion, current.table.version + 1)
            event = {"kind": GUARD_EVENT, "variant": trip.variant, "model_version": current.versions.get(trip.variant),
                     "reason": trip.reason(champion), "details": trip.details()}
            published = True
            if self.log is not None:
                try:
                    published = await asyncio.to_thread(self.log.publish_routes, table_json(table), table.version, event)
                except Exception:  # noqa: BLE001 - the guard tries again on the next failing answer
                    log.exception("guard: the rollback of %s could not be written to the store", trip.variant)
                    self.guard.release()
                    return
            if published:
                self._swap(table)
                self.guard_event = {**event, "route_version": table.version, "time": time.time()}
        if not published:  # another replica changed the table first: adopt it now, then watch that one
            self.guard.release()
            await self.sync.check()
            return
        log.error("guard: %s; route table version %d", event["reason"], table.version)

    def _runtime(self, variant: Variant) -> Runtime:
        variant = with_positive_class(variant, self.config.prediction_log.positive_class)
        if not self.config.outliers.enabled:
            variant = dataclasses.replace(variant, outliers=None)
        micro, name = self.config.microbatch, variant.name
        batcher = MicroBatcher(
            variant.predict_rows, micro.max_batch_rows, micro.max_wait_ms, micro.enabled,
            observe=lambda requests, rows, seconds: self.metrics.observe_batch(name, requests, rows, seconds),
            model_threads=micro.model_threads,
        )
        batcher.start()
        self.metrics.mark_ready(name, variant.version)
        return Runtime(variant, batcher)

    def _bind(self, table: RouteTable) -> ActiveRoutes:
        runtimes, failures = {}, {}
        for route in table.variants:
            key = (route.name, route.model_uri)
            if key in self._loaded:
                runtimes[route.name] = runtime = self._loaded[key]
                if route.shadow and runtime.shadow is None:
                    runtime.shadow = ShadowRunner(runtime.variant, self.config, self.metrics, self.record,
                                                  self._record_shed)
            elif key in self._failed:
                failures[route.name] = self._failed[key]
        versions = {name: runtime.variant.version for name, runtime in runtimes.items()}
        return ActiveRoutes(table, MappingProxyType(runtimes), MappingProxyType(failures), MappingProxyType(versions))

    def _publish(self, table: RouteTable) -> None:
        self.metrics.routing.set_table(table.version, table.mode, [(v.name, v.weight, v.shadow) for v in table.variants])

    def _retire_unused(self) -> None:
        """Close runtimes the table no longer names, once requests that still hold them are done."""
        loop = asyncio.get_running_loop()
        grace_s = self.config.request_timeout_s + self.config.routing.shadow.timeout_s
        self._retiring = {h for h in self._retiring if h.when() > loop.time()}
        self._retiring.add(loop.call_later(grace_s, lambda: asyncio.ensure_future(self._close_unused())))

    async def _close_unused(self) -> None:
        async with self._lock:
            used = {(v.name, v.model_uri) for v in self.routes.table.variants}
            for key in [k for k in self._loaded if k not in used]:
                runtime = self._loaded.pop(key)
                await close_runtime(runtime, self.config.routing.shadow.timeout_s)
                self.metrics.ready.labels(runtime.variant.name, runtime.variant.version).set(0)
                log.info("variant %s (%s) closed: no longer in the route table", *key)

    def record(self, entry: PredictionEntry) -> None:
        """Log one variant's answer (thread-safe), keep it for joining feedback, and show it to the guard."""
        self.recent.add(entry)
        if self.log is not None:
            self.log.record(entry)
        if not entry.shadow and not entry.forced:
            trip = self.guard.observe(entry.variant, entry.status, entry.route_version)
            if trip is not None:
                self._guard_tripped(trip)

    def _record_shed(self, rows: list[dict[str, Any]]) -> None:
        if self.log is not None:
            self.log.record_shed(rows)

    def _save_arm(self, arm: Arm) -> None:
        if self.log is not None:
            self.log.save_arm(arm)

    async def close(self) -> None:
        """Stop shadows, batchers and the log writer (which writes everything still queued)."""
        for handle in self._retiring:
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runtime in self._loaded.values():
            await close_runtime(runtime, self.config.routing.shadow.timeout_s)
        if self.log is not None:
            await asyncio.to_thread(self.log.close)
