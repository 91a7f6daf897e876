"""The incremental rollout analysis (pipelines/rollout/incremental.py) against a full re-read of the same log.

A random log with the awkward cases (reused request ids, multi-row requests, forced and unversioned rows,
other versions, shadow rows stored up to 40 s after their request's time, late labels, conflicts,
corrections, two replicas racing on a first label) is stored in batches out of time order, looked at after
every batch, with a controller restart and a new canary step on the way: the sums equal those of one read
of everything, and so do the decisions. Runs on SQLite and a real PostgreSQL (`log_url`).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from mlgate.gates.config import CanaryConfig, ShadowConfig
from mlgate.gates.online import CanaryStep, canary_analysis, shadow_analysis
from mlgate.gates.online.canary_data import judge_canary_stats
from mlgate.gates.online.canary_stats import CanaryScope
from mlgate.gates.online.log_frames import routed
from mlgate.gates.online.shadow import judge_shadow
from mlgate.gates.online.shadow_stats import ShadowScope
from mlgate.gates.online.sketch import ValueSketch
from mlgate.pipelines.rollout.canary_fold import canary_in_full
from mlgate.pipelines.rollout.incremental import Arms, IncrementalLog
from mlgate.pipelines.rollout.shadow_fold import shadow_in_full
from mlgate.serving.log import analysis_store
from mlgate.serving.log.migrations import migrate
from mlgate.serving.log.prediction_log import (
    FEEDBACK,
    PREDICTIONS,
    open_engine,
    read_feedback,
    read_predictions,
)

ARMS = Arms("1", "2")
SHADOW = ShadowScope("binary", ("a",), ("b", "c"), 1.5, latency_slack_ms=ShadowConfig().latency_slack_ms)  # as the analyser builds it
SHADOW_SINCE, CANARY_SINCE = 1000.5, 1000.2
STEPS = (1000.0, 1012.0)  # the canary's second step starts at 1012
CANARY = CanaryConfig(steps=[50, 100], metric_margins={"accuracy": 0.05, "recall": 0.05}, min_latency_samples=20)


def random_log(seed: int, n: int = 500) -> tuple[list[dict], list[dict]]:
    """Predictions and feedback of `n` requests from t=1000, each row with its commit time `_commit`."""
    rng = np.random.default_rng(seed)
    preds, feedback, ids, call = [], [], [], [0.0, 0.0, 9, 0.0]
    for i in range(n):
        rid = ids[rng.integers(len(ids))] if ids and rng.random() < 0.04 else f"r{i}"
        ids.append(rid)
        ts = 1000.0 + i * 0.05 + float(rng.random()) * 0.01
        variant = "champion" if rng.random() < 0.6 else "challenger"
        common = dict(request_id=rid, routing_key=None if rng.random() < 0.2 else f"k{rng.integers(n // 3)}", ts=ts,
                      model_version="9" if rng.random() < 0.03 else ARMS.champion_version if variant == "champion"
                      else ARMS.challenger_version, forced=int(rng.random() < 0.05),
                      route_version=[None, 1, 2][rng.integers(3)])
        status = int(rng.choice([200, 500, 400], p=[0.9, 0.05, 0.05]))
        latency, delay = float(rng.lognormal(1.0, 0.5)), float(rng.random() if rng.random() < 0.9 else rng.uniform(5, 50))
        mirror = variant == "champion" and rng.random() < 0.8
        if mirror and call[2] >= 4:  # a shadow call of 4 requests, stored up to 40 s after them
            call = [float(rng.lognormal(2, 0.3)), float(rng.lognormal(2, 0.3)), 0, float(rng.uniform(0, 40))]
        for row in range(1 if rng.random() < 0.8 else int(rng.integers(2, 4))):
            features = {"a": None if rng.random() < 0.1 else round(float(rng.normal(5, 2)), 1),
                        "b": int(rng.integers(0, 6)), "c": [None, "x", "y", "z"][rng.integers(4)]}
            if rng.random() < 0.1:
                del features["a"]
            label, score = ("yes" if rng.random() < 0.3 else "no"), float(rng.random())
            base = dict(common, row_index=row, features=orjson.dumps(features).decode())
            flag = None if i % 11 == 0 else int((i + row) % 7 == 0)  # outlier flags (None: no detector)
            preds.append(dict(base, variant=variant, shadow=0, latency_ms=latency, status=status, baseline_ms=None,
                              outlier=flag if status == 200 else None,
                              error=None if status == 200 else f"boom {status}", _commit=ts + delay,
                              prediction=orjson.dumps(label).decode() if status == 200 else None,
                              score=score if status == 200 else None))
            if mirror:
                fine = rng.random() < 0.93
                other = label if rng.random() < 0.85 else ("no" if label == "yes" else "yes")
                preds.append(dict(base, variant="challenger", model_version=ARMS.challenger_version, shadow=1,
                                  latency_ms=call[0], baseline_ms=call[1], status=200 if fine else 500,
                                  error=None if fine else "HTTP fail: bad input", _commit=ts + call[3],
                                  outlier=int((3 * i + row) % 5 == 0) if fine else None,
                                  prediction=orjson.dumps(other).decode() if fine else None,
                                  score=float(np.clip(score + rng.normal(0, 0.1), 0, 1)) if fine else None))
            if status == 200 and rng.random() < 0.6:
                truth, f_ts, u = ("yes" if rng.random() < 0.35 else "no"), ts + float(rng.uniform(1, 20)), rng.random()
                flipped = "yes" if truth == "no" else "no"
                feedback.append(dict(request_id=rid, row_index=row, label=truth, ts=f_ts, kind="label", _commit=f_ts))
                if u < 0.05:
                    feedback.append(dict(request_id=rid, row_index=row, label=flipped, ts=f_ts + 2, kind="conflict",
                                         _commit=f_ts + 2))
                elif u < 0.08:  # a correction, stored long after
                    feedback.append(dict(request_id=rid, row_index=row, label=flipped, ts=f_ts + 3,
                                         kind="correction", _commit=f_ts + 30))
                elif u < 0.10:  # a replica's later first label, stored before the first one
                    feedback.append(dict(request_id=rid, row_index=row, label=flipped, ts=f_ts + 0.5, kind="label",
                                         _commit=f_ts - 0.5))
        call[2] += mirror
    return preds, feedback


def store(engine: sa.Engine, preds: list[dict], feedback: list[dict]) -> None:
    with engine.begin() as connection:
        for table, rows in ((PREDICTIONS, preds), (FEEDBACK, feedback)):
            if rows:
                connection.execute(table.insert(), [{k: v for k, v in r.items() if k != "_commit"} for r in rows])


def in_commit_order(rows: list[dict], cuts: np.ndarray) -> list[list[dict]]:
    ordered = sorted(rows, key=lambda r: r["_commit"])
    commits = np.array([r["_commit"] for r in ordered])
    bounds = [0, *np.searchsorted(commits, cuts), len(ordered)]
    return [ordered[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def canary_scope(step_started: float) -> CanaryScope:
    return CanaryScope(tuple(CANARY.metric_margins), step_started, "yes")


def differences(a: object, b: object, path: str = "") -> list[str]:
    """Where two stored sums differ (floats to 1e-9; sketches by their values and counts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if "counts" in a and ("values" in a or "bins" in a):
            x, y = ValueSketch.from_json(a), ValueSketch.from_json(b)
            if x.binned != y.binned:
                x.merge(ValueSketch(None, {}))
                y.merge(ValueSketch(None, {}))
            (va, ca), (vb, cb) = x.values_counts(), y.values_counts()
            same = va.shape == vb.shape and np.allclose(va, vb) and (ca == cb).all()
            return [] if same else [f"{path}: {x.total} vs {y.total} values"]
        return [d for k in set(a) | set(b) if k != "recent" for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        return [] if a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) \
            else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a} vs {b}"]


def same_decision(one, other) -> None:
    assert one.outcome == other.outcome
    assert {c.name: c.message for c in one.result.checks} == {c.name: c.message for c in other.result.checks}


@pytest.mark.parametrize("seed", [1, 2])
def test_looks_after_out_of_order_batches_sum_to_a_full_read(log_url: str, seed: int) -> None:
    engine = open_engine(log_url)
    migrate(engine)
    preds, feedback = random_log(seed)
    cuts = np.linspace(1000.0, 1080.0, 12)
    analysis = IncrementalLog(log_url)
    for look, (p, f) in enumerate(zip(in_commit_order(preds, cuts), in_commit_order(feedback, cuts), strict=True)):
        store(engine, p, f)
        if look == 8:
            analysis = IncrementalLog(log_url)  # a restarted controller: continues from the stored sums
        shadow, settled = analysis.shadow("r1", ARMS, SHADOW, SHADOW_SINCE, now=2000.0 + look)
        canary = analysis.canary("r1", ARMS, canary_scope(STEPS[look >= 6]), CANARY_SINCE, now=2000.0 + look)

    everything = ARMS.mine(read_predictions(log_url, since=SHADOW_SINCE))
    full = shadow_analysis(routed(everything), ShadowConfig(min_requests=50), None, task="binary", numeric=["a"],
                           categorical=["b", "c"], drift=None, outlier_share=0.1)
    expected, expected_settled = shadow_in_full(log_url, ARMS, SHADOW, SHADOW_SINCE)
    expected_canary = canary_in_full(log_url, ARMS, canary_scope(STEPS[1]), CANARY_SINCE)
    assert differences(shadow.to_json(), expected.to_json()) == [] and settled == expected_settled
    assert differences(canary.to_json(), expected_canary.to_json()) == []
    assert canary.conflicts > 0 and canary.forced > 0 and shadow.calls.calls > 10 and shadow.pairs > 100
    assert shadow.outliers_checked > 100 and 0 < shadow.outliers_flagged < shadow.outliers_checked
    assert canary.arms[1].outliers_checked > 50 and canary.arms[1].outliers_flagged > 0
    same_decision(judge_shadow(shadow, ShadowConfig(min_requests=50), None, SHADOW, settled=settled,
                               outlier_share=0.1), full)

    rows = ARMS.mine(read_predictions(log_url, since=CANARY_SINCE))
    step = CanaryStep.of(CANARY, 0)
    same_decision(judge_canary_stats(canary, CANARY, step, task="binary", positive_class="yes"),
                  canary_analysis(routed(rows), read_feedback(log_url, since=CANARY_SINCE), CANARY, step,
                                  step_started=STEPS[1], task="binary", positive_class="yes"))


def test_a_crash_before_the_sums_are_stored_and_a_restart_count_nothing_twice(log_url: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(log_url)
    migrate(engine)
    preds, feedback = random_log(3, n=200)
    first, second = in_commit_order(preds, np.array([1006.0])), in_commit_order(feedback, np.array([1006.0]))
    store(engine, first[0], second[0])
    IncrementalLog(log_url).canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=2000.0)
    store(engine, first[1], second[1])

    def crash(*args: object) -> bool:
        raise KeyboardInterrupt("the controller dies between its look and storing the sums")

    monkeypatch.setattr(analysis_store, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        IncrementalLog(log_url).canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=2001.0)
    monkeypatch.undo()
    looks = [IncrementalLog(log_url).canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=2002.0 + i)
             for i in range(2)]  # the look after the crash, and another with nothing new
    expected = canary_in_full(log_url, ARMS, canary_scope(STEPS[0]), CANARY_SINCE)
    for look in looks:
        assert differences(look.to_json(), expected.to_json()) == []


def test_rows_stored_late_with_an_old_time_are_counted(log_url: str) -> None:
    """A shadow's rows carry their request's time but are stored up to minutes later; a label comes
    later still: the look after they are stored counts them, however far behind the newest rows they are."""
    engine = open_engine(log_url)
    migrate(engine)
    preds, feedback = random_log(4, n=200)
    late = [r for r in preds if r["shadow"]]
    store(engine, [r for r in preds if not r["shadow"]], [])
    analysis = IncrementalLog(log_url)
    before, _ = analysis.shadow("r1", ARMS, SHADOW, SHADOW_SINCE, now=5000.0)
    canary_before = analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=5000.0)
    store(engine, late, feedback)  # stored an hour after the newest row's time
    after, settled = analysis.shadow("r1", ARMS, SHADOW, SHADOW_SINCE, now=5001.0)
    canary_after = analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=5001.0)
    expected, expected_settled = shadow_in_full(log_url, ARMS, SHADOW, SHADOW_SINCE)
    expected_canary = canary_in_full(log_url, ARMS, canary_scope(STEPS[0]), CANARY_SINCE)
    assert before.attempted == before.pairs == 0 < after.pairs and 0 < settled == expected_settled
    assert differences(after.to_json(), expected.to_json()) == []
    assert canary_before.arms[0].labels["accuracy"][1] == 0 < canary_after.arms[0].labels["accuracy"][1]
    assert differences(canary_after.to_json(), expected_canary.to_json()) == []


def test_a_write_still_open_at_a_look_is_counted_when_it_commits(log_url: str) -> None:
    """PostgreSQL numbers rows when they are inserted: a writer that commits after a later one leaves a gap
    that the next looks read again until it is filled (or older than settle_s: rolled back)."""
    if not log_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: storage order is commit order")
    engine = open_engine(log_url)
    migrate(engine)
    preds, _ = random_log(5, n=120)
    served = [r for r in preds if not r["shadow"]]
    analysis = IncrementalLog(log_url, settle_s=30.0)
    with engine.connect() as slow:
        transaction = slow.begin()
        slow.execute(PREDICTIONS.insert(), [{k: v for k, v in r.items() if k != "_commit"} for r in served[:40]])
        store(engine, served[40:], [])  # a faster writer commits higher numbers first
        seen = analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=3000.0)
        transaction.commit()
    after = analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=3001.0)
    expected = canary_in_full(log_url, ARMS, canary_scope(STEPS[0]), CANARY_SINCE)
    assert sum(a.requests for a in seen.arms) < sum(a.requests for a in after.arms)
    assert differences(after.to_json(), expected.to_json()) == []
    stored = orjson.loads(analysis_store.load(engine.connect(), "r1", "canary")[1])
    assert stored["predictions"]["gaps"] == []
    with engine.connect() as aborted:  # a rolled-back write: awaited settle_s, then forgotten
        transaction = aborted.begin()
        aborted.execute(PREDICTIONS.insert(), [{k: v for k, v in r.items() if k != "_commit"} for r in served[:5]])
        store(engine, served[5:10], [])
        transaction.rollback()
    analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=3002.0)
    assert orjson.loads(analysis_store.load(engine.connect(), "r1", "canary")[1])["predictions"]["gaps"] != []
    analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=3040.0)
    assert orjson.loads(analysis_store.load(engine.connect(), "r1", "canary")[1])["predictions"]["gaps"] == []


def test_a_look_reads_the_log_through_its_indexes(log_url: str) -> None:
    """Every query of a look on predictions or feedback is an index search, never a scan of the table."""
    engine = open_engine(log_url)
    migrate(engine)
    preds, feedback = random_log(6, n=300)
    halves = in_commit_order(preds, np.array([1010.0])), in_commit_order(feedback, np.array([1010.0]))
    store(engine, halves[0][0], halves[1][0])
    analysis = IncrementalLog(log_url)
    analysis.shadow("r1", ARMS, SHADOW, SHADOW_SINCE, now=2000.0)
    analysis.canary("r1", ARMS, canary_scope(STEPS[0]), CANARY_SINCE, now=2000.0)
    store(engine, halves[0][1], halves[1][1])
    statements: list[tuple[str, object]] = []
    lock = threading.Lock()

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and ("predictions" in statement
                                                                         or "feedback" in statement):
            with lock:
                statements.append((statement, parameters))

    sa.event.listen(analysis._open(), "before_cursor_execute", record)
    analysis.shadow("r1", ARMS, SHADOW, SHADOW_SINCE, now=2001.0)
    analysis.canary("r1", ARMS, canary_scope(STEPS[1]), CANARY_SINCE, now=2001.0)  # a new step: its recount too
    sa.event.remove(analysis._open(), "before_cursor_execute", record)
    assert len(statements) >= 8
    postgres = log_url.startswith("postgresql")
    with engine.connect() as connection:
        if postgres:
            connection.exec_driver_sql("SET enable_seqscan = off")  # what would be scanned if no index served
        for statement, parameters in statements:
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters))
            scans = ("Seq Scan on predictions", "Seq Scan on feedback") if postgres else \
                ("SCAN predictions", "SCAN feedback", "SCAN first_of_unit", "(rowid<?)")  # from the table's start
            assert not any(f"{scan} " in plan + " " or plan.endswith(scan) for scan in scans), (statement, plan)
