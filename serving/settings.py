"""The `serving` section of params.yaml, owned here so the server can run without the pipelines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlgate.gates.schema import StrictModel

# The skops types a model file may contain when mlgate loads it (docs/ARCHITECTURE.md, "Safe model
# loading"): a full type name, or a module prefix ending in ".". Some sklearn types on this list are ones
# skops itself flags (e.g. HistGradientBoosting's TreePredictor); mlgate says which ones it trusted.
DEFAULT_TRUSTED_TYPES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.", "pandas.")


class MicroBatchConfig(StrictModel):
    """Concurrent requests are coalesced into one predict call, bounded in rows and wait."""

    enabled: bool = True
    max_batch_rows: int = Field(256, ge=1)
    # The longest a batch waits for more requests; within it, a batch waits at most half of what one model
    # call costs, measured as it serves (mlgate.serving.batching), so a cheap model holds requests less.
    max_wait_ms: float = Field(10.0, ge=0.0, le=1000.0)
    # Native threads (OpenMP, BLAS) per model call. 1 leaves a core to the event loop and avoids
    # OpenMP spin-waiting when cores are shared; 0 keeps the libraries' own default.
    model_threads: int = Field(1, ge=0)


class PredictionLogConfig(StrictModel):
    """Where every prediction is recorded; SQLite in WAL mode unless a database URL is given."""

    url: str = "sqlite:///reports/predictions.db"
    batch_size: int = Field(256, ge=1)
    flush_interval_s: float = Field(0.5, gt=0.0)
    enabled: bool = True
    # Rows waiting for the writer; beyond this, rows are dropped and counted (never unbounded memory).
    max_pending_rows: int = Field(200_000, ge=1)
    # The class whose probability is logged as `score` for binary classifiers (default: classes_[1]).
    positive_class: str | None = None
    # Personal data: input columns never written to the log, and columns written only as a keyed hash
    # (BLAKE2b with $MLGATE_LOG_HASH_KEY; equal values still compare equal, for drift of categories).
    omit_columns: list[str] = Field(default_factory=list)
    hash_columns: list[str] = Field(default_factory=list)
    # Rows (predictions, feedback, shed counts) older than this many days are deleted by the writer.
    retention_days: float | None = Field(None, gt=0.0)


class ShadowMirrorConfig(StrictModel):
    """Mirroring to shadow variants: one bounded queue and one worker thread per shadow variant."""

    queue_size: int = Field(1024, ge=1)
    max_batch_rows: int = Field(256, ge=1)
    max_wait_ms: float = Field(20.0, ge=0.0, le=1000.0)
    # A shadow call slower than this is recorded with status 504 (its prediction is not used).
    timeout_s: float = Field(5.0, gt=0.0)
    # Share of wall-clock time a shadow's worker may spend computing (CPU time): it shares the GIL
    # with the answering variant, so beyond this its work waits (once its queue is full, mirrored
    # requests are dropped and counted).
    # 3%: enough for a challenger three times as costly per call as the champion, or with some failing
    # rows to isolate, to be seen on most of 150 requests/s on 2 cores (1% shed ~10% of such mirrors
    # and starved a challenger with failing rows); the reliability test bounds the champion's cost.
    max_busy_share: float = Field(0.03, gt=0.0, le=1.0)


class BanditConfig(StrictModel):
    """Thompson sampling (Beta-Bernoulli) over the arms of a bandit route table."""

    min_share: float = Field(0.05, ge=0.0, le=0.5)
    prior_alpha: float = Field(1.0, gt=0.0)
    prior_beta: float = Field(1.0, gt=0.0)


class GuardConfig(StrictModel):
    """The server's own fast rollback: when a variant's share of 5xx answers over the last `window_s` passes
    `max_error_rate` (at least `min_requests` of its routed requests in the window), the server gives its
    traffic back to the `champion` variant through the shared route table, and records why."""

    enabled: bool = True
    # The variant that gets the traffic back; the guard watches every other variant with traffic. A table
    # without this variant (not a rollout's) is not guarded.
    champion: str = "champion"
    window_s: float = Field(30.0, gt=0.0, le=3600.0)
    min_requests: int = Field(20, ge=1)
    # A hard limit, far above any canary's error_rate_margin: the controller's analysis judges the small
    # differences at its looks; this catches a challenger that fails most requests between two looks.
    max_error_rate: float = Field(0.5, gt=0.0, lt=1.0)


class RoutingConfig(StrictModel):
    """How requests are assigned to variants; the route table itself comes from --routes or PUT /routes."""

    # An input column holding an entity id used as the sticky routing key when X-Routing-Key is absent.
    key_column: str | None = None
    # The route table is persisted beside the prediction log and restored at start (it wins over --model and
    # --routes); false starts from the arguments (the operator's reset; `mlgate serve --reset-routes`).
    restore_routes: bool = True
    # Every this many seconds the server reads the stored route table's version (one indexed row) and swaps
    # in a newer one that another replica wrote (its models loaded first); null: never (one server alone).
    sync_interval_s: float | None = Field(2.0, ge=0.05, le=3600.0)
    # GET /routes and GET /bandit show model URIs and versions: `token` makes them need the admin token.
    read_access: Literal["open", "token"] = "open"
    # X-Target-Variant: `allow` (the request is logged as forced and left out of every split analysis) or
    # `refuse_during_rollout` (403 while the table splits or mirrors traffic).
    forced_variants: Literal["allow", "refuse_during_rollout"] = "allow"
    # Seed of the random routing and bandit draws (None: a fresh seed per process).
    seed: int | None = None
    shadow: ShadowMirrorConfig = ShadowMirrorConfig()
    bandit: BanditConfig = BanditConfig()
    guard: GuardConfig = GuardConfig()


class ExplainConfig(StrictModel):
    """POST /explain: per-row feature contributions, bounded in rows and time (docs/EXPLANATIONS.md)."""

    enabled: bool = True
    # Rows one request may ask to explain; more is 413. An explanation costs far more than a prediction.
    max_rows: int = Field(32, ge=1, le=10_000)
    # An explanation not ready within this many seconds is answered 504.
    timeout_s: float = Field(10.0, gt=0.0)
    # Background rows of the model-agnostic (permutation) explainer and of the expected values, and how many
    # feature permutations it samples per row; both are stated in its answers.
    background_rows: int = Field(50, ge=1, le=5_000)
    permutations: int = Field(10, ge=1, le=1_000)


class OutlierConfig(StrictModel):
    """Outlier flags from the detector stored in a model's bundle (`mlgate/outliers/` in the model directory)."""

    enabled: bool = True
    # X-Outlier-Rows lists at most this many row indices (X-Outlier-Count stays exact).
    max_header_rows: int = Field(100, ge=0, le=10_000)


class ProbingConfig(StrictModel):
    """Who sends requests that are outliers or sit on the decision boundary (docs/OUTLIERS.md, "Probing")."""

    enabled: bool = True
    # The requests of the last `window_s` seconds count, per routing key (else per client address).
    window_s: float = Field(600.0, gt=0.0, le=86_400.0)
    # A binary classifier's row whose positive-class probability is within this of 0.5 (a probability row's
    # top two classes within this of each other) lies on the decision boundary.
    boundary_margin: float = Field(0.05, ge=0.0, le=0.5)
    # Only the `top_k` keys with the highest share, among keys with at least `min_requests`, are exported.
    top_k: int = Field(10, ge=0, le=100)
    min_requests: int = Field(20, ge=1)
    # Keys tracked per tenth of the window; beyond it, a new key's requests count under "(other)".
    max_keys: int = Field(10_000, ge=1, le=1_000_000)


class ServingConfig(StrictModel):
    """How the model server accepts requests and runs."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Where the gates start the server: `process` (a subprocess) or `docker` (the image below, built
    # from the repository's Dockerfile with `docker build -t IMAGE .`; needs a Docker daemon).
    runtime: Literal["process", "docker"] = "process"
    docker_image: str = Field("mlgate-serving:latest", min_length=1)
    max_batch_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(20_000_000, ge=1024)
    extra_columns: Literal["ignore", "reject"] = "ignore"
    request_timeout_s: float = Field(30.0, gt=0.0)
    startup_timeout_s: float = Field(60.0, gt=0.0)
    microbatch: MicroBatchConfig = MicroBatchConfig()
    prediction_log: PredictionLogConfig = PredictionLogConfig()
    routing: RoutingConfig = RoutingConfig()
    explain: ExplainConfig = ExplainConfig()
    outliers: OutlierConfig = OutlierConfig()
    probing: ProbingConfig = ProbingConfig()
    # Pickle-based models (a cloudpickle PythonModel, an sklearn model saved with pickle, a flavor mlgate
    # cannot vouch for) load only when this is true (or with `mlgate --allow-pickle`, MLGATE_ALLOW_PICKLE=1):
    # unpickling runs whatever code the model file carries.
    allow_pickle: bool = False
    # skops types trusted in model files (sklearn flavor; lightgbm's sklearn API), see DEFAULT_TRUSTED_TYPES.
    # E.g. add "lightgbm.sklearn.LGBMClassifier", "lightgbm.basic.Booster" for a Pipeline ending in LightGBM.
    trusted_types: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUSTED_TYPES))

    @field_validator("trusted_types")
    @classmethod
    def _type_names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v or "." not in v or v.startswith(".") or any(c in v for c in "*? ")]
        if bad:
            raise ValueError(f"entries must be a full type name (module.Type) or a module prefix ending in '.': {bad}")
        return value
