"""The variants of one server: loaded in the background, each with its own micro-batcher.

The app answers /healthz at once and /readyz with 503 until every variant is loaded, so an
orchestrator (or ServerProcess) never sends traffic to a server whose model is still loading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from serving.batching import MicroBatcher
from serving.config import ServingConfig
from serving.errors import RequestError
from serving.metrics import ServerMetrics
from serving.routing import DefaultRouter, Router
from serving.variants import Variant, load_variant

log = logging.getLogger(__name__)

VariantLoader = Callable[[str, str], Variant]  # (variant name, model URI) -> loaded Variant


class ServerState:
    """Loading status, loaded variants and their batchers; `variant_for` routes a request."""

    def __init__(
        self,
        model_uris: Mapping[str, str],
        config: ServingConfig,
        metrics: ServerMetrics,
        loader: VariantLoader = load_variant,
        router: Router | None = None,
    ) -> None:
        if not model_uris:
            raise ValueError("at least one model URI is needed")
        self.model_uris = dict(model_uris)
        self.config = config
        self.metrics = metrics
        self.router = router or DefaultRouter(list(self.model_uris), next(iter(self.model_uris)))
        self.variants: dict[str, Variant] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        self.failures: dict[str, str] = {}
        self._loader = loader

    @property
    def ready(self) -> bool:
        return len(self.variants) == len(self.model_uris)

    def status(self) -> dict[str, Any]:
        """Per variant: state (loading, ready, failed), version or error."""
        out: dict[str, Any] = {}
        for name, uri in self.model_uris.items():
            if name in self.variants:
                out[name] = {"state": "ready", **self.variants[name].describe()}
            elif name in self.failures:
                out[name] = {"state": "failed", "uri": uri, "error": self.failures[name]}
            else:
                out[name] = {"state": "loading", "uri": uri}
        return out

    async def load_all(self) -> None:
        """Load every variant in a worker thread; a failure is recorded, never raised."""
        for name, uri in self.model_uris.items():
            try:
                variant = await asyncio.to_thread(self._loader, name, uri)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, the server stays up
                self.failures[name] = str(exc) or type(exc).__name__
                log.error("variant %s (%s) failed to load: %s", name, uri, exc)
                continue
            self._activate(variant)
            log.info("variant %s loaded: %s version %s", name, uri, variant.version)

    def _activate(self, variant: Variant) -> None:
        micro = self.config.microbatch
        name = variant.name
        batcher = MicroBatcher(
            variant.predict_rows, micro.max_batch_rows, micro.max_wait_ms, micro.enabled,
            observe=lambda requests, rows, seconds: self.metrics.observe_batch(name, requests, rows, seconds),
            model_threads=micro.model_threads,
        )
        batcher.start()
        self.batchers[name] = batcher
        self.variants[name] = variant
        self.metrics.mark_ready(name, variant.version)

    def variant_for(self, headers: Mapping[str, str]) -> Variant:
        """The variant that answers this request, or a RequestError (400 unknown, 503 not loaded)."""
        name = self.router.choose(headers)
        variant = self.variants.get(name)
        if variant is not None:
            return variant
        if name in self.failures:
            raise RequestError(503, "variant_failed", f"variant {name!r} failed to load: {self.failures[name]}")
        raise RequestError(503, "not_ready", f"variant {name!r} is still loading; retry when /readyz is 200")

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
