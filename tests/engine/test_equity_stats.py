"""engine/stats.py against the textbook formulas written with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpbt import dtypes
from perpbt.engine.stats import equity_stats_nb, max_drawdown_nb, record_stats_nb


def numpy_stats(equity: np.ndarray, start: float):
    prev = np.concatenate(([start], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(prev > 0, equity / prev - 1.0, 0.0)
    curve = np.concatenate(([start], equity))
    drawdown = 1.0 - curve / np.maximum.accumulate(curve)
    return (rets.mean(), rets.std(), np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)),
            drawdown.max())


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3_000),
       vol=st.sampled_from([0.0, 0.001, 0.05, 0.5]), bust=st.booleans())
def test_equity_stats_match_numpy(seed, n, vol, bust):
    rng = np.random.default_rng(seed)
    equity = 1_000.0 * np.exp(np.cumsum(rng.standard_normal(n) * vol))
    if bust:  # a wiped-out account: zero equity, then returns of 0
        equity[n // 2:] = 0.0
    got = (*equity_stats_nb(equity, 1_000.0), max_drawdown_nb(equity, 1_000.0))
    for value, want in zip(got, numpy_stats(equity, 1_000.0)):
        assert value == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_equity_stats_by_hand():
    # 100 -> 110 -> 99 -> 121: returns 0.1, -0.1, 0.2222...; peak 110 then 121;
    # drawdown at 99: 1 - 99/110 = 0.1
    curve = np.array([110.0, 99.0, 121.0])
    mean, sd, down = equity_stats_nb(curve, 100.0)
    dd = max_drawdown_nb(curve, 100.0)
    rets = np.array([0.1, -0.1, 121.0 / 99.0 - 1.0])
    assert mean == pytest.approx(rets.sum() / 3)
    assert sd == pytest.approx(np.sqrt(((rets - rets.mean()) ** 2).sum() / 3))
    assert down == pytest.approx(np.sqrt(0.01 / 3))
    assert dd == pytest.approx(0.1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_fills=st.integers(0, 40), n_trades=st.integers(0, 20),
       n_funding=st.integers(0, 30))
def test_record_stats_match_numpy(seed, n_fills, n_trades, n_funding):
    """Win count, closed trades, fees, funding, smallest finite liquidation distance and the
    stop-beyond-liquidation count, against the same quantities written with numpy masks."""
    rng = np.random.default_rng(seed)
    fills = np.zeros(n_fills, dtype=dtypes.fill_dt)
    fills["fee"] = rng.uniform(0.0, 5.0, n_fills)
    funding = np.zeros(n_funding, dtype=dtypes.funding_dt)
    funding["payment"] = rng.normal(0.0, 2.0, n_funding)
    trades = np.zeros(n_trades, dtype=dtypes.trade_dt)
    trades["exit_bar"] = np.where(rng.random(n_trades) < 0.8, rng.integers(0, 100, n_trades), -1)
    trades["pnl"] = rng.normal(0.0, 10.0, n_trades)
    trades["fees"] = rng.uniform(0.0, 2.0, n_trades)
    trades["funding"] = rng.normal(0.0, 1.0, n_trades)
    trades["min_liq_distance"] = np.where(rng.random(n_trades) < 0.7,
                                          rng.uniform(0.01, 0.5, n_trades), np.inf)
    trades["stop_beyond_liq"] = rng.integers(0, 2, n_trades)
    wins, closed, fees, received, min_dist, beyond = record_stats_nb(fills, trades, funding)

    done = trades[trades["exit_bar"] >= 0]
    assert closed == len(done)
    assert wins == int(np.sum(done["pnl"] - done["fees"] + done["funding"] > 0))
    assert fees == pytest.approx(fills["fee"].sum(), rel=1e-12, abs=1e-12)
    assert received == pytest.approx(funding["payment"].sum(), rel=1e-12, abs=1e-12)
    finite = trades["min_liq_distance"][np.isfinite(trades["min_liq_distance"])]
    if len(finite):
        assert min_dist == finite.min()
    else:
        assert np.isnan(min_dist)
    assert beyond == int(trades["stop_beyond_liq"].sum())


def test_record_stats_by_hand():
    # two closed trades: net 10 - 1 + 0.5 = 9.5 (a win) and 2 - 3 + 0 = -1 (a loss); one open
    # trade (exit bar -1) is not counted as closed; distances 0.3 and 0.1, the open one inf
    trades = np.zeros(3, dtype=dtypes.trade_dt)
    trades["exit_bar"] = [5, 9, -1]
    trades["pnl"] = [10.0, 2.0, 50.0]
    trades["fees"] = [1.0, 3.0, 0.0]
    trades["funding"] = [0.5, 0.0, 0.0]
    trades["min_liq_distance"] = [0.3, 0.1, np.inf]
    trades["stop_beyond_liq"] = [0, 1, 1]
    fills = np.zeros(2, dtype=dtypes.fill_dt)
    fills["fee"] = [1.25, 0.75]
    funding = np.zeros(1, dtype=dtypes.funding_dt)
    funding["payment"] = [-4.0]
    assert record_stats_nb(fills, trades, funding) == (1, 2, 2.0, -4.0, 0.1, 2)
