"""The execution model (DESIGN section 6): its kernels' monotonicity, the participation cap,
and the frictionless engine recovered exactly when the model costs nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perpbt as pb
from perpbt.engine.execution import (fill_price_nb, impact_nb, qty_within_limit_nb,
                                     widening_nb)
from tests.engine.test_properties import random_market, random_targets
from tests.helpers import make_market, targets_frame

pos = st.floats(1e-6, 1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(pos, pos, pos, pos, st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_widening_grows_with_range_and_thinness(r1, r2, h1, h2, a, b):
    lo_r, hi_r = sorted((r1, r2))
    lo_h, hi_h = sorted((h1, h2))
    assert widening_nb(hi_r, lo_h, a, b, 50.0) >= widening_nb(lo_r, lo_h, a, b, 50.0)
    assert widening_nb(lo_r, hi_h, a, b, 50.0) >= widening_nb(lo_r, lo_h, a, b, 50.0)
    assert 1.0 <= widening_nb(lo_r, lo_h, a, b, 50.0) <= 50.0


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0, 1e5), pos, pos, st.floats(1e-5, 0.01), st.floats(1e-4, 0.1),
       st.floats(0.1, 3.0), st.sampled_from([1.0, -1.0]))
def test_fills_get_worse_with_size_stress_and_thinness(ref, q1, q2, hs, sigma, k, sign):
    small, big = sorted((q1, q2))
    volume = 1_000.0
    # sign +1 (a buy) pays more, -1 (a sell) gets less: sign * price grows with every cost
    price = lambda q, h, v: sign * fill_price_nb(ref, sign, h, q, v, sigma, k)  # noqa: E731
    assert price(big, hs, volume) >= price(small, hs, volume)           # size
    assert price(small, 3.0 * hs, volume) >= price(small, hs, volume)   # stress
    assert price(small, hs, volume / 10) >= price(small, hs, volume)    # thinner book
    assert sign * (price(small, hs, volume) * sign - ref) > 0  # never better than ref
    # the limit solve returns the size whose average fill is exactly the limit
    limit = ref * (1 - sign * 0.05)
    q_lim = qty_within_limit_nb(ref, sign, limit * (1 + sign * 0.1), hs, volume, sigma, k)
    if 0.0 < q_lim < np.inf:
        assert fill_price_nb(ref, sign, hs, q_lim, volume, sigma, k) == pytest.approx(
            limit * (1 + sign * 0.1), rel=1e-9)
    assert impact_nb(0.0, volume, sigma, k) == 0.0


def buy_and_hold_market(volume):
    bars = [(100.0, 101.0, 99.0, 100.0)] * 8
    return make_market({"A": bars}, volume={"A": volume})


def test_participation_caps_each_bar_exactly():
    # exposure 5 on 10,000 at 100 = 500 units; every bar trades 1,000, cap 10 % = 100 units.
    # "cancel": bar 1 fills 100, the rest (400) is cancelled and recorded as partial.
    # "carry": the rest works at the next opens: 100 per bar on bars 1..5.
    m = buy_and_hold_market([1_000.0] * 8)
    tgt = targets_frame(m, {"A": {0: 5.0}})
    # (the last carried fill completes the order: partial records on bars 1..4 only)
    for remainder, bars, partials in (("cancel", [1], 1), ("carry", [1, 2, 3, 4, 5], 4)):
        exe = pb.Execution(base_half_spread=0.0, impact_k=0.0, participation=0.1,
                           remainder=remainder)
        res = pb.backtest(m, tgt, margin="cross", leverage=10, execution=exe)
        f = res.fills
        assert list(f["bar"]) == bars
        assert (f["qty"] == 100.0).all()
        partial = res.orders[res.orders["status"] == "partial"]
        assert len(partial) == partials
        assert partial["requested_qty"].iloc[0] == pytest.approx(500.0)
        assert partial["filled_qty"].iloc[0] == pytest.approx(100.0)


def test_a_stop_fill_is_capped_and_its_rest_works_at_the_next_opens():
    # long 300 units (exposure 3, bar 1 trades 10,000: cap 1,000), stop 2 % -> level 98.
    # Bar 2 falls through 98 and trades 1,000: the stop sells 100 at 98 (no spread or impact
    # here), the remaining 200 sell at the next two opens (99.5, 99), 100 each.
    bars = [(100, 100, 100, 100), (100, 100, 100, 100), (99.0, 99.5, 97.0, 99.5),
            (99.5, 99.8, 99.2, 99.5), (99.0, 99.3, 98.8, 99.0), (99.0, 99.3, 98.8, 99.0)]
    vol = [10_000.0, 10_000.0, 1_000.0, 1_000.0, 1_000.0, 1_000.0]
    m = make_market({"A": bars}, volume={"A": vol})
    exe = pb.Execution(base_half_spread=0.0, impact_k=0.0, participation=0.1)
    res = pb.backtest(m, targets_frame(m, {"A": {0: 3.0}}), margin="isolated", leverage=10,
                      stop=0.02, execution=exe)
    stops = res.fills[res.fills["reason"] == "stop_loss"]
    assert list(stops["bar"]) == [2, 3, 4]
    np.testing.assert_allclose(stops["qty"], [-100.0, -100.0, -100.0])
    np.testing.assert_allclose(stops["price"], [98.0, 99.5, 99.0])
    assert res.equity["A:position"].iloc[4] == 0.0


zero_cost = pb.Execution(base_half_spread=0.0, impact_k=0.0, participation=1e12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.005, 0.02, 0.06]),
       st.sampled_from([3.0, 10.0, 50.0]), st.sampled_from(["isolated", "cross"]),
       st.sampled_from(["takeover", "ioc", "tiered", "multibar"]),
       st.sampled_from([None, 0.01]))
def test_a_model_that_costs_nothing_is_the_frictionless_engine_bit_for_bit(
        seed, vol, leverage, margin, policy, stop):
    market = random_market(seed, vol, 0.0005, 0.01)
    targets = random_targets(seed, market, leverage)
    kw = dict(margin=margin, leverage=leverage, liquidation=policy, stop=stop)
    off = pb.backtest(market, targets, **kw)
    on = pb.backtest(market, targets, execution=zero_cost, **kw)
    for name in ("fill_records", "liq_records", "funding_records"):
        a, b = getattr(off, name), getattr(on, name)
        assert a.tobytes() == b.tobytes(), name
    assert np.array_equal(off.equity["equity"].to_numpy(), on.equity["equity"].to_numpy())


def test_parameters_per_instrument():
    # participation 10 % for A, 30 % for B: 1,000 traded per bar -> caps 100 and 300 units
    bars = [(100.0, 101.0, 99.0, 100.0)] * 4
    m = make_market({"A": bars, "B": bars})
    exe = pb.Execution(base_half_spread={"A": 0.0, "B": 0.0}, impact_k=0.0,
                       participation={"A": 0.1, "B": 0.3})
    res = pb.backtest(m, targets_frame(m, {"A": {0: 4.0}, "B": {0: 4.0}}), margin="cross",
                      leverage=20, execution=exe)
    f = res.fills
    assert list(f["qty"]) == [100.0, 300.0]
    with pytest.raises(ValueError, match="Execution.stress has no value for B"):
        pb.backtest(m, targets_frame(m, {"A": {0: 1.0}}), execution=pb.Execution(
            stress={"A": 2.0}))
