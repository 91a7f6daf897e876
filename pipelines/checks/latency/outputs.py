"""Files the latency gate leaves behind: metrics/latency.json and every request as Parquet.

The metrics are taken from the same round samples the gate judged, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate.gates.config import LatencyGateConfig
from mlgate.gates.latency.decide import RoundSamples, summarize
from mlgate.gates.result import GateResult
from mlgate.pipelines.files import write_json


def metrics(result: GateResult, models: Mapping[str, Sequence[RoundSamples]], config: LatencyGateConfig,
            requests: pd.DataFrame | None, baseline: dict[str, Any] | None) -> dict[str, Any]:
    """Status, load profile, each model's summary (and p95 per batch size), ratio and rank test."""
    by_name = {c.name: c for c in result.checks}
    out: dict[str, Any] = {"status": str(result.status), "load": _load_profile(config), "baseline_model": baseline}
    for name, rounds in models.items():
        out[name] = {**summarize(rounds).to_dict(), "p95_ms_by_rows": _p95_by_rows(requests, name)}
    ratio, rank = by_name.get("ratio.p95"), by_name.get("rank_test")
    out["ratio_p95"] = ratio.observed if ratio is not None else None
    out["rank_test"] = dict(rank.details) if rank is not None else None
    out["checks"] = {c.name: str(c.status) for c in result.checks}
    return out


def _load_profile(config: LatencyGateConfig) -> dict[str, Any]:
    keys = ("users", "spawn_rate", "user_rps", "rounds", "round_s", "warmup_s", "max_requests_per_round")
    return {**{k: getattr(config, k) for k in keys}, "batch_mix": {str(k): v for k, v in config.batch_mix.items()}}


def _p95_by_rows(requests: pd.DataFrame | None, model: str) -> dict[str, float]:
    if requests is None or requests.empty:
        return {}
    mine = requests[(requests["model"] == model) & requests["measured"] & requests["ok"]]
    return {str(rows): float(np.percentile(group["latency_ms"], 95)) for rows, group in mine.groupby("rows")}


def write_metrics(path: Path, payload: dict[str, Any]) -> Path:
    """Write atomically; non-finite numbers become null (JSON has no NaN)."""
    return write_json(path, payload)


def write_requests(path: Path, requests: pd.DataFrame) -> Path:
    """Every request of every round (measured or not) in one Parquet file, for audits and re-analysis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    requests.to_parquet(path, index=False)
    return path
