"""Decision audit: does the live rollout decide right when the right answer is known?

Each scenario (benchmarks/decision_scenarios.py: the same model, a better one, and faults sized at least
twice their threshold: an accuracy drop, a slower model, 5% server errors, a shadow that always raises)
is rolled out through the whole live lifecycle: a real server on 127.0.0.1, replayed production traffic
with late labels, the real controller with the audit's rollout settings (the demo's). One record per
run accumulates in benchmarks/results/decisions.json; the "Decision audit" section of
docs/BENCHMARKS.md is regenerated from all records (unless `--no-write`: then it is printed only).

    python -m benchmarks.decisions [--runs N] [--busy] [--scenario NAME ...] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import machine_description, publish
from benchmarks.decision_scenarios import REPO, SCENARIOS

RESULTS = Path(__file__).resolve().parent / "results" / "decisions.json"
TITLE = "Decision audit"
CONDITIONS = {False: "quiet", True: "one core busy"}


class BusyCore:
    """A busy-loop subprocess keeping one core busy while the context is open (nothing when `enabled` is off)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BusyCore:
        if self.enabled:
            self._process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def audit(scenarios: list[str], runs: int, busy: bool, results: Path) -> list[dict[str, Any]]:
    """Prepare one project, then `runs` rounds over `scenarios`; each record is appended to `results` at once."""
    from benchmarks.decision_scenarios import build_challenger, config_json, prepare_project, run_scenario

    done: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlgate-decisions-") as tmp, BusyCore(busy):
        project = prepare_project(Path(tmp))
        context = {"busy": busy, "machine": machine_description(), "config": _digest(config_json(project))}
        challengers: dict[str, Any] = {}
        for _ in range(runs):  # rounds over the scenarios: the machine's load drifts alike for all of them
            for name in scenarios:
                if name not in challengers:
                    challengers[name] = build_challenger(project, name)
                load = os.getloadavg()[0]
                record = run_scenario(project, SCENARIOS[name], challengers[name])
                record.update(context, date=_now(), git_sha=git_sha(),  # per run: others commit meanwhile
                              load=[round(load, 2), round(os.getloadavg()[0], 2)])
                append_record(results, record)
                done.append(record)
    return done


def load_records(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Add one record to the JSON list at `path` (written whole, then renamed: never half a file)."""
    records = [*load_records(path), record]
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    staging.replace(path)


def git_sha() -> str:
    """HEAD's short sha, `+dirty` when tracked files differ from it (results then describe uncommitted code)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _digest(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()[:8]


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


# ---- the section of docs/BENCHMARKS.md ----


def report(records: list[dict[str, Any]], params: Any, command: str) -> str:
    """The section from all accumulated records and the current audit configuration."""
    if not records:
        return f"Command: `{command}`\n\nNo records yet in `{RESULTS.relative_to(REPO)}`."
    dates = sorted(r["date"] for r in records)
    configs, shas = Counter(r["config"] for r in records), Counter(r["git_sha"] for r in records)
    return "\n\n".join([
        f"Command: `{command}`; records accumulate in `{RESULTS.relative_to(REPO)}` ({_runs(len(records))}, "
        f"{dates[0]} to {dates[-1]}, code {', '.join(shas)}, configuration "
        f"{', '.join(f'{c} ({_runs(n)})' for c, n in configs.items())}).",
        f"Machine: {records[-1]['machine']} (shared with other engineers' work: the 1-minute load average before "
        "each run is in the JSON records). Each run: a fresh model name in a throwaway SQLite MLflow store, the "
        "logistic-regression champion served on 127.0.0.1 through the same fault-free models-from-code wrapper "
        "as the faulty challengers (so both arms pay the same pyfunc overhead per call and differ only by the "
        "fault), the challenger rolled out by `run_lifecycle_demo` while "
        "the production split is replayed at 150 requests/s with every label sent 1 s after its answer.",
        _outcome_table(records), _wrong_outcomes(records), _distance_table(records),
        _configuration(params), _alpha_bound(records, params.rollout)])


def _runs(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


def _groups(records: list[dict[str, Any]]) -> dict[tuple[str, bool], list[dict[str, Any]]]:
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for name in SCENARIOS:
        for busy in CONDITIONS:
            runs = [r for r in records if r["scenario"] == name and r["busy"] == busy]
            if runs:
                groups[(name, busy)] = runs
    return groups


def _expected(name: str) -> str:
    scenario = SCENARIOS[name]
    on = f" on {scenario.on}" if scenario.on else ""
    return f"{scenario.expected}{on}" + (", 0 client errors" if scenario.clients_unharmed else "")


def _outcome_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for (name, busy), runs in _groups(records).items():
        outcomes = Counter(f"{r['phase']}" + (f" on {r['decided_on']}" if r.get("decided_on") else "")
                           + f" at {r['decided_at']}" for r in runs)
        right = sum(r["right"] for r in runs)
        rows.append(f"| {name} | {CONDITIONS[busy]} | {len(runs)} | {_expected(name)} | "
                    f"{'; '.join(f'{o}: {n}' for o, n in outcomes.most_common())} | **{right} of {len(runs)}** | "
                    f"{statistics.median(r['seconds'] for r in runs):.0f} | "
                    f"{statistics.median(r['labels'] for r in runs):.0f} |")
    return ("| scenario | condition | runs | expected | actual (count) | right | median s to decide | "
            "median labels to decide |\n|---|---|---:|---|---|---|---:|---:|\n" + "\n".join(rows) +
            "\n\nSeconds: from the rollout's start to its last decision. Labels: labelled rows (both arms) that "
            "had arrived since the canary started when it decided (the canary's own per-arm counts are in its "
            "reason); a decision in the shadow uses none.")


def _wrong_outcomes(records: list[dict[str, Any]]) -> str:
    lines = []
    for (name, busy), runs in _groups(records).items():
        reasons = Counter(f"{r['phase']}: {_short(r['reason'])}" for r in runs if not r["right"])
        lines += [f"- {name}, {CONDITIONS[busy]}, {n}x: {reason}" for reason, n in reasons.most_common()]
    return "Wrong outcomes and the reason each gave:\n\n" + ("\n".join(lines) or "- none")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _distance_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for name in (n for n in SCENARIOS if any(r["scenario"] == n for r in records)):
        runs = [r for r in records if r["scenario"] == name]
        decided = [r for r in runs if isinstance(r.get("value"), (int, float))]
        seen = (f"{decided[-1]['decided_on']} {statistics.median(r['value'] for r in decided):.4g} vs "
                f"{decided[-1]['threshold']:.4g}" if decided else "-")
        ratios = [r["shadow_model_ratio"] for r in runs if r.get("shadow_model_ratio") is not None]
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
        rows.append(f"| {name} | {SCENARIOS[name].summary} | {runs[-1]['fault']} | {runs[-1]['distance']} | "
                    f"{seen} | {ratio} |")
    return ("Faults and their distance from the threshold that should catch them (sized by the latest run), the "
            "decisive check's value at the rollback (median over runs), and the challenger's model time over the "
            "champion's per shadow call (median over runs):\n\n"
            "| scenario | challenger | fault | distance | at the rollback | shadow model-time ratio |\n"
            "|---|---|---|---|---|---:|\n" + "\n".join(rows))


def _configuration(params: Any) -> str:
    def fields(model: Any) -> str:
        return ", ".join(f"`{k}` {v}" for k, v in model.model_dump().items())

    return ("Configuration: params.yaml with AUDIT_ROLLOUT applied (`audit_rollout(task)` in "
            "benchmarks/decision_scenarios.py = `demo_rollout(task)` of pipelines/demo/lifecycle.py, unchanged); "
            f"the controller looks every {params.rollout.poll_interval_s:g} s.\n\n"
            f"- `rollout.shadow`: {fields(params.rollout.shadow)}\n- `rollout.canary`: {fields(params.rollout.canary)}\n"
            f"- `serving.routing.shadow` (the server's mirroring): {fields(params.serving.routing.shadow)}")


def _alpha_bound(records: list[dict[str, Any]], rollout: Any) -> str:
    """Union bound of the always-valid checks that can roll back a model within every threshold, and the
    observed share of wrong rollbacks of the same and the better model."""
    from scipy import stats

    s, c = rollout.shadow, rollout.canary
    terms = {"shadow error rate": s.alpha, "shadow agreement": s.alpha, "shadow latency sign test": s.latency_alpha,
             "canary SRM": c.srm_alpha, "canary error rate": c.alpha,
             **{f"canary {metric}": c.alpha for metric in c.metric_margins}}
    good = [r for r in records if r["scenario"] in ("same", "better")]
    wrong = sum(r["phase"] == "rolled_back" for r in good)
    upper = float(stats.beta.ppf(0.95, wrong + 1, len(good) - wrong)) if good and wrong < len(good) else 1.0
    listed = " + ".join(f"{name} {alpha:g}" for name, alpha in terms.items())
    return (f"Alpha bound for wrong rollbacks of the same and the better model: each always-valid check rolls back "
            f"a model that truly meets its threshold with probability at most its alpha over all looks, so at most "
            f"{listed} = **{sum(terms.values()):.3f}** per rollout (union bound). Not in that bound: the canary "
            f"latency rank test (a fixed-sample test at `latency_alpha` {c.latency_alpha:g}, re-run at every look), "
            "the shadow's score correlation (a fixed-sample Fisher interval, re-run) and output PSI (a point "
            "threshold without a test); the same model meets them exactly (PSI 0, correlation 1), the better model "
            f"by its real, fixed distance from them. Observed: {wrong} wrong rollbacks in {_runs(len(good))} of the "
            f"same and the better model (one-sided 95% upper bound {upper:.3f}).")


def current_params() -> Any:
    """The audit's configuration as it stands in the code: params.yaml with AUDIT_ROLLOUT (for the doc)."""
    from benchmarks.decision_scenarios import audit_rollout
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.demo.lifecycle import with_rollout

    ctx = RunContext.load(REPO / "params.yaml", tracking_uri="sqlite:///unused.db")
    return with_rollout(ctx, audit_rollout(ctx.params.model.task)).params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decisions", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs per scenario (0: only regenerate the section)")
    parser.add_argument("--busy", action="store_true", help="keep one core busy with a busy loop during the runs")
    parser.add_argument("--scenario", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--no-write", action="store_true", help=f"print the '{TITLE}' section, leave docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    new = audit(args.scenario, args.runs, args.busy, RESULTS) if args.runs > 0 else []
    command = "python -m benchmarks.decisions --runs N [--busy] [--scenario NAME ...]"
    publish(TITLE, report(load_records(RESULTS), current_params(), command), write=not args.no_write)
    for record in new:
        print(f"{record['scenario']}: {record['phase']} ({'right' if record['right'] else 'WRONG'}) after "
              f"{record['seconds']:.0f} s, {record['labels']} labels: {_short(record['reason'], 200)}")
    return 0 if all(r["right"] for r in new) else 1


if __name__ == "__main__":
    sys.exit(main())
