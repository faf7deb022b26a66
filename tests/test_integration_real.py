"""Integration tests on real Binance USDT-M data (issue 2): ../shared/data/binance_usdm.

Every expected number is derived by hand in the comments, from the CSV/JSON files (read here with
pandas/json, independently of ``perpbt.data``) and from the formulas of DESIGN sections 1.1, 4
and 5; nothing is copied from engine output. Engine outputs are only *checked*: the accounting
identity is recomputed by replaying the fills, funding by recomputing every payment from the
market arrays, liquidation prices from Binance's formula with the dated bracket table.

Binance's one-way liquidation price (their docs; WB = the margin the position can lose,
cum = the bracket's maintenance amount), for one isolated position of size q > 0 at entry E:

    LP = (WB + cum - side*q*E) / (q*mmr - side*q)
    long:  LP = (q*E - WB - cum) / (q*(1 - mmr))        short: LP = (q*E + WB + cum) / (q*(1 + mmr))

(check, long: at LP the margin balance WB + q*(LP - E) equals the maintenance margin
q*LP*mmr - cum). The tier is the bracket holding q*LP. Note the sign of ``cum``: maintenance
margin = notional*mmr - cum, so cum *lowers* a long's LP (all tier-1 here, where cum = 0).

Binance preset: taker 0.05 %, liquidation clearance fee 1.25 %, liquidation on the mark
(margin balance <= maintenance margin, no fees), takeover at the bankruptcy price.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perpbt as pb
from perpbt.market import CoverageWarning
from tests.helpers import liquidation_transfer

pytestmark = pytest.mark.shared_data

TAKER = 0.0005
CLEARANCE = 0.0125
CAPITAL = 10_000.0
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
HOUR_MS = 3_600_000

# 2021-05-19 crash, ETHUSDT (data README, "Violent periods"): the 13:00 UTC bar has a last-price
# low of 1400.73 while the mark low is 1764.26. Positions are opened at that bar's open (target
# row on the bar before, 12:00, DESIGN 1.1 "Timing") so the crash bar is the first bar held.
CRASH_MS = 1_621_429_200_000  # 2021-05-19 13:00 UTC
CRASH = pd.Timestamp(CRASH_MS, unit="ms", tz="UTC")
DECIDE = CRASH - pd.Timedelta(hours=1)  # target row: filled at the crash bar's open


# ---- files, read independently of perpbt.data --------------------------------------------
@lru_cache(maxsize=None)
def _csv(path: str) -> pd.DataFrame:
    return pd.read_csv(path).set_index("timestamp_ms")


def bar_row(shared_data: Path, symbol_id: str, kind: str, ms: int) -> pd.Series:
    """One row of ``<symbol_id>/<kind>_1h.csv`` (kind: klines or mark) by bar-open time."""
    return _csv(str(shared_data / "binance_usdm" / symbol_id / f"{kind}_1h.csv")).loc[ms]


def bracket_table(shared_data: Path, symbol_id: str) -> list[dict]:
    """Binance's 2023-01-13 bracket table: the loader's oldest table, used for 2020-2023."""
    doc = json.loads((shared_data / "binance_usdm" / symbol_id / "leverage_brackets.json")
                     .read_text())
    return doc["historical"]["2023-01-13"]


def tier_at(table: list[dict], notional: float) -> dict:
    """The bracket of a notional (a notional exactly on a floor belongs to the upper tier)."""
    for row in table:
        if row["notionalFloor"] <= notional < row["notionalCap"]:
            return row
    return table[-1]


def binance_lp(q: float, entry: float, wb: float, side: int, table: list[dict]) -> float:
    """Binance's one-position liquidation price with the self-consistent tier of q*LP."""
    for row in table:
        mmr, cum = row["maintMarginRatio"], row["cum"]
        lp = (wb + cum - side * q * entry) / (q * mmr - side * q)
        if row["notionalFloor"] <= q * lp < row["notionalCap"]:
            return lp
    return lp  # beyond the last cap: the last tier


# ---- markets ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def market(shared_data):
    with pytest.warns(CoverageWarning):
        m = pb.data.read_csv(shared_data / "binance_usdm", ["BTCUSDT", "ETHUSDT"], "1h")
    return m


@pytest.fixture(scope="module")
def eth_crash(market):
    """ETH only, 2021-05-18 00:00 .. 2021-05-21 00:00 (half-open)."""
    return market.sel(["ETHUSDT"]).slice("2021-05-18", "2021-05-21")


def test_real_market_span_and_instruments(market, shared_data):
    # Coverage (data README): funding starts 2020-01-01 00:00 (both symbols), mark 2019-12-23,
    # klines earlier -> common start 2020-01-01 00:00. Ends: klines 2026-05-17 07:00, mark
    # 2026-05-17 06:00 -> common end 06:00. No gaps: (end - start) / 1h + 1 bars.
    start = pd.Timestamp("2020-01-01", tz="UTC")
    end = pd.Timestamp("2026-05-17 06:00", tz="UTC")
    assert market.symbols == (BTC, ETH)
    assert market.index[0] == start and market.index[-1] == end
    assert market.n_bars == (end - start) // pd.Timedelta(hours=1) + 1
    # arrays equal the files row for row (spot checks on the crash bar)
    t = market.index.get_loc(CRASH)
    last = bar_row(shared_data, "ETHUSDT", "klines", CRASH_MS)
    mark = bar_row(shared_data, "ETHUSDT", "mark", CRASH_MS)
    a = market.arrays
    assert (a["open"][t, 1], a["low"][t, 1]) == (last["open"], last["low"]) == (2332.92, 1400.73)
    assert a["mark_low"][t, 1] == mark["low"] == pytest.approx(1764.26, abs=0.005)
    # instruments carry the dated brackets: the 2023-01-13 table in force for 2021
    eth = market.instruments[ETH]
    table = eth.tier_table_at(CRASH_MS)
    rows = bracket_table(shared_data, "ETHUSDT")
    assert list(table.mmr) == [r["maintMarginRatio"] for r in rows]
    assert list(table.maint_amount) == [r["cum"] for r in rows]


# ---- 1. full run: SMA cross on BTC + ETH over the whole span ------------------------------
def sma_targets(m, fast: int, slow: int, exposure: float) -> pd.DataFrame:
    """+exposure when SMA(fast) > SMA(slow) of the close, -exposure below, 0 on a tie,
    NaN (keep: flat) during the warm-up."""
    close = m.close
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    return (np.sign(f - s) * exposure).where(s.notna())


def replay(res, m) -> dict:
    """Books recomputed from the fills alone (average-entry accounting), per bar.

    Returns per bar: realized PnL, fees (recomputed: taker * |qty| * price for order and stop
    fills, none on a takeover liquidation fill, whose clearance fee is paid out of the margin),
    and per bar and symbol the position and average entry after the bar's last fill.
    """
    n_bars, n_sym = m.n_bars, m.n_symbols
    col = {s: i for i, s in enumerate(m.symbols)}
    fills = res.fills
    pos = np.zeros(n_sym)
    avg = np.zeros(n_sym)
    realized = np.zeros(n_bars)
    fees = np.zeros(n_bars)
    fill_realized = np.zeros(len(fills))
    fill_pos_after = np.zeros(len(fills))
    pos_end = np.zeros((n_bars, n_sym))
    avg_end = np.zeros((n_bars, n_sym))
    last_bar = 0
    bars = fills["bar"].to_numpy()
    assert np.all(np.diff(bars) >= 0), "fills are not in bar order"
    for k, (bar, sym, dq, price, reason) in enumerate(zip(
            bars, fills["symbol"], fills["qty"].to_numpy(), fills["price"].to_numpy(),
            fills["reason"])):
        if bar != last_bar:  # carry the state of bars without fills
            pos_end[last_bar:bar] = pos
            avg_end[last_bar:bar] = avg
            last_bar = bar
        n = col[sym]
        p0 = pos[n]
        r = 0.0
        if p0 != 0.0 and np.sign(dq) != np.sign(p0):  # reducing (a flip is two fills)
            closed = min(abs(dq), abs(p0))
            r = closed * (price - avg[n]) * np.sign(p0)
            new = p0 + dq
            if abs(new) <= 1e-12 * abs(p0):
                pos[n], avg[n] = 0.0, 0.0
            elif np.sign(new) != np.sign(p0):
                pos[n], avg[n] = new, price
            else:
                pos[n] = new
        else:  # increasing
            new = p0 + dq
            avg[n] = (abs(p0) * avg[n] + abs(dq) * price) / abs(new)
            pos[n] = new
        realized[bar] += r
        fill_realized[k] = r
        fill_pos_after[k] = pos[n]
        fees[bar] += 0.0 if reason == "liquidation" else TAKER * abs(dq) * price
    pos_end[last_bar:] = pos
    avg_end[last_bar:] = avg
    mark_close = m.arrays["mark_close"]
    unreal = np.where(pos_end != 0.0, pos_end * (mark_close - avg_end), 0.0).sum(axis=1)
    return dict(realized=realized, fees=fees, pos=pos_end, avg=avg_end, unreal=unreal,
                fill_realized=fill_realized, fill_pos_after=fill_pos_after)


def check_funding(res, m, books) -> np.ndarray:
    """Every funding record on a settlement bar, on the position held before that bar's fills,
    paying -qty * mark_open * rate (DESIGN 4 step 1); one record per settlement and open
    position. Returns the funding received per bar."""
    a = m.arrays
    f = res.funding
    assert len(f) > 0
    assert res.counts["settlements"] == len(f)
    col = {s: i for i, s in enumerate(m.symbols)}
    bars = f["bar"].to_numpy()
    ns = f["symbol"].map(col).to_numpy()
    rate = a["funding_rate"][bars, ns]
    mark = a["mark_open"][bars, ns]
    # settlement bars only; BTC/ETH settle strictly every 8 h (00/08/16 UTC, data README)
    assert np.isfinite(rate).all()
    assert set(f["time"].dt.hour) <= {0, 8, 16}
    np.testing.assert_array_equal(f["rate"].to_numpy(), rate)
    np.testing.assert_array_equal(f["mark"].to_numpy(), mark)
    # the position is the one held before the settlement bar's open (the previous close)
    held = books["pos"][bars - 1, ns]
    np.testing.assert_allclose(f["qty"].to_numpy(), held, rtol=1e-12, atol=0)
    np.testing.assert_allclose(f["payment"].to_numpy(), -held * mark * rate, rtol=1e-12,
                               atol=1e-12)
    # ... and every settlement of an open position has its record
    held_all = np.vstack([np.zeros((1, m.n_symbols)), books["pos"][:-1]])
    expected = np.argwhere(~np.isnan(a["funding_rate"]) & (held_all != 0.0))
    got = np.column_stack([bars, ns])
    np.testing.assert_array_equal(got[np.lexsort((ns, bars))], expected)
    received = np.zeros(m.n_bars)
    np.add.at(received, bars, f["payment"].to_numpy())
    return received


def check_identity(res, m, books, received) -> None:
    """equity[t] - equity[t-1] = realized[t] + d(unrealized) - fees[t] + funding[t]
    - liquidation transfer (tests.helpers.liquidation_transfer), every bar,
    to 1e-6 of equity."""
    eq = res.equity["equity"].to_numpy()
    prev = np.concatenate(([CAPITAL], eq[:-1]))
    unreal_prev = np.concatenate(([0.0], books["unreal"][:-1]))
    transfer = liquidation_transfer(m, res)
    rhs = (books["realized"] + books["unreal"] - unreal_prev - books["fees"] + received
           - transfer)
    lhs = eq - prev
    tol = 1e-6 * np.maximum(np.abs(eq), np.abs(prev)) + 1e-9
    bad = np.flatnonzero(np.abs(lhs - rhs) > tol)
    assert len(bad) == 0, (
        f"identity broken at {len(bad)} bars, first {m.index[bad[0]]}: "
        f"d equity {lhs[bad[0]]!r} vs {rhs[bad[0]]!r}")
    # the cumulative form too (no drift): equity = capital + realized - fees + funding + upnl
    cum = CAPITAL + np.cumsum(books["realized"] - books["fees"] + received - transfer) \
        + books["unreal"]
    np.testing.assert_allclose(eq, cum, rtol=1e-6, atol=1e-6)


def check_books(res, m, books) -> None:
    """Fill records agree with the replay: fees, realized PnL, positions and entries."""
    fills = res.fills
    liq = (fills["reason"] == "liquidation").to_numpy()
    fee = fills["fee"].to_numpy()
    notional = (fills["qty"].abs() * fills["price"]).to_numpy()
    np.testing.assert_allclose(fee[~liq], TAKER * notional[~liq], rtol=1e-12)
    assert (fee[liq] == 0.0).all()
    np.testing.assert_allclose(fills["realized"].to_numpy(), books["fill_realized"],
                               rtol=1e-9, atol=1e-9 * CAPITAL)
    np.testing.assert_allclose(fills["position_after"].to_numpy(), books["fill_pos_after"],
                               rtol=1e-12, atol=1e-12)
    eq = res.equity
    for n, sym in enumerate(m.symbols):
        np.testing.assert_allclose(eq[f"{sym}:position"].to_numpy(), books["pos"][:, n],
                                   rtol=1e-12, atol=1e-12)
        open_ = books["pos"][:, n] != 0.0
        np.testing.assert_allclose(eq[f"{sym}:entry_price"].to_numpy()[open_],
                                   books["avg"][open_, n], rtol=1e-9)
        assert np.isnan(eq[f"{sym}:entry_price"].to_numpy()[~open_]).all()


def check_liquidations(res, m, shared_data) -> None:
    """Each takeover liquidation: fill at the bankruptcy price, the user loses exactly the
    margin (isolated) or the equity share (cross), clearance fee min(1.25 % * q * BP, X) with
    X = side*q*(trigger - BP), insurance change X - fee, user loss = -upnl + X."""
    liqs = res.liquidations
    fills = res.fills[res.fills["reason"] == "liquidation"]
    assert len(fills) == len(liqs)
    for (_, row), (_, fill) in zip(liqs.iterrows(), fills.iterrows()):
        q, side = abs(row["qty"]), np.sign(row["qty"])
        bp, trig = row["bankruptcy_price"], row["trigger_mark"]
        assert fill["price"] == row["avg_fill"] == bp
        assert fill["qty"] == -row["qty"]
        x = side * q * (trig - bp)
        clearance = min(CLEARANCE * q * bp, max(x, 0.0))
        assert row["clearance_fee"] == pytest.approx(clearance, rel=1e-9, abs=1e-9)
        assert row["insurance_change"] == pytest.approx(x - clearance, rel=1e-9, abs=1e-6)
        assert row["user_loss"] == pytest.approx(-fill["realized"], rel=1e-9)
        assert row["user_loss"] == pytest.approx(
            -row["upnl_at_trigger"] + row["clearance_fee"] + row["insurance_change"],
            rel=1e-9, abs=1e-6)
        # the trigger mark is inside the bar's mark range
        t, n = int(row["bar"]), m.symbols.index(row["symbol"])
        a = m.arrays
        assert a["mark_low"][t, n] - 1e-9 <= trig <= a["mark_high"][t, n] + 1e-9
        if res.settings["margin"] == "isolated":
            # trigger = the position's LP from Binance's formula with the margin it lost (the
            # 2023-01-13 brackets are in force for the whole span: the newer table starts
            # 2026-09, after the data ends)
            trade = res.trades[res.trades["trade_id"] == fill["trade_id"]].iloc[0]
            sid = row["symbol"].split("/")[0] + "USDT"
            lp = binance_lp(q, trade["entry_price"], row["user_loss"], side,
                            bracket_table(shared_data, sid))
            assert trig == pytest.approx(lp, rel=1e-9)
            assert trade["liquidated"] and trade["exit_reason"] == "liquidation"


FULL_RUNS = {
    # the brief's configuration: 24/96-bar SMA cross, +-2, leverage 5
    "sma24_96_x2_lev5": (24, 96, 2.0, 5),
    # slower cross at +-1: equity stays in the thousands; isolated liquidations happen at
    # leverage 5 (isolated LP about 19.5 % away) in the 2020-2022 crashes
    "sma168_720_x1_lev5": (168, 720, 1.0, 5),
}


@pytest.mark.parametrize("margin", ["isolated", "cross"])
@pytest.mark.parametrize("config", list(FULL_RUNS))
def test_full_run_books_balance(market, shared_data, config, margin):
    fast, slow, exposure, lev = FULL_RUNS[config]
    targets = sma_targets(market, fast, slow, exposure)
    pb.backtest(market.slice(None, market.index[2000]), targets.iloc[:2000], venue="binance",
                margin=margin, leverage=lev)  # compile outside the timing
    t0 = time.perf_counter()
    res = pb.backtest(market, targets, venue="binance", margin=margin, leverage=lev,
                      liquidation="takeover")
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0, f"full run took {elapsed:.1f} s"
    assert not res.bust
    assert res.counts["trades"] > 0 and len(res.trades) == res.counts["trades"]
    assert res.counts["settlements"] > 0
    eq = res.equity
    assert np.isfinite(eq[["wallet", "equity", "margin_used", "margin_ratio"]].to_numpy()).all()
    assert (eq["equity"] > 0).all()
    # orders only on target changes: one order per change (a flip = close + open fill)
    order_fills = res.fills[res.fills["reason"] == "order"]
    assert len(order_fills) > 0
    books = replay(res, market)
    check_books(res, market, books)
    received = check_funding(res, market, books)
    check_identity(res, market, books, received)
    check_liquidations(res, market, shared_data)
    iso = eq[[f"{s}:isolated_margin" for s in market.symbols]].to_numpy()
    if margin == "isolated":
        assert (iso >= 0.0).all()  # no isolated margin is ever negative
        # free balance = wallet - isolated margins never negative either
        assert (eq["wallet"].to_numpy() - iso.sum(axis=1) >= -1e-9 * CAPITAL).all()
        if config == "sma168_720_x1_lev5":
            assert res.counts["liquidations"] > 0  # the reason for this configuration
    else:
        assert (iso == 0.0).all()
    st = res.stats()
    assert st["trades"] == res.counts["trades"]
    assert st["final_equity"] == pytest.approx(eq["equity"].iloc[-1], rel=1e-12)
    assert st["fees_paid"] == pytest.approx(books["fees"].sum(), rel=1e-9)
    assert st["funding_paid"] == pytest.approx(-received.sum(), rel=1e-9)


def test_full_run_cross_full_liquidation(market, shared_data):
    # 168/720 SMA cross at +-2 in cross margin: both symbols short into the 2021-07-26 short
    # squeeze (data README: BTC last high 48168.6 in the 01:00 bar). What must hold whatever
    # bar it happens on: one event closing both positions at one bar-time s, the account
    # condition wallet + sum upnl = sum maintenance margin at the trigger marks (Binance
    # brackets), BP_i = M_i - side_i * MM_i / q_i (equity share = E*MM_i/sum MM with E = sum MM
    # at the trigger), the users' losses summing to the whole wallet, the wallet 0 after, the
    # identity holding through the event.
    targets = sma_targets(market, 168, 720, 2.0)
    res = pb.backtest(market, targets, venue="binance", margin="cross", leverage=5,
                      liquidation="takeover")
    assert res.bust
    books = replay(res, market)
    check_books(res, market, books)
    received = check_funding(res, market, books)
    check_identity(res, market, books, received)
    check_liquidations(res, market, shared_data)
    liqs = res.liquidations
    assert len(liqs) == 2 and liqs["event_id"].nunique() == 1
    assert set(liqs["symbol"]) == {BTC, ETH}
    t = int(liqs["bar"].iloc[0])
    assert (liqs["bar"] == t).all() and liqs["s"].nunique() == 1
    s = float(liqs["s"].iloc[0])
    a = market.arrays
    eq = res.equity
    wallet_before = eq["wallet"].iloc[t - 1]
    # no funding, no order at the trigger bar's open before the trigger (else adjust)
    assert not (res.funding["bar"] == t).any()
    assert not ((res.fills["bar"] == t) & (res.fills["reason"] != "liquidation")).any()
    upnl = mm = 0.0
    for _, row in liqs.iterrows():
        n = market.symbols.index(row["symbol"])
        q, side = abs(row["qty"]), np.sign(row["qty"])
        # trigger mark on the pessimistic path: short -> the high first (segment 0)
        assert 0.0 <= s <= 1.0
        x1 = a["mark_high"][t, n] if side < 0 else a["mark_low"][t, n]
        mark = a["mark_open"][t, n] + s * (x1 - a["mark_open"][t, n])
        assert row["trigger_mark"] == pytest.approx(mark, rel=1e-9)
        entry = books["avg"][t - 1, n]
        upnl += side * q * (mark - entry)
        sid = row["symbol"].split("/")[0] + "USDT"
        tier = tier_at(bracket_table(shared_data, sid), q * mark)
        mm_i = q * mark * tier["maintMarginRatio"] - tier["cum"]
        mm += mm_i
        assert row["bankruptcy_price"] == pytest.approx(mark - side * mm_i / q, rel=1e-9)
    assert wallet_before + upnl == pytest.approx(mm, rel=1e-7)
    assert liqs["user_loss"].sum() == pytest.approx(wallet_before, rel=1e-9)
    assert eq["wallet"].iloc[t] == pytest.approx(0.0, abs=1e-6)
    assert eq["equity"].iloc[t:].abs().max() == pytest.approx(0.0, abs=1e-6)
    assert res.bust_bar == t
    assert not (res.fills["bar"] > t).any()  # bust: no further orders


# ---- 2. 2021-05-19 ETH: last price through the liquidation price, mark not ----------------
def open_long(m, exposure: float) -> pd.DataFrame:
    """Target +exposure decided at 12:00 (fills at the crash bar's 13:00 open), 0 decided at
    13:00 (closes at 14:00's open): the crash bar is the one bar held."""
    frame = pd.DataFrame(np.nan, index=m.index, columns=list(m.symbols))
    frame.loc[DECIDE, ETH] = exposure
    frame.loc[CRASH, ETH] = 0.0
    return frame


def crash_prices(shared_data):
    last = bar_row(shared_data, "ETHUSDT", "klines", CRASH_MS)
    mark = bar_row(shared_data, "ETHUSDT", "mark", CRASH_MS)
    nxt = bar_row(shared_data, "ETHUSDT", "klines", CRASH_MS + HOUR_MS)
    return last, mark, nxt


# isolated (exposure, leverage) -> liquidated in the crash bar?
# Entry E = 2332.92 (13:00 open, file), equity 10,000 (nothing held before): q = x*10,000/E.
# Margin posted q*E/L = 10,000*x/L; the 0.05 % open fee (x*10,000*0.0005) comes from the free
# balance 10,000*(1 - x/L) when it covers it (x < L), else the rest from the margin:
#   x=2, L=3 : q = 8.572947, M = 6,666.667, fee 10 from free -> LP = (20,000 - 6,666.667)
#              / (q*0.995) = 1563.09   (tier 1: q*LP = 13,400 < 100,000; mmr 0.5 %, cum 0)
#   x=2, L=4 : M = 5,000 -> LP = 15,000 / (q*0.995) = 1758.49   (5.8 below the mark low!)
#   x=4, L=4 : q = 17.145894, M = 10,000 posted, free 0 -> fee 20 from the margin, M = 9,980
#              -> LP = (40,000 - 9,980) / (q*0.995) = 1759.66
#   x=2, L=5 : M = 4,000 -> LP = 16,000 / (q*0.995) = 1875.72  > 1764.26 mark low
#   x=2, L=10: M = 2,000 -> LP = 18,000 / (q*0.995) = 2110.18
#   x=2, L=20: M = 1,000 -> LP = 19,000 / (q*0.995) = 2227.41
# The last low 1400.73 is below every one of them; the mark low 1764.26 only below the
# last three; mark open 2330.42 above all (no trigger at the open).
ISOLATED_CASES = [(2.0, 3, False), (2.0, 4, False), (4.0, 4, False), (2.0, 5, True),
                  (2.0, 10, True), (2.0, 20, True)]


@pytest.mark.parametrize("exposure,lev,liquidated", ISOLATED_CASES,
                         ids=[f"x{x:g}-lev{lv}" for x, lv, _ in ISOLATED_CASES])
def test_eth_crash_isolated_last_vs_mark(eth_crash, shared_data, exposure, lev, liquidated):
    last, mark, nxt = crash_prices(shared_data)
    assert (last["low"], mark["low"]) == (1400.73, pytest.approx(1764.2582, abs=1e-4))
    entry = last["open"]
    q = exposure * CAPITAL / entry
    posted = q * entry / lev
    fee = TAKER * q * entry
    free = CAPITAL - posted
    margin = posted - max(fee - free, 0.0)
    table = bracket_table(shared_data, "ETHUSDT")
    lp = binance_lp(q, entry, margin, +1, table)
    tier = tier_at(table, q * lp)
    assert tier["bracket"] == 1  # so LP = (q*E - M) / (q*(1 - 0.005))
    assert lp == pytest.approx((q * entry - margin) / (q * (1 - 0.005)), rel=1e-12)
    assert last["low"] < lp  # the last price went through every LP here
    assert (lp > mark["low"]) == liquidated

    res = pb.backtest(eth_crash, open_long(eth_crash, exposure), venue="binance",
                      margin="isolated", leverage=lev)
    t = eth_crash.index.get_loc(CRASH)
    f = res.fills
    entry_fill = f.iloc[0]
    assert (entry_fill["bar"], entry_fill["reason"]) == (t, "order")
    assert entry_fill["price"] == entry  # the crash bar's open, from the CSV
    assert entry_fill["qty"] == pytest.approx(q, rel=1e-12)
    assert entry_fill["fee"] == pytest.approx(fee, rel=1e-12)
    trade = res.trades.iloc[0]
    assert trade["liq_price"] == pytest.approx(lp, rel=1e-9)
    eq = res.equity
    if not liquidated:
        assert len(res.liquidations) == 0 and res.counts["liquidations"] == 0
        # held through the crash bar: position, margin and LP as derived
        assert eq[f"{ETH}:position"].iloc[t] == pytest.approx(q, rel=1e-12)
        assert eq[f"{ETH}:isolated_margin"].iloc[t] == pytest.approx(margin, rel=1e-12)
        assert eq[f"{ETH}:liq_price"].iloc[t] == pytest.approx(lp, rel=1e-9)
        # equity at the 13:00 close: 10,000 - fee + q*(mark close - E)
        assert eq["equity"].iloc[t] == pytest.approx(
            CAPITAL - fee + q * (mark["close"] - entry), rel=1e-12)
        # closed at 14:00's open (no settlement at 14:00): wallet = 10,000 - both fees
        # + q*(open_14 - E)
        exit_fill = f.iloc[1]
        assert (exit_fill["bar"], exit_fill["reason"], exit_fill["price"]) == (
            t + 1, "order", nxt["open"])
        close_fee = TAKER * q * nxt["open"]
        assert eq["wallet"].iloc[t + 1] == pytest.approx(
            CAPITAL - fee - close_fee + q * (nxt["open"] - entry), rel=1e-12)
        assert trade["exit_reason"] == "order" and not trade["liquidated"]
    else:
        liq = res.liquidations
        assert len(liq) == 1
        row = liq.iloc[0]
        assert row["bar"] == t and row["symbol"] == ETH
        assert row["trigger_mark"] == pytest.approx(lp, rel=1e-6)
        assert row["liq_price"] == pytest.approx(lp, rel=1e-9)
        # pessimistic path for a long: the mark goes open -> low first (segment 0)
        assert row["s"] == pytest.approx((lp - mark["open"]) / (mark["low"] - mark["open"]),
                                         rel=1e-9)
        # bankruptcy: margin 0 -> BP = E - M/q; the user loses exactly the margin
        bp = entry - margin / q
        assert row["bankruptcy_price"] == pytest.approx(bp, rel=1e-12)
        assert row["user_loss"] == pytest.approx(margin, rel=1e-9)
        # X = q*(LP - BP); tier 1: 1.25 % of q*BP exceeds X -> the fee takes all of X
        x = q * (lp - bp)
        assert CLEARANCE * q * bp > x
        assert row["clearance_fee"] == pytest.approx(x, rel=1e-9)
        assert row["insurance_change"] == pytest.approx(0.0, abs=1e-6)
        assert row["upnl_at_trigger"] == pytest.approx(q * (lp - entry), rel=1e-9)
        # wallet: 10,000 - open fee - margin; flat afterwards, the 0 target sends nothing
        assert eq["wallet"].iloc[t] == pytest.approx(CAPITAL - fee - margin, rel=1e-12)
        assert eq["equity"].iloc[-1] == pytest.approx(CAPITAL - fee - margin, rel=1e-12)
        assert eq[f"{ETH}:position"].iloc[t] == 0.0
        assert len(f) == 2 and f.iloc[1]["reason"] == "liquidation"
        assert trade["liquidated"] and trade["exit_reason"] == "liquidation"


# cross, one position: the margin the position can lose is the whole wallet,
# W = 10,000 - open fee (cross initial-margin check q*E/L <= equity holds for x <= L).
#   x=3, L=5 : q = 12.859421, W = 9,985 -> LP = (30,000 - 9,985) / (q*0.995) = 1564.27
#   x=5, L=10: q = 21.432368, W = 9,975 -> LP = (50,000 - 9,975) / (q*0.995) = 1876.89
# (the liquidated account: E at the trigger = MM = q*LP*0.005 is its one share, so
#  BP = LP - MM/q = LP*(1 - 0.005); the user's realized loss q*(E - BP) = W: wallet 0.)
CROSS_CASES = [(3.0, 5, False), (5.0, 10, True)]


@pytest.mark.parametrize("exposure,lev,liquidated", CROSS_CASES,
                         ids=[f"x{x:g}-lev{lv}" for x, lv, _ in CROSS_CASES])
def test_eth_crash_cross_last_vs_mark(eth_crash, shared_data, exposure, lev, liquidated):
    last, mark, nxt = crash_prices(shared_data)
    entry = last["open"]
    q = exposure * CAPITAL / entry
    fee = TAKER * q * entry
    wallet = CAPITAL - fee
    table = bracket_table(shared_data, "ETHUSDT")
    lp = binance_lp(q, entry, wallet, +1, table)
    assert tier_at(table, q * lp)["bracket"] == 1
    assert lp == pytest.approx((q * entry - wallet) / (q * 0.995), rel=1e-12)
    assert last["low"] < lp
    assert (lp > mark["low"]) == liquidated

    res = pb.backtest(eth_crash, open_long(eth_crash, exposure), venue="binance",
                      margin="cross", leverage=lev)
    t = eth_crash.index.get_loc(CRASH)
    f = res.fills
    assert (f.iloc[0]["bar"], f.iloc[0]["price"]) == (t, entry)
    assert f.iloc[0]["qty"] == pytest.approx(q, rel=1e-12)
    eq = res.equity
    assert res.trades.iloc[0]["liq_price"] == pytest.approx(lp, rel=1e-9)
    if not liquidated:
        assert len(res.liquidations) == 0 and not res.bust
        assert eq[f"{ETH}:position"].iloc[t] == pytest.approx(q, rel=1e-12)
        assert eq[f"{ETH}:liq_price"].iloc[t] == pytest.approx(lp, rel=1e-9)
        assert eq["equity"].iloc[t] == pytest.approx(wallet + q * (mark["close"] - entry),
                                                     rel=1e-12)
        assert eq["wallet"].iloc[t + 1] == pytest.approx(
            wallet - TAKER * q * nxt["open"] + q * (nxt["open"] - entry), rel=1e-12)
    else:
        liq = res.liquidations
        assert len(liq) == 1
        row = liq.iloc[0]
        assert row["bar"] == t
        assert row["trigger_mark"] == pytest.approx(lp, rel=1e-6)
        assert row["s"] == pytest.approx((lp - mark["open"]) / (mark["low"] - mark["open"]),
                                         rel=1e-9)
        assert row["bankruptcy_price"] == pytest.approx(lp * (1 - 0.005), rel=1e-9)
        assert row["user_loss"] == pytest.approx(wallet, rel=1e-9)
        assert f.iloc[1]["realized"] == pytest.approx(-wallet, rel=1e-9)
        assert eq["wallet"].iloc[t] == pytest.approx(0.0, abs=1e-6)
        assert res.bust and res.bust_bar == t


# ---- 3. a stop on last vs on mark in the crash bar ---------------------------------------
# Long x=2 at L=3 (LP 1563.09, above), entered at the 13:00 open E = 2332.92, stop 2 % ->
# level S = 0.98*E = 2286.2616. Pessimistic path (long: low first), segment 0:
#   last 2332.92 -> 1400.73:        crosses S at s_l = (S - 2332.92)/(1400.73 - 2332.92) = 0.050053
#   mark 2330.41966 -> 1764.25818:  crosses S at s_m = (S - 2330.41966)/(1764.25818 - 2330.41966)
#                                                                         = 0.077996
# trigger="last" fills at S (DESIGN 4: a last-triggered stop fills at its level);
# trigger="mark" fills at the last price interpolated at s_m: 2332.92 + s_m*(1400.73 - 2332.92)
#   = 2260.21. The mark falls slower than last (566 vs 932 over the segment) and starts 2.5
# lower, so it reaches S later, when last is already below S: the mark-triggered fill is
# LOWER (worse for the long) than the last-triggered one, by about 26.
def _stop_run(eth_crash, pct, trigger):
    return pb.backtest(eth_crash, open_long(eth_crash, 2.0), venue="binance",
                       margin="isolated", leverage=3, stop=pb.StopLoss(pct, trigger=trigger))


def test_eth_crash_stop_last_vs_mark(eth_crash, shared_data):
    last, mark, _ = crash_prices(shared_data)
    entry = last["open"]
    q = 2.0 * CAPITAL / entry
    level = 0.98 * entry
    s_last = (level - last["open"]) / (last["low"] - last["open"])
    s_mark = (level - mark["open"]) / (mark["low"] - mark["open"])
    fill_mark = last["open"] + s_mark * (last["low"] - last["open"])
    assert 0 < s_last < s_mark < 1 and fill_mark < level  # derived above
    t = eth_crash.index.get_loc(CRASH)
    out = {}
    for trigger in ("last", "mark"):
        res = _stop_run(eth_crash, 0.02, trigger)
        stops = res.fills[res.fills["reason"] == "stop_loss"]
        assert len(stops) == 1 and res.counts["stops"] == 1
        row = stops.iloc[0]
        assert row["bar"] == t and row["qty"] == pytest.approx(-q, rel=1e-12)
        assert last["low"] <= row["price"] <= last["high"]
        assert row["fee"] == pytest.approx(TAKER * q * row["price"], rel=1e-12)
        assert row["realized"] == pytest.approx(q * (row["price"] - entry), rel=1e-9)
        trade = res.trades.iloc[0]
        assert trade["stop_price"] == pytest.approx(level, rel=1e-12)
        assert trade["exit_reason"] == "stop_loss" and not trade["stop_beyond_liq"]
        assert len(res.liquidations) == 0
        # flat after the stop; the 0 target at 13:00 sends no order (already flat)
        assert res.equity[f"{ETH}:position"].iloc[t] == 0.0 and len(res.fills) == 2
        assert res.equity["wallet"].iloc[t] == pytest.approx(
            CAPITAL - TAKER * q * entry - TAKER * q * row["price"]
            + q * (row["price"] - entry), rel=1e-12)
        out[trigger] = row
    assert out["last"]["s"] == pytest.approx(s_last, rel=1e-9)
    assert out["last"]["price"] == pytest.approx(level, rel=1e-12)
    assert out["mark"]["s"] == pytest.approx(s_mark, rel=1e-9)
    assert out["mark"]["price"] == pytest.approx(fill_mark, rel=1e-9)
    assert out["mark"]["s"] > out["last"]["s"]
    assert out["mark"]["price"] < out["last"]["price"]


def test_eth_crash_wide_stop_fires_on_last_only(eth_crash, shared_data):
    # Same long, stop 30 %: level 0.7*2332.92 = 1633.044, between the last low 1400.73 and
    # the mark low 1764.26 (and above the LP 1563.09). trigger="last" fires at the level,
    # s = (1633.044 - 2332.92)/(1400.73 - 2332.92) = 0.750788; trigger="mark" never reaches it:
    # the position is held through the bar and closed by the 0 target at 14:00's open.
    last, mark, nxt = crash_prices(shared_data)
    entry = last["open"]
    level = 0.7 * entry
    assert last["low"] < level < mark["low"]
    t = eth_crash.index.get_loc(CRASH)
    res = _stop_run(eth_crash, 0.30, "last")
    stops = res.fills[res.fills["reason"] == "stop_loss"]
    assert len(stops) == 1
    assert stops.iloc[0]["bar"] == t
    assert stops.iloc[0]["price"] == pytest.approx(level, rel=1e-12)
    assert stops.iloc[0]["s"] == pytest.approx(
        (level - last["open"]) / (last["low"] - last["open"]), rel=1e-9)
    res = _stop_run(eth_crash, 0.30, "mark")
    assert (res.fills["reason"] != "stop_loss").all() and res.counts["stops"] == 0
    assert len(res.liquidations) == 0
    exit_fill = res.fills.iloc[1]
    assert (exit_fill["bar"], exit_fill["reason"], exit_fill["price"]) == (t + 1, "order",
                                                                          nxt["open"])
