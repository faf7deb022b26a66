"""Market.from_frames: round trip, validation, coverage trimming, settlements, mark fallback.

Frames are built by hand: 1h bars from T0 = 2021-05-19T00:00:00Z with
open = 100 + i, close = 100.5 + i, high = close + 1, low = open - 1, volume 10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from perpbt.data import CoverageWarning
from perpbt.data.align import to_ccxt_symbol, to_exchange_id
from perpbt.instruments import Instrument, load_tiers
from perpbt.market import Market

H = 3_600_000
T0 = 1_621_382_400_000  # 2021-05-19T00:00:00Z
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def klines(n: int, start: int = T0, tf: int = H, base: float = 100.0) -> pd.DataFrame:
    i = np.arange(n, dtype=float)
    return pd.DataFrame({"timestamp_ms": start + tf * np.arange(n, dtype=np.int64),
                         "open": base + i, "high": base + i + 1.5, "low": base + i - 1.0,
                         "close": base + i + 0.5, "volume": 10.0})


def marks(n: int, start: int = T0, tf: int = H, base: float = 100.0) -> pd.DataFrame:
    return klines(n, start, tf, base + 0.25).drop(columns="volume")


def funding(times, rates, **extra) -> pd.DataFrame:
    return pd.DataFrame({"timestamp_ms": np.asarray(times, dtype=np.int64),
                         "funding_rate": rates, **extra})


def build(n=6, *, mutate=None, **kw) -> Market:
    """One symbol (ETH) with klines, mark and a settlement at T0; ``mutate(k, m, f)`` edits."""
    k, m, f = klines(n), marks(n), funding([T0], [0.0001])
    if mutate:
        mutate(k, m, f)
    return Market.from_frames({ETH: k}, {ETH: m}, {ETH: f}, timeframe=kw.pop("timeframe", "1h"),
                              **kw)


# ----------------------------------------------------------------------------- round trip
def test_round_trip_arrays_frames_and_metadata():
    k = {BTC: klines(6, base=30_000.0), ETH: klines(6)}
    m = {BTC: marks(6, base=30_000.0), ETH: marks(6)}
    f = {BTC: funding([T0], [-0.0002]), ETH: funding([T0], [0.0001])}
    tiers = load_tiers([{"minNotional": 0, "maxNotional": 1e6, "maintenanceMarginRate": 0.005,
                         "maxLeverage": 100, "maintAmt": 0}], illustrative=True)
    inst = {BTC: Instrument(BTC, (tiers,), lot_size=0.001)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aligned inputs: no coverage warning
        mk = Market.from_frames(k, m, f, timeframe="1h", instruments=inst)
    assert mk.symbols == (BTC, ETH) and mk.n_symbols == 2
    assert mk.n_bars == len(mk) == 6 and mk.timeframe_ms == H and mk.timeframe == "1h"
    assert mk.time_ms.dtype == np.int64 and list(mk.time_ms) == [T0 + i * H for i in range(6)]
    assert mk.index[0] == pd.Timestamp("2021-05-19T00:00:00Z") and str(mk.index.tz) == "UTC"
    for key, arr in mk.arrays.items():
        assert arr.shape == (6, 2) and arr.flags.c_contiguous
        assert arr.dtype == (np.bool_ if key == "funding_covered" else np.float64)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(mk.arrays[col][:, 0], k[BTC][col].to_numpy())
        np.testing.assert_array_equal(getattr(mk, col)[ETH].to_numpy(), k[ETH][col].to_numpy())
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(mk, "mark_" + col)[BTC].to_numpy(),
                                      m[BTC][col].to_numpy())
    # one settlement at bar 0; 8 h default interval covers bars 0..7 -> all 6 covered
    fr = mk.funding_rate
    assert fr.iloc[0].tolist() == [-0.0002, 0.0001] and fr.iloc[1:].isna().all().all()
    assert mk.arrays["funding_covered"].all()
    assert mk.close is mk.close  # cached
    assert list(mk.close.columns) == [BTC, ETH] and mk.close.index.equals(mk.index)
    assert mk.mark_source == "mark" and mk.settlement_moves.empty
    assert mk.instruments[BTC].lot_size == 0.001 and ETH not in mk.instruments
    assert "2 symbols x 6 bars of 1h" in repr(mk) and "2021-05-19T00:00:00Z" in repr(mk)


def test_frames_are_copies_and_datetime_index_input_is_equivalent():
    mk = build()
    mk.close.iloc[0, 0] = -1.0
    assert mk.arrays["close"][0, 0] == 100.5
    k, m = klines(6), marks(6)
    k = k.set_index(pd.to_datetime(k.pop("timestamp_ms"), unit="ms"))   # naive = UTC
    m = m.assign(timestamp=pd.to_datetime(m.pop("timestamp_ms"), unit="ms", utc=True))
    other = Market.from_frames({ETH: k}, {ETH: m}, {ETH: funding([T0], [0.0001])})  # inferred 1h
    assert other.timeframe_ms == H and other.equals(build())


def test_sel_and_slice():
    k = {BTC: klines(10, base=30_000.0), ETH: klines(10)}
    m = {BTC: marks(10, base=30_000.0), ETH: marks(10)}
    mk = Market.from_frames(k, m, timeframe="1h")
    one = mk.sel("ETHUSDT")                      # exchange id finds the ccxt name
    assert one.symbols == (ETH,) and one.arrays["close"][:, 0].tolist() == k[ETH]["close"].tolist()
    assert mk.sel([ETH, BTC]).symbols == (ETH, BTC)
    with pytest.raises(KeyError, match="SOL/USDT:USDT"):
        mk.sel("SOL/USDT:USDT")
    # [since, until): bars 2, 3, 4
    part = mk.slice("2021-05-19T02:00", pd.Timestamp("2021-05-19T05:00Z"))
    assert part.time_ms.tolist() == [T0 + 2 * H, T0 + 3 * H, T0 + 4 * H]
    assert part.arrays["open"][:, 1].tolist() == [102.0, 103.0, 104.0]
    assert part.arrays["open"].flags.c_contiguous
    assert mk.slice(since=T0 + 8 * H).n_bars == 2 and mk.slice(until=T0 + H).n_bars == 1
    with pytest.raises(ValueError, match="selects no bar"):
        mk.slice("2022-01-01")


def test_symbol_mapping():
    assert to_ccxt_symbol("BTCUSDT") == BTC and to_ccxt_symbol(BTC) == BTC
    assert to_ccxt_symbol("1000PEPEUSDT") == "1000PEPE/USDT:USDT"
    assert to_exchange_id(BTC) == "BTCUSDT" and to_exchange_id("ETHUSDT") == "ETHUSDT"
    with pytest.raises(ValueError, match="quote"):
        to_ccxt_symbol("BTCEUR")


# ----------------------------------------------------------------------------- validation
def _set(frame_key, col, row, value):
    def mutate(k, m, f):
        frame = {"k": k, "m": m, "f": f}[frame_key]
        frame.loc[row, col] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    # the example of the spec: mark low NaN at bar 3 = 03:00
    (_set("m", "low", 3, np.nan), "ETH/USDT:USDT: mark_low is NaN at 2021-05-19T03:00:00Z (bar 3)"),
    (_set("k", "close", 2, np.nan), "ETH/USDT:USDT: close is NaN at 2021-05-19T02:00:00Z (bar 2)"),
    (_set("k", "open", 1, 0.0), "ETH/USDT:USDT: open is not a positive finite price (0.0) at "
                                "2021-05-19T01:00:00Z (bar 1)"),
    (_set("m", "high", 4, -5.0), "ETH/USDT:USDT: mark_high is not a positive finite price (-5.0) at "
                                 "2021-05-19T04:00:00Z (bar 4)"),
    # bar 2: open 102, close 102.5, low 101; high 100 < low
    (_set("k", "high", 2, 100.0), "ETH/USDT:USDT: high is below low (100.0 < 101.0) at "
                                  "2021-05-19T02:00:00Z (bar 2)"),
    # high 102.2 >= low 101 but < close 102.5
    (_set("k", "high", 2, 102.2), "ETH/USDT:USDT: high is below max(open, close) (102.2 < 102.5) "
                                  "at 2021-05-19T02:00:00Z (bar 2)"),
    # mark bar 5: open 105.25, close 105.75, high 106.75; low 105.5 > open
    (_set("m", "low", 5, 105.5), "ETH/USDT:USDT: mark_low is above min(mark_open, mark_close) "
                                 "(105.5 > 105.25) at 2021-05-19T05:00:00Z (bar 5)"),
    (_set("k", "volume", 3, -1.0), "ETH/USDT:USDT: volume is negative or infinite (-1.0) at "
                                   "2021-05-19T03:00:00Z (bar 3)"),
    (_set("k", "volume", 0, np.nan), "ETH/USDT:USDT: volume is NaN at 2021-05-19T00:00:00Z (bar 0)"),
    (_set("f", "funding_rate", 0, 1.5), "ETH/USDT:USDT: funding_rate is outside [-1, 1] (1.5) at "
                                        "2021-05-19T00:00:00Z (bar 0)"),
    (_set("f", "funding_rate", 0, np.nan), "ETH/USDT:USDT: funding_rate is NaN at "
                                           "2021-05-19T00:00:00Z (bar 0)"),
    # row 3 gets row 2's time: duplicate
    (_set("k", "timestamp_ms", 3, T0 + 2 * H), "ETH/USDT:USDT: klines timestamps duplicate: "
                                               "2021-05-19T02:00:00Z (bar 3) follows "
                                               "2021-05-19T02:00:00Z (bar 2)"),
    (_set("m", "timestamp_ms", 3, T0 + H), "ETH/USDT:USDT: mark timestamps unsorted: "
                                           "2021-05-19T01:00:00Z (bar 3) follows "
                                           "2021-05-19T02:00:00Z (bar 2)"),
])
def test_validation_names_symbol_column_and_first_bad_time(mutate, message):
    with pytest.raises(ValueError) as info:
        build(mutate=mutate)
    assert str(info.value) == message


def test_first_bad_row_is_reported():
    def mutate(k, m, f):
        m.loc[[2, 4], "close"] = np.nan
    with pytest.raises(ValueError, match=r"mark_close is NaN at 2021-05-19T02:00:00Z \(bar 2\)"):
        build(mutate=mutate)


def test_gap_in_the_middle_is_an_error():
    k = klines(8).drop(index=[3, 4]).reset_index(drop=True)   # 03:00 and 04:00 missing
    with pytest.raises(ValueError, match=r"ETH/USDT:USDT: klines has a gap: 2 missing 1h bar\(s\) "
                                         r"from 2021-05-19T03:00:00Z to 2021-05-19T04:00:00Z"):
        Market.from_frames({ETH: k}, {ETH: marks(8)}, timeframe="1h")


def test_spacing_finer_than_timeframe_and_misaligned_mark():
    with pytest.raises(ValueError, match=r"klines bar at 2021-05-19T00:30:00Z \(bar 1\) is "
                                         r"1800000 ms after the previous one, not on the 1h grid"):
        Market.from_frames({ETH: klines(4, tf=H // 2)}, {ETH: marks(4)}, timeframe="1h")
    with pytest.raises(ValueError, match=r"mark bar opens \(2021-05-19T00:30:00Z\) are not on the "
                                         r"1h grid"):
        Market.from_frames({ETH: klines(4)}, {ETH: marks(4, start=T0 + H // 2)})


def test_timeframe_not_inferable():
    with pytest.raises(ValueError, match="timeframe not inferable"):
        Market.from_frames({ETH: klines(1)}, {ETH: marks(1)})
    with pytest.raises(ValueError, match="timeframe not inferable: series disagree"):
        Market.from_frames({ETH: klines(4)}, {ETH: marks(4, tf=2 * H)})
    with pytest.raises(ValueError, match="cannot parse timeframe"):
        build(timeframe="1M")


def test_missing_columns_and_unknown_symbols():
    with pytest.raises(ValueError, match=r"ETH/USDT:USDT: klines frame lacks column\(s\) \['volume'\]"):
        Market.from_frames({ETH: klines(3).drop(columns="volume")}, {ETH: marks(3)})
    with pytest.raises(ValueError, match=r"mark given for symbols without ohlcv: \['BTC/USDT:USDT'\]"):
        Market.from_frames({ETH: klines(3)}, {ETH: marks(3), BTC: marks(3)})


# ------------------------------------------------------------------------------- coverage
def _staggered():
    # klines bars 0..11 -> [00:00, 12:00); mark bars 2..11 -> [02:00, 12:00);
    # funding settlements 03:00 and 11:00 (8 h interval) -> [03:00, 19:00).
    # Common span [03:00, 12:00) = bars 03:00 .. 11:00, 9 bars: klines lose 00..02 (3 bars),
    # mark loses 02:00 (1 bar); funding beyond 12:00 is simply unused.
    return ({ETH: klines(12)}, {ETH: marks(10, start=T0 + 2 * H)},
            {ETH: funding([T0 + 3 * H, T0 + 11 * H], [0.0001, 0.0002],
                          funding_interval_hours=8)})


def test_coverage_trims_to_common_span_and_warns():
    with pytest.warns(CoverageWarning) as rec:
        mk = Market.from_frames(*_staggered(), timeframe="1h")
    text = str(rec[0].message)
    assert "kept 2021-05-19T03:00:00Z .. 2021-05-19T11:00:00Z (9 bars)" in text
    assert "ETH/USDT:USDT klines: cut 2021-05-19T00:00:00Z .. 2021-05-19T02:00:00Z (3 bars)" in text
    assert "ETH/USDT:USDT mark: cut 2021-05-19T02:00:00Z .. 2021-05-19T02:00:00Z (1 bar)" in text
    assert mk.n_bars == 9 and mk.time_ms[0] == T0 + 3 * H
    # klines row 3 (03:00) opens at 100 + 3; mark row 1 (03:00, its frame starts at 02:00)
    # opens at 100.25 + 1
    assert mk.arrays["open"][0, 0] == 103.0 and mk.arrays["mark_open"][0, 0] == 101.25
    rates = mk.arrays["funding_rate"][:, 0]
    assert rates[0] == 0.0001 and rates[8] == 0.0002 and np.isnan(rates[1:8]).all()
    assert mk.arrays["funding_covered"].all()


def test_coverage_strict_raises():
    with pytest.raises(ValueError, match=r"(?s)klines: cut 2021-05-19T00:00:00Z.*strict=True"):
        Market.from_frames(*_staggered(), timeframe="1h", strict=True)


def test_coverage_trims_the_tail_across_symbols():
    # BTC klines/mark end at 07:00 (8 bars), ETH at 09:00 (10 bars): ETH loses 08:00, 09:00
    k = {BTC: klines(8, base=30_000.0), ETH: klines(10)}
    m = {BTC: marks(8, base=30_000.0), ETH: marks(10)}
    with pytest.warns(CoverageWarning, match=r"ETH/USDT:USDT klines: cut 2021-05-19T08:00:00Z \.\. "
                                             r"2021-05-19T09:00:00Z \(2 bars\) \(after"):
        mk = Market.from_frames(k, m, timeframe="1h")
    assert mk.n_bars == 8


def test_no_common_span():
    with pytest.raises(ValueError, match="share no common span"):
        Market.from_frames({ETH: klines(3)}, {ETH: marks(3, start=T0 + 10 * H)}, timeframe="1h")


# ---------------------------------------------------------------------------- settlements
def test_settlement_with_jitter_lands_on_its_bar():
    # raw calc time 08:00:00.002 (like 1577923200002) belongs to the 08:00 bar, not moved
    f = funding([T0, T0 + 8 * H], [0.0001, 0.00003662],
                raw_calc_time_ms=[T0, T0 + 8 * H + 2], funding_interval_hours=8)
    mk = Market.from_frames({ETH: klines(12)}, {ETH: marks(12)}, {ETH: f}, timeframe="1h")
    rates = mk.arrays["funding_rate"][:, 0]
    assert rates[8] == 0.00003662 and np.isnan(rates[9])
    assert mk.settlement_moves.empty


def test_settlement_tolerance_edge_is_60_seconds():
    # 60 000 ms after 02:00 still belongs to 02:00; 60 001 ms after 05:00 moves to 06:00
    f = funding([T0, T0 + 2 * H + 60_000, T0 + 5 * H + 60_001], [0.1, 0.2, 0.3])
    mk = Market.from_frames({ETH: klines(8)}, {ETH: marks(8)}, {ETH: f}, timeframe="1h")
    rates = mk.arrays["funding_rate"][:, 0]
    assert rates[2] == 0.2 and np.isnan(rates[5]) and rates[6] == 0.3
    moves = mk.settlement_moves
    assert len(moves) == 1 and moves["bar_time"][0] == pd.Timestamp("2021-05-19T06:00Z")


def test_settlement_inside_a_4h_bar_moves_to_the_next_open():
    # 4h bars 00, 04, 08, 12; a settlement at 06:00 is 2 h into the 04:00 bar -> 08:00 (bar 2)
    f = funding([T0, T0 + 6 * H], [0.0001, -0.0005], funding_interval_hours=8)
    mk = Market.from_frames({ETH: klines(4, tf=4 * H)}, {ETH: marks(4, tf=4 * H)}, {ETH: f},
                            timeframe="4h")
    rates = mk.arrays["funding_rate"][:, 0]
    assert rates[0] == 0.0001 and np.isnan(rates[1]) and rates[2] == -0.0005 and np.isnan(rates[3])
    moves = mk.settlement_moves
    assert moves.to_dict("records") == [{
        "symbol": ETH, "settlement_time": pd.Timestamp("2021-05-19T06:00Z"),
        "bar_time": pd.Timestamp("2021-05-19T08:00Z"), "count": 1, "rate": -0.0005}]


def test_two_2h_settlements_in_one_4h_bar_are_summed_onto_the_next_open():
    # 2h settlements (SOLUSDT in 2022-11) on 4h bars: 00 -> bar 00; 02 (moved) and 04 -> bar 04;
    # 05 and 07, both inside the 04:00 bar, move to the 08:00 open and are summed there.
    # Rates: 00: 0.001; 02: 0.002; 04: 0.004; 05: 0.010; 07: 0.020
    # bar 00 = 0.001; bar 04 = 0.002 + 0.004 = 0.006; bar 08 = 0.010 + 0.020 = 0.030
    times = [T0, T0 + 2 * H, T0 + 4 * H, T0 + 5 * H, T0 + 7 * H]
    f = funding(times, [0.001, 0.002, 0.004, 0.010, 0.020], funding_interval_hours=2)
    mk = Market.from_frames({ETH: klines(3, tf=4 * H)}, {ETH: marks(3, tf=4 * H)}, {ETH: f},
                            timeframe="4h")
    np.testing.assert_allclose(mk.arrays["funding_rate"][:, 0], [0.001, 0.006, 0.030])
    moves = mk.settlement_moves
    # every settlement except the lone on-open one at 00:00 is recorded
    assert moves["settlement_time"].tolist() == [pd.Timestamp(t, unit="ms", tz="UTC")
                                                 for t in times[1:]]
    assert moves["bar_time"].dt.hour.tolist() == [4, 4, 8, 8]
    assert moves["count"].tolist() == [2, 2, 2, 2]
    # last settlement 07:00 -> bar 08:00, + 2 h = 10:00, rounded up to the grid: 12:00 -> all 3
    assert mk.arrays["funding_covered"].all()


def test_funding_covered_mask_and_holes():
    # ETH: settlements 00, 08, 24 (16:00 missing, 8 h intervals) -> hole [16:00, 24:00);
    # coverage [00:00, 32:00) so all 30 bars but 16..23 are covered. BTC: no funding at all.
    f = funding([T0, T0 + 8 * H, T0 + 24 * H], [0.0001] * 3, funding_interval_hours=8)
    with pytest.warns(CoverageWarning, match=r"ETH/USDT:USDT funding: no settlements in "
                                             r"2021-05-19T16:00:00Z \.\. 2021-05-19T23:00:00Z"):
        mk = Market.from_frames({ETH: klines(30), BTC: klines(30)},
                                {ETH: marks(30), BTC: marks(30)}, {ETH: f}, timeframe="1h")
    covered = mk.arrays["funding_covered"]
    expected = np.ones(30, dtype=bool)
    expected[16:24] = False
    np.testing.assert_array_equal(covered[:, 0], expected)
    assert not covered[:, 1].any() and np.isnan(mk.arrays["funding_rate"][:, 1]).all()


def test_funding_interval_inferred_without_column():
    # no funding_interval_hours: interval = max(8 h, median spacing 8 h) -> last 16:00 covers
    # to 24:00; klines run to 23:00, so nothing is trimmed
    f = funding([T0, T0 + 8 * H, T0 + 16 * H], [0.0001] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mk = Market.from_frames({ETH: klines(24)}, {ETH: marks(24)}, {ETH: f}, timeframe="1h")
    assert mk.arrays["funding_covered"].all()
    # with a 4 h spacing given explicitly the last settlement covers only to 20:00
    f = funding([T0 + 4 * H * i for i in range(5)], [0.0001] * 5, funding_interval_hours=4)
    with pytest.warns(CoverageWarning, match=r"cut 2021-05-19T20:00:00Z \.\. 2021-05-19T23:00:00Z"):
        mk = Market.from_frames({ETH: klines(24)}, {ETH: marks(24)}, {ETH: f}, timeframe="1h")
    assert mk.n_bars == 20


# ---------------------------------------------------------------------------- mark source
def test_missing_mark_is_an_error_unless_fallback_last():
    with pytest.raises(ValueError, match="ETH/USDT:USDT: no mark-price data.*mark_fallback='last'"):
        Market.from_frames({ETH: klines(5)}, timeframe="1h")
    mk = Market.from_frames({ETH: klines(5)}, timeframe="1h", mark_fallback="last")
    assert mk.mark_source == "last" and mk.mark_last_symbols == (ETH,)
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(mk.arrays["mark_" + col], mk.arrays[col])
    assert not mk.arrays["funding_covered"].any()      # no funding given
    mixed = Market.from_frames({ETH: klines(5), BTC: klines(5)}, {BTC: marks(5)},
                               timeframe="1h", mark_fallback="last")
    assert mixed.mark_source == "mixed" and mixed.mark_last_symbols == (ETH,)
    assert mixed.sel(BTC).mark_source == "mark" and "last price" in repr(mixed)
    with pytest.raises(ValueError, match="mark_fallback must be"):
        Market.from_frames({ETH: klines(5)}, mark_fallback="zero")
