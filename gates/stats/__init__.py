"""Statistics for the gates and the online analyses: metrics, paired CIs, rank and ratio tests.

Pure numpy/scipy, seeded, no I/O. Import from here; the submodules are an implementation detail.
"""

from mlgate.gates.stats.bootstrap import (
    DEFAULT_MAX_ROWS,
    Predictions,
    paired_bootstrap_ci,
    paired_bootstrap_cis,
)
from mlgate.gates.stats.interval import (
    Decision,
    Interval,
    bonferroni_level,
    holm_adjust,
    non_inferiority,
    required_improvement,
)
from mlgate.gates.stats.metrics import METRICS, MetricSpec, expected_calibration_error, metrics_for_task
from mlgate.gates.stats.paired_tests import (
    delong_roc_auc_test,
    mcnemar_accuracy_test,
    mcnemar_mid_p,
    wilson_interval,
)
from mlgate.gates.stats.rank import (
    RankJudgement,
    RankTest,
    hodges_lehmann_shift,
    mann_whitney_effect,
    rank_judge,
)
from mlgate.gates.stats.srm import srm_chi_square

__all__ = [
    "DEFAULT_MAX_ROWS",
    "METRICS",
    "Decision",
    "Interval",
    "MetricSpec",
    "Predictions",
    "RankJudgement",
    "RankTest",
    "bonferroni_level",
    "delong_roc_auc_test",
    "expected_calibration_error",
    "hodges_lehmann_shift",
    "holm_adjust",
    "mann_whitney_effect",
    "mcnemar_accuracy_test",
    "mcnemar_mid_p",
    "metrics_for_task",
    "non_inferiority",
    "paired_bootstrap_ci",
    "paired_bootstrap_cis",
    "rank_judge",
    "required_improvement",
    "srm_chi_square",
    "wilson_interval",
]
