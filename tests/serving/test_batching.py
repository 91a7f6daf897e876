"""The micro-batcher: coalescing, bounds, isolation of a failing request, dropping timed-out ones."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from mlgate.serving.batching import MicroBatcher, PredictionError
from mlgate.serving.validation import FeatureBatch


class RecordingModel:
    """A plain predict function that doubles `x`, records every call, and fails on negative input."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def __call__(self, method: str, batches: Sequence[FeatureBatch]) -> list[list[Any]]:
        self.calls.append([batch.n_rows for batch in batches])
        self.threads.add(threading.current_thread().name)
        values = [x for batch in batches for x in batch.columns["x"]]
        if any(x < 0 for x in values):
            raise ValueError("negative input")
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        out, start = [], 0
        for batch in batches:
            out.append([2 * x for x in values[start:start + batch.n_rows]])
            start += batch.n_rows
        return out


def _batch(*values: int) -> FeatureBatch:
    return FeatureBatch({"x": list(values)}, len(values))


async def _with_batcher(model: RecordingModel, scenario, **options) -> Any:
    observed: list[tuple[int, int]] = []
    batcher = MicroBatcher(model, observe=lambda r, n, seconds: observed.append((r, n)), **options)
    batcher.start()
    try:
        return await scenario(batcher), observed
    finally:
        await batcher.close()


def test_concurrent_requests_share_model_calls_and_get_their_own_rows() -> None:
    model = RecordingModel(delay_s=0.01)

    async def scenario(batcher: MicroBatcher) -> list[list[Any]]:
        return await asyncio.gather(*[batcher.submit(_batch(i), "predict") for i in range(32)])

    results, observed = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=5.0))
    assert results == [[2 * i] for i in range(32)]
    assert len(model.calls) < 32 / 4, f"32 concurrent requests took {len(model.calls)} model calls"
    assert sum(requests for requests, _ in observed) == 32
    assert model.threads == {name for name in model.threads if name.startswith("mlgate-predict")}


def test_a_model_call_never_exceeds_max_rows_and_never_splits_a_request() -> None:
    model = RecordingModel()

    async def scenario(batcher: MicroBatcher) -> list[list[Any]]:
        return await asyncio.gather(*[batcher.submit(_batch(1, 2, 3), "predict") for _ in range(10)])

    results, _ = asyncio.run(_with_batcher(model, scenario, max_rows=7, max_wait_ms=5.0))
    assert results == [[2, 4, 6]] * 10
    assert all(sum(call) <= 7 for call in model.calls)
    assert all(rows == 3 for call in model.calls for rows in call)


def test_one_failing_request_does_not_fail_the_others_in_its_batch() -> None:
    model = RecordingModel()

    async def scenario(batcher: MicroBatcher) -> list[Any]:
        requests = [batcher.submit(_batch(v), "predict") for v in (1, -1, 2)]
        return await asyncio.gather(*requests, return_exceptions=True)

    (good, bad, other), _ = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=20.0))
    assert good == [2] and other == [4]
    assert isinstance(bad, PredictionError) and "negative input" in str(bad)
    assert model.calls[0] == [1, 1, 1], "the three requests were first tried together"


def test_disabled_batching_calls_the_model_once_per_request() -> None:
    model = RecordingModel()

    async def scenario(batcher: MicroBatcher) -> list[list[Any]]:
        return await asyncio.gather(*[batcher.submit(_batch(i), "predict") for i in range(5)])

    results, _ = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=5.0, enabled=False))
    assert results == [[2 * i] for i in range(5)]
    assert model.calls == [[1]] * 5


def test_methods_are_not_mixed_in_one_model_call() -> None:
    seen: list[str] = []

    def predict(method: str, batches: Sequence[FeatureBatch]) -> list[list[Any]]:
        seen.append(method)
        return [[method] * batch.n_rows for batch in batches]

    async def scenario(batcher: MicroBatcher) -> list[Any]:
        return await asyncio.gather(batcher.submit(_batch(1), "predict"), batcher.submit(_batch(1), "predict_proba"))

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_rows=10, max_wait_ms=10.0)
        batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [["predict"], ["predict_proba"]]
    assert sorted(seen) == ["predict", "predict_proba"]


def test_a_request_that_timed_out_is_not_predicted() -> None:
    model = RecordingModel(delay_s=0.2)

    async def scenario(batcher: MicroBatcher) -> Any:
        first = asyncio.ensure_future(batcher.submit(_batch(1), "predict"))
        await asyncio.sleep(0.05)  # the model is busy with the first request
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(_batch(5), "predict"), 0.01)
        return await first

    result, _ = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=0.0))
    assert result == [2]
    assert model.calls == [[1]]


def test_a_request_fails_at_its_timeout_even_while_its_model_call_runs() -> None:
    model = RecordingModel(delay_s=0.5)

    async def scenario(batcher: MicroBatcher) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await batcher.submit(_batch(1), "predict", timeout_s=0.08)
        return loop.time() - started

    waited, _ = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=0.0))
    assert 0.08 <= waited < 0.3  # due after 0.08 s (late by at most an eighth), not after the 0.5 s call
    assert model.calls == [[1]]


def test_a_batch_gathers_for_half_a_model_call_not_for_max_wait() -> None:
    model = RecordingModel(delay_s=0.01)

    async def scenario(batcher: MicroBatcher) -> list[float]:
        loop = asyncio.get_running_loop()
        latencies = []
        for value in range(4):  # one request at a time: nothing else will join its batch
            started = loop.time()
            await batcher.submit(_batch(value), "predict")
            latencies.append(loop.time() - started)
        return latencies

    latencies, _ = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=400.0))
    assert latencies[0] >= 0.35  # before any call, the wait is max_wait (0.4 s)
    assert max(latencies[1:]) < 0.3  # then about half of a 10 ms call (5 ms), far below max_wait


def test_a_batch_goes_once_it_holds_as_many_requests_as_the_latest_call() -> None:
    model = RecordingModel(delay_s=0.2)

    async def scenario(batcher: MicroBatcher) -> float:
        await asyncio.gather(*[batcher.submit(_batch(1), "predict") for _ in range(3)])
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = batcher.submit(_batch(2), "predict")
        for value in (3, 4):  # the other two come back 5 ms apart, well inside the 100 ms window
            await asyncio.sleep(0.005)
            batcher.submit(_batch(value), "predict")
        await first
        return loop.time() - started

    latency, _ = asyncio.run(_with_batcher(model, scenario, max_rows=256, max_wait_ms=300.0))
    assert model.calls == [[1, 1, 1], [1, 1, 1]]
    assert latency < 0.27  # about 10 ms of arrivals + the 200 ms call; the window alone would add 100 ms
