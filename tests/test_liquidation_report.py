"""The fee sensitivity of the liquidation price, made visible (issue 3, item 3)."""

from __future__ import annotations

import pandas as pd
import pytest

import perpbt as pb
from perpbt.margin import liquidation_price
from perpbt.venues import instrument_for
from tests.helpers import make_market, targets_frame

SYM = "BTC/USDT:USDT"
E = 50_000.0
FLAT = (E, E, E, E)


def test_fees_at_25x_exceed_one_tier_step_of_btcusdt():
    # Binance BTCUSDT, table of 2023-01-13 (bundled, in force for these 2020 bars): tier 1 mmr
    # 0.40 % up to 50,000 notional, tier 2 0.50 %. At 25x the margin is 4 % of notional; the
    # open and close taker fees at 0.06 % are 0.12 % of notional = 0.12 / 4 = 3 % of the
    # margin, more than the 0.10 % tier step.
    assert 2 * 0.0006 == pytest.approx(0.03 * (1 / 25))
    assert 2 * 0.0006 > 0.0050 - 0.0040
    # Capital 2,000, exposure 12.5, leverage 25: notional 25,000 (tier 1), q = 0.5 BTC, margin
    # 1,000 posted; the 15 open fee is paid from the free balance (1,000), so the margin stays.
    #   LP without fees  = (qE - M) / (q (1 - mmr))        = 24,000 / 0.498  = 48,192.771
    #   LP with fees     = (qE - (M - 15)) / (q (1 - mmr - 0.0006)) = 24,015 / 0.4977
    #                    = 48,251.959  (clearance fee 0 here: "before any clearance fee")
    #   LP one tier up   = 24,000 / (0.5 * 0.995)          = 48,241.206
    lp = 24_000 / 0.498
    lp_fees = 24_015 / 0.4977
    lp_next_tier = 24_000 / 0.4975
    assert liquidation_price("long", 0.5, E, 1_000, 0.004) == pytest.approx(lp, rel=1e-12)
    assert lp_fees > lp_next_tier > lp  # the fees move it further than a whole tier step
    # the engine reports both prices and the gap; a mark low of 48,220 lies between them
    inst = {SYM: instrument_for("binance", SYM, taker_fee=0.0006, clearance_fee=0.0)}
    bars = [FLAT, FLAT, (E, E, 48_220.0, E), FLAT]
    m = make_market({SYM: bars}, instruments=inst)
    res = pb.backtest(m, targets_frame(m, {SYM: {0: 12.5}}), venue="binance",
                      margin="isolated", leverage=25, initial_capital=2_000)
    trade = res.trades.iloc[0]
    assert trade["liq_price"] == pytest.approx(lp, rel=1e-12)
    assert trade["liq_price_fees"] == pytest.approx(lp_fees, rel=1e-12)
    assert trade["liq_gap"] == pytest.approx(lp_fees - lp, rel=1e-9)
    assert trade["liq_gap_pct"] == pytest.approx((lp_fees - lp) / E, rel=1e-9)  # 0.118 %
    assert trade["liq_gap_pct"] > 0.001
    report = res.liquidation_report()
    row = report.loc[SYM]
    # the mark low 48,220 stayed above the trigger price but went past the price with fees
    assert row["min_distance"] == pytest.approx((48_220 - lp) / 48_220, rel=1e-9)
    assert row["min_distance_with_fees"] == pytest.approx((48_220 - lp_fees) / 48_220, rel=1e-9)
    assert row["bars_past_liq_price_with_fees"] == 1
    assert row["liquidations"] == 0
    assert row["mean_gap_pct_of_entry"] == pytest.approx((lp_fees - lp) / E, rel=1e-9)
    assert isinstance(report, pd.DataFrame) and row["leverage"] == 25
