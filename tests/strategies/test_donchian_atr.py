"""Donchian breakout with its default ATR stop: entries follow the channel rule and the stop
sits 2 Wilder ATRs from the entry, both recomputed here with plain loops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import perpbt as pb

REPO = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("donchian_atr",
                                                  REPO / "strategies" / "donchian_atr.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DonchianAtr


def wilder_atr(high, low, close, period):
    """ATR through each bar: true range, first value at bar period-1 from the EWM recursion
    a_t = a_{t-1} + (tr_t - a_{t-1}) / period started at tr_0 (pandas adjust=False)."""
    atr = np.full(len(close), np.nan)
    a = np.nan
    for t in range(len(close)):
        if t == 0:
            tr = high[0] - low[0]
            a = tr
        else:
            tr = max(high[t], close[t - 1]) - min(low[t], close[t - 1])
            a = a + (tr - a) / period
        if t >= period - 1:
            atr[t] = a
    return atr


def check(market, cls, res, lookback=48):
    sym = market.symbols[0]
    n = 0
    a = market.arrays
    high, low, close, open_ = a["high"][:, n], a["low"][:, n], a["close"][:, n], a["open"][:, n]
    atr = wilder_atr(high, low, close, 14)
    trades = res.trades[res.trades["symbol"] == sym]
    assert len(trades) > 0
    checked = 0
    for _, tr in trades.iterrows():
        t = int(tr["entry_bar"]) - 1  # the decision bar
        upper = high[t - lookback:t].max()
        lower = low[t - lookback:t].min()
        if tr["side"] == 1:
            assert close[t] > upper
        else:
            assert close[t] < lower
        assert tr["entry_price"] == pytest.approx(open_[t + 1], rel=1e-12)
        # the default stop: 2 ATRs (known at the fill bar's open: through bar t) from entry
        assert tr["stop_price"] == pytest.approx(
            tr["entry_price"] - tr["side"] * 2.0 * atr[t], rel=1e-9)
        checked += 1
    return checked


def test_on_the_embedded_market():
    cls = load()
    m = pb.data.default_market().sel(["SYNBTC/USDT:USDT"]).slice(None, "2021-06-01")
    res = pb.backtest(m, cls(), leverage=5)
    assert check(m, cls, res) > 0
    assert res.settings["stop"] == cls.default_stop
    # an explicit stop overrides the strategy's default
    res2 = pb.backtest(m, cls(), leverage=5, stop=0.05)
    tr = res2.trades.iloc[0]
    assert tr["stop_price"] == pytest.approx(tr["entry_price"] * (1 - tr["side"] * 0.05))


def test_on_real_data(shared_data):
    cls = load()
    m = pb.data.read_csv(shared_data / "binance_usdm", ["BTCUSDT"], "1h",
                         since="2022-01-01", until="2022-07-01")
    res = pb.backtest(m, cls(), leverage=3)
    assert check(m, cls, res) > 0
