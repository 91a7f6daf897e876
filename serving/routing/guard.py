"""The server's own fast rollback (`serving.routing.guard`), between two looks of the rollout controller.

The guard watches the variants of the route table in force that take traffic, except the champion
(`guard.champion`): for each one, the requests the router sent it (not forced with X-Target-Variant) that
the model ran or should have (2xx and 5xx answers; a 4xx is the caller's fault) over the last `window_s`.
When a variant has at least `min_requests` there and its share of 5xx is above `max_error_rate`, the
guard trips once for that table; the server then writes a new table version that gives the variant's
weight to the champion (`rolled_back_table`) through the shared store, with the reason, so every replica
follows and the controller sees it at its next look. A new table (any change) starts new windows.

Each replica judges its own traffic: `min_requests` counts the requests this server routed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mlgate.serving.routing.routes import RouteTable, VariantRoute, checked_table
from mlgate.serving.settings import GuardConfig

GUARD_EVENT = "guard_rollback"


@dataclass(frozen=True)
class GuardTrip:
    """A variant past the hard limit in the table `route_version`: the counts of its window."""

    variant: str
    route_version: int
    requests: int
    errors: int
    window_s: float
    max_error_rate: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests

    def reason(self, champion: str) -> str:
        return (f"the server sent variant {self.variant!r}'s traffic back to {champion!r}: {self.errors} of its "
                f"{self.requests} routed requests in the last {self.window_s:g} s failed with a server error (5xx), "
                f"error rate {self.error_rate:.3f} above the hard limit {self.max_error_rate:g} "
                "(serving.routing.guard.max_error_rate)")

    def details(self) -> dict[str, Any]:
        return {"metric": "error_rate", "value": round(self.error_rate, 6), "threshold": self.max_error_rate,
                "requests": self.requests, "errors": self.errors, "window_s": self.window_s,
                "routed_by": self.route_version}


class ErrorGuard:
    """Sliding windows of 5xx answers per watched variant of one route table; thread-safe, O(1) per answer."""

    def __init__(self, config: GuardConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._version: int | None = None
        self._windows: dict[str, deque[tuple[float, bool]]] = {}
        self._errors: dict[str, int] = {}
        self._tripped = False

    def watch(self, table: RouteTable) -> None:
        """Start watching `table` (fresh windows): its variants with traffic except the champion; nothing
        when the guard is off or the table has no champion variant to give traffic back to."""
        champion = table.get(self.config.champion)
        guarded = self.config.enabled and champion is not None and not champion.shadow
        names = [v.name for v in table.served if v.name != self.config.champion] if guarded else []
        with self._lock:
            self._version, self._tripped = table.version, False
            self._windows = {name: deque() for name in names}
            self._errors = dict.fromkeys(names, 0)

    def observe(self, variant: str, status: int, route_version: int | None) -> GuardTrip | None:
        """Count one routed answer; the trip when this answer takes the variant past the limit (once per table)."""
        if 400 <= status < 500 or status < 200:
            return None
        with self._lock:
            window = self._windows.get(variant)
            if window is None or self._tripped or route_version != self._version:
                return None
            now = self._clock()
            window.append((now, status >= 500))
            self._errors[variant] += status >= 500
            while window and window[0][0] < now - self.config.window_s:
                self._errors[variant] -= window.popleft()[1]
            requests, errors = len(window), self._errors[variant]
            if requests < self.config.min_requests or errors <= self.config.max_error_rate * requests:
                return None
            self._tripped = True
            return GuardTrip(variant, route_version, requests, errors, self.config.window_s,
                             self.config.max_error_rate)

    def release(self) -> None:
        """Watch again after a trip that changed nothing (another replica changed the table first)."""
        with self._lock:
            self._tripped = False


def rolled_back_table(table: RouteTable, variant: str, champion: str, version: int) -> RouteTable:
    """`table` as `version`, with `variant`'s weight given to `champion`. With only the champion left taking
    traffic, the mode becomes single (or shadow, when the table mirrors to shadows) at weight 100."""
    moved = table.get(variant).weight if table.get(variant) is not None else 0.0
    variants = tuple(_moved(v, variant, champion, moved) for v in table.variants)
    remaining = [v for v in variants if not v.shadow and v.weight > 0]
    if len(remaining) >= 2:
        return checked_table(RouteTable(table.mode, variants, version))
    alone = tuple(replace(v, weight=100.0 if v.name == champion else 0.0) if not v.shadow else v for v in variants)
    return checked_table(RouteTable("shadow" if table.shadows else "single", alone, version))


def _moved(route: VariantRoute, variant: str, champion: str, weight: float) -> VariantRoute:
    if route.name == variant:
        return replace(route, weight=0.0)
    if route.name == champion:
        return replace(route, weight=route.weight + weight)
    return route
