"""Configuration of each gate and of the online analyses: the `gates.*` and `rollout.*` sections.

They live beside the gates (not in pipelines/) because a gate's `check(inputs, config)` takes them,
and gates import nothing from pipelines. pipelines/config.py composes them into params.yaml's schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gates.schema import StrictModel
from gates.stats.metrics import metrics_for_task

# Metric names a quality threshold may use, per task: the statistics registry is the one source.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    task: tuple(metrics_for_task(task)) for task in ("binary", "multiclass", "regression")
}


class MetricThreshold(StrictModel):
    """A metric's rule. Direction is never guessed; floor and change vs baseline are separate keys."""

    greater_is_better: bool
    min_absolute: float | None = Field(
        None, description="Absolute floor (ceiling when lower is better) on the candidate's value."
    )
    max_regression: float | None = Field(
        None, ge=0.0, description="Non-inferiority margin: allowed worsening vs the baseline."
    )
    min_improvement: float | None = Field(
        None, ge=0.0, description="Required improvement vs the baseline (superiority), instead of a margin."
    )

    @model_validator(mode="after")
    def _one_relative_rule(self) -> MetricThreshold:
        if self.max_regression is not None and self.min_improvement is not None:
            raise ValueError("set either max_regression or min_improvement, not both")
        return self


class FeatureDriftThreshold(StrictModel):
    psi: float | None = Field(None, gt=0.0)
    statistic: float | None = Field(None, gt=0.0)


class DriftConfig(StrictModel):
    """Drift of a new batch against the training reference, decided on effect size with a p-value guard."""

    psi_threshold: float = Field(0.2, gt=0.0)
    statistic_threshold: float = Field(0.1, gt=0.0, description="KS D (numeric) or JS distance (categorical).")
    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    max_rows: int = Field(50_000, ge=100, description="Rows sampled per side for tests, for stable verdicts.")
    max_drifted_share: float = Field(0.3, ge=0.0, le=1.0)
    critical: list[str] = Field(default_factory=list)
    features: dict[str, FeatureDriftThreshold] = Field(default_factory=dict)


class SkewConfig(StrictModel):
    """Train/serving skew: features as the server logged them vs the offline features of the same rows."""

    logged_path: str | None = Field(None, description="CSV / Parquet / JSONL of logged rows; None: no skew check.")
    key_column: str = Field("request_id", description="Key column of the logged rows.")
    offline_key: str = Field("row_id", description="Column of the offline splits the key matches.")
    max_mismatch_share: float = Field(0.0, ge=0.0, le=1.0, description="Allowed share of rows whose value differs.")
    rel_tolerance: float = Field(1e-6, ge=0.0, description="Numeric values equal within this relative difference.")
    abs_tolerance: float = Field(1e-9, ge=0.0, description="... or within this absolute difference.")
    min_matched_rows: int = Field(1, ge=1, description="Fewer logged rows found offline cannot be decided.")


class DataGateConfig(StrictModel):
    suite: str | None = Field(None, description="Expectation suite file; default expectations/<model>.json.")
    range_tolerance: float = Field(0.1, ge=0.0, description="Suggested numeric ranges widened by this share.")
    range_outlier_share: float = Field(
        0.01, ge=0.0, lt=1.0, description="Share of rows a suggested range lets fall outside it (rare outliers)."
    )
    null_rate_slack: float = Field(0.05, ge=0.0, le=1.0)
    max_examples: int = Field(10, ge=1, le=100)
    min_batch_rows: int = Field(1, ge=1, description="Suggested lower bound of a split's row count.")
    max_batch_rows: int | None = Field(None, ge=1, description="Suggested upper bound of a split's row count.")
    drift: DriftConfig = DriftConfig()
    skew: SkewConfig = SkewConfig()

    @model_validator(mode="after")
    def _row_bounds_ordered(self) -> DataGateConfig:
        if self.max_batch_rows is not None and self.max_batch_rows < self.min_batch_rows:
            raise ValueError("max_batch_rows must be >= min_batch_rows")
        return self


class BootstrapConfig(StrictModel):
    """Paired bootstrap settings; `level` is also the CI level of DeLong and McNemar comparisons."""

    n_boot: int = Field(1000, ge=100)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0
    max_rows: int = Field(
        100_000, ge=1000, description="Above this many rows, per-row metrics bootstrap a seeded subsample."
    )


class SliceConfig(StrictModel):
    categorical: list[str] = Field(default_factory=list)
    numeric: dict[str, int] = Field(default_factory=dict, description="Column -> number of quantile bins.")
    min_slice_size: int = Field(100, ge=10)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    max_listed: int = Field(5, ge=1)
    inconclusive: Literal["warn", "fail"] = Field(
        "warn", description="Status of a slice whose CI neither shows non-inferiority nor a regression."
    )


class CalibrationConfig(StrictModel):
    """Calibration of the candidate's probabilities: reported as WARN, never blocking."""

    max_ece: float = Field(0.05, gt=0.0)
    max_brier: float | None = Field(None, gt=0.0)
    n_bins: int = Field(10, ge=2, le=100)


class DeepchecksConfig(StrictModel):
    enabled: bool = True
    on_unavailable: str = Field("error", pattern="^(error|warn|skip)$")
    suites: list[str] = Field(default_factory=lambda: ["train_test_validation", "model_evaluation"])
    timeout_s: float = Field(900.0, gt=0.0)


class QualityGateConfig(StrictModel):
    """Candidate vs the production baseline on one holdout (DESIGN §6 quality)."""

    require_baseline: bool = False
    baseline_alias: str = "champion"
    metrics: dict[str, MetricThreshold] = Field(default_factory=dict)
    bootstrap: BootstrapConfig = BootstrapConfig()
    slices: SliceConfig = SliceConfig()
    max_gap: dict[str, float] = Field(
        default_factory=dict, description="Allowed train-vs-holdout worsening per metric (overfitting)."
    )
    calibration: CalibrationConfig = CalibrationConfig()
    deepchecks: DeepchecksConfig = DeepchecksConfig()

    @model_validator(mode="after")
    def _slice_metrics_have_rules(self) -> QualityGateConfig:
        if self.slices.categorical or self.slices.numeric:
            unruled = [m for m in self.slices.metrics if m not in self.metrics]
            if unruled:
                raise ValueError(
                    f"slices.metrics {unruled} need a rule under gates.quality.metrics "
                    "(their direction and margin apply per slice)"
                )
        negative = [m for m, gap in self.max_gap.items() if gap < 0]
        if negative:
            raise ValueError(f"max_gap must be >= 0; negative for {negative}")
        return self


class EdgeCasesConfig(StrictModel):
    property_rows: int = Field(50, ge=0, le=10_000)
    seed: int = 0
    request_timeout_s: float = Field(10.0, gt=0.0)
    proba_tolerance: float = Field(1e-9, ge=0.0)


class LatencySLO(StrictModel):
    p95_ms: float = Field(250.0, gt=0.0)
    p99_ms: float = Field(500.0, gt=0.0)
    max_error_rate: float = Field(0.001, ge=0.0, le=1.0)
    min_rps: float = Field(20.0, ge=0.0)


class RankTestConfig(StrictModel):
    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    tolerance: float = Field(0.1, ge=0.0, le=0.5, description="Allowed P(candidate slower) - 0.5.")


class LatencyGateConfig(StrictModel):
    users: int = Field(8, ge=1, le=256)
    spawn_rate: float = Field(8.0, gt=0.0)
    rounds: int = Field(3, ge=1, le=20, description="Rounds per model, alternated A B A B.")
    round_s: float = Field(4.0, gt=0.0, le=120.0)
    warmup_s: float = Field(1.0, ge=0.0)
    max_requests_per_round: int = Field(20_000, ge=10)
    batch_mix: dict[int, float] = Field(default_factory=lambda: {1: 0.9, 20: 0.1})
    slo: LatencySLO = LatencySLO()
    max_p95_ratio: float = Field(1.25, ge=1.0)
    rank_test: RankTestConfig = RankTestConfig()


class GatesConfig(StrictModel):
    data: DataGateConfig = DataGateConfig()
    quality: QualityGateConfig = QualityGateConfig()
    edge_cases: EdgeCasesConfig = EdgeCasesConfig()
    latency: LatencyGateConfig = LatencyGateConfig()


class ShadowConfig(StrictModel):
    """Shadow analysis: no labels needed."""

    min_requests: int = Field(200, ge=1)
    min_agreement: float = Field(0.9, ge=0.0, le=1.0)
    max_output_psi: float = Field(0.2, gt=0.0)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    max_latency_ratio: float = Field(1.5, ge=1.0)
    max_duration_s: float = Field(3600.0, gt=0.0)


class CanaryConfig(StrictModel):
    """Canary analysis per traffic step, with always-valid sequential tests."""

    steps: list[int] = Field(default_factory=lambda: [5, 25, 50, 100])
    approval_before: list[int] = Field(default_factory=list)
    min_requests_per_step: int = Field(200, ge=1)
    min_labels_per_step: int = Field(100, ge=0)
    max_step_duration_s: float = Field(3600.0, gt=0.0)
    srm_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    metric_margins: dict[str, float] = Field(default_factory=lambda: {"accuracy": 0.02})
    error_rate_margin: float = Field(0.005, ge=0.0)
    latency_tolerance: float = Field(0.1, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _steps_increase(self) -> CanaryConfig:
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ValueError("steps must be percentages in (0, 100]")
        if self.steps != sorted(set(self.steps)):
            raise ValueError("steps must be strictly increasing")
        unknown = sorted(set(self.approval_before) - set(self.steps))
        if unknown:
            raise ValueError(f"approval_before names steps that are not in steps: {unknown}")
        return self
