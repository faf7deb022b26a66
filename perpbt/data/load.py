"""The cache -> Market: :func:`load` (fetching what is missing unless ``offline``).

Alignment, coverage trimming and settlement mapping are ``Market.from_frames``'s (DESIGN 3):
symbols with different histories are trimmed to the span all of them cover, with a
CoverageWarning listing what was cut (``strict=True`` raises instead). Instruments come from
the market specs cached at fetch time (contract size, precision, limits, fees) with the
bundled dated tier tables of ``perpbt.venues`` (Binance serves tiers only with credentials);
a symbol without a bundled table gets no instrument (pass ``instruments=``), with a warning.
This module does not import ccxt (``fetch`` is imported only when something is fetched).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from perpbt.data import store
from perpbt.instruments import Instrument
from perpbt.market import Market

_VENUES = {"binanceusdm": "binance", "binance": "binance", "bybit": "bybit", "okx": "okx"}
_FUNDING_SLACK_MS = 24 * 3_600_000 + 60_000


def _exchange_id(exchange: Any) -> str:
    return exchange if isinstance(exchange, str) else str(getattr(exchange, "id", ""))


def _arg(ms: int) -> str:
    """A since/until value for the CLI: a date at midnight, else the ms."""
    return store.iso(ms)[:10] if ms % 86_400_000 == 0 else str(ms)


def fetch_command(exchange_id: str, symbols: Sequence[str], timeframe: str, since_ms: int,
                  until_ms: int | None, kinds: Sequence[str]) -> str:
    cmd = (f"perpbt fetch {exchange_id} {' '.join(symbols)} --timeframe {timeframe} "
           f"--since {_arg(since_ms)}")
    if until_ms is not None:
        cmd += f" --until {_arg(until_ms)}"
    if tuple(kinds) != store.KINDS:
        cmd += f" --kinds {','.join(kinds)}"
    return cmd


def _missing(frame, side, kind: str, since: int, until: int, tf_ms: int) -> str | None:
    """Why the cached series does not cover [since, until), or None."""
    if frame is None or frame.empty:
        return "not in the cache"
    first, last = int(frame["timestamp_ms"].iloc[0]), int(frame["timestamp_ms"].iloc[-1])
    checked = (side or {}).get("checked_from_ms")
    start = first if checked is None else min(first, checked)
    if since < start:
        return f"cache starts at {store.iso(first)}"
    if kind == "funding":
        hours = frame["funding_interval_hours"].iloc[-1]
        if until - last > (hours if hours == hours else 8) * 3_600_000 + 60_000:
            return f"cache ends at {store.iso(last)}"
    elif last + tf_ms < until:
        return f"cache ends at {store.iso(last)} (bar open)"
    return None


def _fetched_tiers(exchange_id: str, symbol: str, data_dir) -> tuple | None:
    """The cached fetch_market_leverage_tiers table (dated at its fetch), or None."""
    from perpbt.instruments import load_tiers

    path = store.tiers_path(data_dir, exchange_id, symbol)
    doc = store.read_json(path)
    if not doc or doc.get("symbol") != symbol or not doc.get("tiers"):
        return None
    try:
        table = load_tiers(doc["tiers"], source=f"{exchange_id} fetch_market_leverage_tiers",
                           as_of=str(doc.get("fetched_at", "")), symbol=symbol)
    except ValueError as exc:
        warnings.warn(f"{symbol}: cached tiers in {path} not usable ({exc}); using the "
                      f"bundled table", stacklevel=4)
        return None
    warnings.warn(f"{symbol} on {exchange_id}: leverage tiers fetched {doc.get('fetched_at')} "
                  f"applied to the whole history (exchanges serve only today's table)",
                  stacklevel=4)
    return (table,)


def _instrument(exchange_id: str, symbol: str, market: Mapping[str, Any] | None,
                since_ms: int, data_dir=None) -> Instrument | None:
    from perpbt.venues import instrument_for

    tiers = None if data_dir is None else _fetched_tiers(exchange_id, symbol, data_dir)
    if tiers is not None and market:
        mode = "decimal_places" if market.get("precision_mode") == 2 else "tick_size"
        return Instrument.from_ccxt_market(market, tiers=tiers, precision_mode=mode)
    venue = _VENUES.get(exchange_id)
    if venue is None:
        warnings.warn(f"{exchange_id}: no bundled venue preset, {symbol} loaded without "
                      f"instrument (pass tiers via instrument_for(..., tiers=...))",
                      stacklevel=3)
        return None
    try:
        bundled = instrument_for(venue, symbol)
    except ValueError as exc:
        warnings.warn(f"{symbol}: loaded without instrument: {exc}", stacklevel=3)
        return None
    warnings.warn(f"{symbol} on {exchange_id}: leverage tiers from the bundled dated table "
                  f"of {venue} (the exchange serves tiers only with credentials)",
                  stacklevel=3)
    if not market:
        return bundled
    mode = "decimal_places" if market.get("precision_mode") == 2 else "tick_size"
    return Instrument.from_ccxt_market(market, tiers=bundled.tiers, precision_mode=mode)


def load(exchange: Any, symbols: str | Sequence[str], timeframe: str, since: Any,
         until: Any = None, *, offline: bool = False, data_dir: str | Path = "data",
         kinds: Sequence[str] = store.KINDS, mark_fallback: str = "error",
         strict: bool = False) -> Market:
    """A Market of ``symbols`` for [since, until) from the cache under ``data_dir``.

    Unless ``offline``, :func:`perpbt.data.fetch` first downloads what the cache lacks
    (``exchange`` an id or a ccxt instance). ``offline=True`` with a missing range raises a
    ValueError naming the ``perpbt fetch ...`` command. ``since``/``until``: ISO dates or
    int ms UTC (``until`` None = up to the last cached bar). Without ``"mark"`` in ``kinds``
    pass ``mark_fallback="last"``.
    """
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    if not symbols:
        raise ValueError("load: no symbols")
    ex_id = _exchange_id(exchange)
    tf_ms = store.timeframe_ms(timeframe)
    since_ms = store.to_ms(since)
    since_ms -= since_ms % tf_ms
    until_ms = None if until is None else store.to_ms(until)
    if until_ms is not None and until_ms <= since_ms:
        raise ValueError(f"empty range: since {store.iso(since_ms)} >= until "
                         f"{store.iso(until_ms)}")
    if not offline:
        from perpbt.data.fetch import fetch

        fetch(exchange, symbols, timeframe, since_ms, until_ms, kinds=kinds, data_dir=data_dir)
        if not isinstance(exchange, str):
            symbols = [s if s in exchange.markets else _normalized(s) for s in symbols]
    frames: dict[str, dict[str, pd.DataFrame]] = {k: {} for k in store.KINDS}
    markets: dict[str, Any] = {}
    for sym in symbols:
        for kind in kinds:
            path = store.cache_path(data_dir, ex_id, sym, timeframe, kind)
            frame = store.read_series(path, ex_id, sym, timeframe, kind)
            side = store.read_sidecar(path) if frame is not None else None
            end = until_ms
            if end is None:
                end = (int(frame["timestamp_ms"].iloc[-1]) + tf_ms
                       if frame is not None and not frame.empty else since_ms + tf_ms)
            why = _missing(frame, side, kind, since_ms, end, tf_ms)
            if why is not None and offline:
                raise ValueError(
                    f"offline: {kind} {sym} {timeframe} on {ex_id} for {store.iso(since_ms)} "
                    f".. {store.iso(end)}: {why} ({path}). Fetch it with:\n  "
                    f"{fetch_command(ex_id, symbols, timeframe, since_ms, until_ms, kinds)}")
            if frame is None or frame.empty:
                continue
            t = frame["timestamp_ms"]
            if kind == "funding":
                keep = (t >= since_ms - _FUNDING_SLACK_MS) & (t < end + _FUNDING_SLACK_MS)
            else:
                keep = (t >= since_ms) & (t < end)
            frames[kind][sym] = frame.loc[keep].reset_index(drop=True)
            if kind == "ohlcv" and side:
                markets[sym] = side.get("market")
    missing = [s for s in symbols if s not in frames["ohlcv"]]
    if missing:
        raise ValueError(f"no candles for {missing} in {store.iso(since_ms)} .. "
                         f"{store.iso(until_ms)}; fetch with:\n  "
                         f"{fetch_command(ex_id, missing, timeframe, since_ms, until_ms, kinds)}")
    instruments = {}
    for sym in symbols:
        inst = _instrument(ex_id, sym, markets.get(sym), since_ms, data_dir)
        if inst is not None:
            instruments[sym] = inst
    return Market.from_frames(frames["ohlcv"], frames["mark"] or None,
                              frames["funding"] or None, timeframe=timeframe,
                              instruments=instruments, mark_fallback=mark_fallback,
                              strict=strict)


def _normalized(symbol: str) -> str:
    from perpbt.venues import normalize_symbol

    return normalize_symbol(symbol)
