"""Loading any MLflow model for the server and the gates: skops with mlgate's trust list, pyfunc for the
rest, and nothing pickle-based without the user's consent.

One loader, `load_model`, for every model mlgate judges or serves. It reads the MLmodel file first and
refuses a pickle-based model unless `LoadPolicy.allow_pickle` (`serving.allow_pickle`) is set
(mlgate.serving.pickle_guard). scikit-learn estimators saved with skops (the sklearn flavor, or
LightGBM's scikit-learn API in the lightgbm flavor) are loaded with mlgate's own trust list
(mlgate.serving.skops_trust), never the list the model file carries, and keep `predict_proba` and
`classes_`. Every other flavor loads through `mlflow.pyfunc` and gets scores where it has them
(mlgate.serving.pyfunc_scores). A models-from-code model runs its own Python when it loads: whoever
can write to the model directory or the registry can run code here (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlgate.gates.result import first_line
from mlgate.serving.pickle_guard import CONSENT_HINT, MLFLOW_FLAG, mlflow_pickle_flag, pickle_use
from mlgate.serving.settings import DEFAULT_TRUSTED_TYPES, ServingConfig
from mlgate.serving.skops_trust import UntrustedTypesError, load_skops
from mlgate.serving.skops_trust import trusted_types_for as trusted_types_for  # re-exported for saving

if TYPE_CHECKING:
    from mlgate.serving.outliers import OutlierDetector

# mlgate's folder inside an MLflow model directory (its bundle): the outlier detector (mlgate.serving.outliers)
# and the explainers' background sample (mlgate.serving.explain_background), written by `mlgate train`.
BUNDLE_FOLDER = "mlgate"

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The model could not be loaded; the message names the URI or file and the reason."""


@dataclass(frozen=True)
class LoadPolicy:
    """What a load may do: unpickle (the user's consent) and which skops types it trusts."""

    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = DEFAULT_TRUSTED_TYPES

    @classmethod
    def of(cls, config: ServingConfig) -> LoadPolicy:
        return cls(config.allow_pickle, tuple(config.trusted_types))


# The policy of the pyfunc load in progress on this thread: a models-from-code model that loads another
# model in its load_context (a wrapper) loads it under the same consent and trust list (`nested_policy`).
_LOADING: ContextVar[LoadPolicy | None] = ContextVar("mlgate_load_policy", default=None)


def nested_policy() -> LoadPolicy:
    """The LoadPolicy for a model loaded inside another model's load_context: the outer load's (the
    project's `serving` settings, not the model's own); outside an mlgate load, the defaults with MLflow's
    pickle flag as the consent (mlgate sets it to the run's consent)."""
    current = _LOADING.get()
    if current is not None:
        return current
    return LoadPolicy(allow_pickle=os.environ.get(MLFLOW_FLAG, "").strip().lower() == "true")


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # an sklearn-API estimator, or a pyfunc with sklearn's calls (mlgate.serving.pyfunc_scores)
    path: Path
    run_id: str | None
    model_id: str | None
    signature: dict[str, Any] | None
    flavor: str = "sklearn"  # the flavor it was loaded from: sklearn, lightgbm or python_function
    flagged_types: tuple[str, ...] = ()  # types skops flags that the trust list let through
    pickled: str = ""  # what was unpickled, with consent ("" when nothing)
    outliers: OutlierDetector | None = None  # the bundle's outlier detector (mlgate/outliers/), if it has one

    @property
    def input_columns(self) -> list[dict[str, Any]]:
        """The signature's input columns as dicts with 'name', 'type' and 'required'."""
        return signature_inputs({"signature": self.signature}, str(self.path)) or []

    @property
    def no_scores(self) -> str:
        """Why the model gives labels only ("" when it has predict_proba)."""
        if hasattr(self.model, "predict_proba"):
            return ""
        return getattr(self.model, "no_scores", "") or f"its {type(self.model).__name__} has no predict_proba"


def signature_inputs(meta: dict[str, Any], where: str) -> list[dict[str, Any]] | None:
    """The input columns of an MLmodel's signature (None without one); ModelLoadError naming `where`
    when the signature is not valid JSON. The one place mlgate parses an MLflow signature."""
    inputs = (meta.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    try:
        parsed = json.loads(inputs)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{where}: unreadable model signature ({exc})") from None
    if not isinstance(parsed, list):
        raise ModelLoadError(f"{where}: unsupported model signature (inputs are not a list of columns)")
    return parsed


def local_model_path(model_uri: str) -> Path:
    """A local directory holding the MLflow model for a path, file:// URI or any MLflow model URI."""
    candidate = Path(model_uri.removeprefix("file://"))
    if candidate.is_dir():
        return candidate
    import mlflow.artifacts  # imported here: importing mlflow costs about a second

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; the caller needs one
        raise ModelLoadError(f"{model_uri}: cannot fetch the model ({first_line(exc)})") from None


def read_mlmodel(path: Path) -> dict[str, Any]:
    """The MLmodel file of a model directory as a dict; ModelLoadError when there is none."""
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise ModelLoadError(f"{path}: no MLmodel file; not an MLflow model directory")
    return yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}


def check_pickle_consent(path: Path, meta: dict[str, Any], policy: LoadPolicy) -> str:
    """What loading the model would unpickle ("" for nothing); ModelLoadError naming the file and how to
    consent when it is pickle-based and the policy does not allow it."""
    found = pickle_use(path, meta)
    if found and not policy.allow_pickle:
        raise ModelLoadError(f"{found}: refusing to load a pickle-based model (unpickling runs the file's "
                             f"code); to trust it, {CONSENT_HINT}")
    return found or ""


def load_model(model_uri: str, policy: LoadPolicy | None = None) -> LoadedModel:
    """Fetch and load the MLflow model at `model_uri`; ModelLoadError naming the model and the reason."""
    policy = policy or LoadPolicy()
    path = local_model_path(model_uri)
    meta = read_mlmodel(path)
    pickled = check_pickle_consent(path, meta, policy)
    if pickled:
        log.warning("%s: loading a pickle-based model because serving.allow_pickle is set", pickled)
    flavors = meta.get("flavors") or {}
    if "sklearn" in flavors or _skops_lightgbm(flavors.get("lightgbm")):
        flavor = "sklearn" if "sklearn" in flavors else "lightgbm"
        model, flagged = _load_estimator(path, flavor, flavors[flavor], policy)
    else:
        flavor, flagged = "python_function", ()
        model = _load_pyfunc(path, policy)
    if flagged:
        log.info("%s: trusted types that skops flags: %s", path, ", ".join(flagged))
    from mlgate.serving.outliers import OutlierBundleError, load_detector  # numpy and pandas: loaded here

    try:
        outliers = load_detector(path, policy.trusted_types)
    except OutlierBundleError as exc:
        raise ModelLoadError(f"{model_uri}: its outlier detector: {exc}") from None
    return LoadedModel(model=model, path=path, run_id=meta.get("run_id"), model_id=meta.get("model_id"),
                       signature=meta.get("signature"), flavor=flavor, flagged_types=flagged, pickled=pickled,
                       outliers=outliers)


def load_sklearn_model(model_uri: str, trusted_types: tuple[str, ...] = DEFAULT_TRUSTED_TYPES) -> LoadedModel:
    """The sklearn flavor of an MLflow model saved with serialization_format="skops" (never pickle)."""
    path = local_model_path(model_uri)
    meta = read_mlmodel(path)
    flavor = (meta.get("flavors") or {}).get("sklearn")
    if not flavor:
        raise ModelLoadError(f"{path}: not an MLflow sklearn model (no sklearn flavor in MLmodel)")
    check_pickle_consent(path, meta, LoadPolicy(False, trusted_types))
    model, flagged = _load_estimator(path, "sklearn", flavor, LoadPolicy(False, trusted_types))
    return LoadedModel(model=model, path=path, run_id=meta.get("run_id"), model_id=meta.get("model_id"),
                       signature=meta.get("signature"), flagged_types=flagged)


def _skops_lightgbm(flavor: dict[str, Any] | None) -> bool:
    """LightGBM's scikit-learn API saved with skops: an sklearn estimator, loaded like one."""
    return bool(flavor) and flavor.get("serialization_format") == "skops" and \
        flavor.get("model_class", "lightgbm.basic.Booster") != "lightgbm.basic.Booster"


def _load_estimator(path: Path, flavor: str, conf: dict[str, Any], policy: LoadPolicy) -> tuple[Any, tuple[str, ...]]:
    """The estimator of an sklearn or lightgbm flavor: skops with the trust list, or (consented) pickle."""
    if conf.get("serialization_format", "pickle") != "skops":  # reached only with consent
        import mlflow.sklearn

        with mlflow_pickle_flag(policy.allow_pickle):
            return _guarded(path, lambda: mlflow.sklearn.load_model(str(path))), ()
    default = "model.skops" if flavor == "sklearn" else "model.lgb"
    model_file = path / str(conf.get("pickled_model" if flavor == "sklearn" else "data", default))
    try:
        loaded = load_skops(model_file, policy.trusted_types)
    except UntrustedTypesError as exc:
        raise ModelLoadError(str(exc)) from None
    return loaded.model, loaded.flagged


def _load_pyfunc(path: Path, policy: LoadPolicy) -> Any:
    import mlflow.pyfunc

    from mlgate.serving.pyfunc_scores import wrap_pyfunc

    token = _LOADING.set(policy)
    try:
        with mlflow_pickle_flag(policy.allow_pickle), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow's hints about type hints on predict
            return wrap_pyfunc(_guarded(path, lambda: mlflow.pyfunc.load_model(str(path))))
    finally:
        _LOADING.reset(token)


def _guarded(path: Path, load: Any) -> Any:
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - flavors raise many types; the caller needs one
        raise ModelLoadError(f"{path}: cannot be loaded as an MLflow model ({first_line(exc)})") from None
