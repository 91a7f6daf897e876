"""Configuration of each gate and of the online analyses: the `gates.*` and `rollout.*` sections.

They live beside the gates (not in pipelines/) because a gate's `check(inputs, config)` takes them,
and gates import nothing from pipelines. pipelines/params.py composes them into params.yaml's schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlgate.gates.schema import StrictModel
from mlgate.gates.stats.metrics import metrics_for_task

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
    key_prefix: str = Field("", description="Prefix of logged keys removed before matching (replay's id_prefix).")
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
    """deepchecks suites run in their pinned side environment (DESIGN §9)."""

    enabled: bool = True
    on_unavailable: str = Field("error", pattern="^(error|warn|skip)$")
    suites: list[str] = Field(default_factory=lambda: ["train_test_validation", "model_evaluation"])
    exclude_checks: list[str] = Field(
        default_factory=list, description="deepchecks check class names not to run, e.g. WeakSegmentsPerformance."
    )
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
    """The real server attacked with cases generated from the data schema (DESIGN §6 edge_cases)."""

    property_rows: int = Field(50, ge=0, le=10_000, description="Random valid rows (seeded), one request each.")
    seed: int = Field(0, description="Seed of the property rows and of the shuffled column order.")
    request_timeout_s: float = Field(10.0, gt=0.0, description="No answer within this is a FAIL of the case.")
    proba_tolerance: float = Field(1e-9, ge=0.0, description="Allowed |server - offline| probability on the holdout.")
    holdout_batch_rows: int = Field(
        1000, ge=1, description="Holdout rows per consistency request (also capped by serving.max_batch_rows)."
    )


class LatencySLO(StrictModel):
    """Absolute service levels of the candidate under the configured load."""

    p95_ms: float = Field(250.0, gt=0.0)
    p99_ms: float = Field(500.0, gt=0.0)
    max_error_rate: float = Field(0.001, ge=0.0, le=1.0)
    min_rps: float = Field(15.0, ge=0.0, description="Successful requests per second in the measured windows.")


class RankTestConfig(StrictModel):
    """Kayenta-style judge: fail only when significant AND the effect exceeds the tolerance."""

    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    effect: Literal["shift_ratio", "superiority"] = Field(
        "shift_ratio", description="shift_ratio: Hodges-Lehmann shift / baseline median (a magnitude); "
        "superiority: P(candidate slower) - 0.5 (a consistency measure).")
    tolerance: float = Field(0.25, ge=0.0, description="Allowed effect: +25% of the baseline median for shift_ratio; "
                             "for superiority at most 0.5 (0.15: P(candidate slower) up to 0.65).")
    slack_ms: float = Field(2.0, ge=0.0, description="shift_ratio: a median shift this small never fails, whatever "
                            "its share of a fast baseline's median (ratios of tiny times are noise).")

    @model_validator(mode="after")
    def _superiority_is_a_probability(self) -> RankTestConfig:
        if self.effect == "superiority" and self.tolerance > 0.5:
            raise ValueError(f"tolerance {self.tolerance:g} > 0.5: with effect superiority it is P(candidate slower) "
                             "- 0.5, at most 0.5")
        return self


class LatencyGateConfig(StrictModel):
    """Candidate and baseline servers under the same locust load, in alternating rounds (DESIGN §6)."""

    require_baseline: bool = False
    baseline_alias: str = "champion"
    users: int = Field(8, ge=1, le=256)
    spawn_rate: float = Field(8.0, gt=0.0, description="Users started per second; the ramp-up is never measured.")
    user_rps: float | None = Field(
        2.5, gt=0.0, description="Requests per second of each user, from a random phase; None: no wait."
    )
    rounds: int = Field(12, ge=1, le=100, description="Rounds per model, alternated candidate/baseline.")
    round_s: float = Field(1.0, gt=0.0, le=120.0, description="Measured seconds per round, after the warm-up.")
    warmup_s: float = Field(0.4, ge=0.0, le=60.0, description="Seconds at the start of each round not measured.")
    max_requests_per_round: int = Field(2000, ge=10, description="Requests sent per round, warm-up included.")
    request_timeout_s: float = Field(10.0, gt=0.0)
    batch_mix: dict[int, float] = Field(
        default_factory=lambda: {1: 0.9, 20: 0.1}, description="Rows per request -> share of requests."
    )
    payloads_per_size: int = Field(200, ge=1, le=10_000, description="Distinct holdout payloads per batch size.")
    seed: int = 0
    min_samples: int = Field(100, ge=10, description="Fewer measured requests per model cannot be decided.")
    min_sustained_share: float = Field(
        0.9, gt=0.0, le=1.0,
        description="Share of the offered rate a model must serve; a baseline below it means an overloaded machine.",
    )
    slo: LatencySLO = LatencySLO()
    max_p95_ratio: float = Field(1.25, ge=1.0)
    ratio_level: float = Field(0.95, gt=0.5, lt=1.0, description="CI level of the p95 ratio and of the SLO percentiles (round-level bootstrap).")
    ratio_n_boot: int = Field(1000, ge=100, le=100_000)
    p95_slack_ms: float = Field(
        2.0, ge=0.0, description="A p95 difference this small never fails the ratio (ratios of tiny times are noise)."
    )
    rank_test: RankTestConfig = RankTestConfig()

    @model_validator(mode="after")
    def _valid_load(self) -> LatencyGateConfig:
        offered = self.offered_rps
        if offered is not None and self.slo.min_rps > offered:
            raise ValueError(f"slo.min_rps {self.slo.min_rps:g} exceeds the offered load users x user_rps = "
                             f"{offered:g} requests/s: it could never be met")
        if not self.batch_mix:
            raise ValueError("batch_mix needs at least one batch size")
        bad = [size for size, share in self.batch_mix.items() if size < 1 or share <= 0]
        if bad:
            raise ValueError(f"batch_mix: batch sizes must be >= 1 and shares > 0; wrong for {bad}")
        return self

    @property
    def offered_rps(self) -> float | None:
        """Requests per second the users offer (None without a per-user rate: a closed loop)."""
        return self.users * self.user_rps if self.user_rps else None

    @property
    def round_deadline_s(self) -> float:
        """Upper bound of one round: ramp-up, warm-up, measurement, and requests in flight finishing."""
        return self.users / self.spawn_rate + self.warmup_s + self.round_s + self.request_timeout_s


class GatesConfig(StrictModel):
    data: DataGateConfig = DataGateConfig()
    quality: QualityGateConfig = QualityGateConfig()
    edge_cases: EdgeCasesConfig = EdgeCasesConfig()
    latency: LatencyGateConfig = LatencyGateConfig()


# Label metrics the canary tests sequentially from feedback: each is a proportion over a subset of rows.
CANARY_LABEL_METRICS: dict[str, tuple[str, ...]] = {
    "accuracy": ("binary", "multiclass"),
    "recall": ("binary",),
    "precision": ("binary",),
    # Mean absolute error; its margin is relative: the challenger's MAE may exceed the champion's by at
    # most margin x the champion's MAE.
    "mae": ("regression",),
}


class OutlierRateConfig(StrictModel):
    """The challenger's live outlier rate (rows its bundle's detector flags) against the share of training rows
    it flags: live traffic unlike the training data questions every offline result (docs/OUTLIERS.md)."""

    max_ratio: float = Field(3.0, gt=1.0, description="Live rate allowed, as a multiple of the training share.")
    min_rows: int = Field(100, ge=1, description="Rows the detector checked before the rate is judged.")
    on_exceed: Literal["warn", "fail"] = Field(
        "warn", description="warn: reported, never blocking; fail: a live rate shown above the limit fails the look."
    )


class ShadowConfig(StrictModel):
    """Shadow analysis: the challenger predicts on mirrored traffic; no labels needed.

    Rates are judged on always-valid confidence sequences (alpha, tightest at `planned_requests`),
    so the controller may re-run the analysis at every poll: PASS when the whole interval is on the
    good side of the threshold, FAIL when it is wholly on the bad side, else inconclusive.
    """

    min_requests: int = Field(200, ge=1, description="Mirrored requests the challenger was run on before any verdict.")
    min_coverage: float = Field(
        0.5, gt=0.0, le=1.0, description="Share of served requests the challenger must have been run on (the server "
        "sheds mirrors under load); below it the analysis stays inconclusive, never failed or passed.",
    )
    planned_requests: int = Field(2000, ge=10, description="Requests at which the confidence sequences are tightest.")
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_agreement: float = Field(0.9, ge=0.0, le=1.0, description="Share of rows where both predict the same label.")
    min_score_correlation: float = Field(0.8, ge=-1.0, le=1.0, description="Pearson r of scores (or regression values).")
    max_score_mae: float | None = Field(None, gt=0.0, description="Mean |score difference|; None: reported, not judged.")
    max_output_psi: float = Field(0.2, gt=0.0)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0, description="Share of attempted mirrors the challenger "
                                  "failed (shed mirrors are not attempts).")
    max_latency_ratio: float = Field(
        1.5, ge=1.0, description="The challenger's model time over the champion's on the same rows (timed back to "
        "back in the shadow worker, one pair per model call): Failed when most calls exceed it."
    )
    latency_slack_ms: float = Field(
        5.0, ge=0.0, description="A call at most this many ms slower than the champion's never counts as beyond "
        "max_latency_ratio: ratios of tiny times are noise (the default model's call takes 0.5 ms for 32 rows, so "
        "MLflow's pyfunc overhead alone, about 1.5 ms, made a wrapped copy of it 4x)."
    )
    latency_alpha: float = Field(0.01, gt=0.0, lt=1.0, description="Alpha of the always-valid sign test on those calls.")
    planned_latency_calls: int = Field(50, ge=5, description="Timed call pairs at which that test is tightest.")
    input_drift: Literal["warn", "fail", "off"] = Field(
        "warn", description="Drift of live traffic vs training: it questions the offline evaluation, not the model."
    )
    max_duration_s: float = Field(3600.0, gt=0.0, description="Inconclusive this long: the rollout pauses.")
    outliers: OutlierRateConfig = OutlierRateConfig()


class CanaryConfig(StrictModel):
    """Canary analysis per traffic step, with always-valid sequential tests (mSPRT).

    Label metrics and the error rate are tested on the cumulative data since the canary started, so
    one always-valid test covers every look of every step. Any proven harm (the whole confidence
    sequence beyond the margin) fails the step at once. Non-inferiority (the whole sequence inside
    the margin) must be proven before promotion: at the last step, or at every step with
    `prove_non_inferiority: every_step`.
    """

    steps: list[int] = Field(default_factory=lambda: [5, 25, 50, 100])
    approval_before: list[int] = Field(default_factory=list)
    approve_promotion: bool = Field(False, description="Wait for an approval of stage `production` before promoting.")
    min_requests_per_step: int = Field(200, ge=1, description="Requests the challenger served in the step.")
    min_labels_per_step: int = Field(100, ge=0, description="Labelled challenger rows in the step.")
    max_step_duration_s: float = Field(3600.0, gt=0.0, description="Inconclusive this long: the rollout pauses.")
    srm_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    metric_margins: dict[str, float] = Field(default_factory=lambda: {"accuracy": 0.02})
    planning_rates: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 0.85, "error_rate": 0.05},
        description="Rate per metric, fixed before the canary, that sets the mixing variance (0.5 if absent). "
                    "A larger value catches big regressions sooner and small ones later.",
    )
    planned_labels: int = Field(2000, ge=10, description="Labelled rows per arm where the label tests are tightest.")
    planned_requests: int = Field(5000, ge=10, description="Requests per arm where the error-rate test is tightest.")
    error_rate_margin: float = Field(0.005, ge=0.0)
    prove_non_inferiority: Literal["last_step", "every_step"] = "last_step"
    # Arms on one server share its CPU and batch differently at unequal weights, so a small latency gap is
    # expected online; this check guards against gross slowdowns (the latency gate compares them offline).
    latency_tolerance: float | None = Field(0.2, ge=0.0, le=0.5, description="Allowed P(challenger slower) - 0.5; "
                                            "None: no latency check.")
    latency_alpha: float = Field(0.01, gt=0.0, lt=1.0)
    latency_slack_ms: float = Field(2.0, ge=0.0, description="A median shift this small never fails the latency "
                                    "check (ratios of tiny times are noise), as the latency gate's slacks.")
    min_latency_samples: int = Field(100, ge=5, description="Requests per arm before latency is judged.")
    outliers: OutlierRateConfig = OutlierRateConfig()

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

    @model_validator(mode="after")
    def _known_metrics(self) -> CanaryConfig:
        for name, margin in self.metric_margins.items():
            if name not in CANARY_LABEL_METRICS:
                raise ValueError(f"metric_margins.{name}: not a canary label metric; valid: "
                                 f"{', '.join(CANARY_LABEL_METRICS)}")
            if not 0.0 <= margin < 1.0:
                raise ValueError(f"metric_margins.{name}: margin must be in [0, 1), got {margin}")
        for name, rate in self.planning_rates.items():
            if name not in (*CANARY_LABEL_METRICS, "error_rate") or not 0.0 < rate < 1.0:
                raise ValueError(f"planning_rates.{name}: need a label metric or error_rate with a rate in (0, 1)")
        return self

    def planning_rate(self, metric: str) -> float:
        return self.planning_rates.get(metric, 0.5)
