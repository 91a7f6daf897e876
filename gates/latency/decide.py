"""Latency gate: the candidate's raw latencies under load, against SLOs and against the baseline.

Inputs are the measured windows of alternating load rounds (mlgate.gates.latency.samples). Absolute checks
hold the candidate to the SLO; `load` checks the servers carried the offered load (a baseline that
could not means the machine, not the model, was measured: ERROR); relative checks compare it with
the production model measured under the same load (mlgate.gates.latency.relative): the p95 ratio decided on
a round-paired bootstrap CI, and a Mann-Whitney rank test judged on its effect size (Kayenta-like).
No baseline: relative checks SKIP with the reason (ERROR when require_baseline or it broke).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlgate.gates.config import LatencyGateConfig
from mlgate.gates.latency.relative import rank_check, ratio_check
from mlgate.gates.latency.samples import LatencySummary, RoundSamples, latencies, quantile_interval, summarize
from mlgate.gates.result import Check, GateResult, Status

__all__ = ["GATE", "LatencyInputs", "LatencySummary", "RoundSamples", "check", "latencies", "summarize"]

GATE = "latency"


@dataclass(frozen=True)
class LatencyInputs:
    """Candidate rounds, and baseline rounds or why there are none (`baseline_failed`: it exists but broke)."""

    candidate: tuple[RoundSamples, ...]
    baseline: tuple[RoundSamples, ...] | None = None
    baseline_problem: str = "no baseline"
    baseline_failed: bool = False
    baseline_details: dict[str, Any] = field(default_factory=dict)


def check(inputs: LatencyInputs, config: LatencyGateConfig) -> GateResult:
    """SLO checks on the candidate, then the baseline comparisons (SKIP without a baseline)."""
    candidate = summarize(inputs.candidate)
    checks = slo_checks(candidate, config, inputs.candidate)
    baseline_check = _baseline_check(inputs, config)
    checks += [baseline_check, load_check(candidate, summarize(inputs.baseline) if inputs.baseline else None, config)]
    if inputs.baseline is None or baseline_check.status is not Status.PASS:
        checks += _relative_not_decided(baseline_check)
    else:
        checks += relative_checks(inputs.candidate, inputs.baseline, config)
    return GateResult.from_checks(GATE, checks, 0.0)


def slo_checks(summary: LatencySummary, config: LatencyGateConfig, rounds: Sequence[RoundSamples]) -> list[Check]:
    """Absolute SLO: p95, p99, error rate, throughput; ERROR when nothing was measured.

    A percentile above its SLO fails only when its whole CI (over `rounds`) is above it: a p99 of a
    few hundred requests is the third-slowest request, which one burst of other work can move.
    """
    slo, served = config.slo, summary.requests - summary.errors
    if summary.requests == 0:
        reason = "no request of the candidate completed in the measured windows; nothing to judge"
        return [Check(f"slo.{name}", Status.ERROR, None, "measured requests", reason)
                for name in ("p95_ms", "p99_ms", "error_rate", "throughput")]
    return [
        _at_most(95, summary.p95_ms, slo.p95_ms, rounds, served, config),
        _at_most(99, summary.p99_ms, slo.p99_ms, rounds, served, config),
        _rate_check(summary, slo.max_error_rate),
        _throughput_check(summary, slo.min_rps),
    ]


def _at_most(q: int, observed: float, limit: float, rounds: Sequence[RoundSamples], served: int,
             config: LatencyGateConfig) -> Check:
    name, label, expected = f"slo.p{q}_ms", f"p{q}", f"<= {limit:g} ms"
    if served < config.min_samples:
        return Check(name, Status.ERROR, served, expected, f"candidate {label}: only {served} successful measured "
                     f"requests (< min_samples {config.min_samples}); too few to estimate it")
    if observed <= limit:
        return Check(name, Status.PASS, observed, expected,
                     f"candidate {label} {observed:.1f} ms within SLO {limit:g} ms ({served} requests)")
    low, high = quantile_interval(rounds, q, level=config.ratio_level, n_boot=config.ratio_n_boot, seed=config.seed)
    ci = f"[{config.ratio_level:.0%} CI {low:.1f}, {high:.1f}]"
    details = {"ci": [low, high], "level": config.ratio_level, "requests": served}
    if low > limit:
        return Check(name, Status.FAIL, observed, expected,
                     f"candidate {label} {observed:.1f} ms {ci} above SLO {limit:g} ms ({served} requests)", details)
    return Check(name, Status.WARN, observed, expected,
                 f"candidate {label} {observed:.1f} ms {ci} above SLO {limit:g} ms but the CI reaches below it "
                 f"(inconclusive; {served} requests: measure longer to decide)", details)


def _rate_check(summary: LatencySummary, limit: float) -> Check:
    rate, passed = summary.error_rate, summary.error_rate <= limit
    return Check("slo.error_rate", Status.PASS if passed else Status.FAIL, rate, f"<= {limit:g}",
                 f"candidate error rate {rate:.4f} ({summary.errors}/{summary.requests}) "
                 f"{'within' if passed else 'above'} SLO {limit:g}")


def _throughput_check(summary: LatencySummary, limit: float) -> Check:
    if not summary.duration_s > 0:
        return Check("slo.throughput", Status.ERROR, None, f">= {limit:g} rps", "no measured window")
    passed = summary.rps >= limit
    return Check("slo.throughput", Status.PASS if passed else Status.FAIL, summary.rps, f">= {limit:g} rps",
                 f"candidate {summary.rps:.1f} successful requests/s over {summary.duration_s:.1f} s "
                 f"{'meets' if passed else 'below'} SLO {limit:g} rps")


def load_check(candidate: LatencySummary, baseline: LatencySummary | None, config: LatencyGateConfig) -> Check:
    """Did the servers carry the offered load? A baseline that did not means an overloaded machine
    (ERROR: every figure measures the machine, not the model); a candidate alone that did not is a WARN."""
    offered, share = config.offered_rps, config.min_sustained_share
    if offered is None:
        return Check("load", Status.SKIP, None, "an offered rate", "user_rps is null (closed loop): no offered rate")
    need, expected = share * offered, f">= {share:g} x {offered:g} offered rps"
    served = {"candidate": candidate.rps, **({"baseline": baseline.rps} if baseline else {})}
    facts = ", ".join(f"{name} {rps:.1f}" for name, rps in served.items())
    details = {f"{name}_rps": rps for name, rps in served.items()} | {"offered_rps": offered}
    if baseline is not None and not baseline.rps >= need:
        return Check("load", Status.ERROR, baseline.rps, expected,
                     f"the baseline served only {baseline.rps:.1f} of {offered:g} offered requests/s ({facts}): the "
                     "machine could not carry the load, so the figures measure the machine, not the model; "
                     "re-run on a quieter machine or lower gates.latency.users / user_rps", details)
    if not candidate.rps >= need:  # its slowness is judged by the SLO, ratio and rank checks
        return Check("load", Status.WARN, candidate.rps, expected, f"the candidate served only {candidate.rps:.1f} "
                     f"of {offered:g} offered requests/s ({facts})", details)
    return Check("load", Status.PASS, candidate.rps, expected, f"served the offered {offered:g} requests/s ({facts})",
                 details)


def _baseline_check(inputs: LatencyInputs, config: LatencyGateConfig) -> Check:
    details = dict(inputs.baseline_details)
    if inputs.baseline is None:
        status = Status.ERROR if inputs.baseline_failed or config.require_baseline else Status.SKIP
        suffix = " (gates.latency.require_baseline is true)" if config.require_baseline and not inputs.baseline_failed else ""
        return Check("baseline", status, None, f"alias {config.baseline_alias}", inputs.baseline_problem + suffix, details)
    base = summarize(inputs.baseline)
    if base.requests - base.errors < config.min_samples:
        return Check("baseline", Status.ERROR, base.requests - base.errors, f">= {config.min_samples} measured requests",
                     f"baseline answered only {base.requests - base.errors} measured requests "
                     f"({base.errors} failed); cannot compare", {**details, **base.to_dict()})
    named = f"baseline {details['uri']}" if details.get("uri") else "baseline"
    return Check("baseline", Status.PASS, details.get("version"), f"alias {config.baseline_alias}",
                 f"{named} measured under the same load: p95 {base.p95_ms:.1f} ms over {base.requests} requests",
                 {**details, **base.to_dict()})


def _relative_not_decided(baseline: Check) -> list[Check]:
    status = Status.SKIP if baseline.status is Status.SKIP else Status.ERROR
    reason = f"no baseline to compare with: {baseline.message}"
    return [Check(name, status, None, "a baseline measured under the same load", reason)
            for name in ("ratio.p95", "rank_test")]


def relative_checks(candidate: Sequence[RoundSamples], baseline: Sequence[RoundSamples],
                    config: LatencyGateConfig) -> list[Check]:
    """Candidate vs baseline: p95 ratio and the rank test on the pooled raw samples."""
    cand, base = summarize(candidate), summarize(baseline)
    served = cand.requests - cand.errors
    if served < config.min_samples:
        reason = f"candidate answered only {served} measured requests (< min_samples {config.min_samples})"
        return [Check(name, Status.ERROR, served, f">= {config.min_samples} measured requests", reason)
                for name in ("ratio.p95", "rank_test")]
    p95s = f"p95 candidate {cand.p95_ms:.1f} ms vs baseline {base.p95_ms:.1f} ms"
    return [ratio_check(candidate, baseline, cand, base, config, p95s),
            rank_check(candidate, baseline, cand, base, config, p95s)]
