"""Prometheus metrics of one server, in its own registry (never the process-global one).

Requests and latency are labelled by variant and status class (2xx/4xx/5xx); errors by variant and
error code; model calls by variant, so a dashboard can see how well micro-batching coalesces.
Routing adds the table (version, weights), shadow predictions and drops, agreement of shadows with
the answering variant, feedback and the online metrics computed from it (accuracy, mean reward),
and the prediction log's writes and drops; rows checked and flagged by each variant's outlier detector, and
the keys that most look like probing (top-k only). deploy/grafana/mlgate.json charts them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

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
if TYPE_CHECKING:
    from mlgate.serving.probing import KeyActivity

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
        self.outlier_checked = Counter(
            "mlgate_outlier_checked_rows", "Rows the variant's outlier detector checked (shadows included).",
            ["variant"], registry=self.registry,
        )
        self.outlier_rows = Counter(
            "mlgate_outlier_rows", "Rows the variant's outlier detector flagged.", ["variant"], registry=self.registry,
        )
        self.probing_share = Gauge(
            "mlgate_probing_share", "Share of a key's recent rows that were outliers or on the decision boundary "
            "(the top serving.probing.top_k keys only).", ["key"], registry=self.registry,
        )
        self.probing_requests = Gauge(
            "mlgate_probing_requests", "Requests of a key in the probing window (the same top keys).", ["key"],
            registry=self.registry,
        )
        self.routing = RoutingMetrics(self.registry)
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._outlier_series: dict[str, tuple[Any, Any]] = {}
        self.probing_source: Callable[[], Sequence[KeyActivity]] | None = None

    def observe_request(self, variant: str, status: int, seconds: float, error_code: str | None = None) -> None:
        count, latency = self._request_series(variant, status // 100)
        count.inc()
        latency.observe(seconds)
        if error_code is not None:
            self.errors.labels(variant, error_code).inc()

    def _request_series(self, variant: str, status_class: int) -> tuple[Any, Any]:
        """The labelled request counter and latency histogram, looked up once per (variant, class): every
        request counts itself, and prometheus_client's `labels()` takes a lock and builds keys each call."""
        key = (variant, status_class)
        series = self._series.get(key)
        if series is None:
            label = f"{status_class}xx"
            series = self._series[key] = (self.requests.labels(variant, label), self.latency.labels(variant, label))
        return series

    def observe_batch(self, variant: str, requests: int, rows: int, seconds: float) -> None:
        self.predict_calls.labels(variant).inc()
        self.predict_seconds.labels(variant).observe(seconds)
        self.batch_requests.labels(variant).observe(requests)
        self.batch_rows.labels(variant).observe(rows)

    def observe_outliers(self, variant: str, rows: int, flagged: int) -> None:
        """`rows` rows checked by the variant's detector, `flagged` of them outliers (any thread)."""
        series = self._outlier_series.get(variant)
        if series is None:
            series = self._outlier_series[variant] = (self.outlier_checked.labels(variant),
                                                      self.outlier_rows.labels(variant))
        series[0].inc(rows)
        if flagged:
            series[1].inc(flagged)

    def _publish_probing(self) -> None:
        """The probing gauges: only the keys the source ranks at the top now (others removed)."""
        if self.probing_source is None:
            return
        from mlgate.serving.probing import MAX_KEY_CHARS

        top = self.probing_source()
        self.probing_share.clear()
        self.probing_requests.clear()
        for activity in top:
            label = activity.key[:MAX_KEY_CHARS]
            self.probing_share.labels(label).set(activity.share)
            self.probing_requests.labels(label).set(activity.requests)

    def mark_ready(self, variant: str, version: str) -> None:
        self.ready.labels(variant, version).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        self._publish_probing()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RoutingMetrics:
    """Route table, shadows, feedback, bandit and prediction-log metrics (all thread-safe)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.route_version = Gauge("mlgate_route_version", "Version of the route table in use.", registry=registry)
        self.route_weight = Gauge("mlgate_route_weight", "Traffic weight of each variant (percent).",
                                  ["variant", "mode", "shadow"], registry=registry)
        self.shadow_predictions = Counter("mlgate_shadow_predictions", "Requests predicted by a shadow variant.",
                                          ["variant", "status_class"], registry=registry)
        self.shadow_latency = Histogram("mlgate_shadow_latency_seconds", "Shadow predict time per request.",
                                        ["variant"], buckets=LATENCY_BUCKETS, registry=registry)
        self.shadow_dropped = Counter("mlgate_shadow_dropped", "Mirrored requests the server shed (not attempted), "
                                      "by reason: queue_full, cpu_budget, closing, table_changed.",
                                      ["variant", "reason"], registry=registry)
        self.shadow_compared = Counter("mlgate_shadow_compared_rows",
                                       "Rows predicted by both a shadow and the answering variant.", ["variant"],
                                       registry=registry)
        self.shadow_agreed = Counter("mlgate_shadow_agreed_rows", "Compared rows where the labels agree.",
                                     ["variant"], registry=registry)
        self.feedback = Counter("mlgate_feedback", "Feedback rows joined to a prediction of the variant.",
                                ["variant", "kind"], registry=registry)
        self.feedback_unknown = Counter("mlgate_feedback_unknown", "Feedback rows whose request id is not logged.",
                                        registry=registry)
        self.feedback_outcome = Counter("mlgate_feedback_outcome", "Feedback items that were duplicates (ignored), "
                                        "conflicts (kept apart, the first label stands) or corrections.",
                                        ["outcome"], registry=registry)
        self.feedback_correct = Counter("mlgate_feedback_correct", "Labelled rows the variant predicted right.",
                                        ["variant"], registry=registry)
        self.reward_sum = Gauge("mlgate_feedback_reward_sum", "Sum of rewards of the variant's answers.",
                                ["variant"], registry=registry)
        self.online_accuracy = Gauge("mlgate_online_accuracy", "Accuracy of the variant on labelled feedback.",
                                     ["variant"], registry=registry)
        self.online_reward = Gauge("mlgate_online_mean_reward", "Mean reward of the variant's answers.",
                                   ["variant"], registry=registry)
        self.bandit_mean = Gauge("mlgate_bandit_posterior_mean", "Posterior mean reward of each bandit arm.",
                                 ["variant", "version"], registry=registry)
        self.log_rows = Counter("mlgate_prediction_log_rows", "Prediction log rows by outcome (written, dropped, failed).",
                                ["outcome"], registry=registry)

    def set_table(self, version: int, mode: str, weights: list[tuple[str, float, bool]]) -> None:
        """Publish a new route table: its version and each variant's weight (old labels removed)."""
        self.route_version.set(version)
        self.route_weight.clear()
        for name, weight, shadow in weights:
            self.route_weight.labels(name, mode, str(shadow).lower()).set(weight)

    def count_log(self, outcome: str, rows: int) -> None:
        self.log_rows.labels(outcome).inc(rows)
