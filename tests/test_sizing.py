"""Sizing rules (issue 5 item 3), hand-derived; and the stop x sizing x leverage table.

Market: one symbol at 100, mark = last, test tiers (0.5 % maintenance), 10,000 USDT.
A state-style target (+1 on every bar from bar 0) means "long"; the rule sizes the entry and
the position is then kept (no rebalancing while the direction holds).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import perpbt as pb
from tests.helpers import make_market, test_instrument

FLAT = (100.0, 100.0, 100.0, 100.0)


def long_all_along(m):
    return pd.DataFrame(1.0, index=m.index, columns=list(m.symbols))


def test_equity_fraction_and_no_rebalancing():
    # 0.5 * 10,000 / 100 = 50 units at bar 1's open, and nothing else
    m = make_market({"A": [FLAT] * 6})
    res = pb.backtest(m, long_all_along(m), sizing=pb.EquityFraction(0.5))
    assert list(res.fills["bar"]) == [1] and list(res.fills["qty"]) == [50.0]


def test_fixed_notional_sizes_in_quote():
    # 2,500 USDT at the open of the fill bar: 2,500 / 125 = 20 units, whatever the equity
    m = make_market({"A": [FLAT, (125.0, 125.0, 125.0, 125.0)] + [FLAT] * 3})
    res = pb.backtest(m, long_all_along(m), sizing=pb.FixedNotional(2_500.0))
    assert res.fills["qty"].iloc[0] == pytest.approx(20.0, rel=1e-12)


def test_risk_per_trade_loses_the_risk_at_the_stop_fees_included():
    # taker 0.05 %, stop 2 %, isolated 10x. The liquidation price with fees is about 9.5 %
    # away (tier 1, 0.5 %), farther than the stop, so the stop sizes the position:
    #   exposure = 0.01 / (0.02 + 0.0005 * (2 - 0.02)) = 0.01 / 0.02099 = 0.4764173
    #   -> 47.64173 units at 100; at the stop (98): loss 47.64173 * 2 = 95.2835,
    #   fees 47.64173 * (100 + 98) * 0.0005 = 4.7165, total 100.000 = 1 % of 10,000.
    inst = {"A": test_instrument("A", taker_fee=0.0005)}
    bars = [FLAT, FLAT, (100.0, 100.0, 97.0, 97.5), FLAT]
    m = make_market({"A": bars}, instruments=inst)
    res = pb.backtest(m, long_all_along(m), leverage=10, stop=0.02,
                      sizing=pb.RiskPerTrade(0.01))
    f = res.fills
    assert f["qty"].iloc[0] == pytest.approx(0.01 / 0.02099 * 100, rel=1e-12)
    loss = -(f["realized"].sum() - f["fee"].sum())
    assert loss == pytest.approx(100.0, rel=1e-9)
    # a 20 % stop lies beyond the liquidation price: the margin is what is lost, so
    #   exposure = 0.01 / (1 / 10 + 0.0005) = 0.0995025 -> 9.95025 units
    res2 = pb.backtest(m, long_all_along(m), leverage=10, stop=0.2,
                       sizing=pb.RiskPerTrade(0.01))
    assert res2.fills["qty"].iloc[0] == pytest.approx(0.01 / 0.1005 * 100, rel=1e-12)


def alternating_market(n=12):
    # closes alternate 100, 101: log returns +-r, r = ln(1.01)
    rows = [(100.0, 100.0, 100.0, 100.0) if t % 2 == 0 else (101.0, 101.0, 101.0, 101.0)
            for t in range(n)]
    return make_market({"A": rows})


def test_vol_target_and_kelly_from_the_return_history():
    # lookback 4 at bar 4 (the decision bar of the first defined estimate): returns of bars
    # 1..4 = [+r, -r, +r, -r], sample variance 4 r^2 / 3, hourly bars: 8,760 a year.
    m = alternating_market()
    target = pd.DataFrame(np.nan, index=m.index, columns=["A"])
    target.iloc[4] = 1.0
    r = math.log(1.01)
    var = 4 * r * r / 3
    vol = math.sqrt(var) * math.sqrt(8760)
    res = pb.backtest(m, target, sizing=pb.VolTarget(0.5, lookback=4))
    # 0.5 / vol = 0.5 / 0.8543... -> exposure 0.585; fill at bar 5's open (101)
    assert res.fills["qty"].iloc[0] == pytest.approx(0.5 / vol * 10_000 / 101, rel=1e-9)
    res = pb.backtest(m, target, sizing=pb.Kelly(edge=1e-5, fraction=0.5, lookback=4))
    assert res.fills["qty"].iloc[0] == pytest.approx(0.5 * 1e-5 / var * 10_000 / 101, rel=1e-9)


def test_a_size_above_the_leverage_is_capped_and_recorded():
    m = make_market({"A": [FLAT] * 4})
    res = pb.backtest(m, long_all_along(m), leverage=10, sizing=pb.EquityFraction(20.0))
    assert res.fills["qty"].iloc[0] == pytest.approx(10 * 10_000 / 100)
    caps = res.sizing_caps
    assert len(caps) == 1 and caps["wanted"].iloc[0] == 20.0 and caps["size"].iloc[0] == 10.0


def test_strategy_default_sizing_and_override():
    class Long(pb.Strategy):
        default_sizing = pb.EquityFraction(0.25)

        def signals(self, m):
            return pb.Targets(long=pd.DataFrame(True, index=m.index, columns=list(m.symbols)))

    m = make_market({"A": [FLAT] * 4})
    assert pb.backtest(m, Long()).fills["qty"].iloc[0] == pytest.approx(25.0)
    assert pb.backtest(m, Long(), sizing=pb.EquityFraction(0.5)).fills["qty"].iloc[0] == \
        pytest.approx(50.0)


def test_which_stop_and_sizing_survive_at_10_25_50x():
    # the research entry point: one call, one row per stop x sizing x leverage, with the
    # liquidation, distance-to-liquidation and stop-beyond-liquidation columns
    class Trend(pb.Strategy):
        def signals(self, m):
            up = m.close > m.close.rolling(24).mean()
            return pb.Targets(long=up, short=~up & m.close.rolling(24).mean().notna())

    market = pb.data.scenario("flash_crash", seed=3)
    table = pb.sweep(market, Trend, {}, stop=[0.01, pb.StopLoss(0.02, trailing=True)],
                     sizing=[pb.EquityFraction(5.0), pb.RiskPerTrade(0.02)],
                     leverage=[10, 25, 50], progress=False)
    assert len(table) == 2 * 2 * 3
    for col in ("liquidations", "min_liq_distance", "stops_beyond_liq", "total_return"):
        assert col in table.columns
    # the same row as a single backtest of that combination
    row = table.iloc[-1]
    single = pb.backtest(market, Trend(), stop=row["stop"], sizing=row["sizing"],
                         leverage=row["leverage"]).stats()
    assert row["total_return"] == pytest.approx(single["total_return"], rel=1e-12)


def test_sweep_takes_atr_and_trailing_stops():
    # an ATR stop has no pct: the sweep validates it through the same rules as pb.backtest
    class Trend(pb.Strategy):
        def signals(self, m):
            up = m.close > m.close.rolling(24).mean()
            return pb.Targets(long=up)

    market = pb.data.scenario("flash_crash", seed=3)
    table = pb.sweep(market, Trend, {}, stop=[pb.StopLoss(atr=2.0),
                                              pb.StopLoss(0.02, trailing=True)],
                     leverage=[10], progress=False)
    single = pb.backtest(market, Trend(), stop=pb.StopLoss(atr=2.0), leverage=10).stats()
    assert table["total_return"].iloc[0] == pytest.approx(single["total_return"], rel=1e-12)
