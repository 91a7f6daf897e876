"""Mirroring requests to a shadow variant, off the response path.

The request handler only offers a job to the shadow's bounded queue (no waiting, no I/O); when the
queue is full the job is shed: counted by reason (queue full, CPU budget, closing, table changed) in
one log row per window (`mlgate.serving.shadow.shed`), so the analysis tells "not attempted" from "failed". One worker thread per shadow variant takes jobs in
micro-batches, validates them against the shadow's own signature, predicts (one combined call; on
failure its halves, down to the failing requests alone) and records the outcome in the prediction
log. Nothing it does can
reach the caller: its exceptions become status 500 rows, a call slower than `timeout_s` becomes a
504 row, and its slowness only fills its own queue. Its CPU time is paced (`max_busy_share` of the
wall clock, `BusyBudget`), because in one process it competes with the answering variant for the
GIL: beyond that budget, shadow work is dropped rather than slowing the answers.

Speed is compared like for like: beside each combined shadow call the worker times the answering
variant's model on the same rows (the order alternates), and logs both times on the shadow's rows
(`latency_ms`, `baseline_ms`). The shadow's wall time alone says little: it is a batch of many
requests, gathered while the budget refills, and it waits for the GIL behind the request path, so
on a busy machine it can be many times the answering variant's request latency for a model of the
same speed. Both calls of a pair share those conditions.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlgate.gates.result import first_line
from mlgate.serving.batching import PredictionError, limit_native_threads
from mlgate.serving.log.prediction_log import PredictionEntry
from mlgate.serving.protocol import ParsedInput
from mlgate.serving.request_errors import RequestError
from mlgate.serving.settings import ServingConfig
from mlgate.serving.shadow.cpu_budget import BusyBudget
from mlgate.serving.shadow.shed import ShedSink, ShedTally
from mlgate.serving.telemetry import ServerMetrics
from mlgate.serving.validation import FeatureBatch, validate
from mlgate.serving.variants import Variant, outlier_flags

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """A request to mirror: its parsed input, and the answering variant's checked batch and labels."""

    request_id: str
    routing_key: str | None
    ts: float
    parsed: ParsedInput
    primary: Variant
    primary_batch: FeatureBatch | None
    primary_labels: Sequence[Any] | None
    forced: bool = False  # the caller forced the answering variant: its mirror is marked too
    route_version: int | None = None  # the route table that routed the request


EntrySink = Callable[[PredictionEntry], None]
_ABANDONED = object()  # a job whose mirroring was discarded before its model call
_ALONE_BELOW = 4  # a failed part of at most this many requests is retried request by request


class ShadowRunner:
    """A bounded queue and one worker thread predicting with one shadow variant."""

    def __init__(self, variant: Variant, config: ServingConfig, metrics: ServerMetrics, sink: EntrySink,
                 shed_sink: ShedSink | None = None) -> None:
        self.variant = variant
        self._config = config
        self._shadow = config.routing.shadow
        self._metrics = metrics
        self._sink = sink
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=self._shadow.queue_size)
        self._stopping = threading.Event()
        self._budget = BusyBudget(self._shadow.max_busy_share)
        self._generation = 0  # bumped by discard_pending: the batch in progress is abandoned
        self._pairs = 0  # timed pairs so far: their order alternates
        self._pacing = False  # the worker is waiting for CPU budget: a full queue is then the budget's doing
        self._shed = ShedTally(variant.name, variant.version, shed_sink)
        for series in (metrics.routing.shadow_compared, metrics.routing.shadow_agreed):
            series.labels(variant.name)  # exported as 0 from the start, so dashboards see the series
        metrics.routing.shadow_dropped.labels(variant.name, "queue_full")
        self._thread = threading.Thread(target=self._run, name=f"mlgate-shadow-{variant.name}", daemon=True)
        self._thread.start()

    def offer(self, job: ShadowJob) -> bool:
        """Queue the job, or shed it (counted by reason) when the queue is full or the runner is closing."""
        if self._stopping.is_set():
            self._count_shed("closing")
            return False
        try:
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            self._count_shed("cpu_budget" if self._pacing else "queue_full")
            return False

    def _count_shed(self, reason: str, count: int = 1) -> None:
        """A mirror not attempted: a metric and the per-window tally (never a row per mirror)."""
        self._metrics.routing.shadow_dropped.labels(self.variant.name, reason).inc(count)
        self._shed.add(reason, count)

    def _pace(self) -> None:
        """Wait until the CPU budget allows more work (flagged, so shed mirrors name the budget)."""
        wait_s = self._budget.wait_s()
        if wait_s > 0:
            self._pacing = True
            try:
                self._stopping.wait(wait_s)
            finally:
                self._pacing = False

    def discard_pending(self) -> int:
        """Drop the queued jobs and abandon the batch in progress after its current model call
        (all counted as dropped), e.g. when the table no longer mirrors to this variant."""
        self._generation += 1
        dropped = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: keep the stop signal for the worker
                self._queue.put_nowait(None)
                break
            dropped += 1
        if dropped:
            self._count_shed("table_changed", dropped)
        return dropped

    def close(self, timeout_s: float) -> None:
        """Finish the queued jobs within `timeout_s` (the rest are dropped and counted), then stop."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._shed.flush()

    def _run(self) -> None:
        limit_native_threads(self._config.microbatch.model_threads)
        while True:
            self._pace()  # the queue gathers the next batch meanwhile
            jobs, stop = self._next_jobs()
            if jobs:
                try:
                    self._predict(jobs)
                except Exception:  # noqa: BLE001 - the shadow worker must outlive any failure
                    log.exception("shadow %s: unexpected failure", self.variant.name)
            self._shed.flush(force=False)  # a window that ended with no shed since
            if stop:
                self._drop_rest()
                return

    def _next_jobs(self) -> tuple[list[ShadowJob], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        jobs, rows = [first], first.parsed.n_rows
        deadline = time.monotonic() + self._shadow.max_wait_ms / 1000.0
        while rows < self._shadow.max_batch_rows:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            rows += job.parsed.n_rows
        return jobs, False

    def _drop_rest(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._count_shed("closing")

    def _predict(self, jobs: list[ShadowJob]) -> None:
        generation = self._generation
        checked = [self._batch_for(job) for job in jobs]
        good = [(job, batch) for job, batch in zip(jobs, checked, strict=True) if isinstance(batch, FeatureBatch)]
        outcomes, baseline = self._predict_isolated([batch for _, batch in good], generation,
                                                    _baseline_call([job for job, _ in good]))
        by_job = {id(job): outcome for (job, _), outcome in zip(good, outcomes, strict=True)}
        for job, batch in zip(jobs, checked, strict=True):
            outcome, seconds = (batch, 0.0) if isinstance(batch, RequestError) else by_job[id(job)]
            if outcome is _ABANDONED:
                self._count_shed("table_changed")
                continue
            fed = isinstance(batch, FeatureBatch)
            self._record(job, batch if fed else None, outcome, seconds, baseline if fed else None)

    def _predict_isolated(
        self, batches: list[FeatureBatch], generation: int, baseline: _BaselineCall | None,
    ) -> tuple[list[tuple[Any, float]], float | None]:
        """(rows or exception, model seconds) per batch: one combined call, on failure the halves, and so
        on down to the failing requests alone (a few failing rows in a big batch cost a few calls per
        failure, not one per request, so a challenger with some bad rows is still seen within the CPU
        budget); batches not yet tried when the work is discarded are _ABANDONED. Also the answering
        variant's seconds on the same rows, timed beside a combined call that succeeded (else None)."""
        if not batches:
            return [], None
        method = self.variant.answer_method
        combined, seconds, baseline_s = self._paired_call(method, batches, baseline)
        if not isinstance(combined, Exception):
            return [(rows, seconds) for rows in combined], baseline_s
        if len(batches) == 1:
            return [(combined, seconds)], None
        return self._bisect(method, batches, generation, seconds), None

    def _bisect(self, method: Any, batches: list[FeatureBatch], generation: int, spent: float,
                ) -> list[tuple[Any, float]]:
        """Outcomes of `batches` whose combined call failed after `spent` seconds: each half alone."""
        half = len(batches) // 2
        out: list[tuple[Any, float]] = []
        for part in (batches[:half], batches[half:]):
            if generation != self._generation:
                out += [(_ABANDONED, 0.0)] * len(part)
                continue
            outcome, seconds = self._paced_call(method, part)
            if not isinstance(outcome, Exception):
                out += [(rows, spent + seconds) for rows in outcome]
            elif len(part) == 1:
                out.append((outcome, spent + seconds))
            elif len(part) <= _ALONE_BELOW:  # mostly failing at this size: each alone is cheaper than halving
                out += self._each_alone(method, part, generation, spent + seconds)
            else:
                out += self._bisect(method, part, generation, spent + seconds)
        return out

    def _each_alone(self, method: Any, batches: list[FeatureBatch], generation: int, spent: float,
                    ) -> list[tuple[Any, float]]:
        out: list[tuple[Any, float]] = []
        for batch in batches:
            if generation != self._generation:
                out.append((_ABANDONED, 0.0))
                continue
            alone, seconds = self._paced_call(method, [batch])
            out.append((alone if isinstance(alone, Exception) else alone[0], spent + seconds))
        return out

    def _paced_call(self, method: Any, batches: list[FeatureBatch]) -> tuple[Any, float]:
        """One model call within the CPU budget: (rows per batch or the exception, wall seconds)."""
        outcome, seconds, _ = self._paired_call(method, batches, None)
        return outcome, seconds

    def _paired_call(
        self, method: Any, batches: list[FeatureBatch], baseline: _BaselineCall | None,
    ) -> tuple[Any, float, float | None]:
        """The shadow's model call within the CPU budget, and when `baseline` is given the answering
        variant's call on the same rows right before or after it (alternately; both count against
        the budget): (rows per batch or the exception, wall seconds, baseline wall seconds or None)."""
        self._pace()
        baseline_first = baseline is not None and self._pairs % 2 == 1
        baseline_s = self._timed_baseline(baseline) if baseline_first else None
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            outcome: Any = self.variant.predict_rows(method, batches)
        except Exception as exc:  # noqa: BLE001 - recorded as this shadow's error, never raised
            outcome = PredictionError(f"{type(exc).__name__}: {first_line(exc)}")
        seconds = time.perf_counter() - started
        self._budget.spend(time.thread_time() - cpu_started)
        rows = sum(batch.n_rows for batch in batches)
        self._metrics.observe_batch(self.variant.name, len(batches), rows, seconds)
        if isinstance(outcome, Exception):
            return outcome, seconds, None  # no pair: a failed call is not a timing
        if baseline is not None and not baseline_first:
            baseline_s = self._timed_baseline(baseline)
        self._pairs += baseline is not None
        return outcome, seconds, baseline_s

    def _timed_baseline(self, baseline: _BaselineCall) -> float | None:
        """Wall seconds of the answering variant's model on the rows (None if it raised: not a timing)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            baseline.variant.predict_rows(baseline.variant.answer_method, baseline.batches)
        except Exception:  # noqa: BLE001 - the answering variant's errors are its own path's business
            return None
        finally:
            self._budget.spend(time.thread_time() - cpu_started)
        return time.perf_counter() - started

    def _batch_for(self, job: ShadowJob) -> FeatureBatch | RequestError:
        """The job's rows checked against this variant's signature (reused when it is the same)."""
        same = job.primary.schema == self.variant.schema and job.primary.strict_integers == self.variant.strict_integers
        if same and job.primary_batch is not None:
            return job.primary_batch
        try:
            return validate(job.parsed, self.variant.schema, self._config.max_batch_rows,
                            self._config.extra_columns, strict_integers=self.variant.strict_integers)
        except RequestError as exc:
            return exc

    def _record(self, job: ShadowJob, batch: FeatureBatch | None, outcome: Any, seconds: float,
                baseline_s: float | None) -> None:
        status, error, labels, scores = _outcome(outcome, self.variant.scored)
        if status == 200 and seconds > self._shadow.timeout_s:
            status, error, labels, scores = 504, f"shadow prediction took {seconds:.2f} s (timeout {self._shadow.timeout_s} s)", None, None
        routing = self._metrics.routing
        routing.shadow_predictions.labels(self.variant.name, f"{status // 100}xx").inc()
        routing.shadow_latency.labels(self.variant.name).observe(seconds)
        if labels is not None and job.primary_labels is not None:
            agreed = sum(1 for mine, theirs in zip(labels, job.primary_labels, strict=False) if mine == theirs)
            routing.shadow_compared.labels(self.variant.name).inc(min(len(labels), len(job.primary_labels)))
            routing.shadow_agreed.labels(self.variant.name).inc(agreed)
        columns = batch.columns if batch is not None else dict(zip(job.parsed.columns, job.parsed.data, strict=True))
        outliers = outlier_flags(outcome) if status == 200 else None
        if outliers is not None:
            self._metrics.observe_outliers(self.variant.name, len(outliers), sum(outliers))
        self._sink(PredictionEntry(
            job.request_id, job.routing_key, self.variant.name, self.variant.version, True, job.ts,
            seconds * 1000.0, status, error, columns, job.parsed.n_rows, labels, scores,
            None if baseline_s is None else baseline_s * 1000.0, job.forced, job.route_version, outliers))


@dataclass(frozen=True, slots=True)
class _BaselineCall:
    """The answering variant and its checked batches for the rows of one shadow call."""

    variant: Variant
    batches: list[FeatureBatch]


def _baseline_call(jobs: Sequence[ShadowJob]) -> _BaselineCall | None:
    """What to time beside the shadow's call: only when one variant answered every job and its
    batches are at hand (else the pair would not be the same rows)."""
    if not jobs or any(job.primary is not jobs[0].primary or job.primary_batch is None for job in jobs):
        return None
    return _BaselineCall(jobs[0].primary, [job.primary_batch for job in jobs])


def _outcome(outcome: Any, scored: bool) -> tuple[int, str | None, list[Any] | None, list[Any] | None]:
    """(status, error, labels, scores) of one shadow prediction."""
    if isinstance(outcome, RequestError):
        return outcome.status, f"{outcome.code}: {outcome.message}", None, None
    if isinstance(outcome, Exception):
        return 500, str(outcome), None, None
    if scored:
        return 200, None, [row[0] for row in outcome], [row[1] for row in outcome]
    return 200, None, list(outcome), None

