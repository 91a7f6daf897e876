"""Bounded concurrent traffic for the router's reliability tests: every answer with its headers.

aiohttp on its own event loop (a lighter client than httpx, so on 2 shared cores the generator takes
less CPU from the server under test). `send` returns one `Answer` per request, in sending order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np

HeadersFor = Callable[[int], dict[str, str]]


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (connection error or client timeout)
    seconds: float
    variant: str | None
    route_version: int | None
    request_id: str | None


async def _send_all(url: str, bodies: Sequence[bytes], requests: int, concurrency: int,
                    headers_for: HeadersFor, timeout_s: float) -> list[Answer]:
    answers: list[Answer | None] = [None] * requests
    cursor = iter(range(requests))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:

        async def client() -> None:
            for i in cursor:
                headers = {"Content-Type": "application/json", **headers_for(i)}
                answers[i] = await _one(session, url, bodies[i % len(bodies)], headers)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return [a for a in answers if a is not None]


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            version = response.headers.get("X-Route-Version")
            return Answer(response.status, time.perf_counter() - started, response.headers.get("X-Model-Variant"),
                          int(version) if version else None, response.headers.get("X-Request-Id"))
    except (TimeoutError, aiohttp.ClientError):
        return Answer(0, time.perf_counter() - started, None, None, None)


def send(url: str, bodies: Sequence[bytes], requests: int, concurrency: int = 8,
         headers_for: HeadersFor | None = None, timeout_s: float = 30.0) -> list[Answer]:
    """POST `requests` bodies (cycled) to `url` from `concurrency` closed-loop clients."""
    return asyncio.run(_send_all(url, bodies, requests, concurrency, headers_for or (lambda i: {}), timeout_s))


def p50_ms(answers: Sequence[Answer]) -> float:
    return float(np.median([a.seconds for a in answers]) * 1e3)
