"""Drift of a batch against the training reference, judged per feature and as a share (gates.data.drift).

The statistics are gates/data/drift.py's; this module decides what they mean for the gate: a drifted
critical feature FAILs, a drifted other feature WARNs, an undecidable one is ERROR, and more than
`max_drifted_share` of drifted features FAILs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from mlgate.gates.config import DriftConfig
from mlgate.gates.data.drift import DriftThresholds, FeatureDrift, drift_table
from mlgate.gates.result import Check, Status


def thresholds_for(config: DriftConfig) -> tuple[DriftThresholds, dict[str, DriftThresholds]]:
    """The default rule and the per-feature overrides of `gates.data.drift`."""
    default = DriftThresholds(psi_threshold=config.psi_threshold, statistic_threshold=config.statistic_threshold,
                              alpha=config.alpha, max_rows=config.max_rows)
    overrides = {
        name: DriftThresholds(psi_threshold=rule.psi or default.psi_threshold,
                              statistic_threshold=rule.statistic or default.statistic_threshold,
                              alpha=default.alpha, max_rows=default.max_rows)
        for name, rule in config.features.items()
    }
    return default, overrides


def drift_checks(reference: pd.DataFrame, batch: pd.DataFrame, numeric: Sequence[str],
                 categorical: Sequence[str], config: DriftConfig) -> tuple[list[Check], list[FeatureDrift]]:
    """One `drift.<feature>` check per feature plus `drift.share`; also the raw drift rows (for charts)."""
    unusable = {**missing_columns(batch, [*numeric, *categorical]), **non_numeric_columns(batch, numeric)}
    default, overrides = thresholds_for(config)
    table = drift_table(reference, batch, [c for c in numeric if c not in unusable],
                        [c for c in categorical if c not in unusable], thresholds=default, overrides=overrides)
    # The batch breaks its contract here (a missing or non-numeric column): a known defect, so FAIL.
    checks = [Check(f"drift.{column}", Status.FAIL, None, "a comparable column in the batch", reason)
              for column, reason in unusable.items()]
    critical = set(config.critical)
    checks += [feature_check(row, overrides.get(row.feature, default), row.feature in critical) for row in table]
    checks.append(share_check(table, len(numeric) + len(categorical), config.max_drifted_share))
    return checks, table


def missing_columns(batch: pd.DataFrame, features: Sequence[str]) -> dict[str, str]:
    return {c: f"{c}: column missing from the batch; drift not computed" for c in features if c not in batch.columns}


def non_numeric_columns(batch: pd.DataFrame, numeric: Sequence[str]) -> dict[str, str]:
    """Numeric features whose batch values are not numbers -> the reason, naming examples."""
    reasons = {}
    for column in numeric:
        if column not in batch.columns or pd.api.types.is_numeric_dtype(batch[column]):
            continue
        values = batch[column]
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        if len(bad):
            examples = ", ".join(repr(v) for v in bad.unique()[:3])
            reasons[column] = (f"{column}: holds non-numeric values (dtype {values.dtype}, {len(bad)} rows, "
                               f"e.g. {examples}); drift not computed")
    return reasons


def feature_check(row: FeatureDrift, rule: DriftThresholds, critical: bool) -> Check:
    """PASS when stable; WARN (FAIL if critical) when drifted; ERROR when it could not be decided."""
    expected = (f"PSI < {rule.psi_threshold:g} and {_stat_name(row)} < {rule.statistic_threshold:g}, "
                f"or p >= {rule.alpha:g}")
    details = {"kind": row.kind, "psi": row.psi, "statistic": row.statistic, "test": row.test,
               "p_value": row.p_value, "n_ref": row.n_ref, "n_batch": row.n_batch,
               "null_share_ref": row.null_share_ref, "null_share_batch": row.null_share_batch,
               "unseen_share": row.unseen_share, "critical": critical, "drifted": row.drifted}
    if row.drifted is None:
        # A batch column with no values at all is a defect of the batch (FAIL); anything else is undecided.
        status = Status.FAIL if row.null_share_batch == 1.0 else Status.ERROR
        message = f"{row.feature}: all values are null in the batch; drift not computed" if status is Status.FAIL \
            else row.message
        return Check(f"drift.{row.feature}", status, None, expected, message, details)
    if row.drifted:
        status = Status.FAIL if critical else Status.WARN
        verdict = "drifted; critical feature" if critical else "drifted"
    else:
        status, verdict = Status.PASS, "stable"
    return Check(f"drift.{row.feature}", status, round(row.psi, 6), expected,
                 drift_message(row, rule, verdict), details)


def drift_message(row: FeatureDrift, rule: DriftThresholds, verdict: str) -> str:
    """e.g. `total_day_minutes: PSI 0.41 (threshold 0.2), KS D 0.23 p<1e-6 — drifted; critical feature`."""
    text = (f"{row.feature}: PSI {row.psi:.2f} (threshold {rule.psi_threshold:g}), {_stat_name(row)} "
            f"{row.statistic:.2f} {_p_text(row.p_value)}")
    if row.unseen_share and row.unseen_share > 0:
        text += f", unseen categories {row.unseen_share:.1%} of batch"
    if row.null_share_batch and row.null_share_batch > (row.null_share_ref or 0.0):
        text += f", nulls {row.null_share_ref:.1%} -> {row.null_share_batch:.1%}"
    return f"{text} — {verdict}"


def share_check(table: Sequence[FeatureDrift], n_features: int, max_share: float) -> Check:
    """FAIL when more than `max_share` of the features drifted; ERROR when no feature could be decided."""
    decided = [r for r in table if r.drifted is not None]
    drifted = sorted(r.feature for r in decided if r.drifted)
    expected = f"drifted share <= {max_share:.0%}"
    if not decided:
        return Check("drift.share", Status.ERROR, None, expected, "no feature's drift could be decided")
    share = len(drifted) / max(n_features, 1)
    status = Status.FAIL if share > max_share else Status.PASS
    listed = f": {', '.join(drifted)}" if drifted else ""
    message = f"{len(drifted)} of {n_features} features drifted ({share:.0%}, limit {max_share:.0%}){listed}"
    return Check("drift.share", status, round(share, 6), expected, message,
                 {"drifted": drifted, "decided": len(decided), "features": n_features})


def _stat_name(row: FeatureDrift) -> str:
    return "KS D" if row.kind == "numeric" else "JS distance"


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "p n/a"
    return "p<1e-6" if p < 1e-6 else f"p={p:.2g}"
