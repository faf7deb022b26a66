"""Synthetic scenarios: determinism, OHLC sanity, funding grid, illustrative instruments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perpbt.data import default_market, scenario
from perpbt.data.scenarios import SCENARIOS

SYMS = ("SYNBTC/USDT:USDT", "SYNETH/USDT:USDT")


@pytest.fixture(scope="module")
def market():
    return default_market()


def test_shape_and_grid(market):
    # 2 years of 1h bars: 730 days * 24 = 17,520, from 2021-01-01 00:00 UTC
    assert market.symbols == SYMS and market.n_bars == 17_520 and market.timeframe == "1h"
    assert market.index[0] == pd.Timestamp("2021-01-01T00:00Z")
    assert market.index[-1] == pd.Timestamp("2022-12-31T23:00Z")
    assert market.mark_source == "mark"
    for arr in market.arrays.values():
        assert arr.flags.c_contiguous and arr.shape == (17_520, 2)


def test_deterministic(market):
    assert default_market().equals(market)
    assert scenario("default").equals(market) and scenario("default", seed=7).equals(market)
    assert not scenario("default", seed=8).equals(market)
    small = scenario("default", seed=3, n_bars=200)
    assert small.n_bars == 200 and small.equals(default_market(seed=3, n_bars=200))


def test_ohlc_sanity(market):
    a = market.arrays
    for p in ("", "mark_"):
        o, h, lo, c = (a[p + f] for f in ("open", "high", "low", "close"))
        assert np.isfinite([o, h, lo, c]).all() and (lo > 0).all()
        assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    assert (a["volume"] >= 0).all() and np.isfinite(a["volume"]).all()
    np.testing.assert_array_equal(a["open"][1:], a["close"][:-1])        # 24/7: open = last close


def test_statistics_are_plausible(market):
    a = market.arrays
    r = np.diff(np.log(a["close"]), axis=0)
    assert 0.005 < r[:, 0].std() < 0.01 and 0.006 < r[:, 1].std() < 0.012
    assert 0.7 < np.corrcoef(r.T)[0, 1] < 0.9
    assert (r.min(axis=0) < -0.10).all()                          # crash bars
    basis = np.abs(a["mark_close"] / a["close"] - 1)
    assert np.median(basis) < 0.001
    # mark wicks stay near last's; a few last-price wicks go 2 %+ beyond the mark range
    far_low = a["low"] < a["mark_low"] * 0.98
    far_high = a["high"] > a["mark_high"] * 1.02
    assert 3 <= (far_low | far_high).sum() < 100


def test_funding(market):
    fr = market.funding_rate
    settled = fr.notna()
    # every 8 h at 00/08/16 UTC: 17,520 / 8 = 2,190 settlements per symbol
    assert (settled.sum() == 2_190).all()
    assert set(fr.index[settled.iloc[:, 0].to_numpy()].hour) == {0, 8, 16}
    assert market.arrays["funding_covered"].all()
    values = fr.stack().dropna()
    assert (values == 0.0001).mean() > 0.5                        # the neutral regime
    assert (values > 0.0003).any() and (values < 0).any()         # hot and cold regimes
    assert values.abs().max() <= 0.0075


def test_instruments_are_illustrative(market):
    btc, eth = (market.instruments[s] for s in SYMS)
    assert (btc.lot_size, eth.lot_size) == (0.001, 0.01)
    table = btc.tiers[0]
    assert table.illustrative and table.source == "perpbt synthetic"
    assert table.mmr[0] == 0.004 and table.cap[0] == 300_000 and table.max_leverage[0] == 125
    # tier 2 maintenance amount keeps maintenance margin continuous at 300k:
    # 300,000 * (0.005 - 0.004) = 300
    assert table.maint_amount[1] == pytest.approx(300.0)
    mm = table.floor[1:] * table.mmr[1:] - table.maint_amount[1:]
    below = table.floor[1:] * table.mmr[:-1] - table.maint_amount[:-1]
    np.testing.assert_allclose(mm, below)


def test_unknown_scenario_and_parameter():
    with pytest.raises(ValueError, match=r"unknown scenario 'defualt' \(did you mean 'default'\?\)"
                                         r".*\['default'"):
        scenario("defualt")
    with pytest.raises(ValueError, match=r"no parameter 'nbars' \(did you mean 'n_bars'\?\)"):
        scenario("default", nbars=10)
    assert "default" in SCENARIOS
