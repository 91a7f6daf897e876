"""The mlgate model server against `mlflow models serve`: same model, same machine, same load.

Both servers run the candidate model (models/candidate) at the same time on 127.0.0.1, each as one
uvicorn process with one worker (mlflow's default; mlgate's server is one process by design, since
micro-batching needs every request in one process). The load: 32 concurrent closed-loop clients
(benchmarks/load.py, asyncio + aiohttp), each sending single-row `dataframe_split` requests drawn in
turn from the holdout (data/test.parquet). Rounds alternate A B A B so that drifting background load
on the shared machine hits both; each round has a warm-up that is not measured. Before measuring, both
servers must answer the same holdout rows with the same labels (they serve the same model).

Target: mlgate's throughput at least 3x mlflow's, with a p99 latency no worse.

    python -m benchmarks.serving [--rounds 3] [--seconds 10] [--warmup 2] [--clients 32] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import publish
from benchmarks.load import LoadResult, command_line, model_and_holdout, round_arguments, run_load

TARGET_RATIO = 3.0
TITLE = "Model server vs mlflow models serve"
MLFLOW_START_S = 180.0
OURS, MLFLOW = "mlgate", "mlflow"


def single_row_bodies(holdout: pd.DataFrame, signature: list[dict[str, Any]]) -> list[bytes]:
    """One `dataframe_split` body per holdout row, values typed as the signature says."""
    columns = [c["name"] for c in signature]
    floats = {c["name"] for c in signature if c["type"] in ("double", "float")}
    bodies = []
    for row in holdout[columns].astype(object).itertuples(index=False):
        values = [None if pd.isna(v) else float(v) if name in floats else _native(v) for name, v in zip(columns, row, strict=False)]
        bodies.append(json.dumps({"dataframe_split": {"columns": columns, "data": [values]}}).encode())
    return bodies


def model_and_bodies(args: argparse.Namespace) -> tuple[Path, list[bytes]] | None:
    """The model directory the options name and one single-row body per holdout row (`args.rows` set to
    their number), or None after saying what is missing."""
    if (paths := model_and_holdout(args)) is None:
        return None
    model, holdout = paths
    from mlgate.serving.loading import load_sklearn_model

    bodies = single_row_bodies(pd.read_parquet(holdout), load_sklearn_model(str(model)).input_columns)
    args.rows = len(bodies)
    return model, bodies


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def mlgate_config(scratch: Path) -> Any:
    """The server's defaults (micro-batching on, every prediction logged), the log in a scratch dir."""
    from mlgate.serving.settings import ServingConfig

    config = ServingConfig()
    log = config.prediction_log.model_copy(update={"url": f"sqlite:///{scratch / 'predictions.db'}"})
    return config.model_copy(update={"prediction_log": log})


def describe_mlgate(config: Any) -> str:
    batching = config.microbatch
    parts = [f"micro-batching {'on' if batching.enabled else 'off'} (max {batching.max_batch_rows} rows, "
             f"{batching.max_wait_ms:g} ms wait, {batching.model_threads} model thread(s))"]
    logged = getattr(config.prediction_log, "enabled", True)
    parts.append("every prediction logged to SQLite (a scratch file)" if logged else "prediction log off")
    return ", ".join(parts)


@contextmanager
def mlgate_server(model_dir: Path, config: Any, scratch: Path) -> Iterator[str]:
    """`python -m mlgate.serving` through ServerProcess, stopped on exit."""
    from mlgate.serving.runtime import ServerProcess

    with ServerProcess(str(model_dir), config, log_path=scratch / "mlgate.log") as server:
        yield server.url + "/invocations"


@contextmanager
def mlflow_server(model_dir: Path, scratch: Path, workers: int) -> Iterator[str]:
    """`mlflow models serve --env-manager local -w N` in its own process group, stopped with SIGTERM."""
    from mlgate.serving.runtime import free_port

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    with open(scratch / "mlflow.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", process, scratch / "mlflow.log")
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        _stop_group(process)


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MLFLOW_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"mlflow models serve not ready within {MLFLOW_START_S} s:\n{log.read_text()[-3000:]}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this benchmark started (mlflow runs uvicorn as a child), then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)


def predictions(url: str, bodies: list[bytes]) -> list[Any]:
    """Labels for the bodies, one request each; any non-200 answer stops the benchmark."""
    labels = []
    for body in bodies:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            labels.extend(json.loads(response.read())["predictions"])
    return labels


def alternate(urls: dict[str, str], bodies: list[bytes], args: argparse.Namespace) -> dict[str, list[LoadResult]]:
    """Rounds A B A B ...: the same load on each server in turn."""
    rounds: dict[str, list[LoadResult]] = {name: [] for name in urls}
    for number in range(args.rounds):
        for name, url in urls.items():
            result = run_load(url, bodies, concurrency=args.clients, duration_s=args.seconds,
                              warmup_s=args.warmup, max_requests=args.max_requests)
            rounds[name].append(result)
            print(f"round {number + 1} {name:>6}: {result.throughput:8.1f} req/s  p50 {result.percentile_ms(50):6.1f} ms"
                  f"  p99 {result.percentile_ms(99):6.1f} ms  errors {result.errors}", flush=True)
    return rounds


def pooled(results: list[LoadResult]) -> LoadResult:
    merged = LoadResult()
    for result in results:
        merged.latencies_s += result.latencies_s
        merged.statuses.update(result.statuses)
        merged.elapsed_s += result.elapsed_s
    return merged


def report(rounds: dict[str, list[LoadResult]], args: argparse.Namespace, load: tuple[float, float],
           checked_rows: int, mlgate_settings: str) -> tuple[str, bool]:
    from benchmarks import machine_description

    ours, theirs = pooled(rounds[OURS]), pooled(rounds[MLFLOW])
    ratio = ours.throughput / theirs.throughput if theirs.throughput else float("inf")
    p99_ratio = ours.percentile_ms(99) / theirs.percentile_ms(99)
    met = ratio >= TARGET_RATIO and p99_ratio <= 1.0 and ours.errors == 0
    per_round = "\n".join(
        f"| {i + 1} | {a.throughput:.0f} | {a.percentile_ms(50):.1f} | {a.percentile_ms(99):.1f} | "
        f"{b.throughput:.0f} | {b.percentile_ms(50):.1f} | {b.percentile_ms(99):.1f} |"
        for i, (a, b) in enumerate(zip(rounds[OURS], rounds[MLFLOW], strict=True)))
    text = f"""Command: `{command_line("python -m benchmarks.serving", args)}`

Machine: {machine_description()}; 1-minute load average {load[0]:.1f} before and {load[1]:.1f} after
(the 2 cores are shared by the servers, the load generator and other work).

Setup: the same model (`{args.model}`, the params.yaml candidate) served by both at once on 127.0.0.1;
before measuring, both answered the same {checked_rows} holdout rows with identical labels.
- mlgate: `python -m mlgate.serving` (ServerProcess), one uvicorn process (uvloop, httptools, access log off),
  the `serving` defaults: {mlgate_settings}.
- mlflow: `mlflow models serve -m {args.model} --env-manager local -h 127.0.0.1 -p PORT -w {args.mlflow_workers}`,
  which runs `uvicorn --workers {args.mlflow_workers} mlflow.pyfunc.scoring_server.app:app` with uvicorn's
  defaults (uvloop and httptools, both installed; access log on); `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`,
  which MLflow 3 requires to load any sklearn model, and the virtualenv's bin first on PATH.
- Load: {args.clients} concurrent closed-loop clients (benchmarks/load.py, asyncio + aiohttp), single-row
  `dataframe_split` requests cycling through the {args.rows} holdout rows; {args.rounds} round(s) per server
  alternated A B A B, each {args.warmup:g} s warm-up (not measured) + {args.seconds:g} s measured.

| round | mlgate req/s | mlgate p50 ms | mlgate p99 ms | mlflow req/s | mlflow p50 ms | mlflow p99 ms |
|---|---|---|---|---|---|---|
{per_round}

| pooled over rounds | mlgate | mlflow | mlgate / mlflow |
|---|---|---|---|
| throughput (req/s) | {ours.throughput:.0f} | {theirs.throughput:.0f} | **{ratio:.2f}x** (target >= {TARGET_RATIO:g}x) |
| p50 latency (ms) | {ours.percentile_ms(50):.1f} | {theirs.percentile_ms(50):.1f} | {ours.percentile_ms(50) / theirs.percentile_ms(50):.2f} |
| p99 latency (ms) | {ours.percentile_ms(99):.1f} | {theirs.percentile_ms(99):.1f} | {p99_ratio:.2f} (target <= 1) |
| requests measured | {ours.ok} | {theirs.ok} | |
| errors | {ours.errors} | {theirs.errors} | |

Result: {"meets" if met else "does not meet"} the target.
"""
    return text, met


def main(argv: list[str] | None = None) -> int:
    parser = round_arguments("python -m benchmarks.serving", __doc__.splitlines()[0])
    parser.add_argument("--mlflow-workers", type=int, default=1)
    args = parser.parse_args(argv)
    if (found := model_and_bodies(args)) is None:
        return 2
    model, bodies = found
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-serving-") as tmp, \
            mlgate_server(model, config := mlgate_config(Path(tmp)), Path(tmp)) as ours, \
            mlflow_server(model, Path(tmp), args.mlflow_workers) as theirs:
        sample = bodies[:200]
        if predictions(ours, sample) != predictions(theirs, sample):
            print("the two servers disagree on the holdout: not the same model?", file=sys.stderr)
            return 1
        rounds = alternate({OURS: ours, MLFLOW: theirs}, bodies, args)
    text, met = report(rounds, args, (before, os.getloadavg()[0]), len(sample), describe_mlgate(config))
    publish(TITLE, text, write=not args.no_write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
