"""The figures and text of `benchmarks.serving_speed`: the model's own cost per call, the rounds, the
ratios to the HTTP floor and, with `--profile`, where each server's GIL time goes."""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.load import LoadResult, command_line

TARGET_RPS, TARGET_P99_MS = 2800.0, 50.0
BATCH_SIZES = (1, 32, 128, 1024)
FLOOR, LOG_ON, BEFORE = "floor", "log on", "before"


def model_costs(model: Path, bodies: list[bytes], calls: int = 30) -> dict[int, float]:
    """Median ms of one `predict_scored` call per batch size, in process, in a thread limited to the
    native threads the server gives its model (as the server's predict thread is)."""
    from mlgate.serving.batching import limit_native_threads
    from mlgate.serving.protocol import parse_body
    from mlgate.serving.settings import ServingConfig
    from mlgate.serving.validation import validate
    from mlgate.serving.variants import load_variant

    variant = load_variant("model", str(model))
    parsed = [parse_body(body, "application/json") for body in bodies]
    batches = [validate(p, variant.schema, 10_000) for p in parsed]

    def measure(size: int) -> float:
        part = [batches[i % len(batches)] for i in range(size)]
        variant.predict_rows(variant.answer_method, part)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            variant.predict_rows(variant.answer_method, part)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e3

    threads = ServingConfig().microbatch.model_threads
    with ThreadPoolExecutor(1, initializer=limit_native_threads, initargs=(threads,)) as pool:
        return {size: pool.submit(measure, size).result() for size in BATCH_SIZES}


def _latency(result: LoadResult) -> str:
    return f"{result.percentile_ms(50):.1f} | {result.percentile_ms(99):.1f}"


def rounds_table(rounds: dict[str, list[LoadResult]]) -> str:
    names = list(rounds)
    head = "| round | " + " | ".join(f"{n} req/s | p50 ms | p99 ms" for n in names) + " |"
    rule = "|---|" + "---|---|---|" * len(names)
    lines = [f"| {i + 1} | " + " | ".join(f"{rounds[n][i].throughput:.0f} | {_latency(rounds[n][i])}" for n in names)
             + " |" for i in range(len(rounds[names[0]]))]
    return "\n".join([head, rule, *lines])


def pooled_table(pools: dict[str, LoadResult]) -> str:
    floor = pools[FLOOR]
    lines = ["| pooled over rounds | req/s | x floor | p50 ms | p99 ms | p99 / floor's | measured | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for name, pool in pools.items():
        lines.append(f"| {name} | {pool.throughput:.0f} | {pool.throughput / floor.throughput:.3f} | {_latency(pool)} | "
                     f"{pool.percentile_ms(99) / floor.percentile_ms(99):.1f} | {pool.ok} | {pool.errors} |")
    return "\n".join(lines)


def profile_table(profiles: dict[str, Any]) -> str:
    """Per stage: share of wall time the GIL was held for it, and GIL microseconds per answered request."""
    names = list(profiles)
    stages: list[str] = []
    for profile, _ in profiles.values():
        stages += [s for s, _ in profile.by_stage.most_common() if s not in stages]
    head = "| stage (GIL holder) | " + " | ".join(f"{n}: % of wall | {n}: us/request" for n in names) + " |"
    lines = [head, "|---|" + "---|---|" * len(names)]

    def cells(count: int, name: str) -> str:
        profile, result = profiles[name]
        per_request = count / (profile.possible / result.elapsed_s) / max(result.ok, 1) * 1e6 if profile.possible else 0.0
        return f"{profile.share(count):.1%} | {per_request:.0f}"

    for stage in stages:
        lines.append(f"| {stage} | " + " | ".join(cells(profiles[n][0].by_stage[stage], n) for n in names) + " |")
    lines.append("| **GIL held, total** | " + " | ".join(cells(profiles[n][0].samples, n) for n in names) + " |")
    rates = ", ".join(f"{n} {r.throughput:.0f} req/s" for n, (_, r) in profiles.items())
    return "\n".join(lines) + f"\n\nProfiled rounds (py-spy running, so slower): {rates}."


def report(rounds: dict[str, list[LoadResult]], pools: dict[str, LoadResult], profiles: dict[str, Any],
           costs: dict[int, float], args: argparse.Namespace, load: tuple[float, float]) -> tuple[str, bool]:
    """The section text, and whether the log-on server meets the target."""
    from benchmarks import machine_description

    on = pools[LOG_ON]
    met = on.throughput >= TARGET_RPS and on.percentile_ms(99) < TARGET_P99_MS and on.errors == 0
    cost = ", ".join(f"{size} row{'s' if size > 1 else ''} {ms:.1f} ms" for size, ms in costs.items())
    profile = f"\n### Where the GIL time goes\n\n{profile_table(profiles)}\n" if profiles else ""
    text = f"""Command: `{rerun_command(args)}`

Machine: {machine_description()}; 1-minute load average {load[0]:.1f} before and {load[1]:.1f} after
(the 2 cores are shared by the {len(pools)} servers, the load generator and other work).

Setup: {len(pools)} servers at once on 127.0.0.1, each one uvicorn process (uvloop, httptools, access log off):
the floor (benchmarks/_http_floor.py: FastAPI, `json.loads` of the body, a constant label per row);
`python -m mlgate.serving` with the `serving` defaults and `{args.model}`, with the prediction log on
(SQLite WAL, scratch file), off, and on with the same model mirrored as a shadow variant (mode shadow).
Load: {args.clients} closed-loop clients (benchmarks/load.py), single-row `dataframe_split` requests cycling
through the {args.rows} holdout rows; {args.rounds} round(s) per server alternated, each {args.warmup:g} s
warm-up + {args.seconds:g} s measured.{baseline_setup(args)}

The model alone, in process on one native thread (median of 30 calls, labels with scores as served): {cost}.

{rounds_table(rounds)}

{pooled_table(pools)}

Result (log on): {on.throughput:.0f} requests/s, p99 {on.percentile_ms(99):.1f} ms: {"meets" if met else "does not meet"}
the target (>= {TARGET_RPS:,.0f} requests/s and p99 < {TARGET_P99_MS:g} ms).{before_after(pools)}
{profile}"""
    return text, met


def rerun_command(args: argparse.Namespace) -> str:
    """The command line of this run (round options that differ from the defaults, and the others given)."""
    parts = [command_line("python -m benchmarks.serving_speed", args)]
    parts += [f"--model {args.model}"] if args.model != "models/candidate" else []
    parts += [f"--holdout {args.holdout}"] if args.holdout != "data/test.parquet" else []
    parts += [f"--baseline {args.baseline}"] if args.baseline else []
    parts += ["--profile"] if args.profile else []
    return " ".join(parts)


def baseline_setup(args: argparse.Namespace) -> str:
    if not args.baseline:
        return ""
    return (f"\n\"{BEFORE}\": the same as \"{LOG_ON}\" served by the code of commit `{args.baseline}` with that "
            "version's own `serving` defaults (benchmarks/_baseline_tree.py), in the same run.")


def before_after(pools: dict[str, LoadResult]) -> str:
    if BEFORE not in pools:
        return ""
    on, before = pools[LOG_ON], pools[BEFORE]
    return (f"\nAgainst \"{BEFORE}\" (log on): throughput {on.throughput / before.throughput:.2f}x, "
            f"p99 {before.percentile_ms(99):.1f} -> {on.percentile_ms(99):.1f} ms.")
