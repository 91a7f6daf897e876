"""Serving speed: `mlgate serve` against the HTTP floor on the same load (issue 18).

Four servers run at once on 127.0.0.1, each one uvicorn process (uvloop, httptools, access log off):
- floor: a bare FastAPI app that parses the body and answers a constant label per row
  (benchmarks/_http_floor.py): what the HTTP stack and the load generator allow on this machine;
- log on: `python -m mlgate.serving` with the `serving` defaults, every prediction logged (SQLite WAL);
- log off: the same with the prediction log disabled;
- shadow: log on, route table mode `shadow` with the same model mirrored as a shadow variant;
- with `--baseline COMMIT`, "before": log on, the server as it was at COMMIT with its own defaults
  (benchmarks/_baseline_tree.py), for before/after figures from one run.
The load: 32 closed-loop clients (benchmarks/load.py) sending single-row `dataframe_split` requests
cycling through the holdout; rounds alternate between the servers so drifting background load hits
all of them. The model's own cost per call is measured in process, on one native thread as served.
`--profile` adds one round per server under py-spy (`--gil`: the thread holding the GIL) and a table of
where the GIL time goes (benchmarks/_gil_profile.py); only that option needs py-spy.

Target (log on): throughput >= 2,800 requests/s (3x the ~940 of the issue's first measurement) and p99 < 50 ms.

    python -m benchmarks.serving_speed [--rounds 3] [--seconds 10] [--warmup 2] [--clients 32] [--profile]
                                       [--baseline COMMIT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import publish
from benchmarks._serving_speed_report import model_costs, report
from benchmarks.load import LoadResult, round_arguments, run_load
from benchmarks.serving import model_and_bodies, pooled

TITLE = "Serving speed: mlgate serve vs the HTTP floor"
FLOOR, LOG_ON, LOG_OFF, SHADOW, BEFORE = "floor", "log on", "log off", "shadow", "before"


def config(log_url: str | None, defaults: dict[str, Any] | None = None) -> Any:
    """The serving defaults (or `defaults`, another version's), logging to `log_url` (None: log off)."""
    from mlgate.serving.settings import ServingConfig

    base = ServingConfig.model_validate(defaults or {})
    log = base.prediction_log.model_copy(update={"enabled": log_url is not None,
                                                 "url": log_url or base.prediction_log.url})
    return base.model_copy(update={"prediction_log": log})


class OlderConfig:
    """This version's ServingConfig for an older server: read like the config, dumped with only the keys the
    older version's own defaults have (it refuses keys it does not know)."""

    def __init__(self, config: Any, known: dict[str, Any]) -> None:
        self._config, self._known = config, known

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)

    def model_dump_json(self) -> str:
        return json.dumps(_known_keys(self._config.model_dump(mode="json"), self._known))


def _known_keys(values: Any, known: Any) -> Any:
    if not isinstance(values, dict) or not isinstance(known, dict):
        return values
    return {key: _known_keys(value, known[key]) for key, value in values.items() if key in known}


@contextmanager
def floor_server(scratch: Path) -> Iterator[Any]:
    """The floor app under uvicorn with the server's settings, stopped on exit."""
    from mlgate.serving.runtime import free_port, wait_until_ready

    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks._http_floor:app", "--host", "127.0.0.1",
               "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    with open(scratch / "floor.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=Path(__file__).resolve().parents[1])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, 60.0, lambda: None if process.poll() is None else "the floor app exited")
        yield _Running(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


@dataclass(frozen=True)
class _Running:
    """What a round needs of a started server: its URL and process id (for py-spy)."""

    url: str
    pid: int


def _started(server: Any) -> _Running:
    if server.pid is None:
        raise RuntimeError(f"{server.url}: the server process is not running")
    return _Running(server.url, server.pid)


@contextmanager
def servers(model: Path, scratch: Path, baseline: str | None) -> Iterator[dict[str, _Running]]:
    """The servers started, stopped on exit (mlgate's flush their logs first)."""
    from benchmarks._baseline_tree import baseline_defaults, baseline_environment
    from mlgate.serving.runtime import ServerProcess

    shadow_routes = {"mode": "shadow", "variants": [
        {"name": "champion", "model_uri": str(model), "weight": 100},
        {"name": "shadow", "model_uri": str(model), "weight": 0, "shadow": True}]}
    with ExitStack() as stack:
        running = {FLOOR: stack.enter_context(floor_server(scratch))}
        for name, log_url, routes in ((LOG_ON, f"sqlite:///{scratch / 'on.db'}", None), (LOG_OFF, None, None),
                                      (SHADOW, f"sqlite:///{scratch / 'shadow.db'}", shadow_routes)):
            uris = {} if routes else {"default": str(model)}
            server = stack.enter_context(ServerProcess(uris, config(log_url), routes=routes,
                                                       log_path=scratch / f"{name.replace(' ', '-')}.log"))
            running[name] = _started(server)
        if baseline is not None:
            env = stack.enter_context(baseline_environment(baseline))
            defaults = baseline_defaults(env)
            before = OlderConfig(config(f"sqlite:///{scratch / 'before.db'}", defaults), defaults)
            server = stack.enter_context(ServerProcess({"default": str(model)}, before, env=env,
                                                       log_path=scratch / "before.log"))
            running[BEFORE] = _started(server)
        yield running


def alternate(running: dict[str, _Running], bodies: list[bytes], args: argparse.Namespace) -> dict[str, list[LoadResult]]:
    """Rounds A B C D A B C D ...: the same load on each server in turn."""
    rounds: dict[str, list[LoadResult]] = {name: [] for name in running}
    for number in range(args.rounds):
        for name, server in running.items():
            rounds[name].append(one_round(server.url, bodies, args))
            result = rounds[name][-1]
            print(f"round {number + 1} {name:>7}: {result.throughput:8.1f} req/s  p50 {result.percentile_ms(50):6.1f} ms"
                  f"  p99 {result.percentile_ms(99):6.1f} ms  errors {result.errors}", flush=True)
    return rounds


def one_round(url: str, bodies: list[bytes], args: argparse.Namespace) -> LoadResult:
    return run_load(url + "/invocations", bodies, concurrency=args.clients, duration_s=args.seconds,
                    warmup_s=args.warmup, max_requests=args.max_requests)


def profiled(running: dict[str, _Running], bodies: list[bytes], args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """One more round per server with py-spy sampling the GIL holder: {server: (profile, result)}."""
    from benchmarks._gil_profile import read_samples, record

    profiles = {}
    for name, server in running.items():
        out = scratch / f"profile-{name.replace(' ', '-')}.txt"
        warm = argparse.Namespace(**{**vars(args), "seconds": 1.0, "warmup": 0.5})
        one_round(server.url, bodies, warm)
        spy = record(server.pid, args.seconds, out)
        result = one_round(server.url, bodies, argparse.Namespace(**{**vars(args), "warmup": 0.0}))
        spy.wait(60)
        profiles[name] = (read_samples(out, args.seconds, 500), result)
    return profiles


def main(argv: list[str] | None = None) -> int:
    parser = round_arguments("python -m benchmarks.serving_speed", __doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="add a py-spy round per server (needs py-spy)")
    parser.add_argument("--baseline", metavar="COMMIT", help="also serve this commit's server (log on), as 'before'")
    args = parser.parse_args(argv)
    if (found := model_and_bodies(args)) is None:
        return 2
    model, bodies = found
    costs = model_costs(model, bodies)
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-speed-") as tmp, servers(model, Path(tmp), args.baseline) as running:
        rounds = alternate(running, bodies, args)
        profiles = profiled(running, bodies, args, Path(tmp)) if args.profile else {}
        after = os.getloadavg()[0]
    pools = {name: pooled(results) for name, results in rounds.items()}
    text, met = report(rounds, pools, profiles, costs, args, (before, after))
    publish(TITLE, text, write=not args.no_write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
