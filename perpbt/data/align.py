"""bars + mark + funding -> Market: the grid, settlement mapping and coverage (DESIGN 3).

Pure helpers on int64 ms arrays, then :func:`build_market`, the body of
``Market.from_frames``.

Rules:

- **Grid.** One bar-open grid for all symbols, no gaps (a missing bar is an error, never
  filled). Every series is trimmed to the span all requested series of all symbols cover:
  klines and mark [first open, last open + timeframe); funding [bar of the first settlement,
  bar of the last settlement + its interval). A trim warns (:class:`CoverageWarning`) listing
  the bars cut per symbol and series; ``strict=True`` raises instead. Funding rows outside the
  grid are simply not used (no warning).
- **Settlements.** A settlement at most 60 s after a bar open belongs to that bar (exchange
  jitter such as 1577923200002); later inside a bar it moves to the next open. Settlements
  landing on one bar are summed. Moved or merged settlements are listed in
  ``settlement_moves``. The real time is ``raw_calc_time_ms`` when present, else the frame's
  time.
- **Funding intervals** come from ``funding_interval_hours`` when present; otherwise they are
  taken as max(8 h, median spacing of the settlements) -- Binance's standard interval as a
  floor; pass the column for venues with shorter intervals. Two consecutive settlements
  further apart than the larger of their intervals (+ 60 s) leave a hole: the bars from the
  earlier one's bar + its interval to the later one's bar are not covered (warned, like a trim).
"""

from __future__ import annotations

import re
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from perpbt import _validate as V
from perpbt.instruments import Instrument
from perpbt.market import MOVES_COLUMNS, CoverageWarning, Market, empty_moves

SETTLEMENT_TOLERANCE_MS = 60_000
DEFAULT_FUNDING_INTERVAL_MS = 8 * 3_600_000
_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD")


# -------------------------------------------------------------------------------- symbols
def to_ccxt_symbol(symbol: str) -> str:
    """``"BTCUSDT"`` -> ``"BTC/USDT:USDT"`` (linear perp); a ccxt name is returned unchanged."""
    if "/" in symbol:
        return symbol
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[:-len(quote)]}/{quote}:{quote}"
    raise ValueError(f"cannot map {symbol!r} to a ccxt symbol: quote not one of {_QUOTES}")


def to_exchange_id(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTCUSDT"``; an exchange id is returned unchanged."""
    match = re.fullmatch(r"([^/]+)/([^:]+)(?::(.+))?", symbol)
    return f"{match.group(1)}{match.group(2)}" if match else symbol


# ------------------------------------------------------------------------ grid + funding
def settlement_bars(settle_ms: np.ndarray, grid_start_ms: int, timeframe_ms: int,
                    tolerance_ms: int = SETTLEMENT_TOLERANCE_MS) -> tuple[np.ndarray, np.ndarray]:
    """(bar open each settlement belongs to, moved?) on the grid through ``grid_start_ms``."""
    settle_ms = np.asarray(settle_ms, dtype=np.int64)
    k = (settle_ms - grid_start_ms) // timeframe_ms          # floor, also before the start
    offset = settle_ms - (grid_start_ms + k * timeframe_ms)
    moved = offset > tolerance_ms
    return grid_start_ms + (k + moved) * timeframe_ms, moved


def funding_intervals(settle_ms: np.ndarray, interval_hours: np.ndarray | None) -> np.ndarray:
    """Interval (ms) after each settlement: the column, else max(8 h, median spacing)."""
    n = len(settle_ms)
    if n > 1:
        spacing = np.diff(np.round(np.asarray(settle_ms) / 60_000.0) * 60_000.0)
        guess = max(float(DEFAULT_FUNDING_INTERVAL_MS), float(np.median(spacing)))
    else:
        guess = float(DEFAULT_FUNDING_INTERVAL_MS)
    out = np.full(n, int(guess), dtype=np.int64)
    if interval_hours is not None:
        given = ~np.isnan(interval_hours)
        out[given] = np.round(interval_hours[given] * 3_600_000.0).astype(np.int64)
    return out


def funding_span(settle_ms: np.ndarray, intervals_ms: np.ndarray, grid_start_ms: int,
                 timeframe_ms: int) -> tuple[int, int]:
    """[bar of the first settlement, bar of the last settlement + its interval) in ms.

    The end is rounded up to the grid: a bar whose open lies before it is covered (its rate
    sums settlements up to its open + 60 s, all known).
    """
    bars, _ = settlement_bars(settle_ms[[0, -1]], grid_start_ms, timeframe_ms)
    end = int(bars[1] + intervals_ms[-1])
    end = grid_start_ms - ((grid_start_ms - end) // timeframe_ms) * timeframe_ms  # ceil to grid
    return int(bars[0]), end


def funding_holes(settle_ms: np.ndarray, intervals_ms: np.ndarray, grid_start_ms: int,
                  timeframe_ms: int) -> list[tuple[int, int]]:
    """[start, end) ms ranges between settlements where some were missing."""
    if len(settle_ms) < 2:
        return []
    gap = np.diff(settle_ms)
    allowed = np.maximum(intervals_ms[:-1], intervals_ms[1:]) + SETTLEMENT_TOLERANCE_MS
    holes = []
    bars, _ = settlement_bars(settle_ms, grid_start_ms, timeframe_ms)
    for i in np.flatnonzero(gap > allowed):
        holes.append((int(bars[i] + intervals_ms[i]), int(bars[i + 1])))
    return holes


def coverage_mask(time_ms: np.ndarray, span: tuple[int, int],
                  holes: list[tuple[int, int]]) -> np.ndarray:
    """True for bar opens inside ``span`` and outside every hole."""
    mask = (time_ms >= span[0]) & (time_ms < span[1])
    for start, end in holes:
        mask &= ~((time_ms >= start) & (time_ms < end))
    return mask


def map_settlements(settle_ms: np.ndarray, rates: np.ndarray, time_ms: np.ndarray,
                    timeframe_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar summed rates (NaN = no settlement) and the index of each moved/merged row.

    Returns (rate column of length T, rows: int array of settlement indices that were moved
    inside a bar or merged with another on their bar, with their bar index and count).
    """
    n_bars = len(time_ms)
    bars, moved = settlement_bars(settle_ms, int(time_ms[0]), timeframe_ms)
    idx = (bars - time_ms[0]) // timeframe_ms
    inside = (idx >= 0) & (idx < n_bars)
    counts = np.bincount(idx[inside], minlength=n_bars)
    sums = np.bincount(idx[inside], weights=rates[inside], minlength=n_bars)
    column = np.full(n_bars, np.nan)
    column[counts > 0] = sums[counts > 0]
    count_of = np.zeros(len(settle_ms), dtype=np.int64)
    count_of[inside] = counts[idx[inside]]
    noted = np.flatnonzero(inside & (moved | (count_of > 1)))
    return column, np.stack([noted, idx[noted], count_of[noted]], axis=1)


def common_span(spans: Mapping[tuple[str, str], tuple[int, int]]) -> tuple[int, int]:
    """The intersection [max start, min end) of all spans."""
    return max(s for s, _ in spans.values()), min(e for _, e in spans.values())


# -------------------------------------------------------------------------- the builder
def _read_ohlc(symbol, frame, series, prefix, with_volume):
    times = V.frame_times(frame, symbol, series)
    fields = V.PRICE_FIELDS + (("volume",) if with_volume else ())
    cols = V.frame_columns(frame, fields, symbol, series)
    if len(times) == 0:
        raise ValueError(f"{symbol}: {series} frame is empty")
    V.check_times(times, symbol, series)
    V.check_prices(symbol, prefix, times, cols)
    if with_volume:
        V.check_volume(symbol, times, cols["volume"])
    return times, cols


def _read_funding(symbol, frame):
    times = V.frame_times(frame, symbol, "funding")
    if "raw_calc_time_ms" in frame.columns:
        raw = frame["raw_calc_time_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
        times = np.where(np.isnan(raw), times, raw).astype(np.int64)
    rates = V.frame_columns(frame, ("funding_rate",), symbol, "funding")["funding_rate"]
    hours = None
    if "funding_interval_hours" in frame.columns:
        hours = frame["funding_interval_hours"].to_numpy(dtype=np.float64, na_value=np.nan)
    V.check_funding(symbol, times, rates, hours)
    return times, rates, hours


def _trim_report(symbol, series, start, end, lo, hi, tf) -> list[str]:
    out = []
    if start < lo:
        out.append(f"{symbol} {series}: cut {iso_range(start, lo, tf)} (before the common start)")
    if end > hi:
        out.append(f"{symbol} {series}: cut {iso_range(hi, end, tf)} (after the common end)")
    return out


def iso_range(start: int, end: int, tf: int) -> str:
    n = (end - start) // tf
    return f"{V.iso(start)} .. {V.iso(end - tf)} ({n} bar{'s' if n != 1 else ''})"


def build_market(ohlcv: Mapping[str, pd.DataFrame], mark: Mapping[str, pd.DataFrame] | None,
                 funding: Mapping[str, pd.DataFrame] | None, *, timeframe: str | None,
                 instruments: Mapping[str, Instrument] | None, mark_fallback: str,
                 strict: bool) -> Market:
    """See ``Market.from_frames``."""
    if mark_fallback not in ("error", "last"):
        raise ValueError(f"mark_fallback must be 'error' or 'last', got {mark_fallback!r}")
    if not ohlcv:
        raise ValueError("ohlcv is empty: give at least one symbol")
    symbols = tuple(ohlcv)
    mark, funding = dict(mark or {}), dict(funding or {})
    for name, given in (("mark", mark), ("funding", funding)):
        extra = [s for s in given if s not in ohlcv]
        if extra:
            raise ValueError(f"{name} given for symbols without ohlcv: {extra}")

    tf = V.parse_timeframe(timeframe) if timeframe is not None else None
    last, marks, funds, mark_last = {}, {}, {}, []
    for sym in symbols:
        last[sym] = _read_ohlc(sym, ohlcv[sym], "klines", "", True)
        if mark.get(sym) is not None:
            marks[sym] = _read_ohlc(sym, mark[sym], "mark", "mark_", False)
        elif mark_fallback == "last":
            mark_last.append(sym)
        else:
            raise ValueError(f"{sym}: no mark-price data; pass mark frames or "
                             f"mark_fallback='last' to use the last price as mark (recorded)")
        if funding.get(sym) is not None and len(funding[sym]):
            funds[sym] = _read_funding(sym, funding[sym])
    if tf is None:
        tf = V.infer_timeframe({f"{s} klines": last[s][0] for s in symbols}
                               | {f"{s} mark": marks[s][0] for s in marks})
    for sym in symbols:
        V.check_grid(sym, "klines", last[sym][0], tf)
        if sym in marks:
            V.check_grid(sym, "mark", marks[sym][0], tf)

    # one phase for every series: bar opens congruent modulo the timeframe
    phase_ref = (symbols[0], int(last[symbols[0]][0][0]))
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    for sym in symbols:
        for series, data in (("klines", last.get(sym)), ("mark", marks.get(sym))):
            if data is None:
                continue
            t = data[0]
            if (int(t[0]) - phase_ref[1]) % tf:
                raise ValueError(f"{sym}: {series} bar opens ({V.iso(t[0])}) are not on the "
                                 f"{V.timeframe_str(tf)} grid of {phase_ref[0]} klines "
                                 f"({V.iso(phase_ref[1])})")
            spans[(sym, series)] = (int(t[0]), int(t[-1]) + tf)
        if sym in funds:
            times, _, hours = funds[sym]
            intervals = funding_intervals(times, hours)
            funds[sym] = funds[sym] + (intervals,)
            spans[(sym, "funding")] = funding_span(times, intervals, phase_ref[1], tf)
    lo, hi = common_span(spans)
    if hi <= lo:
        listing = "; ".join(f"{s} {k}: {V.iso(a)} .. {V.iso(b)}"
                            for (s, k), (a, b) in spans.items())
        raise ValueError(f"the series share no common span ({listing})")

    report = []
    for (sym, series), (start, end) in spans.items():
        if series != "funding":
            report += _trim_report(sym, series, start, end, lo, hi, tf)
    time_ms = np.arange(lo, hi, tf, dtype=np.int64)
    n_bars, n_sym = len(time_ms), len(symbols)
    arrays = {k: np.empty((n_bars, n_sym)) for k in
              ("open", "high", "low", "close", "volume", "mark_open", "mark_high", "mark_low",
               "mark_close", "funding_rate")}
    arrays["funding_covered"] = np.zeros((n_bars, n_sym), dtype=np.bool_)
    moves = []
    for n, sym in enumerate(symbols):
        t, cols = last[sym]
        rows = slice((lo - int(t[0])) // tf, (lo - int(t[0])) // tf + n_bars)
        for f in V.PRICE_FIELDS + ("volume",):
            arrays[f][:, n] = cols[f][rows]
        t, cols = marks.get(sym, last[sym])
        rows = slice((lo - int(t[0])) // tf, (lo - int(t[0])) // tf + n_bars)
        for f in V.PRICE_FIELDS:
            arrays["mark_" + f][:, n] = cols[f][rows]
        if sym not in funds:
            arrays["funding_rate"][:, n] = np.nan
            continue
        times, rates, _, intervals = funds[sym]
        column, noted = map_settlements(times, rates, time_ms, tf)
        arrays["funding_rate"][:, n] = column
        holes = funding_holes(times, intervals, lo, tf)
        arrays["funding_covered"][:, n] = coverage_mask(time_ms, spans[(sym, "funding")], holes)
        for start, end in holes:
            if end > lo and start < hi:
                report.append(f"{sym} funding: no settlements in {V.iso(max(start, lo))} .. "
                              f"{V.iso(min(end, hi) - tf)} (funding_covered False there)")
        for i, bar, count in noted:
            moves.append((sym, int(times[i]), int(time_ms[bar]), int(count), float(rates[i])))
    if report:
        text = (f"coverage: kept {iso_range(lo, hi, tf)}, the span every series covers;\n  "
                + "\n  ".join(report))
        if strict:
            raise ValueError(text + "\n(strict=True)")
        warnings.warn(text, CoverageWarning, stacklevel=3)
    return Market(symbols, time_ms, tf, arrays, instruments=instruments,
                  settlement_moves=_moves_frame(moves), mark_last_symbols=mark_last)


def _moves_frame(rows: list[tuple]) -> pd.DataFrame:
    if not rows:
        return empty_moves()
    frame = pd.DataFrame(rows, columns=list(MOVES_COLUMNS))
    for col in ("settlement_time", "bar_time"):
        frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True).dt.as_unit("ms")
    return frame
