"""The router in process (ASGI, real models): /routes, sticky and forced variants, shadows, the
prediction log, /feedback and the bandit, including state that must survive a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate.gates.config import ShadowConfig
from mlgate.gates.online import AnalysisOutcome
from mlgate.gates.online.shadow import latency_check, timed_calls
from mlgate.serving.log.prediction_log import read_bandit_arms, read_feedback, read_predictions
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.routing.routes import parse_table
from mlgate.serving.settings import PredictionLogConfig, RoutingConfig, ServingConfig, ShadowMirrorConfig
from tests.serving.conftest import LABELS

TOKEN = "s3cret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def _config(tmp_path: Path, **routing: Any) -> ServingConfig:
    log = PredictionLogConfig(url=f"sqlite:///{tmp_path / 'predictions.db'}", flush_interval_s=0.05)
    return ServingConfig(prediction_log=log, routing=RoutingConfig(seed=11, **routing))


def _weighted(**weights: float) -> dict[str, Any]:
    return {"mode": "weighted", "variants": [{"name": n, "weight": w} for n, w in weights.items()]}


def test_writes_need_the_admin_token_and_leave_the_table_unchanged_without_it(in_app, model_dir: Path) -> None:
    table = {"mode": "weighted", "variants": [{"name": "default", "weight": 50},
                                              {"name": "twin", "model_uri": str(model_dir), "weight": 50}]}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.put("/routes", json=table),
                await client.put("/routes", json=table, headers={"Authorization": "Bearer wrong"}),
                await client.put("/routes", json=table, headers={"Authorization": "Basic " + TOKEN}),
                await client.get("/routes")]

    missing, wrong, basic, after = in_app(scenario, admin_token=TOKEN)
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (wrong.status_code, basic.status_code) == (403, 401)
    assert after.json()["version"] == 1 and after.json()["mode"] == "single"
    disabled = in_app(lambda client: client.put("/routes", json=table, headers=ADMIN))
    assert (disabled.status_code, disabled.json()["error"]["code"]) == (503, "admin_disabled")


def test_a_new_challenger_is_loaded_before_the_table_swaps_to_it(in_app, model_dir: Path, row: dict) -> None:
    table = {"mode": "weighted", "variants": [{"name": "default", "weight": 90},
                                              {"name": "challenger", "model_uri": str(model_dir), "weight": 10}]}

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        before = (await client.get("/routes")).json()
        put = await client.put("/routes", json=table, headers=ADMIN)
        forced = await client.post("/invocations", json={"inputs": [row]}, headers={"X-Target-Variant": "challenger"})
        return before, put, forced, (await client.get("/readyz")).json()

    before, put, forced, ready = in_app(scenario, admin_token=TOKEN)
    assert before["variants"] == [{"name": "default", "model_uri": before["variants"][0]["model_uri"],
                                   "model_version": "local", "weight": 100.0, "shadow": False}]
    assert put.status_code == 200 and put.json()["version"] == 2
    assert [v["model_version"] for v in put.json()["variants"]] == ["local", "local"]
    assert forced.status_code == 200 and forced.headers["x-model-variant"] == "challenger"
    assert forced.headers["x-route-version"] == "2"
    assert ready["status"] == "ready" and set(ready["variants"]) == {"default", "challenger"}


def test_a_table_that_cannot_be_served_is_refused_and_the_old_one_stays(in_app, tmp_path: Path) -> None:
    unloadable = {"mode": "weighted", "variants": [{"name": "default", "weight": 50},
                                                   {"name": "ghost", "model_uri": str(tmp_path / "none"), "weight": 50}]}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.put("/routes", json=unloadable, headers=ADMIN),
                await client.put("/routes", json=_weighted(default=60), headers=ADMIN),
                await client.put("/routes", json={**_weighted(default=100), "version": 5}, headers=ADMIN),
                await client.put("/routes", content=b"{oops", headers=ADMIN),
                await client.get("/routes")]

    ghost, bad_sum, stale, garbage, after = in_app(scenario, admin_token=TOKEN)
    assert ghost.status_code == 400 and "variant 'ghost': cannot load" in ghost.json()["error"]["message"]
    assert bad_sum.status_code == 400 and "must sum to 100, got 60" in bad_sum.json()["error"]["message"]
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "version_conflict")
    assert (garbage.status_code, garbage.json()["error"]["code"]) == (400, "malformed_json")
    assert after.json()["version"] == 1 and [v["name"] for v in after.json()["variants"]] == ["default"]


def test_a_routing_key_sticks_to_its_variant_and_no_key_splits_by_weight(in_app, model_dir: Path, row: dict,
                                                                       tmp_path: Path) -> None:
    routes = parse_table(_weighted(a=50, b=50), known_uris={"a": str(model_dir), "b": str(model_dir)})

    async def scenario(client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
        async def variant(headers: dict[str, str]) -> str:
            answer = await client.post("/invocations", json={"inputs": [row]}, headers=headers)
            return answer.headers["x-model-variant"]

        keyed = [await variant({"X-Routing-Key": f"user-{i % 5}"}) for i in range(40)]
        unkeyed = [await variant({}) for _ in range(200)]
        return keyed, unkeyed

    keyed, unkeyed = in_app(scenario, uris={"a": str(model_dir), "b": str(model_dir)}, routes=routes,
                            config=_config(tmp_path))
    assert all(keyed[i] == keyed[i % 5] for i in range(40))
    assert 60 < unkeyed.count("a") < 140


def test_the_entity_column_routes_when_there_is_no_routing_header(in_app, model_dir: Path, row: dict,
                                                                tmp_path: Path) -> None:
    routes = parse_table(_weighted(a=50, b=50), known_uris={"a": str(model_dir), "b": str(model_dir)})
    config = _config(tmp_path, key_column="state")

    async def scenario(client: httpx.AsyncClient) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for state in ["KS", "OH", "NJ", "TX", "CA", "NY"] * 4:
            answer = await client.post("/invocations", json={"inputs": [{**row, "state": state}]})
            seen.setdefault(state, set()).add(answer.headers["x-model-variant"])
        return seen

    seen = in_app(scenario, uris={"a": str(model_dir), "b": str(model_dir)}, routes=routes, config=config)
    assert all(len(variants) == 1 for variants in seen.values())
    logged = read_predictions(config.prediction_log.url)
    assert set(logged["routing_key"]) == {"KS", "OH", "NJ", "TX", "CA", "NY"}


def test_every_variant_answer_is_logged_row_by_row_with_shadows_and_errors(in_app, model_dir: Path, holdout: pd.DataFrame,
                                                                          offline_model, as_split, tmp_path: Path) -> None:
    routes = parse_table({"mode": "shadow", "variants": [
        {"name": "main", "weight": 100}, {"name": "mirror", "weight": 0, "shadow": True}]},
        known_uris={"main": str(model_dir), "mirror": str(model_dir)})
    rows = holdout.head(3)

    async def scenario(client: httpx.AsyncClient) -> str:
        await client.post("/invocations", json=as_split(rows), headers={"X-Request-Id": "three", "X-Routing-Key": "u1"})
        await client.post("/invocations", json={"inputs": [{"state": "KS"}]}, headers={"X-Request-Id": "bad"})
        await asyncio.sleep(0.3)  # the shadow works off the response path
        return (await client.get("/metrics")).text

    metrics = in_app(scenario, uris={"main": str(model_dir), "mirror": str(model_dir)}, routes=routes,
                     config=_config(tmp_path))
    logged = read_predictions(_config(tmp_path).prediction_log.url)
    three = logged[logged["request_id"] == "three"].sort_values(["shadow", "row_index"])
    assert list(zip(three["variant"], three["shadow"], three["row_index"], strict=True)) == [
        ("main", 0, 0), ("main", 0, 1), ("main", 0, 2), ("mirror", 1, 0), ("mirror", 1, 1), ("mirror", 1, 2)]
    labels, scores = offline_model.predict(rows).tolist(), offline_model.predict_proba(rows)[:, 1]
    assert list(three["prediction"]) == labels * 2 and set(three["routing_key"]) == {"u1"}
    assert max(abs(three["score"].to_numpy() - list(scores) * 2)) < 1e-9
    assert three.iloc[0]["features"]["state"] == rows.iloc[0]["state"] and set(three["status"]) == {200}
    bad = logged[logged["request_id"] == "bad"]
    assert set(bad["status"]) == {400} and bad.iloc[0]["error"].startswith("missing_column")
    assert _metric(metrics, "mlgate_shadow_agreed_rows_total", variant="mirror") == 3


def test_each_shadow_call_is_timed_beside_the_answering_model_on_the_same_rows(
        in_app, model_dir: Path, slow_model_dir: Path, holdout: pd.DataFrame, as_split, tmp_path: Path) -> None:
    uris = {"main": str(model_dir), "twin": str(model_dir), "slow": str(slow_model_dir)}
    routes = parse_table({"mode": "shadow", "variants": [
        {"name": "main", "weight": 100}, {"name": "twin", "weight": 0, "shadow": True},
        {"name": "slow", "weight": 0, "shadow": True}]}, known_uris=uris)
    config = _config(tmp_path, shadow=ShadowMirrorConfig(max_busy_share=1.0, max_wait_ms=0.0))

    async def scenario(client: httpx.AsyncClient) -> None:
        for i in range(40):
            await client.post("/invocations", json=as_split(holdout.iloc[5 * i:5 * i + 5]))
            await asyncio.sleep(0.03)
        await asyncio.sleep(1.0)  # the shadows work off the response path

    in_app(scenario, uris=uris, routes=routes, config=config)
    logged = read_predictions(config.prediction_log.url)
    shadows = logged[logged["shadow"] == 1]
    assert shadows["baseline_ms"].notna().all() and (shadows["baseline_ms"] > 0).all()
    assert logged.loc[logged["shadow"] == 0, "baseline_ms"].isna().all()
    judge = ShadowConfig(max_latency_ratio=3.0)
    twin, slow = (shadows[(shadows["variant"] == name) & (shadows["status"] == 200)] for name in ("twin", "slow"))
    assert len(timed_calls(twin)) >= 10 and len(timed_calls(slow)) >= 8
    same = latency_check(_call_stats(twin, judge), judge)
    assert same.details["outcome"] == AnalysisOutcome.SUCCESSFUL and 0.5 < same.observed < 2.0, same.message
    slower = latency_check(_call_stats(slow, judge), judge)
    assert slower.details["outcome"] == AnalysisOutcome.FAILED and slower.observed > 3.0, slower.message
    assert "model calls" in slower.message and "max 3" in slower.message


def test_feedback_joins_by_request_id_and_reports_unknown_ids(in_app, model_dir: Path, row: dict,
                                                             tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        for i in range(4):
            await client.post("/invocations", json={"inputs": [row]}, headers={"X-Request-Id": f"r{i}"})
        label = (await client.post("/invocations", json={"inputs": [row]})).json()["predictions"][0]
        other = "yes" if label == "no" else "no"
        one = await client.post("/feedback", json={"request_id": "r0", "label": label}, headers=LABELS)
        many = await client.post("/feedback", json=[{"request_id": "r1", "label": other, "reward": 0.5},
                                                   {"request_id": "nope", "label": label}], headers=LABELS)
        wrapped = await client.post("/feedback", json={"feedback": [{"request_id": "r2", "row_index": 0, "reward": 1}]}, headers=LABELS)
        bad = await client.post("/feedback", json=[{"request_id": "r3", "label": label}, {"request_id": "r3"}], headers=LABELS)
        return one, many, wrapped, bad, (await client.get("/metrics")).text

    one, many, wrapped, bad, metrics = in_app(scenario, config=_config(tmp_path))
    assert one.json() == {"accepted": 1, "duplicates": 0, "conflicts": 0, "corrections": 0, "unknown": 0,
                          "unknown_request_ids": []}
    assert many.json()["accepted"] == 1 and many.json()["unknown_request_ids"] == ["nope"]
    assert wrapped.json()["accepted"] == 1
    assert bad.status_code == 400 and "feedback item 1: give a label or a reward" in bad.json()["error"]["message"]
    assert _metric(metrics, "mlgate_online_accuracy", variant="default") == 0.5
    assert _metric(metrics, "mlgate_online_mean_reward", variant="default") == 0.75
    assert _metric(metrics, "mlgate_feedback_unknown_total") == 1
    stored = read_feedback(_config(tmp_path).prediction_log.url)
    assert sorted(stored["request_id"]) == ["r0", "r1", "r2"]


def test_feedback_after_a_restart_joins_with_the_logged_predictions(in_app, row: dict, tmp_path: Path) -> None:
    in_app(lambda client: client.post("/invocations", json={"inputs": [row]}, headers={"X-Request-Id": "before"}),
           config=_config(tmp_path))
    answer = in_app(lambda client: client.post("/feedback", json=[{"request_id": "before", "label": "no"},
                                                                  {"request_id": "never", "label": "no"}], headers=LABELS),
                    config=_config(tmp_path))
    assert answer.json()["accepted"] == 1 and answer.json()["unknown_request_ids"] == ["never"]


@pytest.mark.slow
def test_the_bandit_learns_from_rewards_keeps_min_share_and_resumes_after_restart(
        in_app, model_dir: Path, row: dict, tmp_path: Path) -> None:
    uris = {"good": str(model_dir), "poor": str(model_dir)}
    routes = parse_table({"mode": "bandit", "variants": [{"name": "good", "weight": 50}, {"name": "poor", "weight": 50}]},
                         known_uris=uris)
    config = _config(tmp_path)

    async def learn(client: httpx.AsyncClient) -> dict[str, Any]:
        for i in range(150):
            answer = await client.post("/invocations", json={"inputs": [row]}, headers={"X-Request-Id": f"b{i}"})
            reward = 1.0 if answer.headers["x-model-variant"] == "good" else 0.0
            await client.post("/feedback", json={"request_id": f"b{i}", "reward": reward}, headers=LABELS)
        return (await client.get("/bandit")).json()

    async def route(client: httpx.AsyncClient) -> tuple[dict[str, Any], list[str]]:
        state = (await client.get("/bandit")).json()
        answers = [await client.post("/invocations", json={"inputs": [row]}) for _ in range(300)]
        return state, [a.headers["x-model-variant"] for a in answers]

    learned = in_app(learn, uris=uris, routes=routes, config=config)
    resumed, picks = in_app(route, uris=uris, routes=routes, config=config)
    arms = {a["variant"]: a for a in learned["arms"]}
    assert arms["good"]["mean"] > 0.9 and arms["poor"]["mean"] < 0.1
    assert resumed["arms"] == learned["arms"], "a restart must resume the posteriors"
    assert picks.count("good") > 240 and picks.count("poor") >= 5  # min share 0.05 each
    persisted = read_bandit_arms(config.prediction_log.url)
    assert set(persisted["variant"]) == {"good", "poor"} and persisted["pulls"].sum() == 150


def test_labels_need_the_feedback_token_and_json(in_app, row: dict, tmp_path: Path) -> None:
    """No token 401, the admin token or another 403, text/plain (a browser's cross-origin POST without
    preflight) 415, a server without a feedback token 503; nothing is stored from any of them."""
    item = {"request_id": "r0", "label": "no"}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        await client.post("/invocations", json={"inputs": [row]}, headers={"X-Request-Id": "r0"})
        return [await client.post("/feedback", json=item),
                await client.post("/feedback", json=item, headers={"Authorization": "Bearer admin-token"}),
                await client.post("/feedback", content=b'{"request_id": "r0", "label": "no"}',
                                  headers={**LABELS, "Content-Type": "text/plain"})]

    none, admin, plain = in_app(scenario, config=_config(tmp_path), admin_token="admin-token")
    assert (none.status_code, admin.status_code, plain.status_code) == (401, 403, 415)
    assert "MLGATE_FEEDBACK_TOKEN" in none.json()["error"]["message"]
    disabled = in_app(lambda client: client.post("/feedback", json=item, headers=LABELS), config=_config(tmp_path),
                      feedback_token=None)
    assert disabled.status_code == 503 and disabled.json()["error"]["code"] == "feedback_disabled"
    assert read_feedback(_config(tmp_path).prediction_log.url).empty


def test_the_first_label_stands_duplicates_are_ignored_and_conflicts_are_kept_apart(
        in_app, row: dict, tmp_path: Path) -> None:
    """Per (request id, row): the same label again is a duplicate, a different one a conflict that never
    replaces the first (also after a restart, from the log); only an explicit correction replaces it."""
    from mlgate.gates.online.log_frames import label_conflicts, standing_labels

    async def first(client: httpx.AsyncClient) -> list[dict]:
        await client.post("/invocations", json={"inputs": [row]}, headers={"X-Request-Id": "r0"})
        return [(await client.post("/feedback", json=body, headers=LABELS)).json() for body in (
            {"request_id": "r0", "label": "no"}, {"request_id": "r0", "label": "no"},
            {"request_id": "r0", "label": "yes"})]

    label, duplicate, conflict = in_app(first, config=_config(tmp_path))
    assert (label["accepted"], duplicate["duplicates"], conflict["conflicts"]) == (1, 1, 1)
    again = in_app(lambda client: client.post("/feedback", json={"request_id": "r0", "label": "yes"}, headers=LABELS),
                   config=_config(tmp_path))  # a restarted server knows the first label from the log
    assert again.json()["conflicts"] == 1
    stored = read_feedback(_config(tmp_path).prediction_log.url)
    assert standing_labels(stored)["label"].tolist() == ["no"] and label_conflicts(stored) == 2
    fixed = in_app(lambda client: client.post("/feedback", json={"request_id": "r0", "label": "yes", "correction": True},
                                              headers=LABELS), config=_config(tmp_path))
    assert fixed.json()["corrections"] == 1
    stored = read_feedback(_config(tmp_path).prediction_log.url)
    assert standing_labels(stored)["label"].tolist() == ["yes"]


def test_a_replica_follows_the_stores_newer_table_and_keeps_its_own_when_it_cannot_serve_one(
        in_app, model_dir: Path, row: dict, tmp_path: Path) -> None:
    """Another replica's change reaches this server through the store; a table naming a model it cannot
    load is not adopted (the old one keeps routing; /readyz says why) until a newer one it can serve."""
    config = _config(tmp_path, sync_interval_s=0.1)
    ghost = {"mode": "weighted", "variants": [
        {"name": "default", "model_uri": str(model_dir), "weight": 50},
        {"name": "ghost", "model_uri": str(tmp_path / "none"), "weight": 50}]}
    split = {"mode": "weighted", "variants": [{"name": "default", "model_uri": str(model_dir), "weight": 70},
                                              {"name": "other", "model_uri": str(model_dir), "weight": 30}]}

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        other = PredictionLog(config.prediction_log)  # another replica's writer on the same store
        await asyncio.to_thread(other.open)
        try:
            assert await asyncio.to_thread(other.publish_routes, ghost, 2)
            await asyncio.sleep(0.6)
            seen = {"ready": await client.get("/readyz"), "routes": (await client.get("/routes")).json(),
                    "answer": await client.post("/invocations", json={"dataframe_records": [row]}),
                    "put": await client.put("/routes", json=_weighted(default=100), headers=ADMIN)}
            assert await asyncio.to_thread(other.publish_routes, split, 3)
            await asyncio.sleep(0.6)
            seen.update(after=(await client.get("/routes")).json(), ready_after=(await client.get("/readyz")).json())
            return seen
        finally:
            await asyncio.to_thread(other.close)

    seen = in_app(scenario, config=config, admin_token=TOKEN)
    ready = seen["ready"]
    assert ready.status_code == 200, "a table this replica cannot serve does not take it out of service"
    error = ready.json()["routes"]["sync"]["error"]
    assert error["version"] == 2 and "variant 'ghost': cannot load" in error["message"]
    assert seen["routes"]["version"] == 1 and seen["answer"].headers["x-route-version"] == "1"
    put = seen["put"]
    assert put.status_code == 409 and "cannot serve the store's version 2" in put.json()["error"]["message"]
    after = seen["after"]
    assert after["version"] == 3 and [(v["name"], v["weight"]) for v in after["variants"]] == [("default", 70),
                                                                                               ("other", 30)]
    sync = seen["ready_after"]["routes"]["sync"]
    assert sync["error"] is None and sync["applied"]["version"] == 3 and sync["store_version"] == 3


def _call_stats(rows, judge):
    """The timed calls of these shadow rows, summed as a rollout look sums them."""
    from mlgate.gates.online.shadow_stats import CallStats

    calls = CallStats()
    calls.add_rows(rows, judge.max_latency_ratio)
    return calls
