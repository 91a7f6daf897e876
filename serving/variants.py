"""A served variant: one MLflow model URI loaded with its name, version, signature and predict calls.

Every model is loaded through `mlgate.serving.loading`: skops estimators with mlgate's trust list
(`serving.trusted_types`), other flavors through `mlflow.pyfunc` with their scores where they have them,
and nothing pickle-based unless `serving.allow_pickle` is set (MLflow's own default allows pickle).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlgate.gates.result import first_line
from mlgate.serving.fast_features import CompiledFeatures, compile_features
from mlgate.serving.fast_trees import FlatBoosting
from mlgate.serving.frames import build_columns, output_rows, split_rows
from mlgate.serving.loading import LoadPolicy, ModelLoadError, load_model, signature_inputs
from mlgate.serving.outliers import OutlierDetector
from mlgate.serving.settings import ServingConfig
from mlgate.serving.validation import FeatureBatch, InputSchema

# predict_scored: labels with the positive-class probability, as [label, score] rows (binary classifiers).
PredictMethod = Literal["predict", "predict_proba", "predict_scored"]
DEFAULT_VARIANT = "default"
# Collections of the middle generation between two of the oldest (Python's default: 10); see freeze_long_lived.
FULL_COLLECTION_EVERY = 100

log = logging.getLogger(__name__)
_NAMED_URI = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<uri>.+)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_REGISTRY_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_REGISTRY_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")


class BatchRows(list):  # type: ignore[type-arg]
    """One request's JSON-ready rows (a list), and `outliers`: each row's outlier flag, None when the
    variant has no detector."""

    __slots__ = ("outliers",)

    def __init__(self, rows: Sequence[Any] = (), outliers: list[bool] | None = None) -> None:
        super().__init__(rows)
        self.outliers = outliers


def outlier_flags(rows: Sequence[Any]) -> list[bool] | None:
    """The outlier flags of a request's rows (None: not known, e.g. rows that are not `BatchRows`)."""
    return getattr(rows, "outliers", None)


@dataclass(frozen=True)
class Variant:
    """A loaded model served under `name`; `predict_rows` runs one combined batch."""

    name: str
    uri: str
    version: str
    flavor: str
    schema: InputSchema | None
    model: Any
    classes: tuple[Any, ...] | None = None
    positive_index: int = 1  # column of predict_proba logged as the score (binary classifiers)
    skops_flagged: tuple[str, ...] = ()  # types skops flags that serving.trusted_types let through
    outliers: OutlierDetector | None = None  # the bundle's outlier detector (None: this model has none)
    features: CompiledFeatures | None = None  # the pipeline's feature step in numpy (None: scikit-learn's)
    features_how: str = "scikit-learn"  # how the feature step runs, or why not in numpy (/readyz)
    trees: FlatBoosting | None = None  # a gradient-boosting estimator's trees in flat numpy arrays

    @property
    def strict_integers(self) -> bool:
        """pyfunc models enforce the signature themselves and refuse nulls in integer columns."""
        return self.flavor == "python_function"

    @property
    def supports_proba(self) -> bool:
        return hasattr(self.model, "predict_proba") and self.classes is not None

    @property
    def scored(self) -> bool:
        """A binary classifier with scores: its positive-class probability is logged as the score."""
        return self.supports_proba and self.classes is not None and len(self.classes) == 2

    @property
    def answer_method(self) -> PredictMethod:
        """The method that answers a label request: with scores when the model has them."""
        return "predict_scored" if self.scored else "predict"

    def predict_rows(self, method: PredictMethod, batches: Sequence[FeatureBatch]) -> list[BatchRows]:
        """Predict every batch in one model call and return the JSON-ready rows of each batch, with each
        row's outlier flag when the model's bundle has a detector."""
        columns = build_columns(self.schema, batches)
        if self.features is not None:  # the same numbers as the pipeline's own transform, without pandas
            model, data = self.features.estimator, self.features.transform(columns)
        else:
            model, data = self.model, pd.DataFrame(columns, copy=False)
        if method == "predict_scored":
            rows = labels_with_scores(model, data, self.positive_index, self.trees)
        elif self.trees is not None and model is self.trees.estimator:
            rows = output_rows(boosting_output(self.trees, method, data), len(data))
        else:
            predict = model.predict_proba if method == "predict_proba" else model.predict
            rows = output_rows(predict(data), len(data))
        sizes = [batch.n_rows for batch in batches]
        flags = split_rows(self.outliers.flags(columns).tolist(), sizes) if self.outliers is not None else None
        return [BatchRows(part, flags[i] if flags is not None else None)
                for i, part in enumerate(split_rows(rows, sizes))]

    def describe(self) -> dict[str, Any]:
        """What /readyz and logs say about this variant."""
        return {"uri": self.uri, "version": self.version, "flavor": self.flavor,
                "columns": list(self.schema.names) if self.schema else None,
                "classes": list(self.classes) if self.classes is not None else None,
                "scores": self.supports_proba, "skops_flagged_types": list(self.skops_flagged),
                "outlier_detector": self.outliers.spec_summary() if self.outliers is not None else None,
                "feature_step": self.features_how,
                "trees": "flat numpy" if self.trees is not None else "the model's own"}


def labels_with_scores(model: Any, frame: Any, positive_index: int,
                       trees: FlatBoosting | None = None) -> list[list[Any]]:
    """[label, positive-class probability] per row. A Pipeline transforms once and its final step
    gives both, exactly as Pipeline.predict and predict_proba would."""
    final, features = model, frame
    if hasattr(model, "steps"):
        final = model.steps[-1][1]
        for _, step in model.steps[:-1]:
            if step is not None and step != "passthrough":
                features = step.transform(features)
    predicted, probabilities = labels_and_probabilities(final, features, trees)
    labels = output_rows(predicted, len(frame))
    scores = probabilities[:, positive_index].tolist()
    return [[label, score] for label, score in zip(labels, scores, strict=True)]


def labels_and_probabilities(estimator: Any, features: Any, trees: FlatBoosting | None = None) -> tuple[Any, Any]:
    """`estimator.predict(features)` and `estimator.predict_proba(features)`. Both methods of a
    HistGradientBoostingClassifier walk every tree (`_raw_predict`) and differ only in the last step,
    so for exactly that class the trees are walked once and both last steps taken as its methods take
    them: half the tree walks of the default model's served calls (issue 18). A random forest's and a
    LightGBM classifier's predict is the argmax of their predict_proba, so one predict_proba gives both.
    tests/serving/test_one_pass_scores.py checks that the two ways agree bit for bit."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if _predicts_argmax_of_proba(estimator):  # its predict is exactly this, after a second predict_proba
        probabilities = estimator.predict_proba(features)
        encoded = np.argmax(probabilities, axis=1)
        labels = estimator._le.inverse_transform(encoded) if _type_name(estimator) == _LIGHTGBM_CLASSIFIER \
            else estimator.classes_.take(encoded, axis=0)
        return labels, probabilities
    if type(estimator) is not HistGradientBoostingClassifier:
        return estimator.predict(features), estimator.predict_proba(features)
    raw = trees.raw_predict(features) if trees is not None and trees.estimator is estimator \
        else estimator._raw_predict(features)
    encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
    return estimator.classes_[encoded], estimator._loss.predict_proba(raw)


_LIGHTGBM_CLASSIFIER = "lightgbm.sklearn.LGBMClassifier"
# Classifiers whose predict is the argmax of their own predict_proba (read in their source: ForestClassifier.predict
# with one output; LGBMClassifier.predict with a built-in objective): one pass gives both.
_ARGMAX_OF_PROBA = {"sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._forest.ExtraTreesClassifier",
                    _LIGHTGBM_CLASSIFIER}


def _type_name(estimator: Any) -> str:
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}"


def _predicts_argmax_of_proba(estimator: Any) -> bool:
    name = _type_name(estimator)
    if name not in _ARGMAX_OF_PROBA:
        return False
    if name == _LIGHTGBM_CLASSIFIER:
        return not callable(getattr(estimator, "_objective", None))
    return getattr(estimator, "n_outputs_", 1) == 1


def boosting_output(trees: FlatBoosting, method: PredictMethod, features: Any) -> Any:
    """`predict` or `predict_proba` of the gradient-boosting model of `trees`, from its flat trees."""
    estimator = trees.estimator
    if not hasattr(estimator, "classes_"):  # a regressor: its predict is the link's inverse of the raw value
        return estimator._loss.link.inverse(trees.raw_predict(features).ravel())
    labels, probabilities = labels_and_probabilities(estimator, features, trees)
    return probabilities if method == "predict_proba" else labels


def numpy_paths(model: Any, schema: InputSchema | None) -> tuple[CompiledFeatures | None, str, FlatBoosting | None]:
    """The model's feature step in numpy (with how, or why not) and its estimator's flat trees, each None
    where scikit-learn's own code must serve."""
    features, how = compile_features(model, schema)
    return features, how, FlatBoosting.of(features.estimator) if features is not None else None


def served_predict(loaded: Any) -> Callable[[pd.DataFrame], Any]:
    """`loaded.model.predict` (a LoadedModel's) for a DataFrame, through the numpy feature step and flat trees
    where they apply, as the server predicts with it; the model's own predict otherwise. For wrappers that
    hold a model (the demo's faulty model), so a wrapped model costs what it costs when served."""
    features, _, trees = numpy_paths(loaded.model, _input_schema({"signature": loaded.signature}, "wrapped model"))
    if features is None:
        return loaded.model.predict  # type: ignore[no-any-return]

    def predict(frame: pd.DataFrame) -> Any:
        data = features.transform({name: frame[name].to_numpy() for name in frame.columns})
        return boosting_output(trees, "predict", data) if trees is not None else features.estimator.predict(data)

    return predict


def with_positive_class(variant: Variant, positive_class: str | None) -> Variant:
    """`variant` scoring `positive_class` (its classes_ index); unchanged when unset or not a class."""
    if positive_class is None or not variant.classes:
        return variant
    texts = [str(c) for c in variant.classes]
    if positive_class not in texts:
        return variant
    return dataclasses.replace(variant, positive_index=texts.index(positive_class))


def parse_model_args(values: Sequence[str]) -> dict[str, str]:
    """`[NAME=]URI` command-line values as {variant name: URI}; an unnamed model is 'default'."""
    models: dict[str, str] = {}
    for value in values:
        match = _NAMED_URI.match(value)
        name, uri = (match["name"], match["uri"]) if match else (DEFAULT_VARIANT, value)
        if name in models:
            raise ValueError(f"variant {name!r} is given twice (name them: --model NAME=URI)")
        models[name] = uri
    if not models:
        raise ValueError("give at least one --model")
    return models


def load_variant(name: str, uri: str, policy: LoadPolicy | None = None) -> Variant:
    """Fetch and load the model at `uri`; raise ModelLoadError naming the URI and the reason."""
    pinned_uri, registry_version = pin_registry_version(uri)
    if _SCHEME.match(uri) is None and not Path(uri).is_dir():
        raise ModelLoadError(f"{uri}: no such model directory")  # fail fast, without importing mlflow
    loaded = load_model(pinned_uri, policy)
    version = registry_version or loaded.run_id or loaded.model_id or "local"
    classes = getattr(loaded.model, "classes_", None)
    schema = _input_schema({"signature": loaded.signature}, uri)
    features, how, trees = numpy_paths(loaded.model, schema)
    log.info("variant %s: feature step: %s; trees: %s", name, how,
             f"flat numpy, equal on {trees.checked_rows} probe rows" if trees else "the model's own")
    return Variant(
        name=name, uri=uri, version=str(version), flavor=loaded.flavor, schema=schema, model=loaded.model,
        classes=tuple(classes.tolist()) if classes is not None else None, skops_flagged=loaded.flagged_types,
        outliers=loaded.outliers, features=features, features_how=how, trees=trees,
    )


def variant_loader(config: ServingConfig) -> Callable[[str, str], Variant]:
    """`load_variant` with the server's load policy (pickle consent, skops trust list), freezing what
    the load left alive out of the garbage collector's reach (`freeze_long_lived`)."""
    policy = LoadPolicy.of(config)

    def load(name: str, uri: str) -> Variant:
        variant = load_variant(name, uri, policy)
        freeze_long_lived()
        return variant

    return load


def freeze_long_lived() -> None:
    """Move every object alive now (models, imported libraries) out of the collector's generations, and
    collect the oldest generation a tenth as often. Under load the oldest generation was collected twice
    a second, each time walking the model, pandas, scikit-learn and MLflow (60-100 ms with the GIL held:
    the server's p99, issue 18); once the feedback join's recent answers fill up, still 40 ms each for a
    few dozen objects freed. Unfreezing first lets this collection free models unloaded since."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def pin_registry_version(uri: str) -> tuple[str, str | None]:
    """`models:/name@alias` resolved to `models:/name/<version>` (so the version cannot move under
    the load), with the version; other URIs unchanged with no registry version."""
    if match := _REGISTRY_VERSION.match(uri):
        return uri, match["version"]
    if not (match := _REGISTRY_ALIAS.match(uri)):
        return uri, None
    import mlflow  # imported here: importing mlflow costs about a second

    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(match["name"], match["alias"])
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; the caller needs one
        raise ModelLoadError(f"{uri}: cannot resolve alias ({first_line(exc, 200)})") from None
    return f"models:/{match['name']}/{found.version}", str(found.version)



def _input_schema(meta: dict[str, Any], uri: str) -> InputSchema | None:
    inputs = signature_inputs(meta, uri)
    if inputs is None:
        return None  # no signature: columns are passed through unchecked
    try:
        return InputSchema.from_signature_inputs(inputs)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{uri}: unsupported model signature ({exc})") from None
