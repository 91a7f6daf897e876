"""The live state of one server: loaded variants, the active route table, the log and the bandit.

`ServerState.routes` is an immutable `ActiveRoutes` (the table plus the loaded variants it names).
A request reads that reference once and uses only what it got; a table change builds a new
ActiveRoutes (loading any new model first) and replaces the reference in one assignment, so every
request sees the old table or the new one, never a mix. Models load in the background after
startup: /healthz answers at once and /readyz is 503 until every variant of the table is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mlgate.serving.batching import MicroBatcher
from mlgate.serving.feedback import FeedbackJoin, RecentPredictions
from mlgate.serving.log.prediction_log import PredictionEntry
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.request_errors import RequestError
from mlgate.serving.routing.bandit import Arm, ThompsonBandit
from mlgate.serving.routing.router import Router, TableRouter
from mlgate.serving.routing.routes import RouteTable, RouteTableError, initial_table, parse_table, table_json
from mlgate.serving.settings import ServingConfig
from mlgate.serving.shadow.mirror import ShadowRunner
from mlgate.serving.telemetry import ServerMetrics
from mlgate.serving.variants import Variant, variant_loader, with_positive_class

log = logging.getLogger(__name__)

VariantLoader = Callable[[str, str], Variant]  # (variant name, model URI) -> loaded Variant


@dataclass
class Runtime:
    """A loaded variant with its micro-batcher and, once it has been a shadow, its shadow runner."""

    variant: Variant
    batcher: MicroBatcher
    shadow: ShadowRunner | None = None


@dataclass(frozen=True)
class ActiveRoutes:
    """One route table and the runtimes of its loaded variants; never changed once built."""

    table: RouteTable
    runtimes: Mapping[str, Runtime] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)  # model version of each loaded variant

    def runtime(self, name: str) -> Runtime:
        """The runtime of a variant of this table, or a 503 RequestError when it is not loaded."""
        found = self.runtimes.get(name)
        if found is not None:
            return found
        if name in self.failures:
            raise RequestError(503, "variant_failed", f"variant {name!r} failed to load: {self.failures[name]}")
        raise RequestError(503, "not_ready", f"variant {name!r} is still loading; retry when /readyz is 200")

    def shadow_runners(self, answered: str) -> list[ShadowRunner]:
        """The runners of the table's shadow variants, except the one that answered."""
        return [r.shadow for v in self.table.shadows if v.name != answered and (r := self.runtimes.get(v.name))
                and r.shadow is not None]

    def describe(self) -> dict[str, Any]:
        return table_json(self.table, self.versions)


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
        """Open the prediction log (fails fast when the store is unusable), resume the bandit and restore
        the persisted route table (unless `routing.restore_routes` is off), before any model loads."""
        if self.log is None:
            return
        await asyncio.to_thread(self.log.open)
        self.bandit.restore(await asyncio.to_thread(self.log.load_arms))
        saved = await asyncio.to_thread(self.log.load_routes) if self.config.routing.restore_routes else None
        if saved is not None:
            body, version = saved
            try:
                self.routes = ActiveRoutes(parse_table(body, version=version))
            except RouteTableError as exc:
                log.error("the persisted route table cannot be served (%s); starting from the arguments", exc)
            else:
                self.routes_source = "restored"
                self._publish(self.routes.table)
        log.info("route table version %d from %s: %s", self.routes.table.version,
                 "the prediction log (persisted)" if self.routes_source == "restored" else "the command line",
                 table_json(self.routes.table))
        if self.routes_source == "arguments":
            await asyncio.to_thread(self.log.save_routes, table_json(self.routes.table), self.routes.table.version)

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
        """Load the table's new models, then swap it in; RouteTableError (table unchanged) on failure."""
        async with self._lock:
            current = self.routes
            if expected_version is not None and expected_version != current.table.version:
                raise RouteTableConflict(f"the table is at version {current.table.version}, not {expected_version}")
            for route in table.variants:
                if (route.name, route.model_uri) not in self._loaded:
                    await self._load_for_table(route.name, route.model_uri)
            new_table = RouteTable(table.mode, table.variants, current.table.version + 1)
            if self.log is not None:  # written before the swap: a restart never comes back to an older table
                try:
                    await asyncio.to_thread(self.log.save_routes, table_json(new_table), new_table.version)
                except Exception as exc:  # noqa: BLE001 - any store failure refuses the change
                    raise RouteTableError(f"the route table could not be persisted ({exc}); unchanged") from None
            self.routes = self._bind(new_table)  # the atomic swap
            self._publish(new_table)
            _stop_mirroring(current, new_table)
            self._retire_unused()
            return self.routes

    async def _load_for_table(self, name: str, uri: str) -> None:
        try:
            variant = await asyncio.to_thread(self._loader, name, uri)
        except Exception as exc:  # noqa: BLE001 - reported to the caller of PUT /routes
            raise RouteTableError(f"variant {name!r}: cannot load {uri}: {str(exc) or type(exc).__name__}") from None
        self._loaded[(name, uri)] = self._runtime(variant)
        log.info("variant %s loaded for a new route table: %s version %s", name, uri, variant.version)

    def _runtime(self, variant: Variant) -> Runtime:
        variant = with_positive_class(variant, self.config.prediction_log.positive_class)
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
                await _close_runtime(runtime, self.config.routing.shadow.timeout_s)
                self.metrics.ready.labels(runtime.variant.name, runtime.variant.version).set(0)
                log.info("variant %s (%s) closed: no longer in the route table", *key)

    def record(self, entry: PredictionEntry) -> None:
        """Log one variant's answer (thread-safe) and keep it for joining feedback."""
        self.recent.add(entry)
        if self.log is not None:
            self.log.record(entry)

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
        for runtime in self._loaded.values():
            await _close_runtime(runtime, self.config.routing.shadow.timeout_s)
        if self.log is not None:
            await asyncio.to_thread(self.log.close)


class RouteTableConflict(RouteTableError):
    """PUT /routes named a table version that is no longer current (409)."""


def _stop_mirroring(old: ActiveRoutes, new_table: RouteTable) -> None:
    """Drop the queued work of variants the new table no longer mirrors to."""
    mirrored = {v.name for v in new_table.shadows}
    for route in old.table.shadows:
        runtime = old.runtimes.get(route.name)
        if route.name not in mirrored and runtime is not None and runtime.shadow is not None:
            runtime.shadow.discard_pending()


async def _close_runtime(runtime: Runtime, shadow_timeout_s: float) -> None:
    if runtime.shadow is not None:
        await asyncio.to_thread(runtime.shadow.close, shadow_timeout_s)
    await runtime.batcher.close()
