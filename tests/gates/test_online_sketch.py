"""gates.online.sketch and binned_rank: the summaries the incremental analysis keeps instead of raw rows."""

from __future__ import annotations

import numpy as np
import pytest

from mlgate.gates.data.drift import bin_shares, quantile_edges
from mlgate.gates.online.binned_rank import judge_rank, sketch_rank_test
from mlgate.gates.online.sketch import EXACT_LIMIT, RELATIVE_ACCURACY, Moments, ValueSketch
from mlgate.gates.stats.rank import mann_whitney_effect, rank_judge


def test_an_exact_sketch_gives_numpys_quantiles_and_bin_shares() -> None:
    rng = np.random.default_rng(1)
    values = np.round(rng.gamma(2.0, 3.0, 900), 1)  # discrete: ties at the edges, as a logged feature has
    sketch = ValueSketch().add(values[:400]).add(values[400:])
    assert not sketch.binned and sketch.total == values.size
    for q in (0.0, 0.1, 0.5, 0.95, 1.0):
        assert sketch.quantile(q) == pytest.approx(np.quantile(values, q), abs=1e-12)
    edges = quantile_edges(values, 10)
    assert np.allclose(sketch.shares(edges), bin_shares(values, edges))


def test_a_binned_sketch_keeps_every_value_within_half_a_percent() -> None:
    rng = np.random.default_rng(2)
    values = rng.lognormal(3.0, 1.0, 50_000) * rng.choice([-1, 1], 50_000)
    sketch = ValueSketch().add(values)
    assert sketch.binned and len(sketch.bins) < 5_000
    for q in (0.01, 0.25, 0.5, 0.75, 0.99):
        exact = np.quantile(values, q)
        assert abs(sketch.quantile(q) - exact) <= RELATIVE_ACCURACY * abs(exact) * 1.01


def test_counts_taken_out_again_leave_the_sketch_as_it_was_and_json_keeps_it() -> None:
    rng = np.random.default_rng(3)
    kept, removed = rng.normal(size=EXACT_LIMIT * 2), rng.normal(size=300)
    sketch = ValueSketch().add(kept).add(removed)
    sketch.merge(ValueSketch().add(removed), -1)
    again = ValueSketch.from_json(sketch.to_json())
    reference = ValueSketch().add(kept)
    for one in (sketch, again):
        assert one.bins == reference.bins and one.total == kept.size


def test_moments_give_pearson_r_and_the_mean_absolute_difference() -> None:
    rng = np.random.default_rng(4)
    a = rng.random(500)
    b = a + rng.normal(0, 0.1, 500)
    moments = Moments().add(a[:200], b[:200]).merge(Moments().add(a[200:], b[200:]))
    assert moments.correlation() == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-9)
    mae, spread = moments.mean_abs_difference()
    assert mae == pytest.approx(np.abs(b - a).mean()) and spread == pytest.approx(np.abs(b - a).std(ddof=1))


@pytest.mark.parametrize("shift", [0.0, 0.4, 3.0])
def test_the_rank_test_on_exact_sketches_is_the_rank_test_on_the_raw_values(shift: float) -> None:
    rng = np.random.default_rng(5)
    a = np.round(rng.exponential(2.0, 800) + 1, 2)
    b = np.round(rng.exponential(2.0, 700) + 1 + shift, 2)
    raw = mann_whitney_effect(a, b)
    binned = sketch_rank_test(ValueSketch().add(a), ValueSketch().add(b))
    for name in ("n_a", "n_b", "p_greater", "p_two_sided", "superiority", "shift", "a_median"):
        assert getattr(binned, name) == pytest.approx(getattr(raw, name), rel=1e-9, abs=1e-12), name
    assert judge_rank(binned, tolerance=0.1, alpha=0.01).message == rank_judge(a, b, tolerance=0.1,
                                                                              alpha=0.01).message


def test_the_rank_test_on_binned_sketches_decides_as_on_the_raw_values() -> None:
    rng = np.random.default_rng(6)
    fast, slow = rng.lognormal(2.5, 0.4, 20_000), rng.lognormal(2.5, 0.4, 20_000) * 1.6
    same = rng.lognormal(2.5, 0.4, 20_000)
    for a, b in ((fast, slow), (fast, same)):
        raw = rank_judge(a, b, tolerance=0.1, alpha=0.01)
        binned = judge_rank(sketch_rank_test(ValueSketch().add(a), ValueSketch().add(b)), tolerance=0.1, alpha=0.01)
        assert binned.passed == raw.passed
        assert binned.test.superiority == pytest.approx(raw.test.superiority, abs=0.005)
