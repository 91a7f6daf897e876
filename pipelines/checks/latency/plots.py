"""Plots of the latency gate under plots/latency/: the latency CDF of both models, and p95 per round.

The CDF shows where the two distributions differ (the rank test's view); the per-round p95 shows
how much the machine drifted between rounds, which the alternation is there to cancel. Uses
matplotlib's object API (Figure + Agg canvas): no pyplot global state, no display needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mlgate.gates.latency.decide import RoundSamples, latencies

FILES = {"latency_cdf": "cdf.png", "latency_rounds": "rounds.png"}
_COLOURS = {"candidate": "tab:blue", "baseline": "tab:orange"}


def write_plots(out_dir: Path, models: Mapping[str, Sequence[RoundSamples]], limits: Mapping[str, float]) -> dict[str, Path]:
    """Write both figures (always, so DVC finds its outputs); `limits` are SLO lines, e.g. {"SLO p95": 250}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILES.items()}
    cdf_figure(models, limits).savefig(paths["latency_cdf"], dpi=110, bbox_inches="tight")
    rounds_figure(models).savefig(paths["latency_rounds"], dpi=110, bbox_inches="tight")
    return paths


def cdf_figure(models: Mapping[str, Sequence[RoundSamples]], limits: Mapping[str, float]) -> Figure:
    """Empirical CDF of each model's measured latencies (log scale), with p95 marks and SLO lines."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for name, rounds in models.items():
        values = np.sort(latencies(rounds))
        if values.size == 0:
            continue
        colour = _COLOURS.get(name)
        p95 = float(np.percentile(values, 95))
        axes.step(values, np.arange(1, values.size + 1) / values.size, where="post", color=colour,
                  label=f"{name}: n {values.size}, p50 {np.median(values):.1f} ms, p95 {p95:.1f} ms")
        axes.axvline(p95, color=colour, linestyle=":", linewidth=1)
    for label, value in limits.items():
        axes.axvline(value, color="tab:red", linestyle="--", linewidth=1, label=f"{label} {value:g} ms")
    axes.axhline(0.95, color="gray", linewidth=0.5)
    axes.set_xscale("log")
    axes.set(xlabel="latency (ms, log scale)", ylabel="share of requests at or below",
             title="Latency under the same load (measured windows, warm-up excluded)")
    axes.legend(loc="lower right", fontsize=8)
    return figure


def rounds_figure(models: Mapping[str, Sequence[RoundSamples]]) -> Figure:
    """p50 and p95 of every round of each model, in round order: the machine's drift, made visible."""
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    for name, rounds in models.items():
        measured = [r for r in rounds if len(r.latencies_ms)]
        index = [r.index + 1 for r in measured]
        colour = _COLOURS.get(name)
        axes.plot(index, [np.percentile(r.latencies_ms, 95) for r in measured], "o-", color=colour, label=f"{name} p95")
        axes.plot(index, [np.median(r.latencies_ms) for r in measured], "s--", color=colour, alpha=0.6,
                  label=f"{name} p50")
    axes.set(xlabel="round", ylabel="latency (ms)", title="Latency per round")
    axes.legend(fontsize=8)
    return figure
