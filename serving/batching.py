"""Micro-batching: concurrent requests coalesced into one predict call in a worker thread.

An sklearn pipeline costs about the same for 1 row as for hundreds, so requests that arrive while
the model is busy (or, after it becomes free, within half of what a call of it costs, at most
`max_wait_ms`) share the next call, bounded by `max_batch_rows`. Predict runs in one worker thread,
never on the event loop. When a combined call raises, each request is retried alone, so one bad
request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlgate.gates.result import first_line
from mlgate.serving.validation import FeatureBatch

log = logging.getLogger(__name__)

# (method, batches) -> one list of JSON-ready rows per batch; Variant.predict_rows has this shape.
BatchPredictor = Callable[[str, Sequence[FeatureBatch]], list[list[Any]]]
# Called once per model call with (requests in the call, rows in the call, seconds it took).
BatchObserver = Callable[[int, int, float], None]


# A batch gathers for at most this share of a model call's duration: on the default model under 32
# clients, half a call (about 3 ms) and fixed waits of 2-3 ms did equally well (docs/BENCHMARKS.md).
WAIT_SHARE = 0.5
RECENT_CALLS = 16  # the model calls whose median duration times the wait


class PredictionError(Exception):
    """The model raised on this request's rows, predicted on their own."""


@dataclass(slots=True)
class _Pending:
    batch: FeatureBatch
    method: str
    future: asyncio.Future[list[Any]]
    deadline: float  # event-loop time after which the request fails with TimeoutError (inf: never)


class MicroBatcher:
    """Queue of pending requests served by one background task and one predict thread."""

    def __init__(
        self,
        predict: BatchPredictor,
        max_rows: int,
        max_wait_ms: float,
        enabled: bool = True,
        observe: BatchObserver | None = None,
        model_threads: int = 0,
    ) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._max_wait_s = max_wait_ms / 1000.0
        self._call_times: deque[float] = deque(maxlen=RECENT_CALLS)  # seconds of the latest model calls
        self._enabled = enabled
        self._observe = observe or (lambda requests, rows, seconds: None)
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mlgate-predict", initializer=limit_native_threads,
            initargs=(model_threads,),
        )
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Pending] = []
        self._call_sizes: deque[int] = deque(maxlen=RECENT_CALLS)  # requests in the latest model calls
        self._usual_requests = 0  # the most requests one of those calls had
        self._sweep: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlgate-microbatcher")

    async def close(self) -> None:
        """Stop taking work; requests still queued get an error instead of hanging."""
        if self._sweep is not None:
            self._sweep.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, batch: FeatureBatch, method: str, timeout_s: float | None = None) -> asyncio.Future[list[Any]]:
        """Queue `batch` for the next model call with `method`; the future gets its rows, in order, or
        TimeoutError about `timeout_s` after this call (late by at most an eighth of it). Cancelling the
        future withdraws the request if its call has not started."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        deadline = math.inf if timeout_s is None else loop.time() + timeout_s
        self._pending.append(_Pending(batch, method, future, deadline))
        self._pending_rows += batch.n_rows
        if len(self._pending) in (1, self._usual_requests) or self._pending_rows >= self._max_rows:
            self._wakeup.set()  # the first request, as many as the recent calls had, or a full batch
        if timeout_s is not None and self._sweep is None:
            self._sweep = loop.call_later(timeout_s / 8, self._expire, timeout_s / 8)
        return future

    def _expire(self, every_s: float) -> None:
        """Fail the requests past their deadline, queued or in a model call: one timer per batcher every
        `every_s` while requests wait, instead of a timer per request on the request path."""
        loop = asyncio.get_running_loop()
        now, waiting = loop.time(), False
        for item in (*self._pending, *self._in_flight):
            if item.future.done() or item.deadline == math.inf:
                continue
            if item.deadline <= now:
                item.future.set_exception(TimeoutError())
            else:
                waiting = True
        self._sweep = loop.call_later(every_s, self._expire, every_s) if waiting else None

    async def _run(self) -> None:
        while True:
            await self._wait_for_batch()
            items = self._take()
            try:
                await self._dispatch(items)
            except Exception as exc:  # noqa: BLE001 - the batching task must outlive any failure
                log.exception("micro-batch dispatch failed")
                _fail(items, exc)

    async def _wait_for_batch(self) -> None:
        """Block until work is queued, then gather more until the batch is full, holds as many requests
        as the largest of the recent calls, or the wait reaches half of what one model call costs
        (measured as it serves, capped by max_wait). The fixed cost of a call is what batching spreads;
        once as many requests are in as usually come, waiting longer mostly idles. The largest, not the
        latest: a batch split by a hiccup must be able to merge again, not stay two smaller calls."""
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        if not self._enabled or self._pending_rows >= self._max_rows or len(self._pending) >= self._usual_requests > 0:
            return
        self._wakeup.clear()  # from here on, set when the batch is as large as the usual one, or full
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._gather_s()):
                await self._wakeup.wait()

    def _gather_s(self) -> float:
        """How long a batch gathers: half the median of the latest calls (robust to a slow first call),
        capped by max_wait; max_wait until the model has been called."""
        if not self._call_times:
            return self._max_wait_s
        return min(self._max_wait_s, WAIT_SHARE * statistics.median(self._call_times))

    def _take(self) -> list[_Pending]:
        """Whole requests from the front of the queue, as many as fit in max_rows (at least one)."""
        items = [self._pending.popleft()]
        rows = items[0].batch.n_rows
        while self._enabled and self._pending and rows + self._pending[0].batch.n_rows <= self._max_rows:
            items.append(self._pending.popleft())
            rows += items[-1].batch.n_rows
        self._pending_rows -= rows
        self._call_sizes.append(len(items))
        self._usual_requests = max(self._call_sizes)
        return [item for item in items if not item.future.done()]  # drop requests that timed out

    async def _dispatch(self, items: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for method in dict.fromkeys(item.method for item in items):
            group = [item for item in items if item.method == method]
            batches = [item.batch for item in group]
            self._in_flight = group
            try:
                outcomes = await loop.run_in_executor(self._executor, self._predict_group, method, batches)
            finally:
                self._in_flight = []
            for item, outcome in zip(group, outcomes, strict=True):
                if item.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)

    def _predict_group(self, method: str, batches: list[FeatureBatch]) -> list[list[Any] | Exception]:
        """Runs in the predict thread: one combined call; on failure, each request alone."""
        return predict_isolated(lambda group: self._call(method, group), batches)

    def _call(self, method: str, batches: list[FeatureBatch]) -> list[list[Any]]:
        started = time.perf_counter()
        try:
            return self._predict(method, batches)
        finally:
            rows, seconds = sum(batch.n_rows for batch in batches), time.perf_counter() - started
            self._call_times.append(seconds)
            self._observe(len(batches), rows, seconds)


def predict_isolated(
    call: Callable[[list[FeatureBatch]], list[list[Any]]], batches: list[FeatureBatch]
) -> list[list[Any] | Exception]:
    """One combined call; when it raises, each batch alone, so one bad request fails only itself."""
    try:
        return list(call(batches))
    except Exception as exc:  # noqa: BLE001 - any model error is isolated and reported per request
        if len(batches) == 1:
            return [_prediction_error(exc)]
    outcomes: list[list[Any] | Exception] = []
    for batch in batches:
        try:
            outcomes.append(call([batch])[0])
        except Exception as exc:  # noqa: BLE001 - reported to this request only
            outcomes.append(_prediction_error(exc))
    return outcomes


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP/BLAS threads used from the calling thread (0: leave the libraries' default)."""
    if threads > 0:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        threadpool_limits(limits=threads)


def _prediction_error(exc: Exception) -> PredictionError:
    return PredictionError(f"{type(exc).__name__}: {first_line(exc)}")


def _fail(items: list[_Pending], exc: Exception) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(_prediction_error(exc))
