"""Locust load rounds against model servers on 127.0.0.1, alternated between the models.

The rounds run in one subprocess (`python -m mlgate.pipelines.checks.latency.locust_runner`), because locust patches its
process with gevent. They alternate in the counterbalanced order A B, B A, A B ..., so drift and
bursts of load on a shared machine hit both models alike and neither always runs second. The run is
bounded by each round's time and request cap, and by a hard timeout on the subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate.gates.config import LatencyGateConfig
from mlgate.gates.latency.decide import RoundSamples

LOOPBACK = "http://127.0.0.1:"
_STOP_MARGIN_S = 30.0


class LoadTestError(RuntimeError):
    """The load test could not run (bad target, crashed or hung locust); the message says why."""


@dataclass(frozen=True)
class RoundRecord:
    """One model's round: every request (offset_s, latency_ms, rows, ok, measured) and its window."""

    model: str
    index: int
    requests: pd.DataFrame
    window_s: float
    ramp_s: float
    stopped_by: str
    errors: dict[str, int]

    def samples(self) -> RoundSamples:
        """The measured window only: ramp-up and warm-up requests are left out."""
        measured = self.requests[self.requests["measured"]]
        ok = measured["ok"].to_numpy(dtype=bool)
        return RoundSamples(self.model, self.index, measured["latency_ms"].to_numpy(dtype=float)[ok],
                            int((~ok).sum()), self.window_s)


@dataclass(frozen=True)
class LoadTestRun:
    """All rounds in run order, and locust's HTML report of each model."""

    rounds: list[RoundRecord]
    html_reports: dict[str, Path]

    def samples(self, model: str) -> tuple[RoundSamples, ...]:
        return tuple(r.samples() for r in self.rounds if r.model == model)


def payload_bodies(holdout: pd.DataFrame, batch_sizes: Sequence[int], per_size: int, seed: int) -> dict[int, list[str]]:
    """`per_size` JSON bodies (MLflow dataframe_split) per batch size, rows sampled from the holdout."""
    rng = np.random.default_rng(seed)
    bodies: dict[int, list[str]] = {}
    for size in batch_sizes:
        picks = (rng.choice(len(holdout), size=size, replace=size > len(holdout)) for _ in range(per_size))
        bodies[size] = ['{"dataframe_split": ' + holdout.iloc[rows].to_json(orient="split", index=False) + "}"
                        for rows in picks]
    return bodies


def round_order(models: Sequence[str], rounds: int) -> list[tuple[str, int]]:
    """(model, round index) in run order: A B, then B A, then A B ... (one model alone: A A A)."""
    order: list[tuple[str, int]] = []
    for index in range(rounds):
        pair = list(models) if index % 2 == 0 else list(reversed(models))
        order += [(model, index) for model in pair]
    return order


def run_load_test(targets: Mapping[str, str], config: LatencyGateConfig, bodies: Mapping[int, list[str]],
                  work_dir: Path) -> LoadTestRun:
    """Every round of every model (`targets`: model -> base URL on 127.0.0.1), alternating."""
    for model, url in targets.items():
        if not url.startswith(LOOPBACK):
            raise LoadTestError(f"{model}: load tests target 127.0.0.1 only, not {url}")
    work_dir.mkdir(parents=True, exist_ok=True)
    order = round_order(list(targets), config.rounds)
    spec = load_spec(targets, config, bodies, order, work_dir)
    spec_path = work_dir / "locust_spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    _run_locust(spec_path, work_dir / "locust.log", len(order) * config.round_deadline_s + _STOP_MARGIN_S)
    samples_path = Path(spec["samples_path"])
    raw = json.loads(samples_path.read_text(encoding="utf-8"))["rounds"]
    spec_path.unlink()  # the payloads and raw samples are large; the caller keeps what it needs
    samples_path.unlink()
    return LoadTestRun([_record(r) for r in raw], {m: Path(p) for m, p in spec["html_paths"].items()})


def load_spec(targets: Mapping[str, str], config: LatencyGateConfig, bodies: Mapping[int, list[str]],
              order: Sequence[tuple[str, int]], work_dir: Path) -> dict[str, Any]:
    """What the locust subprocess needs: targets, load profile, payloads, rounds and output paths."""
    return {
        "targets": dict(targets), "users": config.users, "spawn_rate": config.spawn_rate,
        "user_rps": config.user_rps, "warmup_s": config.warmup_s, "round_s": config.round_s,
        "max_requests": config.max_requests_per_round, "request_timeout_s": config.request_timeout_s,
        # Both models' rounds of one index share a seed: the same payload stream hits each of them.
        "rounds": [{"model": m, "index": i, "seed": config.seed + i} for m, i in order],
        "bodies": {str(k): v for k, v in bodies.items()},
        "weights": {str(k): v for k, v in config.batch_mix.items()},
        "samples_path": str(work_dir / "samples.json"),
        "html_paths": {m: str(work_dir / f"locust-{m}.html") for m in targets},
    }


def _run_locust(spec_path: Path, log_path: Path, timeout_s: float) -> None:
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run([sys.executable, "-m", "mlgate.pipelines.checks.latency.locust_runner", str(spec_path)],
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LoadTestError(f"locust did not finish within {timeout_s:.0f} s; log: {log_path}") from None
    if done.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise LoadTestError(f"locust exited with code {done.returncode}; log {log_path}:\n{tail}")


def _record(raw: dict[str, Any]) -> RoundRecord:
    requests = pd.DataFrame({k: raw[k] for k in ("offset_s", "latency_ms", "rows", "ok")})
    requests = requests.astype({"offset_s": float, "latency_ms": float, "rows": int, "ok": bool})
    start, end = float(raw["window_start_s"]), float(raw["window_end_s"])
    requests["measured"] = (requests["offset_s"] >= start) & (requests["offset_s"] < end)
    return RoundRecord(raw["model"], int(raw["index"]), requests, max(end - start, 0.0), float(raw["ramp_s"]),
                       raw["stopped_by"], dict(raw["errors"]))


