"""Outlier flags: is a served row unlike anything the model was trained on?

The detector is fitted at training time (`fit_detector`) and stored inside the model's bundle, in
`mlgate/outliers/` of the MLflow model directory, so the gates judge it with the model and the model digest
covers it. It has two parts:

- an isolation forest (scikit-learn's IsolationForest, saved with skops, never pickle) on the training
  features, numbers median-imputed and categories as codes, calibrated so that `share` of the training
  rows score below its threshold;
- hard rules an isolation forest cannot learn, since its splits never reach beyond the training range:
  a number further outside the training range than `RANGE_MARGIN` of its width, and a category (or a null
  in a categorical column) never seen in training. No training row breaks a rule, so the calibration holds.

Scoring walks every tree at once with numpy (`_FlatForest`), to the same leaves and path lengths as
`IsolationForest.score_samples` (tests/serving/test_outliers.py checks that they agree), in a fraction of
its time: sklearn's own call costs about 5 ms for 100 trees whatever the row count, as much as the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate.serving.loading import BUNDLE_FOLDER

DETECTOR_DIR = Path(BUNDLE_FOLDER) / "outliers"  # inside an MLflow model directory
SPEC_FILE, FOREST_FILE = "outliers.json", "forest.skops"
RANGE_MARGIN = 0.1  # a number beyond the training range by more than this share of its width is an outlier
UNSEEN = -1.0  # the code of a category not seen in training


class OutlierBundleError(ValueError):
    """The bundle's outlier detector cannot be read; the message names the file."""


@dataclass(frozen=True)
class _FlatForest:
    """Every isolation tree's nodes in flat arrays, so one numpy pass per depth level scores all trees."""

    feature: np.ndarray  # per node: the input column it splits on (0 at leaves)
    threshold: np.ndarray  # per node: go left when value <= threshold (+inf at leaves: stay)
    children: np.ndarray  # (left, right) per node, flat: node * 2 + went_right is the next node (leaves: itself)
    path: np.ndarray  # per node: depth + the average path length of its samples - 1 (used at leaves)
    roots: np.ndarray  # per tree: its root node
    depth: int  # the deepest leaf
    denominator: float  # trees x the average path length of max_samples

    @classmethod
    def of(cls, forest: Any) -> _FlatForest:
        from sklearn.ensemble._iforest import _average_path_length

        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "path")}
        roots, offset, depth = [], 0, 0
        for tree, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = tree.tree_
            nodes = np.arange(t.node_count)
            leaf = t.children_left < 0
            depths = np.asarray(t.compute_node_depths(), dtype=np.float64)  # the root is 1
            parts["feature"].append(np.where(leaf, 0, np.asarray(features)[np.maximum(t.feature, 0)]))
            parts["threshold"].append(np.where(leaf, np.inf, t.threshold))
            parts["left"].append(np.where(leaf, nodes, t.children_left) + offset)
            parts["right"].append(np.where(leaf, nodes, t.children_right) + offset)
            parts["path"].append(depths + _average_path_length(t.n_node_samples) - 1.0)
            roots.append(offset)
            offset += t.node_count
            depth = max(depth, int(depths.max()))
        flat = {k: np.concatenate(v) for k, v in parts.items()}
        denominator = len(forest.estimators_) * float(_average_path_length([forest._max_samples])[0])
        children = np.column_stack([flat["left"], flat["right"]]).ravel().astype(np.intp)
        return cls(flat["feature"].astype(np.intp), flat["threshold"], children, flat["path"],
                   np.asarray(roots, dtype=np.intp), depth, denominator)

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        """IsolationForest.score_samples of the rows of `x` (lower: more abnormal)."""
        x = np.asarray(x, dtype=np.float32).astype(np.float64)  # trees compare float32 inputs
        n, width = x.shape
        flat = x.ravel()
        row_start = (np.arange(n, dtype=np.intp) * width)[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        for _ in range(self.depth):
            go_right = flat.take(row_start + self.feature.take(node)) > self.threshold.take(node)
            node = self.children.take(node * 2 + go_right)
        depths = self.path.take(node).sum(axis=1)
        return -(2.0 ** -(depths / self.denominator)) if self.denominator else -np.ones(n)


@dataclass(frozen=True)
class OutlierDetector:
    """The fitted detector: per numeric column (median, low, high), per categorical column its known
    categories, the forest and its threshold, and what the calibration found on the training rows."""

    numeric: Mapping[str, tuple[float, float, float]]
    categorical: Mapping[str, Sequence[str]]
    threshold: float
    share: float  # the configured share of training rows flagged
    training_rate: float  # the share of training rows actually flagged
    n_train: int
    forest: Any  # the IsolationForest
    holdout_rate: float | None = None  # the share of the test split flagged, when training measured it

    def __post_init__(self) -> None:
        object.__setattr__(self, "_flat", _FlatForest.of(self.forest))
        object.__setattr__(self, "_codes", _codes(self.categorical))

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def flags(self, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """True for each row of `frame` (a DataFrame or its columns) that is an outlier."""
        matrix, broken = self._encode(frame)
        return broken | (self._flat.score_samples(matrix) < self.threshold)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The forest's score of each row (lower: more abnormal), rules aside."""
        return self._flat.score_samples(self._encode(frame)[0])

    def _encode(self, frame: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return encode(frame, self.numeric, self._codes)  # type: ignore[attr-defined]

    def spec_summary(self) -> dict[str, Any]:
        """What /readyz says about the detector."""
        return {"share": self.share, "training_rate": self.training_rate, "holdout_rate": self.holdout_rate,
                "n_train": self.n_train, "columns": len(self.columns)}

    def spec(self) -> dict[str, Any]:
        """What outliers.json holds (everything but the forest)."""
        # Lists, not objects: the forest's columns are in this order.
        return {"numeric": [[c, *v] for c, v in self.numeric.items()],
                "categorical": [[c, list(v)] for c, v in self.categorical.items()],
                "threshold": self.threshold, "share": self.share, "training_rate": self.training_rate,
                "holdout_rate": self.holdout_rate, "n_train": self.n_train, "range_margin": RANGE_MARGIN}


def category_key(value: Any) -> str:
    """A category as compared: text as is, an integral number as its integer (0 and 0.0 are one code),
    a null as the empty key."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def encode(frame: pd.DataFrame | Mapping[str, Any], numeric: Mapping[str, tuple[float, float, float]],
           codes: Mapping[str, Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The forest's input (numbers median-imputed, categories as codes) and whether each row breaks a rule
    (a number beyond its (low, high), an unseen category). `frame`: a DataFrame, or its columns as arrays
    (what the server builds a frame from: cheaper to read); a column it lacks counts as null."""
    n = len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()), ()))
    matrix = np.empty((n, len(numeric) + len(codes)), dtype=np.float64)
    broken = np.zeros(n, dtype=bool)
    for j, (column, (median, low, high)) in enumerate(numeric.items()):
        values = _numbers(frame[column]) if column in frame else np.full(n, np.nan)
        broken |= (values < low) | (values > high)  # NaN compares False: a null is imputed, not flagged
        matrix[:, j] = np.where(np.isnan(values), median, values)
    for j, (column, known) in enumerate(codes.items(), start=len(numeric)):
        values = list(frame[column]) if column in frame else [None] * n
        coded = np.fromiter((known.get(category_key(v), UNSEEN) for v in values), dtype=np.float64, count=n)
        broken |= coded == UNSEEN
        matrix[:, j] = coded
    return matrix, broken


def _codes(categories: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    return {column: {value: float(i) for i, value in enumerate(values)} for column, values in categories.items()}


def _numbers(values: Any) -> np.ndarray:
    """Numbers as float64 with NaN for nulls and anything that is not a number."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def fit_detector(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], *, share: float,
                 n_estimators: int = 100, max_samples: int = 256, seed: int = 0) -> OutlierDetector:
    """Fit on the training features `frame` and calibrate: `share` of its rows score below the threshold."""
    from sklearn.ensemble import IsolationForest

    if len(frame) < 2:
        raise ValueError(f"an outlier detector needs at least 2 training rows, not {len(frame)}")
    bounds = {}
    for column in numeric:
        values = _numbers(frame[column])
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            bounds[column] = (0.0, -math.inf, math.inf)  # never observed: no range to leave
            continue
        low, high = float(finite.min()), float(finite.max())
        margin = RANGE_MARGIN * (high - low)
        bounds[column] = (float(np.median(finite)), low - margin, high + margin)
    categories = {column: sorted({category_key(v) for v in frame[column].tolist()}) for column in categorical}
    matrix, _ = encode(frame, bounds, _codes(categories))
    forest = IsolationForest(n_estimators=n_estimators, max_samples=min(max_samples, len(frame)),
                             random_state=seed).fit(matrix)
    scores = _FlatForest.of(forest).score_samples(matrix)
    threshold = float(np.quantile(scores, share, method="lower")) if share > 0 else -math.inf
    rate = float(np.mean(scores < threshold))
    return OutlierDetector(bounds, categories, threshold, share, rate, len(frame), forest)


def with_holdout_rate(detector: OutlierDetector, frame: pd.DataFrame) -> OutlierDetector:
    """`detector` with the share of `frame` (rows it was not fitted on) it flags."""
    import dataclasses

    rate = float(np.mean(detector.flags(frame))) if len(frame) else None
    return dataclasses.replace(detector, holdout_rate=rate)


def save_detector(detector: OutlierDetector, folder: Path) -> Path:
    """Write the detector into `folder` (a model's `mlgate/outliers/`; the forest with skops); that folder."""
    import skops.io as sio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sio.dump(detector.forest, folder / FOREST_FILE)
    (folder / SPEC_FILE).write_text(json.dumps(detector.spec(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def read_spec(model_dir: Path) -> dict[str, Any] | None:
    """outliers.json of the model at `model_dir` (None when its bundle has no detector)."""
    path = Path(model_dir) / DETECTOR_DIR / SPEC_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutlierBundleError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise OutlierBundleError(f"{path}: expected a JSON object")
    return spec


def load_detector(model_dir: Path, trusted: Sequence[str]) -> OutlierDetector | None:
    """The detector in the bundle at `model_dir`, None when it has none; OutlierBundleError naming the file
    when it is there but unreadable (the forest is loaded with skops and the trust list `trusted`)."""
    from mlgate.serving.skops_trust import UntrustedTypesError, load_skops

    spec = read_spec(model_dir)
    if spec is None:
        return None
    path = Path(model_dir) / DETECTOR_DIR / SPEC_FILE
    try:
        forest = load_skops(Path(model_dir) / DETECTOR_DIR / FOREST_FILE, trusted).model
        numeric = {str(c): (float(m), float(lo), float(hi)) for c, m, lo, hi in spec["numeric"]}
        categorical = {str(c): [str(v) for v in values] for c, values in spec["categorical"]}
        holdout = spec.get("holdout_rate")
        return OutlierDetector(numeric, categorical, float(spec["threshold"]), float(spec["share"]),
                               float(spec["training_rate"]), int(spec["n_train"]), forest,
                               None if holdout is None else float(holdout))
    except UntrustedTypesError as exc:
        raise OutlierBundleError(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OutlierBundleError(f"{path}: not an outlier detector mlgate wrote ({type(exc).__name__}: {exc})") \
            from None
