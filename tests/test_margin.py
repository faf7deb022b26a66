"""perpbt.margin: published exchange examples, hand-derived cases and hypothesis properties.

Every expected number is derived in a comment from the inputs; none is copied from our output.
Reference helpers below (``_ref_*``) re-derive tiers and maintenance margin in plain Python so
the properties do not check the module against itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perpbt.enums import Venue
from perpbt.instruments import load_tiers
from perpbt.margin import (MaintenanceTier, bankruptcy_price, bankruptcy_price_nb,
                           funding_payment, liq_price_nb, liq_price_one_tier_nb,
                           liquidation_price, liquidation_price_tiered, maint_margin_nb,
                           maintenance_margin, maintenance_tier, tier_index_nb)


def _brackets(rows):
    """Binance /fapi/v1/leverageBracket dicts from (floor, cap, mmr, cum, leverage) rows."""
    return [dict(bracket=i + 1, notionalFloor=f, notionalCap=c, maintMarginRatio=m, cum=a,
                 initialLeverage=x) for i, (f, c, m, a, x) in enumerate(rows)]


# Real BTCUSDT brackets, current table: ../shared/data/binance_usdm/BTCUSDT/leverage_brackets.json
# ("brackets", from freqtrade 2026.9's binance_leverage_tiers.json = Binance leverageBracket).
BTC_ROWS = [(0.0, 3e5, 0.004, 0.0, 150), (3e5, 8e5, 0.005, 300.0, 100),
            (8e5, 3e6, 0.0065, 1500.0, 75), (3e6, 12e6, 0.01, 12000.0, 50),
            (12e6, 70e6, 0.02, 132000.0, 25), (70e6, 100e6, 0.025, 482000.0, 20),
            (100e6, 230e6, 0.05, 2982000.0, 10), (230e6, 480e6, 0.1, 14482000.0, 5),
            (480e6, 600e6, 0.125, 26482000.0, 4), (600e6, 800e6, 0.15, 41482000.0, 3),
            (800e6, 1200e6, 0.25, 121482000.0, 2), (1200e6, 1800e6, 0.5, 421482000.0, 1)]
BTC = _brackets(BTC_ROWS)

# Binance's 2021 tables in force when its cross-margin example (test 1) was written, as
# transcribed from Binance's web app by gist.github.com/highfestiva/b71e76f51eed84d56c1be8ebbcc286b5
# (BTCUSDT) and gist.github.com/crackcomm/e29582030d9eeac6c6124a7503cd0ac2 (ETHUSDT). Only the
# tier each example position sits in is stated by Binance's page itself (BTC 2.5 % / 16,300;
# ETH 10 % / 135,365); the other rows are third-party transcriptions.
BTC_2021 = _brackets([(0, 5e4, 0.004, 0, 125), (5e4, 2.5e5, 0.005, 50, 100),
                      (2.5e5, 1e6, 0.01, 1300, 50), (1e6, 1e7, 0.025, 16300, 20),
                      (1e7, 2e7, 0.05, 266300, 10), (2e7, 5e7, 0.10, 1266300, 5),
                      (5e7, 1e8, 0.125, 2516300, 4), (1e8, 2e8, 0.15, 5016300, 3),
                      (2e8, 3e8, 0.25, 25016300, 2), (3e8, 5e8, 0.5, 100016300, 1)])
ETH_2021 = _brackets([(0, 1e4, 0.005, 0, 100), (1e4, 1e5, 0.0065, 15, 75),
                      (1e5, 5e5, 0.01, 365, 50), (5e5, 1e6, 0.02, 5365, 25),
                      (1e6, 2e6, 0.05, 35365, 10), (2e6, 5e6, 0.10, 135365, 5),
                      (5e6, 1e7, 0.125, 260365, 4), (1e7, 2e7, 0.15, 510365, 3),
                      (2e7, 5e9, 0.25, 2510365, 2)])


def _ref_row(notional, rows=BTC_ROWS):
    """Last row whose floor <= notional (floor belongs to the upper tier); last row beyond."""
    chosen = rows[0]
    for row in rows:
        if row[0] <= notional:
            chosen = row
    return chosen


def _ref_mm(notional, rows=BTC_ROWS):
    _, _, mmr, amt, _ = _ref_row(notional, rows)
    return notional * mmr - amt


def _close(a, b, rel=1e-9, abs_=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ------------------------------------------------------------------ 1. Binance cross example

def test_binance_published_cross_example():
    """Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
    (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93), example inputs
    as transcribed in freqtrade tests/exchange/test_binance.py::test_liquidation_price_binance:
    one-way mode, cross, wallet balance WB = 1,535,443.01 USDT;
    BTCUSDT long 109.488 @ 32,481.98, mark 31,967.27 (MMR 2.5 %, cum 16,300);
    ETHUSDT long 3,683.979 @ 1,456.84, mark 1,335.18 (MMR 10 %, cum 135,365).
    """
    wb = 1_535_443.01
    # BTC notional at mark = 109.488 * 31,967.27 = 3,500,032.45776 (tier 1M-10M)
    # BTC MM = 3,500,032.45776 * 0.025 - 16,300 = 87,500.811444 - 16,300 = 71,200.811444
    # (the page's TMM1 for ETH: 71,200.81144)
    btc_mm = maintenance_margin(109.488 * 31_967.27, BTC_2021)
    assert _close(btc_mm, 71_200.811444, abs_=1e-6)
    # BTC UPNL = 109.488 * (31,967.27 - 32,481.98) = 109.488 * -514.71 = -56,354.56848
    btc_upnl = 109.488 * (31_967.27 - 32_481.98)
    # ETH notional at mark = 3,683.979 * 1,335.18 = 4,918,775.08122 (tier 2M-5M)
    # ETH MM = 491,877.508122 - 135,365 = 356,512.508122 (the page's TMM1 for BTC: 356,512.508)
    eth_mm = maintenance_margin(3_683.979 * 1_335.18, ETH_2021)
    assert _close(eth_mm, 356_512.508122, abs_=1e-6)
    # ETH UPNL = 3,683.979 * (1,335.18 - 1,456.84) = 3,683.979 * -121.66 = -448,192.88514
    eth_upnl = 3_683.979 * (1_335.18 - 1_456.84)

    # BTC: LP = (WB - TMM1 + UPNL1 + cumB - Side*Pos*EP) / (Pos*MMR - Side*Pos)
    #   Pos*EP = 109.488 * 32,481.98 = 3,556,387.02624
    #   num = 1,535,443.01 - 356,512.508122 - 448,192.88514 + 16,300 - 3,556,387.02624
    #       = -2,809,349.409502;  den = 109.488*0.025 - 109.488 = 2.7372 - 109.488 = -106.7508
    #   LP = 2,809,349.409502 / 106.7508 = 26,316.8933 -> 26,316.89
    lp_btc = liquidation_price("long", 109.488, 32_481.98, wb, 0.025, 16_300.0,
                               other_maint_margin=eth_mm, other_upnl=eth_upnl)
    assert abs(lp_btc - 26_316.89) < 0.01
    # ETH: Pos*EP = 3,683.979 * 1,456.84 = 5,366,967.96636
    #   num = 1,535,443.01 - 71,200.811444 - 56,354.56848 + 135,365 - 5,366,967.96636
    #       = -3,823,715.336284;  den = 3,683.979*0.10 - 3,683.979 = -3,315.5811
    #   LP = 3,823,715.336284 / 3,315.5811 = 1,153.2565 -> 1,153.26
    lp_eth = liquidation_price(1, 3_683.979, 1_456.84, wb, 0.10, 135_365.0,
                               other_maint_margin=btc_mm, other_upnl=btc_upnl)
    assert abs(lp_eth - 1_153.26) < 0.01
    # The tiers at the liquidation prices are the assumed ones: 109.488 * 26,316.89 = 2.88 M
    # (1M-10M) and 3,683.979 * 1,153.26 = 4.25 M (2M-5M), so the tiered solver agrees.
    assert _close(liquidation_price_tiered(1, 109.488, 32_481.98, wb, BTC_2021,
                                           other_maint_margin=eth_mm, other_upnl=eth_upnl), lp_btc)
    assert _close(liquidation_price_tiered("long", 3_683.979, 1_456.84, wb, ETH_2021,
                                           other_maint_margin=btc_mm, other_upnl=btc_upnl), lp_eth)


def test_binance_isolated_is_the_same_formula_without_others():
    # Isolated: TMM1 = UPNL1 = 0 (same page). ETH: (1,535,443.01 + 135,365 - 5,366,967.96636)
    # / -3,315.5811 = -3,696,159.95636 / -3,315.5811 = 1,114.78 (freqtrade's isolated case).
    lp = liquidation_price("long", 3_683.979, 1_456.84, 1_535_443.01, 0.10, 135_365.0)
    assert abs(lp - 1_114.78) < 0.01


# ------------------------------------------------------------------ 2. Bybit example

def test_bybit_published_isolated_example():
    """Bybit "Liquidation Price (USDT Contract)", example 1: long 1 BTC at 20,000, 50x, MMR 0.5 %.

    IM = 20,000 / 50 = 400; MM = 20,000 * 0.005 = 100; LP = 20,000 - (400 - 100) = 19,700;
    bankruptcy = 20,000 - 400 / 1 = 19,600. Short mirror: 20,000 + 300 = 20,300, BP 20,400.
    """
    assert _close(liquidation_price("long", 1.0, 20_000.0, 400.0, 0.005, venue="bybit"), 19_700.0)
    assert _close(bankruptcy_price("long", 1.0, 20_000.0, 400.0), 19_600.0)
    assert _close(liquidation_price("short", 1.0, 20_000.0, 400.0, 0.005, venue="bybit"), 20_300.0)
    assert _close(bankruptcy_price(-1, -1.0, 20_000.0, 400.0), 20_400.0)


# ------------------------------------------------------------------ 3. OKX, taker fee inside

def test_okx_isolated_taker_fee_in_requirement():
    """OKX "Tiered maintenance margin ratio rules": liquidation when equity <= maintenance
    margin + liquidation fee (taker fee on position value). Long 1 BTC at 50,000, margin 2,500,
    mmr 0.4 %, taker 0.05 %:  2,500 + (P - 50,000) = P * (0.004 + 0.0005)
    -> P * 0.9955 = 47,500 -> P = 47,714.716. Short: 2,500 - (P - 50,000) = 0.0045 P
    -> P * 1.0045 = 52,500 -> P = 52,264.808. Binance (no fee): 47,500 / 0.996 = 47,690.763.
    """
    kw = dict(venue="okx", taker_fee=0.0005)
    assert abs(liquidation_price("long", 1, 50_000, 2_500, 0.004, **kw) - 47_714.716) < 1e-3
    assert abs(liquidation_price("short", 1, 50_000, 2_500, 0.004, **kw) - 52_264.808) < 1e-3
    binance = liquidation_price("long", 1, 50_000, 2_500, 0.004, taker_fee=0.0005)
    assert abs(binance - 47_690.763) < 1e-3  # Binance ignores taker_fee in the trigger
    assert _close(liquidation_price("long", 1, 50_000, 2_500, 0.004, venue=Venue.okx,
                                    taker_fee=0.0005), 47_500 / 0.9955)


def test_liquidation_price_with_fees_hand_example():
    # Binance long 1 BTC @ 50,000, margin 2,500; open fee 0.0005 * 50,000 = 25 paid from
    # outside the margin -> 2,475; close_fee_rate = clearance 0.005 (illustrative) + taker
    # 0.0005 = 0.0055: P = (50,000 - 2,475) / (1 - 0.004 - 0.0055) = 47,525 / 0.9905 = 47,980.818
    lp = liquidation_price("long", 1, 50_000, 2_475, 0.004, close_fee_rate=0.0055)
    assert abs(lp - 47_980.818) < 1e-3


# ------------------------------------------------------------------ 4. tiers

def test_tier_floor_belongs_to_upper_tier():
    # 300,000 is BTC tier 2's floor: mmr 0.5 %, cum 300 -> MM = 1,500 - 300 = 1,200
    t = maintenance_tier(BTC, 300_000.0)
    assert t == MaintenanceTier(1, 300_000.0, 800_000.0, 0.005, 300.0, 100.0)
    assert _close(maintenance_margin(300_000.0, BTC), 1_200.0)
    # just below: tier 1, 299,999.99 * 0.004 = 1,199.99996 (continuous at the floor)
    assert maintenance_tier(BTC, 299_999.99).index == 0
    assert _close(maintenance_margin(299_999.99, BTC), 1_199.99996)
    assert maintenance_tier(BTC, 0.0).index == 0
    assert maintenance_tier(BTC, 1.8e9).index == 11  # equal to the last cap: last tier


@pytest.mark.parametrize("bad", [1.8e9 + 1.0, -1.0, float("nan"), float("inf")])
def test_tier_out_of_range_raises(bad):
    with pytest.raises(ValueError):
        maintenance_tier(BTC, bad)
    with pytest.raises(ValueError):
        maintenance_margin(bad, BTC)


@pytest.mark.shared_data
def test_ccxt_and_binance_shapes_agree(shared_data):
    brackets = json.loads((shared_data / "binance_usdm/BTCUSDT/leverage_brackets.json")
                          .read_text())["brackets"]
    ccxt = json.loads((shared_data / "binance_usdm/leverage_tiers/"
                       "binance_leverage_tiers_ccxt_2026-09.json").read_text())["BTC/USDT:USDT"]
    assert "maintAmt" not in ccxt[0]  # the amount comes from info['cum']
    assert brackets == BTC  # the typed table above is the file's
    notionals = [0.0, 1.0]
    for b in brackets:
        f, c = b["notionalFloor"], b["notionalCap"]
        notionals += [f, (f + c) / 2, c - 0.01]
    for n in notionals:
        assert maintenance_tier(ccxt, n) == maintenance_tier(brackets, n)
        assert maintenance_margin(n, ccxt) == maintenance_margin(n, brackets)
        assert maintenance_tier(brackets, n).index == BTC_ROWS.index(_ref_row(n))


def test_tier_kernels_padding_and_clamp():
    floor = np.array([0.0, 100.0, 200.0, 0.0])  # n_tiers=3, last entry is padding
    mmr = np.array([0.01, 0.02, 0.05, 9.0])
    amt = np.array([0.0, 1.0, 7.0, 9.0])  # 100*0.01 = 100*0.02 - 1; 200*0.02 - 1 = 200*0.05 - 7
    assert tier_index_nb(floor, 3, -5.0) == 0
    assert tier_index_nb(floor, 3, 100.0) == 1
    assert tier_index_nb(floor, 3, 1e12) == 2  # beyond the last cap: clamps, never raises
    assert tier_index_nb(floor, 2, 250.0) == 1  # n_tiers respected
    assert _close(maint_margin_nb(250.0, floor, mmr, amt, 3), 250 * 0.05 - 7)  # 5.5


# ------------------------------------------------------------------ tiered, by hand

def test_tiered_long_drops_to_lower_tier():
    # Long 8 BTC @ 40,000 (320,000: tier 2), margin 32,000. Tier 2 candidate:
    # (320,000 - 300 - 32,000) / (8 * 0.995) = 287,700 / 7.96 = 36,143.22 -> 8 * P = 289,145.7
    # < 300,000: not tier 2. Tier 1: (320,000 - 32,000) / (8 * 0.996) = 288,000 / 7.968
    # = 36,144.578 -> 289,156.6 in [0, 300,000): self-consistent.
    lp = liquidation_price_tiered("long", 8, 40_000, 32_000, BTC)
    assert _close(lp, 288_000 / 7.968)
    # Bybit keeps the entry tier: MM = 320,000 * 0.005 - 300 = 1,300;
    # LP = 40,000 - (32,000 - 1,300) / 8 = 40,000 - 3,837.5 = 36,162.5
    assert _close(liquidation_price_tiered("long", 8, 40_000, 32_000, BTC, venue="bybit"),
                  36_162.5)


def test_tiered_short_rises_to_upper_tier():
    # Short 7 BTC @ 40,000 (280,000: tier 1), margin 28,000. Tier 1 candidate:
    # 308,000 / (7 * 1.004) = 43,824.70 -> 306,772.9 >= 300,000: not tier 1. Tier 2:
    # (280,000 + 300 + 28,000) / (7 * 1.005) = 308,300 / 7.035 = 43,823.738 -> 306,766.2: tier 2.
    assert _close(liquidation_price_tiered("short", 7, 40_000, 28_000, BTC), 308_300 / 7.035)


def test_tiered_root_exactly_on_a_floor():
    # Long 10 @ 32,000 with M = 21,200: at P = 30,000 (notional 300,000 = tier 2's floor)
    # equity = 21,200 + 10 * (30,000 - 32,000) = 1,200 = MM (tier 1: 300,000 * 0.004 = 1,200;
    # tier 2: 1,500 - 300 = 1,200). Both tiers' closed forms give it: 298,800 / 9.96 = 30,000
    # and 298,500 / 9.95 = 30,000. Short 10 @ 28,000, M = 21,200: 21,200 - 20,000 = 1,200;
    # 301,200 / 10.04 = 301,500 / 10.05 = 30,000.
    assert _close(liquidation_price_tiered("long", 10, 32_000, 21_200, BTC), 30_000.0)
    assert _close(liquidation_price_tiered("short", 10, 28_000, 21_200, BTC), 30_000.0)


def test_kernel_edge_cases():
    # mmr + fees >= 1: no finite solution -> 0.0 for a long, inf for a short (den = q*(1+k))
    assert liq_price_one_tier_nb(1, 1.0, 100.0, 10.0, 0.6, 0.0, 0, 0.0, 0.0, 0.0, 0.5) == 0.0
    assert liq_price_one_tier_nb(-1, 1.0, 100.0, 10.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, -2.0) == np.inf
    # a long with margin > notional cannot be liquidated: (100 - 150) / 0.99 < 0 -> 0.0
    assert liquidation_price("long", 1, 100, 150, 0.01) == 0.0
    assert liquidation_price_tiered("long", 1, 100, 150, BTC) == 0.0
    # bankruptcy of a 1x long: 100 - 100 = 0; more margin floors at 0
    assert bankruptcy_price_nb(1, 1.0, 100.0, 150.0, 0.0) == 0.0
    # cross: other upnl -40 eats the cushion: BP = 100 + (50 - 40) / 1 = 110 for a short
    assert _close(bankruptcy_price("short", 1, 100, 50, other_upnl=-40), 110.0)


def test_argument_validation():
    with pytest.raises(ValueError):
        liquidation_price("sideways", 1, 100, 10, 0.01)
    with pytest.raises(ValueError):
        liquidation_price("long", -1, 100, 10, 0.01)  # sign inconsistent with side
    with pytest.raises(ValueError):
        liquidation_price("long", 0, 100, 10, 0.01)
    with pytest.raises(ValueError):
        liquidation_price("long", 1, 100, 10, 0.01, venue="ftx")
    with pytest.raises(ValueError):
        liquidation_price("long", 1, 100, 10, 1.0)
    assert liquidation_price(-1, -2, 100, 10, 0.01) == liquidation_price("short", 2, 100, 10, 0.01)
    assert isinstance(liquidation_price(np.int64(1), 1, 100, 10, 0.01, venue=np.int64(2)), float)


# ------------------------------------------------------------------ 5. properties

sides = st.sampled_from([1, -1])
qtys = st.floats(1e-3, 500.0)
prices = st.floats(100.0, 200_000.0)
leverages = st.floats(1.05, 125.0)


@pytest.mark.shared_data
@settings(deadline=None)
@given(data=st.data())
def test_maintenance_margin_continuous_at_real_floors(shared_data, data):
    sym = data.draw(st.sampled_from(["BTCUSDT", "ETHUSDT"]))
    doc = json.loads((shared_data / f"binance_usdm/{sym}/leverage_brackets.json").read_text())
    tables = [doc["brackets"]] + list(doc["historical"].values())
    rows = data.draw(st.sampled_from(tables))
    i = data.draw(st.integers(1, len(rows) - 1))
    eps = data.draw(st.floats(0.0, 1.0))
    floor, below_mmr = rows[i]["notionalFloor"], rows[i - 1]["maintMarginRatio"]
    at, below = maintenance_margin(floor, rows), maintenance_margin(floor - eps, rows)
    assert maintenance_tier(rows, floor).index == i
    # continuity: floor*mmr[i-1] - cum[i-1] == floor*mmr[i] - cum[i]; below moves by mmr[i-1]*eps
    assert abs(at - below) <= below_mmr * eps + 1e-6


@settings(deadline=None)
@given(side=sides, q=qtys, e=prices, lev=leverages, extra=st.floats(0.0, 1.0),
       venue=st.sampled_from([0, 1, 2]))
def test_liquidation_price_monotone_in_margin(side, q, e, lev, extra, venue):
    m1 = q * e / lev
    m2 = m1 + extra * q * e
    lp1 = liquidation_price_tiered(side, q, e, m1, BTC, venue=venue, taker_fee=0.0005)
    lp2 = liquidation_price_tiered(side, q, e, m2, BTC, venue=venue, taker_fee=0.0005)
    tol = 1e-9 * e
    if side == 1:
        assert lp2 <= lp1 + tol  # more margin: a long's LP moves down
    else:
        assert lp2 >= lp1 - tol  # a short's moves up


@settings(deadline=None)
@given(q=qtys, e=prices, lev=leverages, mmr=st.floats(0.0, 0.1), amt=st.floats(0.0, 1_000.0),
       taker=st.floats(0.0, 0.001), venue=st.sampled_from([0, 1, 2]))
def test_long_short_symmetry_before_fees(q, e, lev, mmr, amt, taker, venue):
    """One tier, close_fee_rate = 0. With k the per-notional requirement (binance mmr, okx
    mmr + taker) and MM_e = q*e*k - amt the requirement at entry, write the condition with
    d = distance to entry: long  M - q*d = q*(e - d)*k - amt  =>  M - MM_e = q*d*(1 - k);
    short M - q*d = q*(e + d)*k - amt  =>  M - MM_e = q*d*(1 + k). So both distances come from
    the same cushion C = (M - MM_e)/q: d_long*(1 - k) = d_short*(1 + k) = C. Bybit (requirement
    fixed at entry): d_long = d_short = C.
    """
    m = q * e / lev
    kw = dict(venue=venue, taker_fee=taker)
    lp_l = liquidation_price(1, q, e, m, mmr, amt, **kw)
    lp_s = liquidation_price(-1, q, e, m, mmr, amt, **kw)
    assume(lp_l > 0.0)
    k = mmr + (taker if venue == Venue.okx else 0.0)
    cushion = (m - (q * e * k - amt)) / q
    tol = 1e-9 * e
    for side, lp in ((1, lp_l), (-1, lp_s)):  # each satisfies its own condition
        req = q * (e if venue == Venue.bybit else lp) * k - amt
        assert abs(m + side * q * (lp - e) - req) <= 1e-9 * q * e
    if venue == Venue.bybit:
        assert abs((e - lp_l) - cushion) <= tol and abs((lp_s - e) - cushion) <= tol
    else:
        assert abs((e - lp_l) * (1 - k) - cushion) <= tol
        assert abs((lp_s - e) * (1 + k) - cushion) <= tol


@settings(deadline=None)
@given(side=sides, q=qtys, e=prices, lev=st.floats(1.05, 500.0), venue=st.sampled_from([0, 2]),
       taker=st.floats(0.0, 0.001), cfr=st.floats(0.0, 0.01), omm_f=st.floats(0.0, 0.05),
       upnl_f=st.floats(-0.1, 0.1))
def test_tiered_liquidation_price_is_self_consistent(side, q, e, lev, venue, taker, cfr, omm_f,
                                                      upnl_f):
    """Cross-style inputs: others' maintenance margin and upnl as fractions of this notional."""
    m = q * e / lev
    omm, oupnl = omm_f * q * e, upnl_f * q * e
    lp = liquidation_price_tiered(side, q, e, m, BTC, venue=venue, taker_fee=taker,
                                  close_fee_rate=cfr, other_maint_margin=omm, other_upnl=oupnl)
    assume(0.0 < lp < np.inf)
    k_extra = cfr + (taker if venue == Venue.okx else 0.0)
    equity = m + oupnl - omm + side * q * (lp - e)
    req = _ref_mm(q * lp) + k_extra * q * lp
    assert abs(equity - req) <= 1e-6 * max(abs(req), 1e-3 * q * e)
    # in its own tier: that tier's closed form gives the same price
    _, _, mmr, amt, _ = _ref_row(q * lp)
    own = liquidation_price(side, q, e, m, mmr, amt, venue=venue, taker_fee=taker,
                            close_fee_rate=cfr, other_maint_margin=omm, other_upnl=oupnl)
    assert _close(own, lp, rel=1e-9, abs_=1e-9 * e)


@settings(deadline=None)
@given(side=sides, q=qtys, e=prices, lev=leverages, venue=st.sampled_from([0, 1, 2]),
       taker=st.floats(0.0, 0.001), clearance=st.floats(0.0, 0.015))
def test_fees_bring_liquidation_price_closer_to_entry(side, q, e, lev, venue, taker, clearance):
    """g_fee(P) = g(P) - open_fee - cfr*q*P <= g(P) (g = equity - requirement), so the set
    where the position is liquidated only grows: a long's LP rises, a short's falls; and if the
    position is solvent at entry under the fee condition the LP stays on its side of entry.
    """
    m = q * e / lev
    m_net = m - taker * q * e  # open fee paid from outside the margin
    cfr = clearance + (0.0 if venue == Venue.okx else taker)
    k_at_entry = (taker if venue == Venue.okx else 0.0) + cfr
    assume(m_net > _ref_mm(q * e) + k_at_entry * q * e + 1e-9 * q * e)  # solvent at entry
    plain = liquidation_price_tiered(side, q, e, m, BTC, venue=venue, taker_fee=taker)
    fees = liquidation_price_tiered(side, q, e, m_net, BTC, venue=venue, taker_fee=taker,
                                    close_fee_rate=cfr)
    tol = 1e-9 * e
    if side == 1:
        assert plain - tol <= fees <= e + tol
    else:
        assert e - tol <= fees <= plain + tol


@settings(deadline=None)
@given(q=qtys, mark=prices, rate=st.floats(1e-8, 0.03))
def test_funding_sign(q, mark, rate):
    paid_by_long = funding_payment("long", q, mark, rate)
    got_by_short = funding_payment("short", q, mark, rate)
    assert paid_by_long < 0.0 < got_by_short  # rate > 0: longs pay, shorts receive
    assert _close(got_by_short, q * mark * rate, rel=1e-12)
    assert paid_by_long == -got_by_short
    assert funding_payment("long", q, mark, -rate) == got_by_short


def test_kernel_matches_python_wrapper():
    t = load_tiers(BTC)
    args = (1, 8.0, 40_000.0, 32_000.0, t.floor, t.cap, t.mmr, t.maint_amount, len(t), 0,
            0.0, 0.0, 0.0, 0.0)
    assert liq_price_nb(*args) == liquidation_price_tiered(1, 8, 40_000, 32_000, t)
