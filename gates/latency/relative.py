"""Candidate vs baseline latency: the p95 ratio with a round-paired bootstrap CI, and the rank judge.

On a shared machine the latencies of one round move together (a burst of other work slows a whole
round), so requests are not independent draws. The ratio's CI resamples round pairs (candidate and
baseline rounds of one index ran back to back), then requests within each resampled round: a
two-level bootstrap that keeps that structure. The ratio fails only when the whole CI is above the
limit; a point estimate above it with a CI that reaches below is a WARN (inconclusive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlgate.gates.config import LatencyGateConfig
from mlgate.gates.latency.samples import LatencySummary, RoundSamples, latencies, resample
from mlgate.gates.result import Check, Status
from mlgate.gates.stats import rank_judge


def p95_ratio_interval(candidate: Sequence[RoundSamples], baseline: Sequence[RoundSamples], *, level: float,
                       n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile CI of p95(candidate) / p95(baseline), resampling round pairs, then requests in each."""
    pairs = _round_pairs(candidate, baseline)
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.integers(0, len(pairs), size=len(pairs))
        cand = np.concatenate([resample(pairs[i][0], rng) for i in chosen])
        base = np.concatenate([resample(pairs[i][1], rng) for i in chosen])
        ratios[b] = np.percentile(cand, 95) / np.percentile(base, 95)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


def _round_pairs(candidate: Sequence[RoundSamples], baseline: Sequence[RoundSamples]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(candidate, baseline) latencies of each round index both models measured something in."""
    base_by_index = {r.index: np.asarray(r.latencies_ms, dtype=float) for r in baseline if len(r.latencies_ms)}
    return [(np.asarray(r.latencies_ms, dtype=float), base_by_index[r.index])
            for r in candidate if len(r.latencies_ms) and r.index in base_by_index]


def ratio_check(candidate: Sequence[RoundSamples], baseline: Sequence[RoundSamples], cand: LatencySummary,
                base: LatencySummary, config: LatencyGateConfig, p95s: str) -> Check:
    """Candidate p95 <= max_p95_ratio x baseline p95 (or within p95_slack_ms), decided on the ratio's CI."""
    ratio = cand.p95_ms / base.p95_ms
    limit_ms = max(config.max_p95_ratio * base.p95_ms, base.p95_ms + config.p95_slack_ms)
    max_ratio = limit_ms / base.p95_ms
    low, high = p95_ratio_interval(candidate, baseline, level=config.ratio_level, n_boot=config.ratio_n_boot,
                                   seed=config.seed)
    ci = f"[{config.ratio_level:.0%} CI {low:.2f}, {high:.2f}]"
    if ratio <= max_ratio:
        status, verdict = Status.PASS, f"within max {config.max_p95_ratio:g}"
    elif low > max_ratio:
        status, verdict = Status.FAIL, f"above max {config.max_p95_ratio:g}"
    else:
        status, verdict = Status.WARN, f"above max {config.max_p95_ratio:g} but the CI reaches below it (inconclusive)"
    details = {"candidate_p95_ms": cand.p95_ms, "baseline_p95_ms": base.p95_ms, "limit_ms": limit_ms,
               "ci": [low, high], "level": config.ratio_level,
               "candidate_round_p95_ms": list(cand.round_p95_ms), "baseline_round_p95_ms": list(base.round_p95_ms)}
    return Check("ratio.p95", status, ratio, f"<= {config.max_p95_ratio:g} x baseline p95 (or + {config.p95_slack_ms:g} ms)",
                 f"{p95s}: ratio {ratio:.2f} {ci} {verdict} (limit {limit_ms:.1f} ms)", details)


def rank_check(candidate: Sequence[RoundSamples], baseline: Sequence[RoundSamples], cand: LatencySummary,
               base: LatencySummary, config: LatencyGateConfig, p95s: str) -> Check:
    """Mann-Whitney on the pooled raw samples, failing only beyond the effect-size tolerance (Kayenta-like)."""
    rule = config.rank_test
    judged = rank_judge(latencies(baseline), latencies(candidate), tolerance=rule.tolerance, alpha=rule.alpha,
                        effect=rule.effect, seed=config.seed, slack=rule.slack_ms)
    test = judged.test
    details = {"effect": rule.effect, "superiority": test.superiority, "shift_ratio": test.shift_ratio,
               "p_greater": test.p_greater, "p_two_sided": test.p_two_sided, "shift_ms": test.shift,
               "baseline_median_ms": test.a_median, "n_candidate": test.n_b, "n_baseline": test.n_a,
               "subsampled": test.subsampled}
    if rule.effect == "shift_ratio":
        observed, expected = test.shift_ratio, (f"median shift <= +{rule.tolerance:.0%} of baseline median "
                                                f"(or <= +{rule.slack_ms:g} ms) or p >= {rule.alpha:g}")
    else:
        observed, expected = test.superiority, f"P(candidate slower) <= {0.5 + rule.tolerance:g} or p >= {rule.alpha:g}"
    return Check("rank_test", Status.PASS if judged.passed else Status.FAIL, observed, expected,
                 f"{judged.message}; {p95s} (ratio {cand.p95_ms / base.p95_ms:.2f})", details)
