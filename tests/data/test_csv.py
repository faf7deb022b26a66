"""read_csv on ../shared/data (facts from shared/data/README.md) and on tiny written files."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from perpbt.data import CoverageWarning, read_csv
from perpbt.data.csv import pick_files, read_brackets

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
H = 3_600_000


@pytest.fixture(scope="module")
def btc_eth(shared_data):
    with pytest.warns(CoverageWarning) as rec:
        market = read_csv(shared_data, ["BTCUSDT", ETH], "1h")
    return market, str(rec[0].message)


def test_read_is_fast(shared_data):
    start = time.perf_counter()
    with pytest.warns(CoverageWarning):
        read_csv(shared_data / "binance_usdm", ["BTCUSDT", "ETHUSDT"])
    assert time.perf_counter() - start < 1.0


def test_span_is_trimmed_to_common_coverage(btc_eth):
    market, text = btc_eth
    # starts: BTC klines 2019-09-08 17:00, ETH klines 2019-11-27 07:00, both marks
    # 2019-12-23 11:00, both funding 2020-01-01 00:00 (a settlement exactly on the bar)
    # -> the latest, 2020-01-01 00:00 (funding, later than the mark start).
    # ends (last bar open): klines 2026-05-17 07:00, marks 2026-05-17 06:00, funding runs to
    # 2026-06-30 16:00 + 8 h -> the last bar is 2026-05-17 06:00.
    # bars: 2020-01-01 -> 2026-01-01 is 2192 days (2020 and 2024 are leap years), -> 2026-05-17
    # another 31 + 28 + 31 + 30 + 16 = 136 days; (2192 + 136) * 24 + 7 = 55,879.
    assert market.index[0] == pd.Timestamp("2020-01-01T00:00Z")
    assert market.index[-1] == pd.Timestamp("2026-05-17T06:00Z")
    assert market.n_bars == 55_879 and market.symbols == (BTC, ETH)
    assert "BTC/USDT:USDT klines: cut 2019-09-08T17:00:00Z .. 2019-12-31T23:00:00Z" in text
    assert "ETH/USDT:USDT mark: cut 2019-12-23T11:00:00Z .. 2019-12-31T23:00:00Z" in text
    assert "BTC/USDT:USDT klines: cut 2026-05-17T07:00:00Z .. 2026-05-17T07:00:00Z (1 bar)" in text
    assert market.arrays["funding_covered"].all()
    assert market.mark_source == "mark"


def test_documented_prices(btc_eth):
    market, _ = btc_eth
    at = pd.Timestamp("2021-05-19T13:00Z")
    assert market.low.loc[at, ETH] == 1400.73
    assert market.mark_low.loc[at, ETH] == pytest.approx(1764.26, abs=0.005)
    # COVID crash: BTC 1h low 3621.81 vs mark low 3801.83 -- in the 2020-03-13 02:00 bar
    # (the README lists them next to the -18.7 % bar of 2020-03-12 10:00; the files say 03-13)
    at = pd.Timestamp("2020-03-13T02:00Z")
    assert market.low.loc[at, BTC] == 3621.81
    assert market.mark_low.loc[at, BTC] == pytest.approx(3801.83, abs=0.005)


def test_funding_values_and_jitter(btc_eth):
    market, _ = btc_eth
    fr = market.funding_rate
    assert fr.loc[pd.Timestamp("2020-01-01T00:00Z"), BTC] == -0.00012359
    # raw_calc_time_ms 1577923200002 = 2020-01-02 00:00:00.002: on the 00:00 bar, not moved
    assert fr.loc[pd.Timestamp("2020-01-02T00:00Z"), BTC] == 0.00003662
    assert market.settlement_moves.empty
    # settlements every 8 h: 3 a day, nothing in between
    assert fr[BTC].notna().sum() == len(pd.date_range("2020-01-01", "2026-05-17 06:00", freq="8h"))
    assert np.isnan(market.arrays["funding_rate"][1:8]).all()


def test_brackets_become_dated_instruments(btc_eth, shared_data):
    market, _ = btc_eth
    inst = market.instruments[BTC]
    old, new = inst.tiers
    assert old.effective_from_ms == 0 and old.as_of == "2023-01-13" and old.max_leverage[0] == 125
    assert new.effective_from_ms == pd.Timestamp("2026-09-01T00:00Z").value // 10**6
    assert new.as_of == "2026-09" and new.max_leverage[0] == 150
    assert "freqtrade PyPI wheel 2026.9" in new.source and not new.illustrative
    assert inst.lot_size == 0.0
    assert inst.tier_table_at(pd.Timestamp("2021-05-19").value // 10**6) is old
    # BTC 2023 table tier 2: floor 50,000, mmr 0.5 %, maintenance amount 50
    assert (old.floor[1], old.mmr[1], old.maint_amount[1]) == (50_000.0, 0.005, 50.0)
    again = read_brackets(shared_data / "binance_usdm" / "ETHUSDT" / "leverage_brackets.json")
    assert again.symbol == ETH and len(again.tiers) == 2


def test_strict_refuses_to_trim(shared_data):
    with pytest.raises(ValueError, match="strict=True"):
        read_csv(shared_data, "BTCUSDT", strict=True)


def test_freqtrade_testdata_without_interval_column(shared_data):
    # klines 2021-11-17 01:00 .. 2021-11-21 04:00, mark 2021-11-15 06:00 .. 2021-11-19 09:00,
    # funding (no interval column, 8 h spacing) from 2021-11-18 00:00:
    # span 2021-11-18 00:00 .. 2021-11-19 09:00 = 24 + 10 = 34 bars, 5 settlements.
    with pytest.warns(CoverageWarning):
        market = read_csv(shared_data / "freqtrade_testdata")
    assert market.symbols == ("XRP/USDT:USDT",) and market.n_bars == 34
    assert market.index[0] == pd.Timestamp("2021-11-18T00:00Z")
    assert market.funding_rate.notna().sum().item() == 5
    assert market.arrays["funding_covered"].all() and market.instruments == {}


def test_dated_5m_files(shared_data):
    # two BTC 5m files that do not join (2024-05-14 .. 2024-12-31 missing): the latest is used
    folder = shared_data / "binance_usdm" / "BTCUSDT"
    with pytest.warns(CoverageWarning, match="leaving out.*klines_5m_2023-01-01_2024-05-14.csv"):
        files = pick_files(folder, "klines", "5m")
    assert [f.name for f in files] == ["klines_5m_2024-12-31_2026-02-19.csv"]
    # since/until pick the older file: the 2023-08-17 flash drop, BTC -10.0 % at 21:40
    market = read_csv(shared_data, "BTCUSDT", "5m", mark_fallback="last",
                      since="2023-08-17", until="2023-08-18")
    assert market.n_bars == 288 and market.timeframe == "5m" and market.mark_source == "last"
    close = market.close[BTC]
    drop = close.loc["2023-08-17 21:40"] / close.loc["2023-08-17 21:35"] - 1
    assert drop == pytest.approx(-0.1002, abs=5e-5)
    with pytest.raises(ValueError, match="no mark_5m.*mark_fallback='last'"):
        read_csv(shared_data, "BTCUSDT", "5m", since="2023-08-17", until="2023-08-18")


def test_unknown_symbol_lists_available(shared_data):
    with pytest.raises(FileNotFoundError, match=r"DOGE/USDT:USDT: no klines_1h.*'SOLUSDT'"):
        read_csv(shared_data, ["DOGEUSDT"])


# ----------------------------------------------------------------- tiny files, no shared data
def _write(folder, name, frame):
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)


def test_written_layout_round_trip(tmp_path):
    t0 = 1_600_000_000_000 - 1_600_000_000_000 % H            # 2020-09-13 12:00
    ts = t0 + H * np.arange(5)
    k = pd.DataFrame({"timestamp_ms": ts, "open": [10.0, 11, 12, 13, 14],
                      "high": [11.5, 12.5, 13.5, 14.5, 15.5], "low": [9.0, 10, 11, 12, 13],
                      "close": [11.0, 12, 13, 14, 15], "volume": 1.0})
    root = tmp_path / "binance_usdm"
    for sym in ("AAAUSDT", "BBBUSDT"):
        _write(root / sym, "klines_1h.csv", k)
        _write(root / sym, "mark_1h.csv", k.drop(columns="volume"))
    # AAA: settlement at t0 with +3 ms jitter; BBB has no funding.csv -> uncovered
    _write(root / "AAAUSDT", "funding.csv",
           pd.DataFrame({"timestamp_ms": [t0], "funding_rate": [0.0001],
                         "funding_interval_hours": [8], "raw_calc_time_ms": [t0 + 3]}))
    (root / "AAAUSDT" / "leverage_brackets.json").write_text(json.dumps({
        "symbol": "AAAUSDT", "source": "hand-written", "as_of": "2024-01",
        "brackets": [{"bracket": 1, "initialLeverage": 20, "notionalFloor": 0,
                      "notionalCap": 1000, "maintMarginRatio": 0.01, "cum": 0}]}))
    market = read_csv(tmp_path)                                   # the parent of binance_usdm
    assert market.symbols == ("AAA/USDT:USDT", "BBB/USDT:USDT")
    np.testing.assert_array_equal(market.arrays["close"][:, 1], k["close"].to_numpy())
    assert market.arrays["funding_rate"][0, 0] == 0.0001
    assert market.arrays["funding_covered"][:, 0].all()
    assert not market.arrays["funding_covered"][:, 1].any()
    inst = market.instruments["AAA/USDT:USDT"]
    assert inst.tiers[0].effective_from_ms == 0 and inst.max_leverage == 20
    assert "BBB/USDT:USDT" not in market.instruments
