"""Per-feature drift of a batch vs the training reference (numeric: PSI + KS; categorical: PSI + JS + chi2).

Verdicts are decided on the effect size (PSI, KS D or Jensen-Shannon distance) with a p-value guard:
drifted = (PSI >= psi_threshold or statistic >= statistic_threshold) and p < alpha. p-values come from
seeded subsamples of at most `max_rows` per side, so a 1,000,000-row batch does not flag trivial
shifts and verdicts stay stable across sample sizes. Missing values are reported as a null share:
excluded from numeric distributions, their own category in categorical ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

Kind = Literal["numeric", "categorical"]
PSI_EPSILON = 1e-4  # share given to an empty bin, so PSI stays finite
_NULL = "<null>"


@dataclass(frozen=True)
class DriftThresholds:
    """Decision rule for one feature; `statistic_threshold` is KS D (numeric) or JS distance (categorical)."""

    psi_threshold: float = 0.2
    statistic_threshold: float = 0.1
    alpha: float = 0.01
    max_rows: int = 50_000
    n_bins: int = 10


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature. `drifted` is None when it could not be decided (`message` says why)."""

    feature: str
    kind: Kind
    psi: float
    statistic: float
    p_value: float
    test: Literal["ks", "chi2"]
    n_ref: int
    n_batch: int
    null_share_ref: float
    null_share_batch: float
    unseen_share: float
    drifted: bool | None
    message: str


def feature_drift(
    ref: pd.Series, batch: pd.Series, kind: Kind, *, thresholds: DriftThresholds = DriftThresholds(),
    seed: int = 0, feature: str | None = None,
) -> FeatureDrift:
    """Compare one column of the batch with the same column of the reference."""
    name = str(feature if feature is not None else (batch.name if batch.name is not None else "feature"))
    rng = np.random.default_rng(seed)
    if kind == "numeric":
        psi, stat, p, unseen, nulls = _numeric(ref, batch, thresholds, rng)
    elif kind == "categorical":
        psi, stat, p, unseen, nulls = _categorical(ref, batch, thresholds, rng)
    else:
        raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    test = "ks" if kind == "numeric" else "chi2"
    drifted, message = _judge(name, kind, psi, stat, p, unseen, nulls, thresholds)
    n_ref, n_batch = len(ref), len(batch)
    return FeatureDrift(name, kind, psi, stat, p, test, n_ref, n_batch, *nulls, unseen, drifted, message)


def drift_table(
    ref_df: pd.DataFrame, batch_df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], *,
    thresholds: DriftThresholds = DriftThresholds(), overrides: Mapping[str, DriftThresholds] | None = None,
    seed: int = 0,
) -> list[FeatureDrift]:
    """Drift of every listed feature; a column missing on either side is undecided, never skipped."""
    overrides = overrides or {}
    columns = [(c, "numeric") for c in numeric] + [(c, "categorical") for c in categorical]
    results = []
    for i, (column, kind) in enumerate(columns):
        if column not in ref_df.columns or column not in batch_df.columns:
            side = "reference" if column not in ref_df.columns else "batch"
            message = f"{column}: column missing from {side}"
            results.append(_undecided(column, kind, len(ref_df), len(batch_df), message))
            continue
        rule = overrides.get(column, thresholds)
        pair = ref_df[column], batch_df[column]
        results.append(feature_drift(*pair, kind, thresholds=rule, seed=seed + i, feature=column))
    return results


def population_stability_index(
    ref_share: np.ndarray, batch_share: np.ndarray, eps: float = PSI_EPSILON
) -> float:
    """PSI = sum (q - p) ln(q / p) over bins, with empty bins given share `eps`."""
    p = np.maximum(np.asarray(ref_share, dtype=float), eps)
    q = np.maximum(np.asarray(batch_share, dtype=float), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def output_psi(ref_scores: np.ndarray, new_scores: np.ndarray, n_bins: int = 10) -> float:
    """PSI of a prediction distribution (1-D scores) on the reference's quantile bins; NaN ignored."""
    ref = np.asarray(ref_scores, dtype=float)
    new = np.asarray(new_scores, dtype=float)
    ref, new = ref[~np.isnan(ref)], new[~np.isnan(new)]
    if ref.size == 0 or new.size == 0:
        raise ValueError("both score samples need at least one non-NaN value")
    edges = quantile_edges(ref, n_bins)
    return population_stability_index(bin_shares(ref, edges), bin_shares(new, edges))


def quantile_edges(ref: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates merged); outer bins reach -inf and +inf."""
    return np.unique(np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1]))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per right-closed bin (-inf, e0], (e0, e1], ..., (e_last, +inf)."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
    return counts / max(values.size, 1)


def _numeric(ref, batch, th, rng):
    r, b = _as_float(ref), _as_float(batch)
    r_null, b_null = np.isnan(r), np.isnan(b)
    nulls = (_share(r_null), _share(b_null))
    r, b = r[~r_null], b[~b_null]
    if r.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan, 0.0, nulls
    r_sample, b_sample = _sample(r, th.max_rows, rng), _sample(b, th.max_rows, rng)
    edges = quantile_edges(r_sample, th.n_bins)
    psi = population_stability_index(bin_shares(r, edges), bin_shares(b, edges))
    method = "asymp" if max(r_sample.size, b_sample.size) > 10_000 else "auto"
    ks = stats.ks_2samp(r_sample, b_sample, method=method)
    return psi, float(ks.statistic), float(ks.pvalue), 0.0, nulls


def _categorical(ref, batch, th, rng):
    r_counts, b_counts = _category_counts(ref), _category_counts(batch)
    nulls = (_null_share(r_counts), _null_share(b_counts))
    categories = r_counts.index.union(b_counts.index, sort=False)
    r = r_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.int64)
    b = b_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.int64)
    if r.sum() == 0 or b.sum() == 0:
        return math.nan, math.nan, math.nan, math.nan, nulls
    r_share, b_share = r / r.sum(), b / b.sum()
    psi = population_stability_index(r_share, b_share)
    js = float(jensenshannon(r_share, b_share, base=2))
    unseen = float(b_share[r == 0].sum())
    return psi, js, _chi2_p(r, b, th.max_rows, rng), unseen, nulls


def _chi2_p(r: np.ndarray, b: np.ndarray, max_rows: int, rng: np.random.Generator) -> float:
    """Homogeneity chi-square on seeded subsamples of the counts (exact hypergeometric subsampling)."""
    r_sub = rng.multivariate_hypergeometric(r, min(int(r.sum()), max_rows))
    b_sub = rng.multivariate_hypergeometric(b, min(int(b.sum()), max_rows))
    seen = (r_sub + b_sub) > 0
    if seen.sum() < 2:
        return 1.0
    return float(stats.chi2_contingency(np.vstack([r_sub[seen], b_sub[seen]]), correction=False).pvalue)


def _category_counts(series: pd.Series) -> pd.Series:
    counts = series.value_counts(dropna=False, sort=False)
    keys = pd.Index([_NULL if _is_missing(k) else k for k in counts.index], dtype=object)
    return pd.Series(counts.to_numpy(), index=keys).groupby(level=0, sort=False).sum()


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _null_share(counts: pd.Series) -> float:
    total = counts.sum()
    return float(counts.get(_NULL, 0) / total) if total else math.nan


def _as_float(series: pd.Series) -> np.ndarray:
    """Numeric values as float; anything that is not a number counts as missing."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else math.nan


def _sample(values: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= max_rows else rng.choice(values, size=max_rows, replace=False)


def _judge(name, kind, psi, stat, p, unseen, nulls, th) -> tuple[bool | None, str]:
    stat_name = "KS D" if kind == "numeric" else "JS distance"
    facts = (f"PSI {psi:.3f} (threshold {th.psi_threshold:g}), {stat_name} {stat:.3f} "
             f"(threshold {th.statistic_threshold:g}), p {p:.2g} (alpha {th.alpha:g}), "
             f"nulls {nulls[0]:.1%} -> {nulls[1]:.1%}")
    if kind == "categorical" and unseen > 0:
        facts += f", unseen categories {unseen:.1%} of batch"
    if any(math.isnan(v) for v in (psi, stat, p)):
        return None, f"{name}: cannot compare, one side has no values ({facts})"
    large = psi >= th.psi_threshold or stat >= th.statistic_threshold
    if large and p < th.alpha:
        return True, f"{name} drifted: {facts}"
    reason = "effect below thresholds" if not large else "effect not significant"
    return False, f"{name} stable ({reason}): {facts}"


def _undecided(column: str, kind: Kind, n_ref: int, n_batch: int, message: str) -> FeatureDrift:
    nan = math.nan
    test = "ks" if kind == "numeric" else "chi2"
    return FeatureDrift(column, kind, nan, nan, nan, test, n_ref, n_batch, nan, nan, nan, None, message)
