"""Train/serving skew: features as the server logged them vs the offline features of the same rows.

Rows are joined on a key (the logged key column vs the offline key, compared as text). Per feature:
exact-match rate for categoricals, max absolute and relative difference for numerics, and the same
drift statistics as the drift check, so a unit change (x60) or a re-cased category names itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlgate.gates.config import SkewConfig
from mlgate.gates.data.drift import DriftThresholds, feature_drift
from mlgate.gates.result import Check, Status


@dataclass(frozen=True)
class Joined:
    """Logged and offline values of the same rows, aligned by key."""

    keys: pd.Series
    logged: pd.DataFrame
    offline: pd.DataFrame


def skew_checks(logged: pd.DataFrame, offline: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str],
                config: SkewConfig, drift: DriftThresholds, max_examples: int) -> list[Check]:
    """`skew.keys` (how many logged rows were found offline), then one `skew.<feature>` per feature."""
    problem = _input_problem(logged, offline, config)
    if problem:
        return [Check("skew.keys", Status.ERROR, None, "logged rows joinable to offline rows", problem)]
    joined, keys_check = join_on_key(logged, offline, config, max_examples)
    checks = [keys_check]
    if keys_check.status is Status.ERROR:
        return checks
    for kind, columns in (("numeric", numeric), ("categorical", categorical)):
        checks += [feature_skew(joined, c, kind, config, drift, max_examples) for c in columns]
    return checks


def _input_problem(logged: pd.DataFrame, offline: pd.DataFrame, config: SkewConfig) -> str | None:
    if config.key_column not in logged.columns:
        return (f"logged rows have no key column '{config.key_column}' (gates.data.skew.key_column); "
                f"columns: {', '.join(map(str, logged.columns[:12]))}")
    if config.offline_key not in offline.columns:
        return f"offline rows have no key column '{config.offline_key}' (gates.data.skew.offline_key)"
    if logged.empty:
        return "the logged file has no rows"
    return None


def join_on_key(logged: pd.DataFrame, offline: pd.DataFrame, config: SkewConfig, max_examples: int
                ) -> tuple[Joined, Check]:
    """Inner join on the key; the check reports unmatched and duplicated keys (last logged row wins)."""
    logged_keys = _key_text(logged[config.key_column].astype(str).str.removeprefix(config.key_prefix)
                            if config.key_prefix else logged[config.key_column])
    duplicated = int(logged_keys.duplicated(keep="last").sum())
    logged = logged.assign(_key=logged_keys).drop_duplicates("_key", keep="last").set_index("_key")
    offline = offline.assign(_key=_key_text(offline[config.offline_key])).drop_duplicates("_key").set_index("_key")
    matched = logged.index.intersection(offline.index, sort=False)
    unmatched = [k for k in logged.index if k not in offline.index]
    joined = Joined(pd.Series(matched, dtype=object), logged.loc[matched], offline.loc[matched])
    expected = f"every logged key found offline (at least {config.min_matched_rows})"
    details = {"matched": len(matched), "logged": len(logged), "duplicated_keys": duplicated,
               "unmatched_examples": unmatched[:max_examples]}
    message = (f"{len(matched)} of {len(logged)} logged keys '{config.key_column}' found offline as "
               f"'{config.offline_key}'" + (f"; not found: {', '.join(unmatched[:max_examples])}" if unmatched else "")
               + (f"; {duplicated} duplicated keys (last row used)" if duplicated else ""))
    if len(matched) < config.min_matched_rows:
        status = Status.ERROR
    else:
        status = Status.WARN if unmatched or duplicated else Status.PASS
    return joined, Check("skew.keys", status, len(matched), expected, message, details)


def _key_text(values: pd.Series) -> pd.Series:
    """Keys as text, so an integer row id matches a logged string id ("17" == 17; 17.0 -> "17")."""
    numeric = pd.to_numeric(values, errors="coerce")
    integral = numeric.notna() & (numeric == numeric.round())
    text = values.astype(str)
    text[integral] = numeric[integral].astype("int64").astype(str)
    return text


def feature_skew(joined: Joined, column: str, kind: str, config: SkewConfig, drift: DriftThresholds,
                 max_examples: int) -> Check:
    """FAIL when more than `max_mismatch_share` of the joined rows differ; names example keys."""
    name = f"skew.{column}"
    expected = f"logged equals offline for >= {1 - config.max_mismatch_share:.1%} of rows"
    if column not in joined.logged.columns:
        return Check(name, Status.FAIL, None, expected, f"{column}: not in the logged rows")
    if column not in joined.offline.columns:
        return Check(name, Status.ERROR, None, expected, f"{column}: not in the offline rows")
    logged, offline = joined.logged[column], joined.offline[column]
    differs, facts = (_numeric_diff(logged, offline, config) if kind == "numeric"
                      else _categorical_diff(logged, offline))
    stats = feature_drift(offline, logged, kind, thresholds=drift, feature=column)
    share = float(differs.mean()) if len(differs) else 0.0
    keys = list(differs[differs].index[:max_examples])
    examples = [{"key": k, "logged": _scalar(logged.loc[k]), "offline": _scalar(offline.loc[k])} for k in keys]
    details = {**facts, "mismatch_share": share, "rows": int(len(differs)), "examples": examples,
               "psi": stats.psi, "statistic": stats.statistic, "p_value": stats.p_value}
    summary = (f"{column}: {int(differs.sum())} of {len(differs)} rows ({share:.1%}) differ between logged and "
               f"offline features{_facts_text(facts)}; PSI {stats.psi:.2f}, "
               f"{'KS D' if kind == 'numeric' else 'JS distance'} {stats.statistic:.2f}")
    if keys:
        summary += "; e.g. " + ", ".join(f"key {e['key']}: {e['logged']!r} vs {e['offline']!r}" for e in examples[:3])
    status = Status.FAIL if share > config.max_mismatch_share else Status.PASS
    return Check(name, status, round(share, 6), expected, summary, details)


def _numeric_diff(logged: pd.Series, offline: pd.Series, config: SkewConfig) -> tuple[pd.Series, dict]:
    a = pd.to_numeric(logged, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    b = pd.to_numeric(offline, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    both_null = np.isnan(a) & np.isnan(b)
    abs_diff = np.where(both_null, 0.0, np.abs(a - b))
    rel_diff = abs_diff / np.maximum(np.abs(b), 1e-12)
    close = both_null | (abs_diff <= config.abs_tolerance) | (rel_diff <= config.rel_tolerance)
    finite = ~np.isnan(abs_diff)
    facts = {"max_abs_diff": float(abs_diff[finite].max()) if finite.any() else 0.0,
             "max_rel_diff": float(rel_diff[finite].max()) if finite.any() else 0.0,
             "null_mismatches": int((np.isnan(a) != np.isnan(b)).sum())}
    return pd.Series(~close, index=logged.index), facts


def _categorical_diff(logged: pd.Series, offline: pd.Series) -> tuple[pd.Series, dict]:
    a, b = logged.astype(object), offline.astype(object)
    equal = (a.isna() & b.isna()) | ((a.astype(str) == b.astype(str)) & a.notna() & b.notna())
    return ~equal, {"match_rate": float(equal.mean()) if len(equal) else 1.0}


def _facts_text(facts: dict) -> str:
    if "max_abs_diff" in facts:
        return f"; max abs diff {facts['max_abs_diff']:.4g}, max rel diff {facts['max_rel_diff']:.4g}"
    return f"; exact-match rate {facts['match_rate']:.1%}"


def _scalar(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
