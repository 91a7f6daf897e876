"""What an online analysis returns: an Argo-Rollouts-style outcome next to the usual GateResult.

Each check carries its own outcome in `details["outcome"]`. A check that cannot decide *yet* (too few
requests, a confidence interval still straddling its threshold) is an ERROR check with outcome
`inconclusive`: nothing undecided ever counts as PASS, and the analysis outcome tells the controller to
keep collecting rather than to roll back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlgate.gates.online.sequential import confidence_sequence, tau2_for_horizon
from mlgate.gates.result import Check, GateResult, Status


class AnalysisOutcome(StrEnum):
    """Outcome of one look at live data (Argo Rollouts AnalysisRun phases)."""

    SUCCESSFUL = "Successful"  # go to the next step
    INCONCLUSIVE = "Inconclusive"  # keep collecting; pause at the step's time limit
    FAILED = "Failed"  # roll back
    ERROR = "Error"  # the data cannot be trusted or analysed: roll back

    @property
    def rank(self) -> int:
        return _RANK[self]


WARNING_CHARS = 240  # of each warning's message, in a successful look's reason

_RANK = {AnalysisOutcome.SUCCESSFUL: 0, AnalysisOutcome.INCONCLUSIVE: 1,
         AnalysisOutcome.FAILED: 2, AnalysisOutcome.ERROR: 3}
_STATUS = {AnalysisOutcome.SUCCESSFUL: Status.PASS, AnalysisOutcome.INCONCLUSIVE: Status.ERROR,
           AnalysisOutcome.FAILED: Status.FAIL, AnalysisOutcome.ERROR: Status.ERROR}


@dataclass(frozen=True)
class OnlineAnalysis:
    """The outcome, the checks behind it (as a GateResult), and the reason in one sentence: the deciding
    check's message, or that every check passed."""

    outcome: AnalysisOutcome
    result: GateResult
    reason: str
    decisive: Check | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-ready record of this look (kept in the rollout's history)."""
        checks = {c.name: {"outcome": c.details.get("outcome"), "value": c.details.get("value"),
                           "threshold": c.details.get("threshold")} for c in self.result.checks}
        return {"outcome": str(self.outcome), "reason": self.reason, "counts": self.counts, "checks": checks}

    def rollback_reason(self) -> dict[str, Any]:
        """Metric, value and threshold of the check that decided a Failed or Error outcome."""
        check = self.decisive
        details = check.details if check else {}
        return {"metric": details.get("metric", check.name if check else None), "value": details.get("value"),
                "threshold": details.get("threshold"), "outcome": str(self.outcome), "message": self.reason}


def check(
    name: str, outcome: AnalysisOutcome, message: str, *, value: Any, threshold: Any, expected: str,
    metric: str | None = None, warn: bool = False, **details: Any,
) -> Check:
    """A check tagged with its outcome; `warn` turns a successful one into a WARN (reported, not blocking)."""
    status = Status.WARN if warn and outcome is AnalysisOutcome.SUCCESSFUL else _STATUS[outcome]
    if outcome is AnalysisOutcome.INCONCLUSIVE and not message.startswith("inconclusive"):
        message = f"inconclusive: {message}"
    info = {"outcome": str(outcome), "metric": metric or name, "value": value, "threshold": threshold, **details}
    return Check(name, status, value, expected, message, info)


def skipped(name: str, reason: str) -> Check:
    """A check that does not apply here (the reason says why)."""
    return Check(name, Status.SKIP, None, "applies", reason, {"outcome": "skipped"})


def outcome_of(check_: Check) -> AnalysisOutcome | None:
    value = check_.details.get("outcome")
    return AnalysisOutcome(value) if value in AnalysisOutcome._value2member_map_ else None


def analysis(gate: str, checks: list[Check], started: float, counts: dict[str, Any],
             headline: tuple[str, ...] = ()) -> OnlineAnalysis:
    """Combine checks: Error beats Failed beats Inconclusive beats Successful; no checks is Error.
    A success names the first `headline` check present (the number a reader wants to see)."""
    tagged = [(outcome_of(c), c) for c in checks if outcome_of(c) is not None]
    result = GateResult.from_checks(gate, checks, time.perf_counter() - started)
    if not tagged:
        return OnlineAnalysis(AnalysisOutcome.ERROR, result, f"no {gate} check could run", None, counts)
    outcome, decisive = max(tagged, key=lambda pair: pair[0].rank)
    if outcome is AnalysisOutcome.SUCCESSFUL:
        key = next((c.message for name in headline for c in checks if c.name == name), None)
        reason = f"every {gate} check passed ({len(tagged)} checks)" + (f"; {key}" if key else "")
        warned = [f"{c.name}: {c.message[:WARNING_CHARS]}" for c in checks if c.status is Status.WARN]
        if warned:  # reported, not blocking: the timeline and the reports say them
            reason += "; warning: " + "; ".join(warned)
        return OnlineAnalysis(outcome, result, reason, None, counts)
    return OnlineAnalysis(outcome, result, decisive.message, decisive, counts)


def error_analysis(gate: str, message: str, counts: dict[str, Any] | None = None) -> OnlineAnalysis:
    """The analysis could not run at all (bad input): Error, with the reason."""
    item = check("analysis", AnalysisOutcome.ERROR, message, value=None, threshold=None, expected="analysable data")
    result = GateResult.from_checks(gate, [item], 0.0)
    return OnlineAnalysis(AnalysisOutcome.ERROR, result, f"{gate} analysis impossible: {message}", item,
                          dict(counts or {}))


@dataclass(frozen=True)
class RateInterval:
    """A rate with its always-valid confidence interval."""

    rate: float
    low: float
    high: float
    n: int

    def describe(self, alpha: float) -> str:
        return f"{self.rate:.4f} [always-valid {1 - alpha:.0%} CI {self.low:.4f}, {self.high:.4f}] (n {self.n})"


def rate_sequence(successes: int, n: int, *, planned_n: int, planning_rate: float, alpha: float) -> RateInterval:
    """One-sample always-valid interval for a rate (normal-mixture confidence sequence, clipped to [0, 1]).

    The variance uses (x + 0.5) / (n + 1), so 0 or n successes do not give a zero-width interval.
    """
    if n <= 0:
        raise ValueError("need at least one observation")
    smooth = (successes + 0.5) / (n + 1)
    tau2 = tau2_for_horizon(planning_rate * (1 - planning_rate) / planned_n, alpha)
    low, high = confidence_sequence(successes / n, smooth * (1 - smooth) / n, tau2, alpha)
    return RateInterval(successes / n, max(0.0, float(low)), min(1.0, float(high)), n)


def judge_at_least(interval: RateInterval, minimum: float) -> AnalysisOutcome:
    """Successful when the whole interval is >= minimum, Failed when it is wholly below, else Inconclusive."""
    if interval.low >= minimum:
        return AnalysisOutcome.SUCCESSFUL
    if interval.high < minimum:
        return AnalysisOutcome.FAILED
    return AnalysisOutcome.INCONCLUSIVE


def judge_at_most(interval: RateInterval, maximum: float) -> AnalysisOutcome:
    """Successful when the whole interval is <= maximum, Failed when it is wholly above, else Inconclusive."""
    if interval.high <= maximum:
        return AnalysisOutcome.SUCCESSFUL
    if interval.low > maximum:
        return AnalysisOutcome.FAILED
    return AnalysisOutcome.INCONCLUSIVE


def finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
