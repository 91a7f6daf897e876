"""What `mlgate init` reads from a data set: the task, the positive class, and which columns are features.

Pure functions of a DataFrame. A choice that cannot be made from the data (a target that does not fit
the requested task, too few rows) is a UsageError naming the column and what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgate.pipelines.errors import UsageError

TASKS = ("binary", "multiclass", "regression")
MAX_CLASSES = 20          # a numeric target with more distinct values is a regression target
MAX_CLASSES_FORCED = 50   # --task multiclass beyond this many classes is a regression target in disguise
MAX_CATEGORIES = 50       # a text column with more distinct values is free text or a key: not a feature
MIN_ROWS = 200            # fewer rows leave splits too small to judge anything
MIN_CLASS_ROWS = 10       # each class needs rows in every stratified split
POSITIVE_NAMES = ("yes", "y", "true", "t", "1", "positive", "pos")


@dataclass(frozen=True)
class TaskInference:
    """The task of a target column, its positive class (binary only), and why it was chosen."""

    task: str
    positive_class: str | int | None
    classes: tuple[Any, ...]
    reason: str


@dataclass(frozen=True)
class ColumnPlan:
    """Feature columns by kind, and each column left out with the reason."""

    numeric: list[str]
    categorical: list[str]
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def infer_task(target: pd.Series, task: str | None = None) -> TaskInference:
    """Binary for 2 distinct values, multiclass for a few or non-numeric ones, else regression.

    With `task` given, the target must fit it; otherwise a UsageError says what the target looks like.
    """
    name, values = str(target.name), target.dropna()
    distinct = _distinct(values)
    numeric = _is_numeric(values)
    if len(distinct) < 2:
        raise UsageError(f"target '{name}' has {len(distinct)} distinct value(s); a model needs at least 2")
    if task is None:
        task = "binary" if len(distinct) == 2 else (
            "multiclass" if not numeric or len(distinct) <= MAX_CLASSES else "regression")
        reason = f"inferred from {len(distinct)} distinct {'numeric' if numeric else 'text'} target values"
    else:
        _check_requested(name, task, distinct, numeric)
        reason = "given with --task"
    if task == "regression":
        return TaskInference(task, None, (), reason)
    classes = tuple(sorted(distinct, key=str))
    positive = positive_class(values) if task == "binary" else None
    return TaskInference(task, positive, classes, reason)


def _check_requested(name: str, task: str, distinct: list[Any], numeric: bool) -> None:
    if task not in TASKS:
        raise UsageError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    shown = ", ".join(map(str, distinct[:5])) + (", ..." if len(distinct) > 5 else "")
    if task == "regression" and not numeric:
        raise UsageError(f"--task regression: target '{name}' is not numeric (values {shown}); "
                         "use --task binary or multiclass")
    if task == "binary" and len(distinct) != 2:
        raise UsageError(f"--task binary: target '{name}' has {len(distinct)} distinct values ({shown}), not 2")
    if task == "multiclass" and len(distinct) == 2:
        raise UsageError(f"--task multiclass: target '{name}' has 2 distinct values ({shown}); use --task binary")
    if task == "multiclass" and len(distinct) > MAX_CLASSES_FORCED:
        raise UsageError(f"--task multiclass: target '{name}' has {len(distinct)} distinct values "
                         f"(more than {MAX_CLASSES_FORCED}); a numeric target like this is --task regression")


def positive_class(values: pd.Series) -> str | int:
    """The class a binary model predicts the probability of: a "yes"-like label, 1 or True, else the rarer one."""
    distinct = _distinct(values)
    for value in distinct:
        if str(_plain_label(value)).strip().lower() in POSITIVE_NAMES:
            return _plain_label(value)
    counts = values.value_counts()
    rarest = sorted(distinct, key=lambda v: (counts.get(v, 0), str(v)))[0]
    return _plain_label(rarest)


def _plain_label(value: Any) -> str | int:
    """params.yaml holds a class as a string or an integer (1.0 and True become 1)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else str(value)


def check_rows(frame: pd.DataFrame, target: str, task: TaskInference) -> None:
    """Enough rows overall and per class, and a label on every row (prepare trains on every row)."""
    if len(frame) < MIN_ROWS:
        raise UsageError(f"the data has {len(frame)} rows; mlgate init needs at least {MIN_ROWS} "
                         "(train, test and production splits are cut from it)")
    missing = int(frame[target].isna().sum())
    if missing:
        raise UsageError(f"target '{target}' is missing on {missing} of {len(frame)} rows; "
                         "remove the unlabelled rows from the data file first")
    if task.task == "regression":
        return
    counts = frame[target].value_counts()
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        shown = ", ".join(f"{k!s} ({v} rows)" for k, v in rare.items())
        raise UsageError(f"target '{target}': class(es) {shown} have fewer than {MIN_CLASS_ROWS} rows; "
                         "the splits are stratified: merge or remove those classes first")


def infer_columns(frame: pd.DataFrame, target: str) -> ColumnPlan:
    """Numeric and categorical features; constant, key-like and free-text columns are left out."""
    numeric, categorical, dropped = [], [], {}
    for column in frame.columns:
        if column == target:
            continue
        reason = _drop_reason(frame[column])
        if reason:
            dropped[str(column)] = reason
        elif _is_numeric(frame[column]):
            numeric.append(str(column))
        else:
            categorical.append(str(column))
    return ColumnPlan(numeric, categorical, dropped)


def _drop_reason(series: pd.Series) -> str | None:
    values = series.dropna()
    n_distinct = values.nunique()
    if n_distinct <= 1:
        return "constant" if n_distinct else "always empty"
    if pd.api.types.is_bool_dtype(values) or values.map(lambda v: isinstance(v, bool | np.bool_)).all():
        # sklearn's imputers refuse bool columns, so the training pipeline cannot use one as it is.
        return "true/false values: write them as yes/no (or 0/1) to use the column as a feature"
    key_like = pd.api.types.is_integer_dtype(values) or not _is_numeric(values)
    if key_like and n_distinct == len(series):
        return "an id: unique on every row"
    if not _is_numeric(values) and n_distinct > MAX_CATEGORIES:
        return f"text with {n_distinct} distinct values (more than {MAX_CATEGORIES})"
    return None


def feature_ranking(frame: pd.DataFrame, plan: ColumnPlan, target: str, task: str, seed: int = 0) -> list[str]:
    """Features ordered by mutual information with the target (on at most 5,000 sampled rows)."""
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    if not plan.features:
        return []
    sample = frame.sample(min(len(frame), 5000), random_state=seed)
    columns = {c: pd.to_numeric(sample[c], errors="coerce") for c in plan.numeric}
    columns |= {c: pd.Series(pd.factorize(sample[c])[0], index=sample.index) for c in plan.categorical}
    x = pd.DataFrame(columns)[plan.features]
    x = x.fillna(x.median(numeric_only=True)).fillna(0.0)
    discrete = [c in plan.categorical for c in plan.features]
    if task == "regression":
        scores = mutual_info_regression(x, sample[target].astype(float), discrete_features=discrete,
                                        random_state=seed)
    else:
        scores = mutual_info_classif(x, pd.factorize(sample[target])[0], discrete_features=discrete,
                                     random_state=seed)
    order = sorted(range(len(plan.features)), key=lambda i: (-scores[i], i))
    return [plan.features[i] for i in order]


def _distinct(values: pd.Series) -> list[Any]:
    return sorted(values.dropna().unique().tolist(), key=str)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
