"""Hand-derived golden cases, one per engine step (DESIGN section 4).

Every expected number is derived in the comments from the formulas of DESIGN section 5 and
Binance's one-way liquidation formula, never read back from the engine.
Common setup unless stated: 10,000 USDT, tier 1 mmr 0.5 % (maint amount 0), no trading fee.
"""

from __future__ import annotations

import numpy as np
import pytest

import perpbt as pb
from tests.helpers import make_market, targets_frame, test_instrument

FLAT = (100.0, 100.0, 100.0, 100.0)


def run(market, rows, **kw):
    kw.setdefault("venue", "binance")
    kw.setdefault("liquidation", "takeover")  # the core engine's policy; others: test_policies
    return pb.backtest(market, targets_frame(market, rows), **kw)


# ---- step 1: funding sign and timing -------------------------------------------------------
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_funding_sign_and_timing(side):
    # target decided at bar 0's close -> filled at bar 1's open at 100:
    # qty = 1.0 * 10,000 / 100 = 100 units. Settlements: bar 1 (rate 0.002) happens before the
    # fill (position 0: nothing paid); bar 3 (rate 0.001): payment = -side * 100 * 100 * 0.001
    # = -10 * side (the long pays 10, the short receives 10).
    m = make_market({"A": [FLAT] * 6}, funding={"A": [(1, 0.002), (3, 0.001)]})
    res = run(m, {"A": {0: side}}, margin="isolated", leverage=10)
    f = res.funding
    assert list(f["bar"]) == [3]
    assert f["payment"].iloc[0] == pytest.approx(-10.0 * side, rel=1e-12)
    # equity drops (long) / rises (short) by 10 exactly at bar 3 and not before
    eq = res.equity["equity"].to_numpy()
    assert eq[2] == pytest.approx(10_000.0, rel=1e-12)
    assert eq[3] == pytest.approx(10_000.0 - 10.0 * side, rel=1e-12)
    assert res.stats()["funding_paid"] == pytest.approx(10.0 * side, rel=1e-12)


# ---- step 5 + liquidation: a 10-bar isolated long liquidated where the formula says --------
LIQ_BARS = [FLAT, FLAT, (100, 100, 98, 99), (99, 99, 96, 97), (97, 97, 94, 95), (95, 95, 92, 93),
            (93, 93, 91, 91.5), (91.5, 92, 90, 90.5), (90.5, 91, 89, 90), (90, 90, 88, 89)]
LIQ_MARK = [FLAT, FLAT, (100, 100, 98.5, 99), (99, 99, 96.5, 97), (97, 97, 94.5, 95),
            (95, 95, 92.5, 93), (93, 93, 91.2, 91.5), (91.5, 92, 90.3, 90.5), (90.5, 91, 89.5, 90),
            (90, 90, 88.5, 89)]


def test_isolated_long_liquidated_at_formula_price():
    # exposure 5 at leverage 10: qty = 5 * 10,000 / 100 = 500, margin = 500 * 100 / 10 = 5,000.
    # Binance isolated: LP = (M + cum - q*E) / (q*mmr - q) = (5,000 - 50,000) / (500*0.005 - 500)
    #   = -45,000 / -497.5 = 90.45226130653266 (tier 1: 500 * 90.45 = 45,226 < 1,000,000).
    # Bankruptcy: BP = E - M/q = 100 - 10 = 90.
    # Bar 7: mark open 91.5, mark low 90.3 (pessimistic long: low first) -> trigger on segment 0
    #   at s = (90.452261 - 91.5) / (90.3 - 91.5) = 0.873116.  Bar 6's mark low 91.2 > LP.
    # Takeover: X = 500 * (90.452261 - 90) = 226.1307; clearance 1 %: min(0.01*500*90, X)
    #   = min(450, 226.13) = 226.13 -> insurance change 0. User loses the 5,000 margin.
    inst = {"A": test_instrument("A", clearance_fee=0.01)}
    m = make_market({"A": LIQ_BARS}, mark={"A": LIQ_MARK}, instruments=inst)
    res = run(m, {"A": {0: 5.0}}, margin="isolated", leverage=10)
    lp = 45_000 / 497.5
    liq = res.liquidations
    assert len(liq) == 1
    row = liq.iloc[0]
    assert row["bar"] == 7
    assert row["trigger_mark"] == pytest.approx(lp, rel=1e-12)
    assert row["liq_price"] == pytest.approx(lp, rel=1e-12)
    assert row["s"] == pytest.approx((lp - 91.5) / (90.3 - 91.5), rel=1e-9)
    assert row["bankruptcy_price"] == pytest.approx(90.0, rel=1e-12)
    assert row["user_loss"] == pytest.approx(5_000.0, rel=1e-12)
    assert row["clearance_fee"] == pytest.approx(500 * (lp - 90), rel=1e-9)
    assert row["insurance_change"] == pytest.approx(0.0, abs=1e-9)
    # the liquidation price is tracked at every bar while open
    eq = res.equity
    assert eq["A:liq_price"].iloc[1:7].to_numpy() == pytest.approx(np.full(6, lp), rel=1e-12)
    # wallet: 10,000 - 5,000 margin lost, flat afterwards
    assert eq["wallet"].iloc[7] == pytest.approx(5_000.0, rel=1e-12)
    assert eq["equity"].iloc[9] == pytest.approx(5_000.0, rel=1e-12)
    trade = res.trades.iloc[0]
    assert trade["liquidated"] and trade["exit_reason"] == "liquidation"


def test_isolated_liq_price_with_fees_is_closer():
    # taker 0.05 %, clearance 0.5 %: open fee = 50,000 * 0.0005 = 25, paid from the free
    # balance (10,000 - 5,000 margin posted) -> margin stays 5,000, fees_outside = 25.
    # with fees: M' = 5,000 - 25 = 4,975, close rate = 0.005 + 0.0005 = 0.0055:
    #   LPf = (q*E - M') / (q*(1 - mmr - cfr)) = (50,000 - 4,975) / (500 * (1 - 0.005 - 0.0055))
    #       = 45,025 / 494.75 = 91.00555836280950
    inst = {"A": test_instrument("A", taker_fee=0.0005, clearance_fee=0.005)}
    m = make_market({"A": LIQ_BARS[:3]}, mark={"A": LIQ_MARK[:3]}, instruments=inst)
    res = run(m, {"A": {0: 5.0}}, margin="isolated", leverage=10)
    t = res.trades.iloc[0]
    assert t["liq_price"] == pytest.approx(45_000 / 497.5, rel=1e-12)
    assert t["liq_price_fees"] == pytest.approx(45_025 / 494.75, rel=1e-12)
    assert t["liq_gap"] == pytest.approx(45_025 / 494.75 - 45_000 / 497.5, rel=1e-9)


# ---- step 2: a stop that gaps through fills at the open -----------------------------------
def test_stop_gaps_through_fills_at_open():
    # long 100 units at 100 (exposure 1), stop 5 % -> level 95. Bar 2 closes 96; bar 3 opens
    # at 93 (gap below 95): the stop fills at the open 93, not at 95.
    # realized = 100 * (93 - 100) = -700 -> equity 9,300.
    bars = [FLAT, FLAT, (100, 100, 96, 96), (93, 94, 92, 94), (94, 94, 94, 94)]
    m = make_market({"A": bars})
    res = run(m, {"A": {0: 1.0}}, margin="isolated", leverage=10, stop=0.05)
    stop_fills = res.fills[res.fills["reason"] == "stop_loss"]
    assert len(stop_fills) == 1
    f = stop_fills.iloc[0]
    assert (f["bar"], f["s"], f["price"]) == (3, 0.0, 93.0)
    assert f["realized"] == pytest.approx(-700.0, rel=1e-12)
    assert res.equity["equity"].iloc[-1] == pytest.approx(9_300.0, rel=1e-12)


def test_stop_inside_bar_fills_at_level():
    # same position, bar 2 trades down to 94 from an open of 99: the stop at 95 fills at 95;
    # s = (95 - 99) / (94 - 99) = 0.8 on segment 0 (pessimistic long: low first).
    bars = [FLAT, FLAT, (99, 99.5, 94, 98), FLAT]
    m = make_market({"A": bars})
    res = run(m, {"A": {0: 1.0}}, margin="isolated", leverage=10, stop=0.05)
    f = res.fills[res.fills["reason"] == "stop_loss"].iloc[0]
    assert f["bar"] == 2 and f["price"] == 95.0
    assert f["s"] == pytest.approx(0.8, rel=1e-12)


# ---- step 4: stop versus liquidation inside one bar ---------------------------------------
# exposure 20 at leverage 20: qty 2,000, margin 200,000/20 = 10,000 (the whole wallet).
# LP = (q*E - M)/(q*(1 - mmr)) = (200,000 - 10,000) / (2,000 * 0.995) = 95.47738693467336.
RACE_LAST = [FLAT, FLAT, (100, 100, 94, 95), FLAT]
RACE_MARK = [FLAT, FLAT, (100, 100, 94.5, 95), FLAT]


def test_race_stop_before_liquidation():
    # stop 4 % -> 96 on last: s = (96 - 100)/(94 - 100) = 0.6667; liquidation on mark at
    # s = (95.477387 - 100)/(94.5 - 100) = 0.8223 -> the stop wins, fills at 96:
    # realized = 2,000 * (96 - 100) = -8,000 -> equity 2,000.
    m = make_market({"A": RACE_LAST}, mark={"A": RACE_MARK})
    res = run(m, {"A": {0: 20.0}}, margin="isolated", leverage=20, stop=0.04)
    assert len(res.liquidations) == 0
    f = res.fills[res.fills["reason"] == "stop_loss"].iloc[0]
    assert f["price"] == 96.0 and f["s"] == pytest.approx(4 / 6, rel=1e-12)
    assert res.equity["equity"].iloc[-1] == pytest.approx(2_000.0, rel=1e-12)
    assert not res.trades.iloc[0]["stop_beyond_liq"]


def test_race_liquidation_before_stop_beyond_liq():
    # stop 5 % -> 95 lies beyond LP 95.4774: flagged stop_beyond_liq. Liquidation on mark at
    # s = 0.8223 comes before the last price reaches 95 at s = (95-100)/(94-100) = 0.8333.
    # Isolated takeover: the user loses the 10,000 margin -> equity 0, account bust.
    m = make_market({"A": RACE_LAST}, mark={"A": RACE_MARK})
    res = run(m, {"A": {0: 20.0}}, margin="isolated", leverage=20, stop=0.05)
    lp = 190_000 / 1_990
    liq = res.liquidations.iloc[0]
    assert liq["s"] == pytest.approx((lp - 100) / (94.5 - 100), rel=1e-9)
    assert liq["user_loss"] == pytest.approx(10_000.0, rel=1e-12)
    assert (res.fills["reason"] == "stop_loss").sum() == 0
    assert res.trades.iloc[0]["stop_beyond_liq"]
    assert res.stats()["stops_beyond_liq"] == 1
    assert res.bust


def test_last_wick_fires_stop_but_not_liquidation():
    # last wicks to 90 while the mark only reaches 97: the 4 % stop at 96 fires on last;
    # the mark never reaches LP 95.477, so no liquidation.
    m = make_market({"A": [FLAT, FLAT, (100, 100, 90, 99), FLAT]},
                    mark={"A": [FLAT, FLAT, (100, 100, 97, 99), FLAT]})
    res = run(m, {"A": {0: 20.0}}, margin="isolated", leverage=20, stop=0.04)
    assert len(res.liquidations) == 0
    assert res.fills[res.fills["reason"] == "stop_loss"]["price"].iloc[0] == 96.0


# ---- cross versus isolated ------------------------------------------------------------------
def _two_symbol_crash():
    # A falls from 100 to 80 in bar 2 (mark too); B stays at 100.
    a = [FLAT, FLAT, (100, 100, 80, 80), (80, 80, 80, 80)]
    b = [FLAT, FLAT, FLAT, FLAT]
    return make_market({"A": a, "B": b})


def test_cross_one_symbol_liquidates_whole_account():
    # exposures 5 and 5 at leverage 10: qty 500 of each at 100. Cross condition with A's mark
    # M and B at 100: 10,000 + 500*(M - 100) <= 500*M*0.005 + 500*100*0.005
    #   -> 497.5 M <= 40,250 -> M = 80.904522613 (> 80, reached in bar 2).
    # Trigger s on segment 0: (80.904523 - 100) / (80 - 100) = 0.954774.
    # Equity at the trigger: 10,000 + 500*(80.904523 - 100) = 452.26 = sum of requirements
    # (202.26 + 250). Both positions close; the wallet ends at 0 and the account is bust.
    m = _two_symbol_crash()
    res = run(m, {"A": {0: 5.0}, "B": {0: 5.0}}, margin="cross", leverage=10)
    liq = res.liquidations
    assert len(liq) == 2 and liq["event_id"].nunique() == 1
    trig = 40_250 / 497.5
    a_row = liq[liq["symbol"] == "A"].iloc[0]
    assert a_row["trigger_mark"] == pytest.approx(trig, rel=1e-9)
    assert a_row["s"] == pytest.approx((trig - 100) / (80 - 100), rel=1e-9)
    # equity split by maintenance margin: A 202.2613 (500*80.9045*0.005), B 250
    equity = 10_000 + 500 * (trig - 100)
    assert liq["user_loss"].sum() == pytest.approx(10_000.0, rel=1e-9)
    b_row = liq[liq["symbol"] == "B"].iloc[0]
    # B's bankruptcy price: 100 - share_B/500 with share_B = equity * 250 / (202.26 + 250)
    share_b = equity * 250 / (500 * trig * 0.005 + 250)
    assert b_row["bankruptcy_price"] == pytest.approx(100 - share_b / 500, rel=1e-9)
    assert res.equity["wallet"].iloc[-1] == pytest.approx(0.0, abs=1e-6)
    assert res.bust


def test_isolated_same_trades_lose_one_margin_only():
    # isolated: margins 5,000 each (the whole wallet posted). A's LP = 90.4523 (see above),
    # reached in bar 2: the user loses A's 5,000 margin; B is untouched at 100.
    m = _two_symbol_crash()
    res = run(m, {"A": {0: 5.0}, "B": {0: 5.0}}, margin="isolated", leverage=10)
    liq = res.liquidations
    assert list(liq["symbol"]) == ["A"]
    assert liq["user_loss"].iloc[0] == pytest.approx(5_000.0, rel=1e-12)
    assert res.equity["equity"].iloc[-1] == pytest.approx(5_000.0, rel=1e-12)
    assert res.equity["B:position"].iloc[-1] == pytest.approx(500.0)
    assert not res.bust


# ---- orders: limits, lot rounding, flips -----------------------------------------------------
def test_flip_is_two_fills_and_fees():
    # long 1.0 then short 1.0 with taker 0.1 %: bar 1 buys 100 @100 (fee 10); bar 3 opens at
    # 110: E = 10,000 - 10 + 100*10 = 10,990 -> short qty = 10,990 / 110 = 99.909090...
    # fills: close 100 @110 (realized +1,000, fee 11), open short 99.90909 @110 (fee 10.99).
    bars = [FLAT, FLAT, (100, 110, 100, 110), (110, 110, 110, 110), (110, 110, 110, 110)]
    inst = {"A": test_instrument("A", taker_fee=0.001)}
    m = make_market({"A": bars}, instruments=inst)
    res = run(m, {"A": {0: 1.0, 2: -1.0}}, margin="cross", leverage=10)
    f = res.fills
    assert list(f["qty"].round(6)) == [100.0, -100.0, round(-10_990 / 110, 6)]
    assert list(f["fee"].round(9)) == [10.0, 11.0, round(10.99, 9)]
    assert f["realized"].iloc[1] == pytest.approx(1_000.0)
    assert res.stats()["fees_paid"] == pytest.approx(31.99)


def test_lot_rounding_and_tier_cut():
    # lot 0.1: exposure 1 -> 10,000 / 300 = 33.33.. -> 33.3 units.
    inst = {"A": test_instrument("A", lot_size=0.1)}
    m = make_market({"A": [(300, 300, 300, 300)] * 3}, instruments=inst)
    res = run(m, {"A": {0: 1.0}}, margin="isolated", leverage=10)
    assert res.fills["qty"].iloc[0] == pytest.approx(33.3)
    # leverage 60 is allowed only up to tier 1's cap (100x to 1,000,000; tier 2 allows 50x):
    # exposure 60 on 20,000 capital wants 1,200,000 notional -> cut to 1,000,000 and recorded.
    m2 = make_market({"A": [FLAT] * 3})
    res2 = run(m2, {"A": {0: 60.0}}, margin="isolated", leverage=60, initial_capital=20_000)
    assert res2.fills["qty"].iloc[0] == pytest.approx(10_000.0)
    assert list(res2.orders["status"]) == ["cut_tier"]


def test_leverage_above_max_and_exposure_above_leverage_raise():
    m = make_market({"A": [FLAT] * 3})
    with pytest.raises(ValueError, match=r"leverage 150 for A is above the instrument's maximum"):
        run(m, {"A": {0: 1.0}}, leverage=150)
    with pytest.raises(ValueError, match=r"exposure 12 for A at .* exceeds leverage 10"):
        run(m, {"A": {1: 12.0}}, margin="isolated", leverage=10)


def test_funding_outside_coverage_is_an_error_unless_zero():
    m = make_market({"A": [FLAT] * 12})
    m.arrays["funding_covered"][6:, 0] = False
    with pytest.raises(ValueError, match=r"A: a position is open at .* outside the funding"):
        run(m, {"A": {0: 1.0}})
    res = run(m, {"A": {0: 1.0}}, funding="zero")
    assert res.equity["A:position"].iloc[-1] == pytest.approx(100.0)


# ---- venues and dated tier tables ---------------------------------------------------------
@pytest.mark.parametrize("venue, expected_lp", [
    # exposure 5 at leverage 10, qty 500 @ 100, margin 5,000, mmr 0.5 %, taker fee 0.05 %
    # paid from the free balance (margin stays 5,000):
    # bybit (maintenance margin at entry value): MM = 500*100*0.005 = 250,
    #   LP = E - (IM - MM)/q = 100 - (5,000 - 250)/500 = 90.5
    ("bybit", 90.5),
    # okx (taker fee in the requirement): 5,000 + 500*(P - 100) = 500*P*(0.005 + 0.0005)
    #   -> P = 45,000 / (500 * 0.9945) = 90.49773755656109
    ("okx", 45_000 / 497.25),
    # binance: 45,000 / 497.5 = 90.45226130653266 (see above)
    ("binance", 45_000 / 497.5),
])
def test_each_venue_liquidates_at_its_own_formula(venue, expected_lp):
    inst = {"A": test_instrument("A", taker_fee=0.0005)}
    m = make_market({"A": LIQ_BARS}, mark={"A": LIQ_MARK}, instruments=inst)
    res = run(m, {"A": {0: 5.0}}, margin="isolated", leverage=10, venue=venue)
    assert res.trades.iloc[0]["liq_price"] == pytest.approx(expected_lp, rel=1e-12)
    liq = res.liquidations.iloc[0]
    assert liq["bar"] == 7 and liq["trigger_mark"] == pytest.approx(expected_lp, rel=1e-12)


def test_dated_tier_table_switches_at_its_date():
    # table 1 (from the start): mmr 0.5 %; table 2 from bar 3: mmr 2 % (amounts 0 in tier 1).
    # long qty 500 @ 100, margin 5,000 (exposure 5, leverage 10):
    #   LP = (50,000 - 5,000) / (500 * (1 - mmr)): 90.4523 before bar 3, 45,000/490 = 91.8367
    #   from bar 3 on.
    from perpbt.instruments import Instrument, load_tiers
    from tests.helpers import T0_MS, HOUR_MS, TEST_TIERS

    later = [dict(TEST_TIERS[0], maintenanceMarginRate=0.02, maxLeverage=40),
             dict(TEST_TIERS[1], maintenanceMarginRate=0.03, maintAmt=10_000.0)]
    tables = (load_tiers(TEST_TIERS, illustrative=True),
              load_tiers(later, effective_from_ms=T0_MS + 3 * HOUR_MS, illustrative=True))
    inst = {"A": Instrument("A", tables, taker_fee=0.0, clearance_fee=0.0)}
    m = make_market({"A": [FLAT] * 6}, instruments=inst)
    res = run(m, {"A": {0: 5.0}}, margin="isolated", leverage=10)
    lp = res.equity["A:liq_price"].to_numpy()
    assert lp[1:3] == pytest.approx([45_000 / 497.5] * 2, rel=1e-12)
    assert lp[3:] == pytest.approx([45_000 / 490] * 3, rel=1e-12)
