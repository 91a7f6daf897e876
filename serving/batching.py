"""Micro-batching: concurrent requests coalesced into one predict call in a worker thread.

An sklearn pipeline costs about the same for 1 row as for hundreds, so requests that arrive while
the model is busy (or within `max_wait_ms` after it becomes free) share the next call, bounded by
`max_batch_rows`. Predict runs in one worker thread, never on the event loop. When a combined call
raises, each request is retried alone, so one bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
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


class PredictionError(Exception):
    """The model raised on this request's rows, predicted on their own."""


@dataclass
class _Pending:
    batch: FeatureBatch
    method: str
    future: asyncio.Future[list[Any]]


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

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlgate-microbatcher")

    async def close(self) -> None:
        """Stop taking work; requests still queued get an error instead of hanging."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, batch: FeatureBatch, method: str) -> list[Any]:
        """Predict `batch` with `method` as part of the next model call; its rows, in order."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(batch, method, future))
        self._pending_rows += batch.n_rows
        self._wakeup.set()
        return await future

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
        """Block until work is queued, then gather more for up to max_wait or until the batch is full."""
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while self._enabled and self._pending_rows < self._max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        """Whole requests from the front of the queue, as many as fit in max_rows (at least one)."""
        items = [self._pending.popleft()]
        rows = items[0].batch.n_rows
        while self._enabled and self._pending and rows + self._pending[0].batch.n_rows <= self._max_rows:
            items.append(self._pending.popleft())
            rows += items[-1].batch.n_rows
        self._pending_rows -= rows
        return [item for item in items if not item.future.done()]  # drop requests that timed out

    async def _dispatch(self, items: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for method in dict.fromkeys(item.method for item in items):
            group = [item for item in items if item.method == method]
            batches = [item.batch for item in group]
            outcomes = await loop.run_in_executor(self._executor, self._predict_group, method, batches)
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
            rows = sum(batch.n_rows for batch in batches)
            self._observe(len(batches), rows, time.perf_counter() - started)


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
