"""Prometheus metrics of one server, in its own registry (never the process-global one).

Requests and latency are labelled by variant and status class (2xx/4xx/5xx); errors by variant and
error code; model calls by variant, so a dashboard can see how well micro-batching coalesces.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384)
UNROUTED = "unrouted"  # the variant label of a request refused before a variant was chosen


class ServerMetrics:
    """Counters and histograms of one app; `render()` gives the /metrics payload."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlgate_requests", "Prediction requests answered.", ["variant", "status_class"], registry=self.registry
        )
        self.errors = Counter(
            "mlgate_request_errors", "Prediction requests answered with an error.", ["variant", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlgate_request_latency_seconds", "Time from request received to response ready.",
            ["variant", "status_class"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.predict_calls = Counter(
            "mlgate_predict_calls", "Model predict calls (each may serve several requests).", ["variant"],
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "mlgate_predict_batch_requests", "Requests coalesced into one model call.", ["variant"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_rows = Histogram(
            "mlgate_predict_batch_rows", "Rows in one model call.", ["variant"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.predict_seconds = Histogram(
            "mlgate_predict_seconds", "Duration of one model call.", ["variant"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.ready = Gauge(
            "mlgate_variant_ready", "1 when the variant's model is loaded and serving.", ["variant", "version"],
            registry=self.registry,
        )

    def observe_request(self, variant: str, status: int, seconds: float, error_code: str | None = None) -> None:
        status_class = f"{status // 100}xx"
        self.requests.labels(variant, status_class).inc()
        self.latency.labels(variant, status_class).observe(seconds)
        if error_code is not None:
            self.errors.labels(variant, error_code).inc()

    def observe_batch(self, variant: str, requests: int, rows: int, seconds: float) -> None:
        self.predict_calls.labels(variant).inc()
        self.predict_seconds.labels(variant).observe(seconds)
        self.batch_requests.labels(variant).observe(requests)
        self.batch_rows.labels(variant).observe(rows)

    def mark_ready(self, variant: str, version: str) -> None:
        self.ready.labels(variant, version).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
