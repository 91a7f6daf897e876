"""A generic closed-loop HTTP load generator: N concurrent clients POSTing bodies for a bounded time.

asyncio + aiohttp (a lighter client than httpx, so on a small machine the generator takes less of
the CPU it shares with the server under test). Each client sends its next request as soon as the
previous answer is read; requests that start during the warm-up are sent but not measured. The run
stops at `duration_s` after the warm-up or after `max_requests` measured requests, whichever is first.

    result = run_load("http://127.0.0.1:8080/invocations", bodies, concurrency=32, duration_s=10)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ROUND_DEFAULTS = {"rounds": 3, "seconds": 10.0, "warmup": 2.0, "clients": 32}


@dataclass
class LoadResult:
    """Latencies of the measured successful requests, every status seen, and the measured time."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    # With `tag_header`: the latencies of successful requests by that response header's value.
    tagged: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    @property
    def throughput(self) -> float:
        """Successful requests per second of measured time."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1e3) if self.latencies_s else float("nan")


class _Run:
    """Shared state of one load run: the body cursor, the clock and the measured samples."""

    def __init__(self, bodies: Sequence[bytes], warmup_s: float, duration_s: float, max_requests: int) -> None:
        self.bodies, self.cursor, self.max_requests = bodies, 0, max_requests
        self.measure_from = time.perf_counter() + warmup_s
        self.stop_at = self.measure_from + duration_s
        self.result = LoadResult()
        self.measured = 0

    def next_body(self) -> tuple[int, bytes] | None:
        """The next request's number and body, or None when time or the request budget is used up."""
        now = time.perf_counter()
        if now >= self.stop_at or self.measured >= self.max_requests:
            return None
        if now >= self.measure_from:
            self.measured += 1
        number = self.cursor
        self.cursor += 1
        return number, self.bodies[number % len(self.bodies)]

    def record(self, started: float, status: str, seconds: float, tag: str | None = None) -> None:
        if started < self.measure_from:
            return
        self.result.statuses[status] += 1
        if status.startswith("2"):
            self.result.latencies_s.append(seconds)
            if tag is not None:
                self.result.tagged[tag].append(seconds)


HeadersFor = Callable[[int], dict[str, str]]  # request number -> extra request headers


async def _client(session, url: str, run: _Run, headers: dict[str, str], headers_for: HeadersFor | None,
                  tag_header: str | None) -> None:
    import aiohttp

    while (item := run.next_body()) is not None:
        number, body = item
        sent = {**headers, **headers_for(number)} if headers_for else headers
        started, tag = time.perf_counter(), None
        try:
            async with session.post(url, data=body, headers=sent) as response:
                await response.read()
                status = str(response.status)
                tag = response.headers.get(tag_header) if tag_header else None
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = type(exc).__name__
        run.record(started, status, time.perf_counter() - started, tag)


async def load(url: str, bodies: Sequence[bytes], concurrency: int = 32, duration_s: float = 10.0,
               warmup_s: float = 1.0, max_requests: int = 1_000_000, timeout_s: float = 30.0,
               content_type: str = "application/json", headers_for: HeadersFor | None = None,
               tag_header: str | None = None) -> LoadResult:
    """Run `concurrency` clients against `url` (see the module docstring for the bounds).
    `headers_for(n)` adds headers to request number n; `tag_header` splits latencies by a response header."""
    import aiohttp

    if not bodies:
        raise ValueError("no request bodies to send")
    run = _Run(bodies, warmup_s, duration_s, max_requests)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        headers = {"Content-Type": content_type}
        await asyncio.gather(*(_client(session, url, run, headers, headers_for, tag_header)
                               for _ in range(concurrency)))
    run.result.elapsed_s = time.perf_counter() - run.measure_from  # until the last measured answer
    return run.result


def run_load(url: str, bodies: Sequence[bytes], **options: object) -> LoadResult:
    """`load` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(load(url, bodies, **options))  # type: ignore[arg-type]


def round_arguments(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every alternating-rounds server benchmark takes (model, holdout, rounds, clients ...)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", default="models/candidate", help="MLflow sklearn model directory")
    parser.add_argument("--holdout", default="data/test.parquet")
    parser.add_argument("--rounds", type=int, default=ROUND_DEFAULTS["rounds"])
    parser.add_argument("--seconds", type=float, default=ROUND_DEFAULTS["seconds"], help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=ROUND_DEFAULTS["warmup"])
    parser.add_argument("--clients", type=int, default=ROUND_DEFAULTS["clients"])
    parser.add_argument("--max-requests", type=int, default=500_000, help="per round")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/BENCHMARKS.md")
    return parser


def command_line(prog: str, args: argparse.Namespace) -> str:
    """The command that reruns this benchmark: `prog` plus the round options that differ from the defaults."""
    extra = [f"--{k} {getattr(args, k):g}" for k, v in ROUND_DEFAULTS.items() if getattr(args, k) != v]
    return " ".join([prog, *extra])


def model_and_holdout(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """The model directory and holdout file the options name, or None after saying what is missing."""
    model, holdout = REPO / args.model, REPO / args.holdout
    if not (model / "MLmodel").is_file() or not holdout.is_file():
        print(f"need {model}/MLmodel and {holdout}: run `dvc repro train` first", file=sys.stderr)
        return None
    return model, holdout
