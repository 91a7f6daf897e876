"""Property-based rows: random valid-domain rows, seeded and bounded, mixed with boundary values.

Every row is a valid request (the property: any such row gets one valid prediction), drawn per column:
a null (10%), a boundary value (25%: the observed min and max, the edges of the widened range, zero,
the base row's value) or a uniform value in the observed range widened by its own width on both
sides; a category is one seen in training. Boundaries are mixed in on purpose, as hypothesis does,
because that is where serving stacks break.

Why a seeded numpy generator and not hypothesis's engine: hypothesis (6.1xx) mixes in constants it
mines from the source of every *local* module that happens to be imported and caches them in a
`.hypothesis/` directory in the working directory. The same seed then gives different rows under
pytest and under `mlgate gate edge_cases`, and after any code edit, and the gate would write into
the user's project. A gate's cases must be a function of (schema, count, seed) alone, so that a
failure seen in CI replays locally. (The server's own tests still fuzz it with hypothesis.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlgate.gates.edge_cases.data_schema import DataSchema, FeatureSpec

NULL_SHARE = 0.10
BOUNDARY_SHARE = 0.25


def property_rows(schema: DataSchema, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` rows in signature column order; the same schema, count and seed give the same rows."""
    rng = np.random.default_rng(seed)
    return [{spec.name: _draw(spec, rng, schema.base_row.get(spec.name)) for spec in schema.features}
            for _ in range(max(count, 0))]


def _draw(spec: FeatureSpec, rng: np.random.Generator, base: Any) -> Any:
    """One value of the column: null, a boundary, or an ordinary in-domain value."""
    share, pick = rng.random(), rng.random()  # always two draws: columns never shift each other's stream
    if share < NULL_SHARE:
        return None
    if spec.kind == "number":
        low, high = widened_range(spec)
        if share < NULL_SHARE + BOUNDARY_SHARE:
            candidates = boundaries(spec, base)
            return spec.as_type(candidates[int(pick * len(candidates))])
        return spec.as_type(low + pick * (high - low))
    if spec.kind == "string":
        choices = spec.categories or ((str(base),) if base is not None else ("",))
        return choices[int(pick * len(choices))]
    if spec.kind == "boolean":
        return pick < 0.5
    return base


def widened_range(spec: FeatureSpec) -> tuple[float, float]:
    """The observed range widened by its own width on both sides: valid input may lie outside it."""
    if spec.minimum is None or spec.maximum is None:
        return -1.0, 1.0
    width = max(spec.maximum - spec.minimum, 1.0)
    return spec.minimum - width, spec.maximum + width


def boundaries(spec: FeatureSpec, base: Any) -> list[float]:
    """The values a numeric column is most likely to break on, all inside the widened range."""
    low, high = widened_range(spec)
    values = [low, high]
    if spec.minimum is not None and spec.maximum is not None:
        values += [spec.minimum, spec.maximum]
    if low <= 0.0 <= high:
        values.append(0.0)
    if isinstance(base, (int, float)) and not isinstance(base, bool):
        values.append(float(base))
    return values
