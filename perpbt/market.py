"""Market: aligned (T, N) arrays for N symbols on one int64 ms UTC bar-open grid.

Layout (what the engine reads from ``market.arrays``):

- ``open high low close volume`` (last/contract price; volume in base units),
  ``mark_open mark_high mark_low mark_close`` and ``funding_rate``: float64, shape (T, N),
  C-contiguous, row t = bar t (opening at ``time_ms[t]``), column n = ``symbols[n]``.
- ``funding_rate[t, n]`` is the summed rate (fraction, 0.0001 = 0.01 %) of the settlements
  that belong to bar t (a settlement within 60 s after an open belongs to that bar; one later
  inside a bar moves to the next open; see ``settlement_moves``); NaN means no settlement.
- ``funding_covered``: bool, (T, N), C-contiguous. True when the funding history of symbol n
  says whether bar t has a settlement: from the first settlement's bar to the last
  settlement's bar + its interval, minus interior holes (missing settlements). A symbol given
  without funding is False everywhere. Outside coverage NaN does not mean "no funding".
- ``time_ms``: int64, (T,), strictly increasing by ``timeframe_ms`` (no gaps).

The arrays are shared between a Market and the Markets made from it by ``slice`` (row views);
treat them as read-only. The pandas properties return copies.

Construction from data goes through :meth:`Market.from_frames` (validation, coverage
trimming, settlement mapping; implemented in ``perpbt.data.align``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from perpbt._validate import index_from_ms, iso, timeframe_str, to_ms
from perpbt.instruments import Instrument

FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "mark_open", "mark_high", "mark_low",
                "mark_close", "funding_rate")
ARRAY_FIELDS = FLOAT_FIELDS + ("funding_covered",)
MOVES_COLUMNS = ("symbol", "settlement_time", "bar_time", "count", "rate")


class CoverageWarning(UserWarning):
    """Series were trimmed to their common span, or funding has holes (``strict=True`` raises)."""


def empty_moves() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": pd.Series([], dtype=object),
        "settlement_time": pd.Series([], dtype="datetime64[ms, UTC]"),
        "bar_time": pd.Series([], dtype="datetime64[ms, UTC]"),
        "count": pd.Series([], dtype=np.int64),
        "rate": pd.Series([], dtype=np.float64)})


class Market:
    """N symbols on one bar grid: last and mark OHLC, volume, funding and its coverage.

    Attributes: ``symbols`` (ccxt-style names), ``time_ms``, ``timeframe_ms``, ``arrays``,
    ``instruments`` (symbol -> Instrument, may be empty), ``settlement_moves`` (settlements
    merged or moved onto a bar: symbol, settlement_time, bar_time, count = settlements summed
    on that bar, rate), ``mark_last_symbols`` (symbols whose mark is the last price, by
    request) and ``mark_source`` ("mark", "last" or "mixed").
    """

    def __init__(self, symbols: Iterable[str], time_ms: np.ndarray, timeframe_ms: int,
                 arrays: Mapping[str, np.ndarray], *,
                 instruments: Mapping[str, Instrument] | None = None,
                 settlement_moves: pd.DataFrame | None = None,
                 mark_last_symbols: Iterable[str] = ()) -> None:
        self.symbols: tuple[str, ...] = tuple(str(s) for s in symbols)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"duplicate symbols: {list(self.symbols)}")
        self.time_ms = np.ascontiguousarray(time_ms, dtype=np.int64)
        self.timeframe_ms = int(timeframe_ms)
        n_bars, n_sym = len(self.time_ms), len(self.symbols)
        if self.time_ms.ndim != 1 or n_bars == 0 or n_sym == 0:
            raise ValueError("a Market needs at least one bar and one symbol")
        if n_bars > 1 and np.any(np.diff(self.time_ms) != self.timeframe_ms):
            raise ValueError(f"time_ms must step by exactly {timeframe_str(self.timeframe_ms)}")
        missing = [k for k in ARRAY_FIELDS if k not in arrays]
        if missing:
            raise ValueError(f"arrays lack {missing}")
        self.arrays: dict[str, np.ndarray] = {}
        for key in ARRAY_FIELDS:
            dtype = np.bool_ if key == "funding_covered" else np.float64
            arr = np.ascontiguousarray(arrays[key], dtype=dtype)
            if arr.shape != (n_bars, n_sym):
                raise ValueError(f"arrays[{key!r}] has shape {arr.shape}, expected "
                                 f"({n_bars}, {n_sym})")
            self.arrays[key] = arr
        self.instruments: dict[str, Instrument] = dict(instruments or {})
        unknown = set(self.instruments) - set(self.symbols)
        if unknown:
            raise ValueError(f"instruments given for symbols not in the market: {sorted(unknown)}")
        self.settlement_moves = (empty_moves() if settlement_moves is None
                                 else settlement_moves.reset_index(drop=True))
        self.mark_last_symbols: tuple[str, ...] = tuple(
            s for s in self.symbols if s in set(mark_last_symbols))
        self._frames: dict[str, pd.DataFrame] = {}

    # ------------------------------------------------------------------- construction
    @classmethod
    def from_frames(cls, ohlcv: Mapping[str, pd.DataFrame],
                    mark: Mapping[str, pd.DataFrame] | None = None,
                    funding: Mapping[str, pd.DataFrame] | None = None, *,
                    timeframe: str | None = None,
                    instruments: Mapping[str, Instrument] | None = None,
                    mark_fallback: str = "error", strict: bool = False) -> "Market":
        """Validate, align and trim per-symbol frames into a Market.

        ``ohlcv[symbol]``: columns open high low close volume; ``mark[symbol]``: open high
        low close; ``funding[symbol]``: funding_rate (+ optional funding_interval_hours and
        raw_calc_time_ms, the real settlement time). Times come from a ``timestamp_ms`` column
        (int ms UTC), a DatetimeIndex or a ``timestamp``/``date`` column. ``timeframe`` (e.g.
        "1h") is inferred from the bar spacing when omitted.

        A symbol without mark data is an error unless ``mark_fallback="last"`` (its mark is
        then the last price, recorded in ``mark_source``/``mark_last_symbols``). A symbol
        without funding gets NaN rates and ``funding_covered`` False. All series are trimmed
        to the span every one of them covers, with a :class:`CoverageWarning` listing what was
        cut (``strict=True``: ValueError instead).
        """
        from perpbt.data.align import build_market  # data depends on market, not the reverse

        return build_market(ohlcv, mark, funding, timeframe=timeframe, instruments=instruments,
                            mark_fallback=mark_fallback, strict=strict)

    def _replace(self, rows: slice | None = None, cols: list[int] | None = None) -> "Market":
        arrays = {}
        for key, arr in self.arrays.items():
            if rows is not None:
                arr = arr[rows]
            if cols is not None:
                arr = arr[:, cols]
            arrays[key] = arr
        time_ms = self.time_ms[rows] if rows is not None else self.time_ms
        symbols = self.symbols if cols is None else tuple(self.symbols[i] for i in cols)
        moves = self.settlement_moves
        if len(moves):
            bar_ms = moves["bar_time"].to_numpy().astype("datetime64[ms]").astype(np.int64)
            keep = moves["symbol"].isin(symbols).to_numpy()
            if len(time_ms):
                keep &= (bar_ms >= time_ms[0]) & (bar_ms <= time_ms[-1])
            moves = moves[keep]
        return Market(symbols, time_ms, self.timeframe_ms, arrays,
                      instruments={s: i for s, i in self.instruments.items() if s in symbols},
                      settlement_moves=moves, mark_last_symbols=self.mark_last_symbols)

    def sel(self, symbols: str | Iterable[str]) -> "Market":
        """A Market with only ``symbols`` (in that order); "BTCUSDT" finds "BTC/USDT:USDT"."""
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        cols = []
        for name in wanted:
            cols.append(self._column(name))
        if len(set(cols)) != len(cols):
            raise ValueError(f"symbols selected twice: {wanted}")
        return self._replace(cols=cols)

    def slice(self, since: Any = None, until: Any = None) -> "Market":
        """Bars opening in [since, until) (ISO str, Timestamp or int ms; None = open end)."""
        lo = 0 if since is None else int(np.searchsorted(self.time_ms, to_ms(since), "left"))
        hi = (len(self.time_ms) if until is None
              else int(np.searchsorted(self.time_ms, to_ms(until), "left")))
        if hi <= lo:
            raise ValueError(f"slice({since!r}, {until!r}) selects no bar of "
                             f"{iso(self.time_ms[0])} .. {iso(self.time_ms[-1])}")
        return self._replace(rows=slice(lo, hi))

    def _column(self, name: str) -> int:
        if name in self.symbols:
            return self.symbols.index(name)
        from perpbt.data.align import to_ccxt_symbol

        try:
            alias = to_ccxt_symbol(name)
        except ValueError:
            alias = None
        if alias in self.symbols:
            return self.symbols.index(alias)
        raise KeyError(f"{name!r} is not in this market; symbols: {list(self.symbols)}")

    # ---------------------------------------------------------------------- views
    # derived arrays the engine memoizes on a Market (perpbt.backtest): rebuilt where needed,
    # never pickled (sweeps ship the market to every worker)
    _MEMO_ATTRS = ("_frames", "_engine_derived", "_exec_memo")

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in self._MEMO_ATTRS}
        state["_frames"] = {}
        return state

    @property
    def mark_source(self) -> str:
        """"mark" (real mark klines), "last" (mark = last price for all) or "mixed"."""
        if not self.mark_last_symbols:
            return "mark"
        return "last" if len(self.mark_last_symbols) == len(self.symbols) else "mixed"

    @property
    def index(self) -> pd.DatetimeIndex:
        if "_index" not in self._frames:
            self._frames["_index"] = index_from_ms(self.time_ms)
        return self._frames["_index"]

    @property
    def n_bars(self) -> int:
        return len(self.time_ms)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def timeframe(self) -> str:
        return timeframe_str(self.timeframe_ms)

    def __len__(self) -> int:
        return self.n_bars

    def frame(self, field: str) -> pd.DataFrame:
        """``arrays[field]`` as a cached DataFrame copy: index = bar opens, columns = symbols."""
        if field not in ARRAY_FIELDS:
            raise KeyError(f"unknown field {field!r}; fields: {list(ARRAY_FIELDS)}")
        if field not in self._frames:
            self._frames[field] = pd.DataFrame(self.arrays[field].copy(), index=self.index,
                                               columns=pd.Index(self.symbols, name="symbol"))
        return self._frames[field]

    open = property(lambda self: self.frame("open"), doc="last-price opens (T x N)")
    high = property(lambda self: self.frame("high"), doc="last-price highs (T x N)")
    low = property(lambda self: self.frame("low"), doc="last-price lows (T x N)")
    close = property(lambda self: self.frame("close"), doc="last-price closes (T x N)")
    volume = property(lambda self: self.frame("volume"), doc="volume in base units (T x N)")
    mark_open = property(lambda self: self.frame("mark_open"), doc="mark opens (T x N)")
    mark_high = property(lambda self: self.frame("mark_high"), doc="mark highs (T x N)")
    mark_low = property(lambda self: self.frame("mark_low"), doc="mark lows (T x N)")
    mark_close = property(lambda self: self.frame("mark_close"), doc="mark closes (T x N)")
    funding_rate = property(lambda self: self.frame("funding_rate"),
                            doc="summed settlement rate per bar, NaN = no settlement (T x N)")

    def equals(self, other: "Market") -> bool:
        """Same symbols, grid and arrays (NaN equal to NaN); instruments not compared."""
        return (isinstance(other, Market) and self.symbols == other.symbols
                and self.timeframe_ms == other.timeframe_ms
                and np.array_equal(self.time_ms, other.time_ms)
                and all(np.array_equal(self.arrays[k], other.arrays[k],
                                       equal_nan=k != "funding_covered") for k in ARRAY_FIELDS))

    def __repr__(self) -> str:
        cov = self.arrays["funding_covered"].mean(axis=0) * 100
        settled = (~np.isnan(self.arrays["funding_rate"])).sum(axis=0)
        lines = [f"Market({self.n_symbols} symbol{'s' if self.n_symbols != 1 else ''} x "
                 f"{self.n_bars:,} bars of {self.timeframe}, {iso(self.time_ms[0])} .. "
                 f"{iso(self.time_ms[-1])}, mark={self.mark_source})"]
        for n, sym in enumerate(self.symbols):
            mark = "last price" if sym in self.mark_last_symbols else "mark klines"
            inst = "instrument" if sym in self.instruments else "no instrument"
            lines.append(f"  {sym}: close {self.arrays['close'][-1, n]:g}, mark from {mark}, "
                         f"{settled[n]} settlements, funding covered {cov[n]:.1f}%, {inst}")
        if len(self.settlement_moves):
            lines.append(f"  {len(self.settlement_moves)} settlement(s) moved or merged onto a bar")
        return "\n".join(lines)
