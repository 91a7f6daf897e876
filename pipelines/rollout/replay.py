"""`mlgate replay`: a data split sent to a local server as live traffic, with labels arriving late.

Each row is one request at a fixed rate, with `X-Request-Id` = prefix + row id (so a label can be
joined later) and `X-Routing-Key` = row id (one customer, one variant). When a row was answered, its
true label is posted to `/feedback` `feedback_delay_s` later, in batches, as labels arrive in real
life. Bounded in rows and time, and refused for anything but a loopback address.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import pandas as pd

from mlgate.pipelines.errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_FEEDBACK_BATCH = 200


@dataclass(frozen=True)
class ReplayPlan:
    endpoint: str
    rate_rps: float = 100.0
    feedback_delay_s: float = 2.0
    max_rows: int | None = None
    loops: int = 1
    id_prefix: str = ""
    concurrency: int = 8
    timeout_s: float = 10.0
    max_duration_s: float = 600.0
    feedback_token: str | None = None  # the server's MLGATE_FEEDBACK_TOKEN: labels are an authenticated write

    def __post_init__(self) -> None:
        host = urlparse(self.endpoint).hostname
        if host not in LOOPBACK:
            raise UsageError(f"replay endpoint {self.endpoint!r}: only a loopback server (127.0.0.1) is replayed to")
        if not 0 < self.rate_rps <= 5000 or self.feedback_delay_s < 0 or self.loops < 1 or self.concurrency < 1:
            raise UsageError("replay needs 0 < rate <= 5000 rps, feedback delay >= 0, loops >= 1, concurrency >= 1")


@dataclass
class ReplayStats:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)
    feedback_posted: int = 0
    feedback_accepted: int = 0
    feedback_unknown: int = 0
    feedback_refused: int = 0  # labels in batches the server refused (e.g. 401/403: no or a wrong token)
    transport_errors: int = 0
    duration_s: float = 0.0

    @property
    def achieved_rps(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0


def replay_rows(frame: pd.DataFrame, features: list[str], target: str, id_column: str, plan: ReplayPlan,
                stop: threading.Event | None = None) -> ReplayStats:
    """Send the rows of `frame` as traffic; returns what happened. `stop` ends it early (from another thread)."""
    missing = [c for c in [*features, target, id_column] if c not in frame.columns]
    if missing:
        raise UsageError(f"replay data has no column(s) {', '.join(missing)}")
    rows = _requests(frame, features, target, id_column, plan)
    return asyncio.run(_Replay(plan, stop or threading.Event()).run(rows))


def _requests(frame: pd.DataFrame, features: list[str], target: str, id_column: str,
              plan: ReplayPlan) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(request id, routing key, body, label) per request, cycling `loops` times, at most `max_rows`; lazy,
    so a long replay does not build its requests up front."""
    records = frame[features].astype(object).where(frame[features].notna(), None).to_numpy().tolist()
    ids = [str(v) for v in frame[id_column]]
    labels = [str(v) for v in frame[target]]
    count = 0
    for loop in range(plan.loops):
        prefix = plan.id_prefix if plan.loops == 1 else f"{plan.id_prefix}{loop}."
        for row_id, values, label in zip(ids, records, labels, strict=True):
            if plan.max_rows is not None and count >= plan.max_rows:
                return
            count += 1
            body = {"dataframe_split": {"columns": features, "data": [[_plain(v) for v in values]]}}
            yield f"{prefix}{row_id}", row_id, body, label


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if hasattr(value, "item") else value


class _Replay:
    def __init__(self, plan: ReplayPlan, stop: threading.Event) -> None:
        self.plan, self.stop = plan, stop
        self.stats = ReplayStats()
        self.due: list[tuple[float, str, str]] = []  # (time the label arrives, request id, label)
        self.finished = False

    async def run(self, rows: Iterator[tuple[str, str, dict[str, Any], str]]) -> ReplayStats:
        started = time.monotonic()
        limits = httpx.Limits(max_connections=self.plan.concurrency)
        async with httpx.AsyncClient(base_url=self.plan.endpoint, timeout=self.plan.timeout_s, limits=limits) as client:
            feeder = asyncio.create_task(self._feed_labels(client))
            gate = asyncio.Semaphore(self.plan.concurrency)
            tasks = []
            for i, row in enumerate(rows):
                if self.stop.is_set() or time.monotonic() - started > self.plan.max_duration_s:
                    break
                await asyncio.sleep(max(0.0, started + i / self.plan.rate_rps - time.monotonic()))
                await gate.acquire()
                tasks.append(asyncio.create_task(self._send(client, gate, *row)))
            await asyncio.gather(*tasks)
            self.stats.duration_s = time.monotonic() - started
            self.finished = True
            await feeder
            await self._last_labels(client)
        return self.stats

    async def _send(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, request_id: str, key: str,
                    body: dict[str, Any], label: str) -> None:
        headers = {"X-Request-Id": request_id, "X-Routing-Key": key}
        try:
            response = await client.post("/invocations", json=body, headers=headers)
        except httpx.HTTPError:
            self.stats.transport_errors += 1
            return
        finally:
            gate.release()
            self.stats.sent += 1
        self.stats.statuses[response.status_code] += 1
        self.stats.variants[response.headers.get("x-model-variant", "?")] += 1
        if response.status_code == 200:
            heapq.heappush(self.due, (time.monotonic() + self.plan.feedback_delay_s, request_id, label))

    async def _feed_labels(self, client: httpx.AsyncClient) -> None:
        """Every 100 ms, post the labels whose time has come, until the requests are all sent."""
        while not self.finished:
            await self._post_ready(client, everything=False)
            await asyncio.sleep(0.1)

    async def _last_labels(self, client: httpx.AsyncClient) -> None:
        """Wait for the last labels to come due (unless stopped), then post them all."""
        if self.due and not self.stop.is_set():
            await asyncio.sleep(max(0.0, max(t for t, _, _ in self.due) - time.monotonic()))
        await self._post_ready(client, everything=True)

    async def _post_ready(self, client: httpx.AsyncClient, *, everything: bool) -> None:
        now, ready = time.monotonic(), []
        while self.due and (everything or self.due[0][0] <= now):
            _, request_id, label = heapq.heappop(self.due)
            ready.append({"request_id": request_id, "row_index": 0, "label": label})
        for start in range(0, len(ready), _FEEDBACK_BATCH):
            await self._post(client, ready[start:start + _FEEDBACK_BATCH])

    async def _post(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        try:
            headers = {"Authorization": f"Bearer {self.plan.feedback_token}"} if self.plan.feedback_token else None
            response = await client.post("/feedback", json=batch, headers=headers)
        except httpx.HTTPError:
            self.stats.transport_errors += 1
            return
        self.stats.feedback_posted += len(batch)
        if response.status_code == 200:
            body = response.json()
            self.stats.feedback_accepted += int(body.get("accepted", 0))
            self.stats.feedback_unknown += int(body.get("unknown", 0))
        else:
            self.stats.feedback_refused += len(batch)
