"""Liquidation policies ioc, tiered and multibar, hand-derived (DESIGN sections 5 and 6).

Every expected number is derived in the comments from the policy rules of
perpbt/engine/forced.py (DESIGN 5) and Binance's one-way formulas, never read from the engine.
Mark = last in these markets unless stated; no trading fee.

Two-tier table used for the partial cases (continuous at the floor: 10,000 * (5 % - 1 %) =
400):  tier 1 [0, 10,000) mmr 1 %, amount 0, 50x;  tier 2 [10,000, 1e9) mmr 5 %, amount 400,
20x. Clearance fee 0.5 %.

Position: long 200 units at 100 (notional 20,000, tier 2); isolated margin 2,000 (exposure 2
at 10x on 10,000), or cross with a 2,000 wallet (exposure 10 at 20x). Either way the trigger
solves 2,000 + 200 (m - 100) = 200 * m * 0.05 - 400  ->  190 m = 17,600  ->
m = 92.63157894736842 (notional 18,526.3: tier 2, so the tier-2 row is the right one).
Margin balance at the trigger = requirement = 10 m - 400 = 526.3157894736842.
Bar 2 runs 100 -> 92.3 -> 100 -> 94 (pessimistic long: low first), so the trigger is on
segment 0 at s = (100 - m) / (100 - 92.3).
"""

from __future__ import annotations

import numpy as np
import pytest

import perpbt as pb
from tests.helpers import make_market, targets_frame, test_instrument

M_TRIG = 17_600.0 / 190.0
TWO_TIERS = [
    {"minNotional": 0.0, "maxNotional": 10_000.0, "maintenanceMarginRate": 0.01,
     "maxLeverage": 50, "maintAmt": 0.0},
    {"minNotional": 10_000.0, "maxNotional": 1e9, "maintenanceMarginRate": 0.05,
     "maxLeverage": 20, "maintAmt": 400.0},
]
FLAT = (100.0, 100.0, 100.0, 100.0)
CRASH = [FLAT, FLAT, (100.0, 100.0, 92.3, 94.0)] + [(94.0, 95.0, 93.5, 94.5)] * 5


def crash_market():
    inst = {"A": test_instrument("A", clearance_fee=0.005, tiers=TWO_TIERS)}
    return make_market({"A": CRASH}, instruments=inst)


def run_partial(margin: str, policy: str):
    m = crash_market()
    if margin == "isolated":  # 2 * 10,000 / 100 = 200 units, margin 200 * 100 / 10 = 2,000
        return pb.backtest(m, targets_frame(m, {"A": {0: 2.0}}), margin="isolated",
                           leverage=10, initial_capital=10_000, liquidation=policy)
    # 10 * 2,000 / 100 = 200 units; initial margin 200 * 100 / 20 = 1,000 <= 2,000
    return pb.backtest(m, targets_frame(m, {"A": {0: 10.0}}), margin="cross", leverage=20,
                       initial_capital=2_000, liquidation=policy)


@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_tiered_reduction_stops_after_one_step(margin):
    # One step brings the notional at the trigger mark just below the tier-2 floor:
    # keep = 10,000 / m (1 - 1e-9) = 107.9545 units, sell q = 200 - keep = 92.0455 at m.
    # Then (isolated) margin balance 526.316 * keep / 200 = 284.09 > requirement
    # keep * m * 1 % = 100.0 + clearance on the rest 0.5 % * 10,000 = 50  -> compliant;
    # (cross) equity 526.316 - fee 0.5 % * q * m (42.63) = 483.68 > 100 + 50 -> compliant.
    # The step is the only one: a partial liquidation, the user keeps 107.95 units.
    res = run_partial(margin, "tiered")
    keep = 10_000.0 * (1 - 1e-9) / M_TRIG
    q = 200.0 - keep
    liq = res.liquidations
    assert len(liq) == 1
    row = liq.iloc[0]
    assert row["bar"] == 2 and row["full"] == 0 and row["bars"] == 1
    assert row["s"] == pytest.approx((100 - M_TRIG) / (100 - 92.3), rel=1e-9)
    assert row["trigger_mark"] == pytest.approx(M_TRIG, rel=1e-12)
    assert row["qty"] == pytest.approx(q, rel=1e-9)
    assert row["avg_fill"] == pytest.approx(M_TRIG, rel=1e-12)  # frictionless: last at s
    fee = 0.005 * q * M_TRIG  # = 0.005 * (18,526.3 - 10,000) = 42.63
    assert row["clearance_fee"] == pytest.approx(fee, rel=1e-9)
    assert row["user_loss"] == pytest.approx(q * (100 - M_TRIG) + fee, rel=1e-9)  # 720.86
    assert row["insurance_change"] == 0.0
    assert res.equity["A:position"].iloc[-1] == pytest.approx(keep, rel=1e-9)
    if margin == "isolated":  # margin released pro rata: 2,000 * keep / 200
        assert res.equity["A:isolated_margin"].iloc[2] == pytest.approx(2_000 * keep / 200,
                                                                         rel=1e-9)
    else:  # wallet: 2,000 - realized loss 678.23 - fee 42.63
        assert res.equity["wallet"].iloc[2] == pytest.approx(
            2_000 - q * (100 - M_TRIG) - fee, rel=1e-9)


@pytest.mark.parametrize("margin, kept", [
    # isolated: margin balance scales with the quantity kept k, the fee is paid outside it:
    #   h(k) = 526.316 k / 200 - (0.05 k m - 400) - 0.005 k m = 400 - 2.463158 k > 0
    #   <=> k < 400 / 2.463158 = 162.393162...
    ("isolated", 400.0 / (0.055 * M_TRIG - 526.3157894736842 / 200)),
    # cross: the fee on q = 200 - k leaves the shared equity:
    #   h(k) = 10 m - 400 - 0.005 (200 - k) m - (0.05 k m - 400) - 0.005 k m
    #        = 9 m - 0.05 k m > 0  <=>  k < 180
    ("cross", 180.0),
])
def test_ioc_stops_once_the_account_is_compliant(margin, kept):
    res = run_partial(margin, "ioc")
    q = 200.0 - kept
    liq = res.liquidations
    assert len(liq) == 1
    row = liq.iloc[0]
    assert row["full"] == 0 and row["bars"] == 1
    # the IOC stops at the smallest compliant quantity (the engine asks for a compliance
    # margin of 1e-9 of the notional, ~2e-5 quote here: ~4e-6 units)
    assert row["qty"] == pytest.approx(q, rel=1e-6)
    assert row["avg_fill"] == pytest.approx(M_TRIG, rel=1e-12)
    assert row["clearance_fee"] == pytest.approx(0.005 * q * M_TRIG, rel=1e-6)
    assert res.equity["A:position"].iloc[-1] == pytest.approx(kept, rel=1e-6)
    # the rest is not liquidated again: its new liquidation price (isolated: the tier-2 formula
    # with margin 2,000 k / 200 gives 92.144; cross 92.144 too) is below bar 2's low 92.3
    assert res.equity["A:liq_price"].iloc[2] < 92.3


def test_ioc_full_at_tier_one_fills_at_last_and_the_surplus_goes_to_the_venue():
    # The core golden case (test_golden.LIQ_BARS): long 500 at 100, isolated margin 5,000,
    # mmr 0.5 %, clearance 1 %. LP = 45,000 / 497.5 = 90.4523; BP = 90. Closing any part never
    # makes it compliant (the clearance on what is left, 1 %, exceeds the 0.5 % requirement
    # it frees), so the IOC sells all 500 at the last price at the trigger: last bar 7 runs
    # 91.5 -> 90 (low first), s = (90.4523 - 91.5) / (90.3 - 91.5) = 0.873116 on the mark,
    # last = 91.5 - 1.5 s = 90.19033. Transfer = 500 * (90.19033 - 90) = 95.16 = the venue's
    # gain G; fee = min(1 % * 500 * 90 = 450, G) = G; insurance change 0; user loses 5,000.
    from tests.engine.test_golden import LIQ_BARS, LIQ_MARK
    inst = {"A": test_instrument("A", clearance_fee=0.01)}
    m = make_market({"A": LIQ_BARS}, mark={"A": LIQ_MARK}, instruments=inst)
    res = pb.backtest(m, targets_frame(m, {"A": {0: 5.0}}), margin="isolated", leverage=10,
                      liquidation="ioc")
    lp = 45_000 / 497.5
    s = (lp - 91.5) / (90.3 - 91.5)
    fill = 91.5 - 1.5 * s
    row = res.liquidations.iloc[0]
    assert row["full"] == 1 and row["taken_over"] == 0.0
    assert row["avg_fill"] == pytest.approx(fill, rel=1e-9)
    assert row["clearance_fee"] == pytest.approx(500 * (fill - 90), rel=1e-9)
    assert row["insurance_change"] == pytest.approx(0.0, abs=1e-9)
    assert row["user_loss"] == pytest.approx(5_000.0, rel=1e-12)
    assert res.equity["wallet"].iloc[7] == pytest.approx(5_000.0, rel=1e-12)


@pytest.mark.parametrize("margin, capital, exposure", [("isolated", 10_000, 5.0),
                                                        ("cross", 5_000, 10.0)])
def test_tiered_takes_a_tier_one_position_over_whole(margin, capital, exposure):
    # 500 units at 100 either way (isolated margin 5,000; cross wallet 5,000): the trigger is
    # 90.45 (500 * 90.45 = 45,226 < 1,000,000: tier 1), and tiered = takeover at BP
    from tests.engine.test_golden import LIQ_BARS, LIQ_MARK
    inst = {"A": test_instrument("A", clearance_fee=0.01)}
    m = make_market({"A": LIQ_BARS}, mark={"A": LIQ_MARK}, instruments=inst)
    kw = dict(margin=margin, leverage=10, initial_capital=capital)
    tgt = targets_frame(m, {"A": {0: exposure}})
    a = pb.backtest(m, tgt, liquidation="tiered", **kw).liquidations
    b = pb.backtest(m, tgt, liquidation="takeover", **kw).liquidations
    cols = ["bar", "s", "trigger_mark", "bankruptcy_price", "qty", "avg_fill", "clearance_fee",
            "user_loss", "insurance_change", "taken_over"]
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[cols].to_numpy(dtype=float), b[cols].to_numpy(dtype=float),
                               rtol=1e-12)


@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_multibar_close_takes_three_bars_and_its_loss_matches_the_hand_computation(margin):
    # Long 500 units, mmr 0.5 %. Execution: half spread 0.1 %, stress 2, no impact, widening
    # off (exponents 0), participation 10 %. Bar 1 trades 10,000 (cap 1,000: the 500-unit buy
    # fills at once at 100 * 1.001 = 100.1); later bars trade 2,000 (cap 200).
    # isolated: exposure 5 at 10x on 10,000 -> margin 500 * 100.1 / 10 = 5,005, so
    #   BP = 100.1 - 5,005 / 500 = 90.09, LP = (500 * 100.1 - 5,005) / (500 * 0.995)
    #   = 45,045 / 497.5 = 90.5427; the user loses the margin, 5,005.
    # cross: exposure 10 at 20x on 5,000 -> 500 units, wallet 5,000 (no fee: the spread is in
    #   the price): BP = 100.1 - 5,000 / 500 = 90.1, LP: 5,000 + 500 (m - 100.1) = 2.5 m ->
    #   m = 45,050 / 497.5 = 90.5528; the user loses the whole wallet, 5,000.
    # Bar 2 falls 95 -> 88 (low first): trigger at last = LP; the forced sale is capped:
    #   bar 2: 200 at LP * (1 - 0.002); bar 3 open 87: 200 at 87 * 0.998 = 86.826;
    #   bar 4 open 85: 100 at 85 * 0.998 = 84.83  -> 3 bars.
    # Transfers side * q * (fill - BP) sum to the venue's gain G (negative: the fund covers
    # the sales below BP); clearance fee = min(0 * ..., max(G, 0)) = 0.
    bars = [FLAT, FLAT, (95.0, 95.0, 88.0, 89.0), (87.0, 88.0, 86.0, 87.0),
            (85.0, 86.0, 84.0, 85.0), (85.0, 86.0, 84.0, 85.0)]
    vol = [10_000.0, 10_000.0, 2_000.0, 2_000.0, 2_000.0, 2_000.0]
    m = make_market({"A": bars}, volume={"A": vol})
    exe = pb.Execution(base_half_spread=0.001, stress=2.0, impact_k=0.0, participation=0.1,
                       range_exponent=0.0, thin_exponent=0.0)
    entry = 100.0 * 1.001
    if margin == "isolated":
        capital, exposure, leverage, lost = 10_000.0, 5.0, 10, 5_005.0
        lp = (500 * entry - 5_005.0) / (500 * 0.995)
    else:
        capital, exposure, leverage, lost = 5_000.0, 10.0, 20, 5_000.0
        lp = (500 * entry - 5_000.0) / (500 * 0.995)
    bp = entry - lost / 500
    res = pb.backtest(m, targets_frame(m, {"A": {0: exposure}}), margin=margin,
                      leverage=leverage, initial_capital=capital, liquidation="multibar",
                      execution=exe)
    fills = [(200.0, lp * 0.998), (200.0, 87.0 * 0.998), (100.0, 85.0 * 0.998)]
    liq_fills = res.fills[res.fills["reason"] == "liquidation"]
    assert list(liq_fills["bar"]) == [2, 3, 4]
    np.testing.assert_allclose(-liq_fills["qty"].to_numpy(), [q for q, _ in fills], rtol=1e-12)
    np.testing.assert_allclose(liq_fills["price"].to_numpy(), [p for _, p in fills],
                               rtol=1e-9)
    row = res.liquidations.iloc[0]
    gain = sum(q * (p - bp) for q, p in fills)
    assert row["bars"] == 3 and row["full"] == 1 and row["taken_over"] == 0.0
    assert row["bankruptcy_price"] == pytest.approx(bp, rel=1e-12)
    assert row["trigger_mark"] == pytest.approx(lp, rel=1e-9)
    assert row["avg_fill"] == pytest.approx(sum(q * p for q, p in fills) / 500, rel=1e-9)
    assert row["clearance_fee"] == 0.0
    assert row["insurance_change"] == pytest.approx(gain, rel=1e-9)
    assert row["user_loss"] == pytest.approx(lost, rel=1e-12)
    # each sale moves the user's books as if it were at BP: once done the wallet is the
    # capital minus what was lost (cross: zero)
    assert res.equity["wallet"].iloc[4] == pytest.approx(capital - lost, abs=1e-6)
    assert res.equity["A:position"].iloc[4] == 0.0
    assert res.insurance_fund == pytest.approx(gain, rel=1e-9)
