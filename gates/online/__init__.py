"""Online analyses of a rollout (DESIGN §8): shadow and canary, each an `OnlineAnalysis`.

An `OnlineAnalysis` holds the Argo-Rollouts-style `AnalysisOutcome` (Successful, Inconclusive, Failed,
Error) that drives the controller, the `GateResult` with every check, and the deciding reason in one
sentence. Pure functions of DataFrames and configs: no I/O here. Each analysis first reduces the log to sums
(`shadow_stats`, `canary_stats`: mergeable, so the rollout adds only what the newest rows change) and then
judges the sums (`shadow.judge_shadow`, `canary_data.judge_canary_stats`).
"""

from mlgate.gates.online.canary import ArmCounts, CanaryStep, judge_canary
from mlgate.gates.online.canary_data import arm_counts, canary_analysis
from mlgate.gates.online.core import AnalysisOutcome, OnlineAnalysis, RateInterval, rate_sequence
from mlgate.gates.online.shadow import shadow_analysis

__all__ = [
    "AnalysisOutcome",
    "ArmCounts",
    "CanaryStep",
    "OnlineAnalysis",
    "RateInterval",
    "arm_counts",
    "canary_analysis",
    "judge_canary",
    "rate_sequence",
    "shadow_analysis",
]
