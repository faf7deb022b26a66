"""The quiet stretch (engine/loop.py: quiet_stretch_nb) is a fast path, not a model.

Runs of bars where nothing can happen go through a short loop instead of the full step list
of DESIGN section 4. Switching it off (``perpbt.backtest.QUIET_STRETCH = False``) must change
no record, no equity value and no stat, on random markets in every margin mode and venue,
with and without the execution model and the liquidation policies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import importlib

import perpbt as pb
from perpbt.engine.stats import max_drawdown_nb
from tests.engine.test_properties import random_market

N_BARS = 240
bt = importlib.import_module("perpbt.backtest")  # the module (perpbt.backtest is the function)


def calm_market(seed: int, n_symbols: int, vol: float, taker: float, clearance: float,
                funding_every: int):
    """Random bars, calm enough for long quiet runs, with settlements every few bars."""
    return random_market(seed, vol, taker, clearance, n_bars=N_BARS,
                         symbols=("A", "B")[:n_symbols], funding_every=funding_every)


def sparse_targets(seed: int, market, leverage: float) -> pd.DataFrame:
    """A new target every ~20 bars per symbol: positions are held through quiet runs."""
    rng = np.random.default_rng(seed + 1)
    values = np.full((market.n_bars, market.n_symbols), np.nan)
    changes = rng.random(values.shape) < 0.05
    values[changes] = np.round(rng.uniform(-leverage, leverage, changes.sum()), 2)
    values[0] = np.round(rng.uniform(-leverage, leverage, market.n_symbols), 2)
    return pd.DataFrame(values, index=market.index, columns=list(market.symbols))


def both_ways(market, targets, **kwargs):
    """(result with the quiet stretch, result without it)."""
    fast = pb.backtest(market, targets, **kwargs)
    bt.QUIET_STRETCH = False
    try:
        slow = pb.backtest(market, targets, **kwargs)
    finally:
        bt.QUIET_STRETCH = True
    return fast, slow


def assert_same(fast, slow):
    assert slow.counts["quiet_bars"] == 0
    np.testing.assert_array_equal(fast.equity.to_numpy(), slow.equity.to_numpy())
    for name in ("fill_records", "trade_records", "liq_records", "funding_records",
                 "order_records"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and len(a) == len(b), name
        for field in a.dtype.names:
            if field == "min_liq_distance":  # folded from the stretch's most adverse mark
                np.testing.assert_allclose(a[field], b[field], rtol=1e-12, atol=1e-15)
            else:
                np.testing.assert_array_equal(a[field], b[field], err_msg=f"{name}.{field}")
    for key in ("insurance_fund", "clearance_fees", "final_wallet", "bust", "bust_bar"):
        assert getattr(fast, key) == getattr(slow, key), key
    sf, ss = fast.stats(), slow.stats()
    pd.testing.assert_series_equal(sf, ss, rtol=1e-12)
    # the kernel's running maximum drawdown (a quiet block may skip it) is, bit for bit,
    # the reference pass over the equity curve
    for res in (fast, slow):
        start = float(res.settings["initial_capital"])
        assert res.max_drawdown == max_drawdown_nb(res._buf.equity, start)


params = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "n_symbols": st.sampled_from([1, 1, 2]),
    "vol": st.sampled_from([0.002, 0.006, 0.02]),
    "leverage": st.sampled_from([1.0, 5.0, 20.0, 50.0]),
    "margin": st.sampled_from(["isolated", "cross"]),
    "venue": st.sampled_from(["binance", "bybit", "okx"]),
    "stop": st.sampled_from([None, 0.01, 0.04, pb.StopLoss(0.02, trailing=True)]),
    "take": st.sampled_from([None, 0.03]),
    "taker": st.sampled_from([0.0, 0.0005]),
    "clearance": st.sampled_from([0.0, 0.01]),
    "funding_every": st.sampled_from([8, 60]),
    "liquidation": st.sampled_from([None, "takeover", "ioc", "multibar"]),
    "execution": st.booleans(),
    "stats_only": st.booleans(),
})


@settings(max_examples=60, deadline=None)
@given(params)
def test_quiet_stretch_changes_nothing(p):
    market = calm_market(p["seed"], p["n_symbols"], p["vol"], p["taker"], p["clearance"],
                         p["funding_every"])
    targets = sparse_targets(p["seed"], market, p["leverage"])
    fast, slow = both_ways(market, targets, venue=p["venue"], margin=p["margin"],
                           leverage=p["leverage"], stop=p["stop"], take=p["take"],
                           liquidation=p["liquidation"], stats_only=p["stats_only"],
                           execution=pb.Execution(participation=0.1) if p["execution"] else None)
    assert_same(fast, slow)


@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_quiet_stretch_runs_most_bars_of_a_held_position(margin):
    """A position held through calm bars: every bar but bar 0, the settlement bars and the
    two order bars (the new position's tier and band are set at the order bar's close) runs
    through the stretch, and the results do not change."""
    market = calm_market(3, 1, 0.002, 0.0005, 0.0, 60)
    targets = pd.DataFrame({"A": np.nan}, index=market.index)
    targets.iloc[0] = 2.0  # ordered at bar 1's open
    targets.iloc[120] = -2.0  # ordered at bar 121's open
    fast, slow = both_ways(market, targets, margin=margin, leverage=10.0, stop=0.05)
    assert fast.counts["liquidations"] == 0 and fast.counts["stops"] == 0
    # the helper settles (rate 0 unless given) every 8 bars, plus the given bars 60 and 180
    settlement_bars = set(np.flatnonzero(~np.isnan(market.arrays["funding_rate"][:, 0])))
    assert len(settlement_bars) == 32
    full_bars = settlement_bars | {0, 1, 121}
    assert fast.counts["quiet_bars"] == N_BARS - len(full_bars)
    assert_same(fast, slow)
