"""Tracing a fitted scikit-learn transformer's output columns back to the input columns they come from.

Through a ColumnTransformer by its `output_indices_` and each transformer's column selection; through a
Pipeline step by step; through a OneHotEncoder by its categories (the width of each input's block, with
infrequent categories and dropped ones counted); through any other transformer whose
`get_feature_names_out` names each output after exactly one input (`x` or `x_...`). Anything else (a
custom transformer without output names, an imputer's missing indicators, names that match two inputs)
cannot be traced: `source_columns` says None and the caller explains on the original columns instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def grouped_by_source(contributions: np.ndarray, sources: list[str], columns: list[str]) -> np.ndarray:
    """Contributions of transformed columns summed per input column (0 for an input the model drops)."""
    grouped = np.zeros((contributions.shape[0], len(columns)))
    index = {column: i for i, column in enumerate(columns)}
    for j, source in enumerate(sources):
        grouped[:, index[source]] += contributions[:, j]
    return grouped


def source_columns(steps: list[Any], inputs: list[str]) -> list[str] | None:
    """The input column each output column of `steps` comes from, or None when that cannot be traced."""
    sources: list[str] | None = list(inputs)
    for step in steps:
        sources = _through(step, sources) if sources is not None else None
    return sources


def _through(step: Any, sources: list[str]) -> list[str] | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if step is None or step == "passthrough":
        return sources
    if isinstance(step, Pipeline):
        return source_columns([s for _, s in step.steps], sources)
    if isinstance(step, ColumnTransformer):
        return _through_column_transformer(step, sources)
    names_in = _names_in(step, len(sources))
    try:
        names_out = [str(n) for n in step.get_feature_names_out(names_in)]
    except Exception:  # noqa: BLE001 - a transformer without (working) output names cannot be traced
        return None
    positions = _onehot_positions(step, names_in, names_out) if type(step).__name__ == "OneHotEncoder" \
        else _named_positions(names_in, names_out)
    return None if positions is None else [sources[i] for i in positions]


def _through_column_transformer(step: Any, sources: list[str]) -> list[str] | None:
    names_in = _names_in(step, len(sources))
    out: list[str] = []
    for name, transformer, selection in step.transformers_:
        where = step.output_indices_.get(name, slice(0, 0))
        if transformer == "drop" or where.stop == where.start:
            continue
        picked = _selected(selection, names_in)
        if picked is None:
            return None
        mapped = _through(transformer, [sources[i] for i in picked])
        if mapped is None or len(mapped) != where.stop - where.start:
            return None
        out.extend(mapped)
    return out


def _names_in(step: Any, width: int) -> list[str]:
    names = getattr(step, "feature_names_in_", None)
    if names is not None and len(names) == width:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(width)]


def _selected(selection: Any, names: list[str]) -> list[int] | None:
    """Positions of a ColumnTransformer's column selection (names, positions, a mask or a slice)."""
    if isinstance(selection, slice):
        return list(range(len(names)))[selection]
    items = [selection] if isinstance(selection, (str, int)) else list(np.asarray(selection).tolist())
    if items and all(isinstance(i, bool) for i in items):
        return [i for i, keep in enumerate(items) if keep]
    if all(isinstance(i, str) for i in items):
        return [names.index(i) for i in items] if all(i in names for i in items) else None
    if all(isinstance(i, int) for i in items):
        return [i % len(names) for i in items]
    return None


def _onehot_positions(encoder: Any, names_in: list[str], names_out: list[str]) -> list[int] | None:
    """Each one-hot column's input, from the width of each input's block (categories, infrequent, drop)."""
    positions: list[int] = []
    drops = getattr(encoder, "drop_idx_", None)
    infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(names_in)
    for i, categories in enumerate(encoder.categories_):
        width = len(categories) if infrequent[i] is None else len(categories) - len(infrequent[i]) + 1
        positions += [i] * (width - (1 if drops is not None and drops[i] is not None else 0))
    if len(positions) != len(names_out):
        return None
    return positions if all(n.startswith(f"{names_in[i]}_") for n, i in zip(names_out, positions, strict=True)) \
        else None


def _named_positions(names_in: list[str], names_out: list[str]) -> list[int] | None:
    """Each output's input when its name is exactly one input's name, or starts with `input_`."""
    positions = []
    for name in names_out:
        matches = [i for i, n in enumerate(names_in) if name == n or name.startswith(f"{n}_")]
        if len(matches) != 1:
            exact = [i for i in matches if names_in[i] == name]
            if len(exact) != 1:
                return None
            matches = exact
        positions.append(matches[0])
    return positions
