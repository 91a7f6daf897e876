"""`python -m mlgate.pipelines.checks.latency.locust_runner SPEC.json`: headless locust rounds, alternating between servers.

Run only as a subprocess (mlgate.pipelines.checks.latency.load_test starts it): importing locust monkey-patches the whole
process with gevent, which breaks threads and subprocesses of the caller. All rounds of one load
test run in this one process, one locust Environment per model, so a round costs no interpreter
start and rounds can be short and many: that fine alternation is what keeps bursts of load from
other processes on a shared machine from landing on one model only.

Each round spawns the users, leaves `warmup_s` (at least the ramp-up) unmeasured, measures for
`round_s` or until `max_requests` were sent (warm-up included), then stops sending and lets the
requests in flight finish (they belong to the window) before the users stop. Every request's raw
latency is written (locust's own percentiles are rounded), and locust's HTML report of each model.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mlgate.pipelines.checks.latency.locust_runner SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    rounds = run_rounds(spec)
    Path(spec["samples_path"]).write_text(json.dumps({"rounds": rounds}), encoding="utf-8")
    return 0


def run_rounds(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Run spec['rounds'] ({model, index, seed}) in order against spec['targets'][model]."""
    # Imported here, never at module level: locust patches the importing process with gevent.
    import gevent
    from locust.env import Environment
    from locust.html import get_html_report
    from locust.log import setup_logging
    from locust.stats import stats_history

    setup_logging("WARNING")  # locust's own warnings (e.g. its CPU use too high) go to the load test's log
    envs: dict[str, Any] = {}
    for model, url in spec["targets"].items():
        gate = _RoundGate()
        env = Environment(user_classes=[_user_class(spec, gate)], host=url)
        env.events.request.add_listener(gate.on_request)
        env.create_local_runner()
        gevent.spawn(stats_history, env.runner)
        envs[model] = (env, gate)
    results = [_run_round(spec, entry, *envs[entry["model"]]) for entry in spec["rounds"]]
    for model, (env, _) in envs.items():
        Path(spec["html_paths"][model]).write_text(get_html_report(env, show_download_link=False), encoding="utf-8")
        env.runner.quit()
    return results


def _run_round(spec: dict[str, Any], entry: dict[str, Any], env: Any, gate: _RoundGate) -> dict[str, Any]:
    import gevent

    runner, timeout_s = env.runner, float(spec["request_timeout_s"])
    gate.open(int(entry["seed"]), int(spec["max_requests"]))
    runner.start(int(spec["users"]), spawn_rate=float(spec["spawn_rate"]))
    runner.spawning_greenlet.join(timeout=float(spec["users"]) / float(spec["spawn_rate"]) + timeout_s)
    ramp_s = gate.elapsed()
    window_start = max(float(spec["warmup_s"]), ramp_s)
    gate.capped.wait(timeout=max(0.0, window_start + float(spec["round_s"]) - gate.elapsed()))
    window_end = gate.close()
    deadline = time.perf_counter() + timeout_s
    while gate.in_flight and time.perf_counter() < deadline:
        gevent.sleep(0.005)  # requests started in the window finish and are recorded
    runner.stop()
    return {**entry, **gate.record(), "ramp_s": ramp_s, "window_start_s": window_start, "window_end_s": window_end,
            "stopped_by": "max_requests" if gate.capped.is_set() else "round_s", "unfinished": gate.in_flight}


class _RoundGate:
    """Lets users send while a round is open and records each request: start offset, ms, rows, ok."""

    def __init__(self) -> None:
        from gevent.event import Event

        self.capped = Event()
        self.accepting = False
        self.in_flight = 0
        self.rng = random.Random(0)
        self._started = time.perf_counter()
        self._max_requests = 0
        self._columns: dict[str, list[Any]] = {}
        self.errors: dict[str, int] = {}

    def open(self, seed: int, max_requests: int) -> None:
        self.capped.clear()
        self.rng, self._max_requests = random.Random(seed), max_requests
        self._columns = {"offset_s": [], "latency_ms": [], "rows": [], "ok": []}
        self.errors, self.in_flight, self.accepting = {}, 0, True
        self._started = time.perf_counter()

    def close(self) -> float:
        self.accepting = False
        return self.elapsed()

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def on_request(self, response_time: float, context: dict[str, Any], exception: Any = None, **_: Any) -> None:
        offset = self.elapsed() - response_time / 1000.0
        for name, value in zip(self._columns, (offset, float(response_time), int((context or {}).get("rows", 0)),
                                                exception is None), strict=True):
            self._columns[name].append(value)
        if exception is not None:
            message = str(exception)[:200] or type(exception).__name__
            self.errors[message] = self.errors.get(message, 0) + 1
        if len(self._columns["ok"]) >= self._max_requests:  # the round's request cap, warm-up included
            self.accepting = False
            self.capped.set()

    def record(self) -> dict[str, Any]:
        return {**self._columns, "errors": dict(self.errors)}


def _user_class(spec: dict[str, Any], gate: _RoundGate) -> type:
    """A FastHttpUser posting holdout payloads with the configured batch-size mix (seeded per round).

    With `user_rps`, each user starts a request every 1 / user_rps seconds from a random phase, so
    users spawned together never send in lockstep bursts (locust's constant_throughput anchors every
    user to its spawn time) and the offered rate is exact; a user whose response outlasts its period
    starts the next request at once, without catching up.
    """
    import gevent
    from locust import FastHttpUser, constant, task

    bodies = {int(size): texts for size, texts in spec["bodies"].items()}
    sizes = sorted(bodies)
    weights = [float(spec["weights"][str(size)]) for size in sizes]
    rate = float(spec["user_rps"]) if spec.get("user_rps") else None

    class ScoringUser(FastHttpUser):
        network_timeout = connection_timeout = float(spec["request_timeout_s"])
        next_start = 0.0

        def wait_time(self) -> float:
            if rate is None:
                return constant(0)(self)
            self.next_start = max(self.next_start + 1.0 / rate, time.perf_counter())
            return max(0.0, self.next_start - time.perf_counter())

        def on_start(self) -> None:
            if rate is not None:
                self.next_start = time.perf_counter() + gate.rng.uniform(0.0, 1.0 / rate)
                gevent.sleep(max(0.0, self.next_start - time.perf_counter()))

        @task
        def invocations(self) -> None:
            if not gate.accepting:
                gevent.sleep(0.01)
                return
            size = gate.rng.choices(sizes, weights)[0]
            gate.in_flight += 1
            try:
                self.client.post("/invocations", data=gate.rng.choice(bodies[size]), name=f"/invocations rows={size}",
                                 headers={"Content-Type": "application/json"}, context={"rows": size})
            finally:
                gate.in_flight -= 1

    return ScoringUser


if __name__ == "__main__":
    sys.exit(main())
