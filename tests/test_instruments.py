"""Tier tables (both exchange shapes, continuity), dated switching, Instrument.from_ccxt_market.

Expected numbers are derived by hand in the comments or read from the shared source tables.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from perpbt.instruments import (DECIMAL_PLACES, Instrument, TierTable, continuous_maint_amounts,
                                load_tiers)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")

# A 3-tier table in Binance's bracket shape. cum by hand (cum[i] = cum[i-1] + floor[i] *
# (mmr[i] - mmr[i-1])): tier 2: 0 + 50_000 * (0.005 - 0.004) = 50; tier 3: 50 + 250_000 *
# (0.01 - 0.005) = 1_300 (the numbers of Binance's 2023-01-13 BTCUSDT table).
BRACKETS = [
    {"bracket": 1, "initialLeverage": 125, "notionalFloor": 0, "notionalCap": 50_000,
     "maintMarginRatio": 0.004, "cum": 0.0},
    {"bracket": 2, "initialLeverage": 100, "notionalFloor": 50_000, "notionalCap": 250_000,
     "maintMarginRatio": 0.005, "cum": 50.0},
    {"bracket": 3, "initialLeverage": 25, "notionalFloor": 250_000, "notionalCap": 1_000_000,
     "maintMarginRatio": 0.01, "cum": 1_300.0},
]


def as_ccxt(brackets, *, amount_in_info=True, strings=False):
    """The same tiers in ccxt's fetch_leverage_tiers shape (info = the raw bracket)."""
    out = []
    for b in brackets:
        info = {k: (str(v) if strings else v) for k, v in b.items()}
        entry = {"tier": float(b["bracket"]), "currency": "USDT",
                 "minNotional": float(b["notionalFloor"]), "maxNotional": float(b["notionalCap"]),
                 "maintenanceMarginRate": float(b["maintMarginRatio"]),
                 "maxLeverage": float(b["initialLeverage"]), "info": info}
        if not amount_in_info:
            entry["maintAmt"] = b["cum"]
            entry["info"] = {}
        out.append(entry)
    return out


# ---------------------------------------------------------------- hand-made tables

def test_both_shapes_give_equal_tables():
    a = load_tiers(BRACKETS, symbol="BTCUSDT")
    b = load_tiers(as_ccxt(BRACKETS), symbol="BTC/USDT:USDT")
    c = load_tiers(as_ccxt(BRACKETS, amount_in_info=False))  # maintAmt key instead of info.cum
    d = load_tiers(as_ccxt(BRACKETS, strings=True))  # 2023 ccxt files carry strings in info
    for other in (b, c, d):
        assert a.equals(other)
    np.testing.assert_array_equal(a.floor, [0, 50_000, 250_000])
    np.testing.assert_array_equal(a.cap, [50_000, 250_000, 1_000_000])
    np.testing.assert_array_equal(a.maint_amount, [0, 50, 1_300])
    np.testing.assert_array_equal(a.max_leverage, [125, 100, 25])
    assert a.floor.dtype == np.float64 and len(a) == 3


def test_perpbt_rows_round_trip():
    a = load_tiers(BRACKETS)
    assert load_tiers(a.rows()).equals(a)
    assert load_tiers(a) is a  # a TierTable passes through


def test_rows_are_sorted_by_floor():
    assert load_tiers(list(reversed(BRACKETS))).equals(load_tiers(BRACKETS))


def test_inconsistent_cum_is_rejected_naming_the_tier():
    bad = copy.deepcopy(BRACKETS)
    # should be 1_300. MM at the floor 250_000: from tier 2, 250_000 * 0.005 - 50 = 1_200;
    # from tier 3, 250_000 * 0.01 - 1_400 = 1_100: a jump of -100
    bad[2]["cum"] = 1_400.0
    with pytest.raises(ValueError, match=r"BTCUSDT: maintenance margin jumps at tier 3 floor "
                                         r"250000: 1200\.000000 below vs 1100\.000000 above"):
        load_tiers(bad, symbol="BTCUSDT")
    with pytest.raises(ValueError, match="tier 3"):
        load_tiers(as_ccxt(bad), symbol="BTC/USDT:USDT")


def test_gaps_and_bad_rates_are_rejected():
    gap = copy.deepcopy(BRACKETS)
    gap[1]["notionalFloor"] = 60_000
    with pytest.raises(ValueError, match=r"tier 2 floor 60000.0 != tier 1 cap 50000.0"):
        load_tiers(gap, symbol="X")
    neg = copy.deepcopy(BRACKETS)
    neg[0]["maintMarginRatio"] = -0.01
    with pytest.raises(ValueError, match="tier 1 maintenance margin rate"):
        load_tiers(neg, symbol="X")
    with pytest.raises(ValueError, match="empty tier table"):
        load_tiers([], symbol="X")
    with pytest.raises(ValueError, match="neither ccxt keys"):
        load_tiers([{"lo": 0, "hi": 1}], symbol="X")


def test_continuous_maint_amounts_by_hand():
    # amount[1] = 100_000 * (0.01 - 0.005) = 500; amount[2] = 500 + 400_000 * (0.02 - 0.01)
    # = 4_500 (OKX-style table: no published amounts)
    np.testing.assert_allclose(continuous_maint_amounts([0, 100_000, 400_000],
                                                        [0.005, 0.01, 0.02]), [0, 500, 4_500])


def test_bybit_ccxt_tiers_use_mm_deduction():
    # ccxt's Bybit tiers: no maintAmt, info.mmDeduction ("" on tier 1). 2_000_000 * (0.01 -
    # 0.005) = 10_000 makes the table continuous.
    entries = [
        {"minNotional": 0.0, "maxNotional": 2e6, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100.0, "info": {"riskLimitValue": "2000000", "mmDeduction": ""}},
        {"minNotional": 2e6, "maxNotional": 4e6, "maintenanceMarginRate": 0.01,
         "maxLeverage": 57.14, "info": {"riskLimitValue": "4000000", "mmDeduction": "10000"}},
    ]
    t = load_tiers(entries, symbol="BTC/USDT:USDT")
    np.testing.assert_array_equal(t.maint_amount, [0.0, 10_000.0])


def test_okx_contract_sized_tiers_need_a_scale():
    # ccxt copies OKX's minSz/maxSz (contracts) into min/maxNotional.
    entries = [
        {"minNotional": 0.0, "maxNotional": 1000.0, "maintenanceMarginRate": 0.004,
         "maxLeverage": 100.0, "info": {"minSz": "0", "maxSz": "1000", "mmr": "0.004"}},
        {"minNotional": 1000.0, "maxNotional": 3000.0, "maintenanceMarginRate": 0.006,
         "maxLeverage": 75.0, "info": {"minSz": "1000", "maxSz": "3000", "mmr": "0.006"}},
    ]
    with pytest.raises(ValueError, match="sized in contracts"):
        load_tiers(entries, symbol="BTC/USDT:USDT")
    # one contract = 0.01 BTC at 50_000 USDT = 500 USDT: caps 500_000 and 1_500_000;
    # amount[1] = 500_000 * (0.006 - 0.004) = 1_000
    t = load_tiers(entries, size_scale=0.01 * 50_000, derive_maint_amounts=True)
    np.testing.assert_allclose(t.cap, [500_000, 1_500_000])
    np.testing.assert_allclose(t.maint_amount, [0, 1_000])


# ---------------------------------------------------------------- real shared tables

@pytest.fixture(scope="module")
def ccxt_files(shared_data):
    d = shared_data / "binance_usdm" / "leverage_tiers"
    return {"2026-09": json.loads((d / "binance_leverage_tiers_ccxt_2026-09.json").read_text()),
            "2023-01-13": json.loads(
                (d / "binance_leverage_tiers_ccxt_2023-01-13.json").read_text())}


def brackets_file(shared_data, sym):
    return json.loads((shared_data / "binance_usdm" / sym / "leverage_brackets.json").read_text())


@pytest.mark.shared_data
@pytest.mark.parametrize("sym", SYMBOLS)
def test_every_shared_table_loads_and_shapes_agree(shared_data, ccxt_files, sym):
    d = brackets_file(shared_data, sym)
    ccxt_sym = f"{sym[:-4]}/USDT:USDT"
    for day, brackets in (("2026-09", d["brackets"]),
                          ("2023-01-13", d["historical"]["2023-01-13"])):
        from_brackets = load_tiers(brackets, symbol=f"{sym} {day}")
        from_ccxt = load_tiers(ccxt_files[day][ccxt_sym], symbol=f"{ccxt_sym} {day}")
        assert from_brackets.equals(from_ccxt), (sym, day)
        assert from_brackets.floor[0] == 0.0 and len(from_brackets) >= 7


@pytest.mark.shared_data
def test_shared_btc_numbers(shared_data):
    d = brackets_file(shared_data, "BTCUSDT")
    new = load_tiers(d["brackets"])
    # bracket 2 of the 2026-09 table: floor 300_000, mmr 0.005, cum 300 = 300_000 * 0.001
    assert (new.floor[1], new.mmr[1], new.maint_amount[1]) == (300_000.0, 0.005, 300.0)
    assert new.max_leverage[0] == 150.0
    old = load_tiers(d["historical"]["2023-01-13"])
    assert old.max_leverage[0] == 125.0 and old.cap[0] == 50_000.0


@pytest.mark.shared_data
@pytest.mark.parametrize("sym", SYMBOLS)
def test_shared_table_with_bad_cum_is_rejected(shared_data, sym):
    brackets = copy.deepcopy(brackets_file(shared_data, sym)["brackets"])
    brackets[3]["cum"] += 100.0  # tier 4's amount off by 100 quote
    with pytest.raises(ValueError, match=rf"{sym}: maintenance margin jumps at tier 4 floor"):
        load_tiers(brackets, symbol=sym)


# ---------------------------------------------------------------- Instrument

T_SWITCH = 1_788_220_800_000  # 2026-09-01T00:00:00Z


def two_table_instrument() -> Instrument:
    old = load_tiers(BRACKETS, as_of="2023-01-13")
    new_rows = copy.deepcopy(BRACKETS)
    new_rows[0]["initialLeverage"] = 150
    new = load_tiers(new_rows, effective_from_ms=T_SWITCH, as_of="2026-09-01")
    return Instrument("BTC/USDT:USDT", (old, new))


def test_tier_table_at_switches_at_the_date():
    inst = two_table_instrument()
    assert inst.tier_table_at(T_SWITCH - 1) is inst.tiers[0]
    assert inst.tier_table_at(T_SWITCH) is inst.tiers[1]  # a table applies from its own ms
    assert inst.tier_table_at(-10**15) is inst.tiers[0]  # before everything: the earliest


def test_max_leverage():
    inst = two_table_instrument()
    assert inst.max_leverage == 150.0  # largest tier 1 of any table
    assert inst.max_leverage_at(T_SWITCH - 1) == 125.0
    assert inst.max_leverage_at(T_SWITCH) == 150.0


def test_tables_must_be_dated_ascending():
    inst = two_table_instrument()
    with pytest.raises(ValueError, match="distinct ascending dates"):
        Instrument("X", (inst.tiers[1], inst.tiers[0]))
    with pytest.raises(ValueError, match="at least one tier table"):
        Instrument("X", ())


# A hand-written ccxt market in ccxt 4's TICK_SIZE mode, Binance-like (values as in Binance's
# exchangeInfo for BTCUSDT: tickSize 0.10, stepSize 0.001, MIN_NOTIONAL 100, liquidationFee).
BINANCE_MARKET = {
    "id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT", "settle": "USDT",
    "type": "swap", "spot": False, "swap": True, "contract": True, "linear": True,
    "inverse": False, "contractSize": 1.0, "maker": 0.0002, "taker": 0.0005,
    "precision": {"amount": 0.001, "price": 0.1},
    "limits": {"amount": {"min": 0.001, "max": 1000.0}, "cost": {"min": 100.0, "max": None}},
    "info": {"symbol": "BTCUSDT", "liquidationFee": "0.012500"},
}


def test_from_ccxt_market_tick_size_mode():
    inst = Instrument.from_ccxt_market(BINANCE_MARKET, BRACKETS, as_of="2023-01-13")
    assert inst.symbol == "BTC/USDT:USDT"
    assert inst.contract_size == 1.0
    assert inst.tick_size == 0.1
    assert inst.lot_size == 0.001  # step 0.001 contracts * 1 base unit per contract
    assert inst.min_notional == 100.0
    assert (inst.maker_fee, inst.taker_fee) == (0.0002, 0.0005)
    assert inst.clearance_fee == 0.0125
    assert inst.tiers[0].equals(load_tiers(BRACKETS)) and inst.tiers[0].as_of == "2023-01-13"
    assert inst.extra["ccxt_id"] == "BTCUSDT"


def test_from_ccxt_market_contracts_and_missing_fields():
    # OKX-like: one contract = 0.01 BTC, amount step 0.01 contracts -> lot 0.0001 BTC; no cost
    # limit -> min_notional 0; no fees in the market -> None (the venue preset's apply)
    market = dict(BINANCE_MARKET, id="BTC-USDT-SWAP", contractSize=0.01, maker=None,
                  taker=None, precision={"amount": 0.01, "price": 0.1},
                  limits={"amount": {"min": 0.01}, "cost": {"min": None}}, info={})
    table = load_tiers(BRACKETS)
    inst = Instrument.from_ccxt_market(market, table)
    assert inst.lot_size == pytest.approx(0.0001, rel=1e-12)
    assert inst.min_notional == 0.0
    assert inst.maker_fee is None and inst.taker_fee is None and inst.clearance_fee is None
    assert inst.tiers[0] is table


def test_from_ccxt_market_decimal_places_mode():
    # precision as numbers of decimals: amount 3 -> step 0.001, price 1 -> tick 0.1
    market = dict(BINANCE_MARKET, contractSize=2.0, precision={"amount": 3, "price": 1})
    inst = Instrument.from_ccxt_market(market, BRACKETS, precision_mode=DECIMAL_PLACES)
    assert inst.tick_size == pytest.approx(0.1)
    assert inst.lot_size == pytest.approx(0.002)  # 0.001 contracts * 2 base units
    same = Instrument.from_ccxt_market(market, BRACKETS, precision_mode="decimal_places")
    assert same.lot_size == inst.lot_size
    with pytest.raises(ValueError, match="not a number of decimals"):
        Instrument.from_ccxt_market(BINANCE_MARKET, BRACKETS, precision_mode="decimal_places")
    with pytest.raises(ValueError, match="precision_mode"):
        Instrument.from_ccxt_market(BINANCE_MARKET, BRACKETS, precision_mode="ticks")


def test_from_ccxt_market_rejects_inverse_and_spot():
    with pytest.raises(ValueError, match="only linear"):
        Instrument.from_ccxt_market(dict(BINANCE_MARKET, linear=False, inverse=True), BRACKETS)
    with pytest.raises(ValueError, match="not a contract market"):
        Instrument.from_ccxt_market(dict(BINANCE_MARKET, spot=True, contract=False), BRACKETS)


def test_from_ccxt_market_takes_dated_tables():
    inst = two_table_instrument()
    again = Instrument.from_ccxt_market(BINANCE_MARKET, list(inst.tiers))
    assert again.tiers == inst.tiers  # the same TierTable objects, in order
    assert isinstance(again.tiers[0], TierTable)
