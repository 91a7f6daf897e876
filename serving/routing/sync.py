"""Replicas following the shared route table: every `routing.sync_interval_s` a server reads the version of
the table in force in the store (one row by primary key) and, when it is newer than its own, adopts that
table the way `PUT /routes` would (checked, its new models loaded, then swapped in one assignment).

A newer table this server cannot serve (a model it cannot load, a table it cannot parse) is not adopted:
the server keeps routing by the table it has, logs the error, shows it in `/readyz` (`routes.sync.error`)
and tries that version again after `RETRY_S` (or at once when an even newer version appears). It stays
ready: taking it out of the load balancer would turn one bad table into an outage of every replica, and
the rows it logs carry the version that routed them, so the analyses judge them against that version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mlgate.gates.result import first_line

log = logging.getLogger(__name__)

RETRY_S = 30.0  # a version that failed to load is tried again after this long


@dataclass(frozen=True)
class SyncFailure:
    version: int | None  # None: the store could not be read
    message: str
    at: float
    retry_at: float  # monotonic


class RouteSync:
    """Polls the store's table version and hands a newer one to `follow` (which raises when it cannot
    serve it). `interval_s` None: never polls (one server alone, or no store)."""

    def __init__(self, interval_s: float | None, read_version: Callable[[], int | None],
                 follow: Callable[[int], Awaitable[None]], current_version: Callable[[], int]) -> None:
        self.interval_s = interval_s
        self._read_version, self._follow, self._current = read_version, follow, current_version
        self.store_version: int | None = None
        self.checked_at: float | None = None
        self.applied: tuple[int, float] | None = None  # (version, time) of the last table adopted from the store
        self.failure: SyncFailure | None = None

    async def run(self) -> None:
        """Check every interval until cancelled."""
        if self.interval_s is None:
            return
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> None:
        """One look at the store; adopts a newer table, records a failure (never raises)."""
        try:
            stored = await asyncio.to_thread(self._read_version)
        except Exception as exc:  # noqa: BLE001 - a store outage must not stop the server or the loop
            self._failed(None, f"the store could not be read: {first_line(exc)}")
            return
        self.store_version, self.checked_at = stored, time.time()
        if stored is None or stored <= self._current():
            if self.failure is not None and (self.failure.version or 0) <= self._current():
                self.failure = None
            return
        failure = self.failure
        if failure is not None and failure.version == stored and time.monotonic() < failure.retry_at:
            return
        try:
            await self._follow(stored)
        except Exception as exc:  # noqa: BLE001 - reported in /readyz; the table in force stays
            self._failed(stored, str(exc) or type(exc).__name__)
        else:
            self.applied, self.failure = (self._current(), time.time()), None

    def _failed(self, version: int | None, message: str) -> None:
        if self.failure is None or (self.failure.version, self.failure.message) != (version, message):
            what = f"route table version {version}" if version is not None else "the route table's version"
            log.error("replica sync: %s not adopted; still routing by version %d: %s", what, self._current(), message)
        self.failure = SyncFailure(version, message, time.time(), time.monotonic() + RETRY_S)

    def describe(self) -> dict[str, Any]:
        """The `routes.sync` part of /readyz."""
        failure = self.failure
        return {
            "interval_s": self.interval_s, "store_version": self.store_version, "checked_at": self.checked_at,
            "applied": None if self.applied is None else {"version": self.applied[0], "at": self.applied[1]},
            "error": None if failure is None else {"version": failure.version, "message": failure.message,
                                                   "at": failure.at},
        }
