"""The route table (parsing, modes, files) and the routing rules: sticky hashing, random, bandit."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mlgate.gates.stats.srm import srm_chi_square
from mlgate.serving.__main__ import main as serving_main
from mlgate.serving.routing.bandit import Arm, ThompsonBandit
from mlgate.serving.routing.guard import ErrorGuard, rolled_back_table
from mlgate.serving.routing.router import TableRouter, random_choice, sticky_choice
from mlgate.serving.routing.routes import (
    RouteTableError,
    initial_table,
    load_routes_file,
    parse_table,
    table_json,
)
from mlgate.serving.settings import BanditConfig, GuardConfig
from mlgate.serving.shadow.cpu_budget import BusyBudget


def _body(mode: str, *variants: dict) -> dict:
    return {"mode": mode, "variants": list(variants)}


def _v(name: str, weight: float = 0, shadow: bool = False, uri: str | None = "m/") -> dict:
    entry = {"name": name, "weight": weight, "shadow": shadow}
    if uri is not None:
        entry["model_uri"] = uri + name
    return entry


@pytest.mark.parametrize(("body", "message"), [
    (_body("weighted", _v("a", 60), _v("b", 30)), "must sum to 100, got 90"),
    (_body("canary", _v("a", 100)), "mode must be one of"),
    (_body("weighted", _v("a", 50), _v("a", 50)), "repeated: ['a']"),
    (_body("single", _v("a", 100), _v("b", 0, shadow=True)), "use mode 'shadow' for 'b'"),
    (_body("single", _v("a", 50), _v("b", 50)), "exactly one non-shadow variant with weight 100"),
    (_body("shadow", _v("a", 100)), "needs at least one variant with shadow: true"),
    (_body("bandit", _v("a", 100), _v("b", 0)), "at least two non-shadow variants"),
    (_body("weighted", _v("a", 120)), "weight must be a number in [0, 100]"),
    (_body("weighted", _v("bad name!", 100)), "name must be 1-64 characters"),
    (_body("weighted", {**_v("a", 100), "wieght": 1}), "unknown key(s) ['wieght']"),
    (_body("weighted", _v("a", 100, uri=None)), "variant 'a': model_uri is required"),
    (_body("weighted", _v("s", 0, shadow=True)), "at least one variant must be non-shadow"),
    ({"mode": "weighted"}, "'variants' must be a non-empty list"),
])
def test_a_bad_table_is_refused_naming_the_problem(body: dict, message: str) -> None:
    with pytest.raises(RouteTableError) as error:
        parse_table(body)
    assert message in str(error.value)


def test_tables_of_each_mode_round_trip_through_their_json() -> None:
    tables = [
        _body("single", _v("a", 100), _v("b", 0)),
        _body("shadow", _v("a", 100), _v("b", 0, shadow=True)),
        _body("weighted", _v("a", 90.5), _v("b", 9.5), _v("s", 0, shadow=True)),
        _body("bandit", _v("a", 50), _v("b", 50), _v("c", 0)),
    ]
    for body in tables:
        table = parse_table(body)
        again = parse_table({k: v for k, v in table_json(table).items() if k != "version"})
        assert again == table


def test_an_omitted_model_uri_is_taken_from_the_running_table() -> None:
    table = parse_table(_body("weighted", _v("a", 50, uri=None), _v("b", 50)), known_uris={"a": "models:/churn/3"})
    assert table.get("a").model_uri == "models:/churn/3"


def test_models_given_only_by_flag_join_the_routes_file_with_weight_zero(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({**_body("weighted", _v("a", 80), _v("b", 20, uri=None)), "version": 7}))
    table = initial_table({"b": "m/b", "extra": "m/extra"}, load_routes_file(path, {"b": "m/b"}))
    assert table.names == ("a", "b", "extra") and table.get("extra").weight == 0 and table.mode == "weighted"
    with pytest.raises(ValueError, match="'a' is other in --model but m/a in the routes"):
        initial_table({"a": "other"}, load_routes_file(path, {"b": "m/b"}))


def test_a_bad_routes_file_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(_body("weighted", _v("a", 80))))
    assert serving_main(["--model", "a=m/a", "--routes", str(path)]) == 2
    assert f"{path}: mode 'weighted': the weights of non-shadow variants must sum to 100" in capsys.readouterr().err
    path.write_text("{not json")
    assert serving_main(["--routes", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_sticky_keys_follow_their_weights_and_move_only_to_a_growing_canary() -> None:
    keys = [f"k{i}" for i in range(20_000)]
    at_10 = [sticky_choice(k, [("champion", 90), ("canary", 10)]) for k in keys]
    at_50 = [sticky_choice(k, [("champion", 50), ("canary", 50)]) for k in keys]
    assert srm_chi_square([at_10.count("champion"), at_10.count("canary")], [90, 10])[1] > 0.001
    assert all(after == "canary" for before, after in zip(at_10, at_50, strict=True) if before == "canary")
    assert [sticky_choice(k, [("champion", 90), ("canary", 10)]) for k in keys[:100]] == at_10[:100]


def test_sticky_keys_do_not_depend_on_the_order_of_variants() -> None:
    weights = [("a", 20), ("b", 30), ("c", 50)]
    for key in (f"user-{i}" for i in range(500)):
        assert sticky_choice(key, weights) == sticky_choice(key, list(reversed(weights)))


def test_random_choice_follows_the_weights_and_never_picks_weight_zero() -> None:
    rng = random.Random(3)
    picks = [random_choice(rng, [("a", 25), ("b", 0), ("c", 75)]) for _ in range(20_000)]
    assert "b" not in picks
    assert srm_chi_square([picks.count("a"), picks.count("c")], [25, 75])[1] > 0.001


def test_single_and_shadow_tables_route_everything_to_their_primary() -> None:
    router = TableRouter(ThompsonBandit(BanditConfig(), random.Random(1)), random.Random(1))
    shadow = parse_table(_body("shadow", _v("s", 0, shadow=True), _v("off", 0), _v("main", 100)))
    assert {router.choose(shadow, f"k{i}", {}) for i in range(200)} == {"main"}


def test_thompson_sampling_favours_the_better_arm_but_keeps_the_minimum_share() -> None:
    bandit = ThompsonBandit(BanditConfig(min_share=0.1), random.Random(5))
    bandit.restore([Arm("good", "1", 90.0, 10.0, 98), Arm("bad", "1", 10.0, 90.0, 98)])
    arms = [("good", "1"), ("bad", "1")]
    picks = [bandit.choose(arms) for _ in range(10_000)]
    assert 0.08 < picks.count("bad") / len(picks) < 0.12  # min share 0.1: half of the 2 x 0.1 exploration
    assert bandit.share_of(arms)["good"] > 0.85


def test_bandit_rewards_update_the_posterior_and_out_of_range_rewards_are_refused() -> None:
    saved: list[Arm] = []
    bandit = ThompsonBandit(BanditConfig(), random.Random(0), save=saved.append)
    bandit.update("a", "3", 1.0)
    arm = bandit.update("a", "3", 0.25)
    assert (arm.alpha, arm.beta, arm.pulls) == (2.25, 1.75, 2) and saved[-1] == arm
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bandit.update("a", "3", 2.0)



def test_the_cpu_budget_makes_background_work_wait_in_proportion_to_its_share() -> None:
    budget = BusyBudget(share=0.1, burst_s=0.05)
    assert budget.wait_s() == 0.0
    budget.spend(0.15)  # 0.10 s beyond the burst: 1 s at a 10% share
    assert 0.9 < budget.wait_s() <= 1.0


def test_mlgate_serve_refuses_a_bad_routes_file_with_exit_2(model_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from mlgate.pipelines.cli.main import main

    path = tmp_path / "routes.json"
    path.write_text(json.dumps(_body("bandit", _v("a", 100))))
    assert main(["serve", "--model", f"a={model_dir}", "--routes", str(path), "--port", "0"]) == 2
    assert "at least two non-shadow variants" in capsys.readouterr().err


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_guard_trips_once_when_a_challengers_5xx_share_in_the_window_passes_the_limit() -> None:
    clock = _Clock()
    guard = ErrorGuard(GuardConfig(window_s=10, min_requests=10, max_error_rate=0.3), clock)
    table = parse_table(_body("weighted", _v("champion", 90), _v("challenger", 10), _v("spare", 0)), version=4)
    guard.watch(table)
    for _ in range(20):  # the champion's errors, 4xx answers and another table's answers never count
        assert guard.observe("champion", 500, 4) is None
        assert guard.observe("challenger", 400, 4) is None
        assert guard.observe("challenger", 500, 3) is None
    for _ in range(6):
        assert guard.observe("challenger", 200, 4) is None
    clock.now = 11.0  # those six left the window: the next nine alone are too few to judge
    trips = [guard.observe("challenger", 500 if i % 2 else 200, 4) for i in range(9)]
    assert trips == [None] * 9
    trip = guard.observe("challenger", 500, 4)  # ten in the window, five 5xx: 0.5 > 0.3
    assert (trip.variant, trip.route_version, trip.requests, trip.errors) == ("challenger", 4, 10, 5)
    assert "5 of its 10 routed requests" in trip.reason("champion") and "hard limit 0.3" in trip.reason("champion")
    assert guard.observe("challenger", 500, 4) is None  # tripped once for this table
    guard.release()  # the rollback changed nothing (another replica's change came first): watch again
    assert guard.observe("challenger", 500, 4) is not None


def test_the_guard_watches_nothing_without_a_champion_variant_or_when_disabled() -> None:
    other = parse_table(_body("weighted", _v("a", 50), _v("b", 50)))
    canary = parse_table(_body("weighted", _v("champion", 50), _v("challenger", 50)))
    for guard, table in ((ErrorGuard(GuardConfig(min_requests=1)), other),
                         (ErrorGuard(GuardConfig(enabled=False, min_requests=1)), canary)):
        guard.watch(table)
        assert all(guard.observe(name, 500, table.version) is None for name in table.names for _ in range(5))


def test_a_rollback_gives_the_failing_variants_weight_to_the_champion() -> None:
    canary = parse_table(_body("weighted", _v("champion", 50), _v("challenger", 50), _v("next", 0, shadow=True)))
    back = rolled_back_table(canary, "challenger", "champion", 8)
    assert (back.mode, back.version) == ("shadow", 8)  # still mirrors to its shadow
    assert [(v.name, v.weight, v.shadow) for v in back.variants] == [
        ("champion", 100, False), ("challenger", 0, False), ("next", 0, True)]
    three = parse_table(_body("weighted", _v("champion", 60), _v("a", 30), _v("b", 10)))
    assert [v.weight for v in rolled_back_table(three, "a", "champion", 2).variants] == [90, 0, 10]
    bandit = parse_table(_body("bandit", _v("champion", 50), _v("a", 50)))
    assert rolled_back_table(bandit, "a", "champion", 2).mode == "single"
