"""The moving-average cross: every entry follows its own rule, recomputed with plain loops."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import perpbt as pb

REPO = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("ma_cross", REPO / "strategies" / "ma_cross.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MaCross


def sma(values, end, length):
    """Mean of values[end - length + 1 .. end] with a plain loop."""
    total = 0.0
    for i in range(end - length + 1, end + 1):
        total += values[i]
    return total / length


def check_entries(market, res, fast, slow):
    close = market.arrays["close"]
    open_ = market.arrays["open"]
    checked = 0
    for _, tr in res.trades.iterrows():
        n = market.symbols.index(tr["symbol"])
        t = int(tr["entry_bar"]) - 1  # decided at t's close, filled at t+1's open
        f, s = sma(close[:, n], t, fast), sma(close[:, n], t, slow)
        assert (f > s) if tr["side"] == 1 else (f < s)
        assert tr["entry_price"] == pytest.approx(open_[t + 1, n], rel=1e-12)
        checked += 1
    assert checked > 0


def test_ma_cross_on_the_embedded_market():
    m = pb.data.default_market().slice(None, "2021-04-01")
    res = pb.backtest(m, load()(fast=12, slow=48), leverage=5)
    check_entries(m, res, 12, 48)


def test_ma_cross_on_real_data(shared_data):
    m = pb.data.read_csv(shared_data / "binance_usdm", ["BTCUSDT"], "1h",
                         since="2022-01-01", until="2022-04-01")
    res = pb.backtest(m, load()(fast=24, slow=96), leverage=3)
    check_entries(m, res, 24, 96)
