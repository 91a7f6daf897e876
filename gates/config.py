"""Configuration of each gate and of the online analyses: the `gates.*` and `rollout.*` sections.

They live beside the gates (not in pipelines/) because a gate's `check(inputs, config)` takes them,
and gates import nothing from pipelines. pipelines/config.py composes them into params.yaml's schema.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gates.schema import StrictModel

# Metric names a quality threshold may use, per task; the config rejects anything else.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "log_loss", "brier"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
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

    logged_path: str | None = None
    key_column: str = "request_id"


class DataGateConfig(StrictModel):
    suite: str | None = Field(None, description="Expectation suite file; default expectations/<model>.json.")
    range_tolerance: float = Field(0.1, ge=0.0, description="Suggested numeric ranges widened by this share.")
    null_rate_slack: float = Field(0.05, ge=0.0, le=1.0)
    max_examples: int = Field(10, ge=1, le=100)
    drift: DriftConfig = DriftConfig()
    skew: SkewConfig = SkewConfig()


class BootstrapConfig(StrictModel):
    n_boot: int = Field(1000, ge=100)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


class SliceConfig(StrictModel):
    categorical: list[str] = Field(default_factory=list)
    numeric: dict[str, int] = Field(default_factory=dict, description="Column -> number of quantile bins.")
    min_slice_size: int = Field(100, ge=10)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    max_listed: int = Field(5, ge=1)


class CalibrationConfig(StrictModel):
    max_ece: float = Field(0.05, gt=0.0)
    max_brier: float | None = Field(None, gt=0.0)


class DeepchecksConfig(StrictModel):
    enabled: bool = True
    on_unavailable: str = Field("error", pattern="^(error|warn|skip)$")
    suites: list[str] = Field(default_factory=lambda: ["train_test_validation", "model_evaluation"])
    timeout_s: float = Field(900.0, gt=0.0)


class QualityGateConfig(StrictModel):
    require_baseline: bool = False
    baseline_alias: str = "champion"
    metrics: dict[str, MetricThreshold] = Field(default_factory=dict)
    bootstrap: BootstrapConfig = BootstrapConfig()
    slices: SliceConfig = SliceConfig()
    max_gap: dict[str, float] = Field(default_factory=dict, description="Train minus holdout, per metric.")
    calibration: CalibrationConfig = CalibrationConfig()
    deepchecks: DeepchecksConfig = DeepchecksConfig()


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
