"""The live outlier rate of a rollout's challenger against the share of training rows its detector flags.

The detector in the challenger's bundle is calibrated so that a known share of its training rows is flagged
(`train.outliers.share`). Live traffic flagged far more often than that is unlike the data the model was
trained and judged on: the offline gates said little about it. The rate is judged on an always-valid
confidence sequence, like the other online rates, against `max_ratio` x the training share; by default the
check only warns (`on_exceed: warn`), since the inputs, not the model, are what changed.
"""

from __future__ import annotations

from mlgate.gates.config import OutlierRateConfig
from mlgate.gates.online.core import AnalysisOutcome as O
from mlgate.gates.online.core import check, judge_at_most, rate_sequence, skipped
from mlgate.gates.result import Check

NAME = "outlier_rate"
PLANNED_ROWS = 2000  # rows at which the confidence sequence is tightest


def outlier_rate_check(flagged: int, checked: int, training_share: float | None, config: OutlierRateConfig,
                       alpha: float) -> Check:
    """`flagged` of the `checked` challenger rows were outliers; `training_share`: the share of training rows
    the challenger's detector flags (None: its bundle has no detector)."""
    if training_share is None:
        return skipped(NAME, "the challenger's bundle has no outlier detector (models trained before mlgate "
                             "added one, or train.outliers.enabled: false)")
    limit = min(1.0, config.max_ratio * training_share)
    expected = f"live outlier rate <= {config.max_ratio:g} x training share {training_share:.4f} = {limit:.4f}"
    if checked < config.min_rows:
        message = f"{checked} of {config.min_rows} rows checked by the outlier detector so far"
        if config.on_exceed == "warn":
            return skipped(NAME, message)
        return check(NAME, O.INCONCLUSIVE, message, value=None, threshold=limit, expected=expected)
    interval = rate_sequence(flagged, checked, planned_n=PLANNED_ROWS, planning_rate=max(training_share, 0.01),
                             alpha=alpha)
    outcome = judge_at_most(interval, limit)
    facts = (f"live outlier rate {interval.describe(alpha)} vs {config.max_ratio:g} x the training share "
             f"{training_share:.4f} = {limit:.4f}")
    value = round(interval.rate, 6)
    details = {"flagged": flagged, "checked": checked, "training_share": training_share, "low": interval.low,
               "high": interval.high}
    if outcome is O.FAILED:
        verdict = f"{facts}: live traffic is unlike the training data"
        if config.on_exceed == "warn":
            return check(NAME, O.SUCCESSFUL, verdict + " (warning: rollout.*.outliers.on_exceed is warn)",
                         value=value, threshold=limit, expected=expected, warn=True, **details)
        return check(NAME, O.FAILED, verdict, value=value, threshold=limit, expected=expected, **details)
    if outcome is O.INCONCLUSIVE and config.on_exceed == "fail":
        return check(NAME, O.INCONCLUSIVE, f"{facts}: not yet shown within the limit", value=value, threshold=limit,
                     expected=expected, **details)
    shown = "within the limit" if outcome is O.SUCCESSFUL else "not shown above the limit"
    return check(NAME, O.SUCCESSFUL, f"{facts}: {shown}", value=value, threshold=limit, expected=expected, **details)
