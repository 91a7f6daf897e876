"""Router overhead: routing + prediction logging on, against the single-model server, same load.

Three servers run at once on 127.0.0.1, each `python -m mlgate.serving` with the same model
(models/candidate) and the `serving` defaults (micro-batching on):
- single: the model server of the serving issue: one variant, mode single, prediction log off;
- routed: a weighted route table (champion 100, challenger 0: loaded, reachable by
  X-Target-Variant), sticky assignment by `X-Routing-Key` on every request, every prediction logged
  to SQLite (WAL, batched background writer) in a scratch directory: the router's own cost;
- canary (for information): the same with champion 90 / challenger 10 (the same model under both
  names), which adds what a second model costs in one process.
The load: 32 concurrent closed-loop clients (benchmarks/load.py), single-row `dataframe_split`
requests cycling through the holdout, each with an `X-Routing-Key` from 10,000 customer ids (sent to
every server). Rounds alternate A B C A B C; each has a warm-up that is not measured. Champion-path
latency is that of the answers whose `X-Model-Variant` is the champion.

Target: the routed server's throughput at most 10% below the single-model server's.

    python -m benchmarks.router [--rounds 3] [--seconds 10] [--warmup 2] [--clients 32] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks import publish
from benchmarks.load import LoadResult, command_line, round_arguments, run_load
from benchmarks.serving import model_and_bodies, pooled

TITLE = "Router: routing + prediction log vs the single-model server"
MAX_THROUGHPUT_LOSS = 0.10
SINGLE, ROUTED, CANARY = "single", "routed", "canary"
CHALLENGER_WEIGHT = {ROUTED: 0, CANARY: 10}
KEYS = 10_000


def config(log_url: str | None) -> Any:
    """The serving defaults, logging to `log_url` (None: the prediction log off)."""
    from mlgate.serving.settings import ServingConfig

    base = ServingConfig()
    log = base.prediction_log.model_copy(update={"enabled": log_url is not None, "url": log_url or base.prediction_log.url})
    return base.model_copy(update={"prediction_log": log})


def routes(model: Path, challenger_weight: int) -> dict[str, Any]:
    return {"mode": "weighted", "variants": [
        {"name": "champion", "model_uri": str(model), "weight": 100 - challenger_weight},
        {"name": "challenger", "model_uri": str(model), "weight": challenger_weight}]}


@contextmanager
def servers(model: Path, scratch: Path) -> Iterator[dict[str, Any]]:
    """The three servers started (ServerProcess), stopped on exit."""
    from mlgate.serving.runtime import ServerProcess

    with ExitStack() as stack:
        running = {SINGLE: stack.enter_context(ServerProcess({"champion": str(model)}, config(None),
                                                             log_path=scratch / "single.log"))}
        for name, weight in CHALLENGER_WEIGHT.items():
            log_url = f"sqlite:///{scratch / name}.db"
            running[name] = stack.enter_context(ServerProcess({}, config(log_url), routes=routes(model, weight),
                                                              log_path=scratch / f"{name}.log"))
        yield running


def alternate(urls: dict[str, str], bodies: list[bytes], args: argparse.Namespace) -> dict[str, list[LoadResult]]:
    """Rounds A B C A B C ...: the same load, routing keys included, on each server in turn."""
    rounds: dict[str, list[LoadResult]] = {name: [] for name in urls}
    for number in range(args.rounds):
        for name, url in urls.items():
            result = run_load(url, bodies, concurrency=args.clients, duration_s=args.seconds, warmup_s=args.warmup,
                              max_requests=args.max_requests, tag_header="X-Model-Variant",
                              headers_for=lambda n: {"X-Routing-Key": f"customer-{n % KEYS}"})
            rounds[name].append(result)
            print(f"round {number + 1} {name:>6}: {result.throughput:8.1f} req/s  p50 {result.percentile_ms(50):6.1f} ms"
                  f"  p99 {result.percentile_ms(99):6.1f} ms  errors {result.errors}", flush=True)
    return rounds


def champion_path(results: list[LoadResult]) -> LoadResult:
    """The latencies of the answers the champion gave, over all rounds."""
    merged = LoadResult(latencies_s=[s for r in results for s in r.tagged.get("champion", [])])
    merged.elapsed_s = sum(r.elapsed_s for r in results)
    return merged


def log_figures(server: Any) -> dict[str, float]:
    """Prediction-log counters of a server (rows written, dropped, failed)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    figures = {"written": 0.0, "dropped": 0.0, "failed": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlgate_prediction_log_rows_total":
                figures[sample.labels["outcome"]] += sample.value
    return figures


def report(rounds: dict[str, list[LoadResult]], args: argparse.Namespace, load: tuple[float, float],
           logged: dict[str, float], rows_in_log: int) -> tuple[str, bool]:
    from benchmarks import machine_description

    pool = {name: pooled(results) for name, results in rounds.items()}
    champion = {name: champion_path(rounds[name]) for name in (ROUTED, CANARY)}
    single = pool[SINGLE]
    ratio = pool[ROUTED].throughput / single.throughput if single.throughput else 0.0
    met = ratio >= 1.0 - MAX_THROUGHPUT_LOSS and all(p.errors == 0 for p in pool.values())
    per_round = "\n".join(
        f"| {i + 1} | " + " | ".join(f"{r.throughput:.0f} | {r.percentile_ms(50):.1f} | {r.percentile_ms(99):.1f}"
                                      for r in (rounds[SINGLE][i], rounds[ROUTED][i], rounds[CANARY][i])) + " |"
        for i in range(args.rounds))

    def row(label: str, value: Any) -> str:
        return f"| {label} | " + " | ".join(value(name) for name in (SINGLE, ROUTED, CANARY)) + " |"

    def relative(name: str) -> str:
        return "" if name == SINGLE else f" ({pool[name].throughput / single.throughput:.3f} x single)"

    def champion_latency(name: str) -> str:
        path = single if name == SINGLE else champion[name]
        return f"{path.percentile_ms(50):.1f} / {path.percentile_ms(99):.1f}"

    table = "\n".join([
        "| pooled over rounds | single | routed | canary 90/10 |", "|---|---|---|---|",
        row("throughput (req/s)", lambda n: f"{pool[n].throughput:.0f}{relative(n)}"),
        row("p50 / p99 latency (ms), all answers", lambda n: f"{pool[n].percentile_ms(50):.1f} / {pool[n].percentile_ms(99):.1f}"),
        row("champion-path p50 / p99 (ms)", champion_latency),
        row("requests measured", lambda n: str(pool[n].ok)),
        row("errors", lambda n: str(pool[n].errors)),
    ])
    text = f"""Command: `{command_line("python -m benchmarks.router", args)}`

Machine: {machine_description()}; 1-minute load average {load[0]:.1f} before and {load[1]:.1f} after
(the 2 cores are shared by the servers, the load generator and other work).

Setup: `{args.model}` served by three `python -m mlgate.serving` processes at once on 127.0.0.1 (ServerProcess,
the `serving` defaults: micro-batching on, one uvicorn process, access log off).
- single: one variant, mode single, prediction log off (the single-model server of the serving issue).
- routed: mode weighted (champion 100, challenger 0: loaded, reachable by X-Target-Variant), sticky
  assignment by `X-Routing-Key` on every request, `X-Route-Version` on every answer, every prediction
  logged (SQLite WAL in a scratch dir, batched background writer). This is the router's own cost.
- canary (for information): the same with champion 90 / challenger 10 (the same model under both names).
- Load: {args.clients} concurrent closed-loop clients (benchmarks/load.py, asyncio + aiohttp), single-row
  `dataframe_split` requests cycling through the {args.rows} holdout rows, each with `X-Routing-Key` from
  {KEYS:,} customer ids; {args.rounds} round(s) per server alternated A B C A B C, each {args.warmup:g} s
  warm-up (not measured) + {args.seconds:g} s measured.

| round | single req/s | p50 ms | p99 ms | routed req/s | p50 ms | p99 ms | canary req/s | p50 ms | p99 ms |
|---|---|---|---|---|---|---|---|---|---|
{per_round}

{table}

Prediction log of the routed server: {logged['written']:.0f} rows written, {logged['dropped']:.0f} dropped,
{logged['failed']:.0f} failed while serving; {rows_in_log} rows in its database after its graceful shutdown
(every answered request of the run, warm-ups included).

Result: routed / single throughput {ratio:.3f}: {"meets" if met else "does not meet"} the target (>= {1 - MAX_THROUGHPUT_LOSS:.2f}).
The canary column is not part of the target: a second model in the same process runs its own model
calls, and at saturation on this machine a small share of traffic still costs a whole model call per
micro-batch (the per-call cost of this pipeline hardly depends on the number of rows), under the
same GIL as the champion's calls.
"""
    return text, met


def main(argv: list[str] | None = None) -> int:
    parser = round_arguments("python -m benchmarks.router", __doc__.splitlines()[0])
    args = parser.parse_args(argv)
    if (found := model_and_bodies(args)) is None:
        return 2
    model, bodies = found
    from mlgate.serving.log.prediction_log import read_predictions
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-router-") as tmp:
        with servers(model, Path(tmp)) as running:
            rounds = alternate({name: s.url + "/invocations" for name, s in running.items()}, bodies, args)
            logged = log_figures(running[ROUTED])
        rows_in_log = len(read_predictions(f"sqlite:///{Path(tmp) / ROUTED}.db"))
    text, met = report(rounds, args, (before, os.getloadavg()[0]), logged, rows_in_log)
    publish(TITLE, text, write=not args.no_write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
