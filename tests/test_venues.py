"""Venue presets, bundled dated tier tables and instrument_for."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from perpbt.enums import LiqPolicy, Venue
from perpbt.instruments import load_tiers
from perpbt.venues import (PRESETS_DIR, VENUES, VenuePreset, bundled_symbols, bundled_tables,
                           date_to_ms, get_venue, instrument_for, load_preset_file,
                           normalize_symbol)

SWITCH_2026 = 1_788_220_800_000  # 2026-09-01T00:00:00Z = 20_697 days * 86_400_000 ms


def all_tables():
    for venue in VENUES:
        for sym in bundled_symbols(venue):
            for table in bundled_tables(venue, sym):
                yield venue, sym, table


# ---------------------------------------------------------------- presets

def test_venue_codes_and_policies():
    assert list(VENUES) == ["binance", "bybit", "okx"]
    assert (VENUES["binance"].venue_code, VENUES["bybit"].venue_code,
            VENUES["okx"].venue_code) == (Venue.binance, Venue.bybit, Venue.okx) == (0, 1, 2)
    assert VENUES["binance"].liquidation_policy == LiqPolicy.ioc
    assert VENUES["bybit"].liquidation_policy == LiqPolicy.tiered
    assert VENUES["okx"].liquidation_policy == LiqPolicy.tiered
    # the engine runs each venue's own process
    assert [p.engine_policy() for p in VENUES.values()] == [LiqPolicy.ioc, LiqPolicy.tiered,
                                                             LiqPolicy.tiered]
    assert VENUES["okx"].engine_policy(implemented=(0,)) == LiqPolicy.takeover


@pytest.mark.parametrize("name", list(VENUES))
def test_fees_are_fractions_with_sources(name):
    p = VENUES[name]
    assert 0 <= p.maker_fee < p.taker_fee < 0.01  # 0.0005 means 0.05 %, never 0.05
    assert 0 <= p.clearance_fee < 0.05
    for field in ("maker_fee", "taker_fee", "clearance_fee", "liquidation_policy"):
        c = p.source_for(field)
        assert c.source and re.match(r"\d{4}-\d{2}-\d{2}$", c.as_of)
    assert p.trigger_doc


def test_fee_values():
    b, y, o = VENUES["binance"], VENUES["bybit"], VENUES["okx"]
    assert (b.maker_fee, b.taker_fee, b.clearance_fee) == (0.0002, 0.0005, 0.0125)
    assert (y.maker_fee, y.taker_fee, y.clearance_fee) == (0.0002, 0.00055, 0.0)
    # OKX's liquidation fee is charged at the taker tier: clearance = taker (DESIGN 5: OKX's
    # close_fee_rate is the clearance fee only, the taker fee being in the trigger already)
    assert (o.maker_fee, o.taker_fee, o.clearance_fee) == (0.0002, 0.0005, 0.0005)


def test_preset_rejects_percent_numbers():
    with pytest.raises(ValueError, match="taker_fee=0.5 is not a fraction"):
        VenuePreset("x", Venue.binance, 0.02, 0.5, 0.0, LiqPolicy.takeover, "")


def test_get_venue():
    assert get_venue("Binance") is VENUES["binance"]
    assert get_venue("binanceusdm") is VENUES["binance"]  # ccxt id
    assert get_venue(VENUES["okx"]) is VENUES["okx"]
    with pytest.raises(ValueError, match=r"unknown venue 'bybt' \(did you mean 'bybit'\?\); "
                                         r"choose one of \['binance', 'bybit', 'okx'\]"):
        get_venue("bybt")
    with pytest.raises(ValueError, match="choose one of"):
        get_venue("kraken")


# ---------------------------------------------------------------- symbols

@pytest.mark.parametrize("alias", ["BTCUSDT", "btcusdt", "BTC/USDT:USDT", "BTC/USDT",
                                   "BTC-USDT-SWAP", "BTC-USDT", "BTC_USDT"])
def test_normalize_symbol(alias):
    assert normalize_symbol(alias) == "BTC/USDT:USDT"


def test_normalize_other_symbols():
    assert normalize_symbol("1000PEPEUSDT") == "1000PEPE/USDT:USDT"
    assert normalize_symbol("ETH/USDC:USDC") == "ETH/USDC:USDC"
    with pytest.raises(ValueError, match="cannot read"):
        normalize_symbol("BTC")


# ---------------------------------------------------------------- bundled tables

def test_every_bundled_table_loads_with_source_and_date():
    seen = set()
    for venue, sym, table in all_tables():
        seen.add((venue, sym))
        assert table.source, (venue, sym)
        assert re.match(r"\d{4}-\d{2}-\d{2}$", table.as_of), (venue, sym, table.as_of)
        # Binance's come from the dated shared tables; Bybit's and OKX's are flagged
        assert table.illustrative == (venue != "binance"), (venue, sym)
        if table.illustrative:
            assert "ILLUSTRATIVE" in table.source
    assert seen == {(v, s) for v in VENUES for s in ("BTC/USDT:USDT", "ETH/USDT:USDT")}


def test_bundled_tables_are_continuous_at_every_floor():
    # re-checked here independently of load_tiers: MM from the tier below and from the tier
    # above agree at each floor
    for venue, sym, t in all_tables():
        for i in range(1, len(t)):
            below = t.floor[i] * t.mmr[i - 1] - t.maint_amount[i - 1]
            above = t.floor[i] * t.mmr[i] - t.maint_amount[i]
            assert above == pytest.approx(below, abs=1e-6), (venue, sym, i)


def test_bundled_specs_are_labelled():
    for venue in VENUES:
        for sym, spec in load_preset_file(venue)["symbols"].items():
            assert spec["spec_source"] and spec["lot_size"] > 0 and spec["tick_size"] > 0
            assert spec["spec_illustrative"] == (venue != "binance")


def test_presets_are_package_files():
    assert sorted(p.name for p in PRESETS_DIR.glob("*.json")) == [
        "tiers_binance.json", "tiers_bybit.json", "tiers_okx.json"]


@pytest.mark.shared_data
@pytest.mark.parametrize("sym", ["BTCUSDT", "ETHUSDT"])
def test_binance_bundled_tables_equal_the_shared_ones(shared_data, sym):
    d = json.loads((shared_data / "binance_usdm" / sym / "leverage_brackets.json").read_text())
    old, new = bundled_tables("binance", sym)
    assert old.equals(load_tiers(d["historical"]["2023-01-13"]))
    assert new.equals(load_tiers(d["brackets"]))
    assert new.source.startswith(d["source"])


def test_binance_tables_switch_on_2026_09_01():
    assert date_to_ms("2026-09-01") == SWITCH_2026
    inst = instrument_for("binance", "BTCUSDT")
    old, new = inst.tiers
    assert (old.effective_from_ms, old.as_of) == (0, "2023-01-13")  # back-dated to 1970
    assert (new.effective_from_ms, new.as_of) == (SWITCH_2026, "2026-09-01")
    assert inst.tier_table_at(SWITCH_2026 - 1) is old
    assert inst.tier_table_at(SWITCH_2026) is new
    # 2023-01-13 BTCUSDT: tier 1 to 50_000 USDT at 125x; 2026-09: to 300_000 at 150x
    assert (old.cap[0], old.max_leverage[0]) == (50_000.0, 125.0)
    assert (new.cap[0], new.max_leverage[0]) == (300_000.0, 150.0)
    assert inst.max_leverage == 150.0
    assert inst.max_leverage_at(date_to_ms("2024-06-01")) == 125.0


# ---------------------------------------------------------------- instrument_for

@pytest.mark.parametrize("venue", list(VENUES))
def test_instrument_for_aliases(venue):
    insts = [instrument_for(venue, s) for s in ("BTCUSDT", "BTC/USDT:USDT", "BTC-USDT-SWAP")]
    for inst in insts:
        assert inst.symbol == "BTC/USDT:USDT"
        assert inst.maker_fee is None and inst.taker_fee is None and inst.clearance_fee is None
        assert len(inst.tiers) == len(insts[0].tiers)
        for a, b in zip(inst.tiers, insts[0].tiers):
            assert a.equals(b, metadata=True)
        assert inst.extra["venue"] == venue


def test_instrument_for_specs():
    b = instrument_for("binance", "ETHUSDT")
    assert (b.contract_size, b.tick_size, b.lot_size, b.min_notional) == (1.0, 0.01, 0.001, 20.0)
    o = instrument_for("okx", "BTC-USDT-SWAP")
    # one OKX contract = 0.01 BTC, step 0.01 contracts -> 0.0001 BTC
    assert o.contract_size == 0.01 and o.lot_size == pytest.approx(1e-4)
    # Bybit illustrative tier 1 IMR 1 % -> 100x; level 2 IMR 1.75 % -> 57.14x
    y = instrument_for("bybit", "BTCUSDT")
    assert y.max_leverage == 100.0 and y.tiers[0].max_leverage[1] == 57.14


def test_instrument_for_overrides():
    inst = instrument_for("bybit", "ETHUSDT", taker_fee=0.0004, lot_size=0.1)
    assert inst.taker_fee == 0.0004 and inst.lot_size == 0.1 and inst.maker_fee is None
    with pytest.raises(ValueError, match=r"unknown field 'taker' \(did you mean 'taker_fee'\?\)"):
        instrument_for("bybit", "ETHUSDT", taker=0.0004)


def test_instrument_for_as_of_keeps_one_table():
    inst = instrument_for("binance", "BTCUSDT", as_of_ms=date_to_ms("2025-01-01"))
    assert len(inst.tiers) == 1
    t = inst.tiers[0]
    assert t.as_of == "2023-01-13" and t.effective_from_ms == 0
    assert inst.tier_table_at(SWITCH_2026 + 1) is t  # the 2023 table for the whole run
    later = instrument_for("binance", "BTCUSDT", as_of_ms=SWITCH_2026)
    assert later.tiers[0].as_of == "2026-09-01"


def test_unknown_symbol_needs_tiers():
    with pytest.raises(ValueError, match=r"no bundled tier table for SOL/USDT:USDT on binance"
                                         r".*tiers must be given: via the Market's instruments, "
                                         r"read_csv's leverage_brackets.json, or fetch"):
        instrument_for("binance", "SOLUSDT")
    rows = [{"floor": 0, "cap": 5e4, "mmr": 0.005, "maint_amount": 0, "max_leverage": 100}]
    inst = instrument_for("binance", "SOLUSDT", tiers=rows, lot_size=1.0)
    assert inst.symbol == "SOL/USDT:USDT" and inst.lot_size == 1.0
    np.testing.assert_array_equal(inst.tiers[0].cap, [5e4])


def test_unknown_venue_in_instrument_for():
    with pytest.raises(ValueError, match="choose one of"):
        instrument_for("deribit", "BTCUSDT")
