"""Download history through ccxt into the Parquet cache (the only module importing ccxt).

:func:`fetch` pulls, per symbol, last-price candles (``fetch_ohlcv``), mark-price candles
(``fetch_mark_ohlcv``, i.e. ``price="mark"``) and the funding-rate history
(``fetch_funding_rate_history``), paginating by hand by timestamp:

- candles: from the cursor, ``limit`` bars a page, next cursor = last bar open + timeframe;
  the still-open last candle (open + timeframe > now) is dropped;
- funding: next cursor = last settlement time + 1 ms, until a page comes back empty, so a
  shorter interval (8h -> 4h -> 2h) never loses settlements.

Incremental: a second call asks only for what is missing at either end: the head before the
first stored row (unless an earlier call already asked from there) and the tail from the last
stored row (re-checked) on. Pages are written atomically in batches and on errors, so an
interrupted download keeps whole pages and the next call resumes without duplicates or gaps
(a head download interrupted part way is dropped: the cache stays as it was).

Network errors (``ccxt.NetworkError`` and subclasses: RequestTimeout, RateLimitExceeded,
DDoSProtection, ExchangeNotAvailable) are retried with exponential backoff and jitter, at most
``RETRY_ATTEMPTS`` times; an unknown symbol, an unsupported timeframe or an exchange without
mark candles raise ``ValueError`` at once. Credentials never leave the exchange object: errors,
logs, progress and the cache name only the exchange id, symbols and times.
"""

from __future__ import annotations

import logging
import random
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import ccxt
import numpy as np
import pandas as pd

from perpbt.data import store

log = logging.getLogger(__name__)

KINDS = store.KINDS
RETRY_ATTEMPTS = 5
RETRY_BASE_S = 1.0
FLUSH_PAGES = 20  # pages buffered between cache writes

# exchange quirks in one place: page sizes and the venue preset the tiers fall back to
CAPABILITIES: dict[str, dict[str, Any]] = {
    "binanceusdm": {"ohlcv_limit": 1500, "funding_limit": 1000, "venue": "binance",
                    "ohlcv_window": False, "tiers_need_credentials": True},
    "binance": {"ohlcv_limit": 1500, "funding_limit": 1000, "venue": "binance",
                "ohlcv_window": False, "tiers_need_credentials": True},
    "bybit": {"ohlcv_limit": 1000, "funding_limit": 200, "venue": "bybit",
              "ohlcv_window": True},
    "okx": {"ohlcv_limit": 100, "funding_limit": 100, "venue": "okx", "ohlcv_window": True,
            "funding_until": ("after", 0)},
}
# ohlcv_window: ask each page with an explicit until (candles: cursor + limit bars; funding:
# cursor + limit hours) for venues whose since-only answer is not "the first limit rows from
# since" (bybit and okx answer newest-first); an empty window then moves the cursor on
# instead of ending the series. Binance answers oldest-first and jumps to the listing.
# tiers_need_credentials: fetch_market_leverage_tiers is a signed endpoint (skipped without
# keys; load then uses the bundled dated table and warns)
# funding_until: (param, offset) giving the window end to fetch_funding_rate_history (ccxt's
# okx ignores "until" there; OKX's own "after" = older than)
DEFAULT_CAPABILITIES = {"ohlcv_limit": 500, "funding_limit": 100, "venue": None,
                        "ohlcv_window": True, "tiers_need_credentials": False,
                        "funding_until": ("until", -1)}
_HOUR_MS = 3_600_000
_MARKET_FIELDS = ("id", "symbol", "base", "quote", "settle", "type", "spot", "swap", "future",
                  "contract", "linear", "inverse", "contractSize", "precision", "limits",
                  "maker", "taker")


def _sleep(seconds: float) -> None:  # a seam for tests
    time.sleep(seconds)


# ------------------------------------------------------------------------------ helpers
to_ms = store.to_ms
iso = store.iso


def capabilities(exchange_id: str) -> dict[str, Any]:
    return {**DEFAULT_CAPABILITIES, **CAPABILITIES.get(exchange_id, {})}


def make_exchange(exchange: Any, exchange_options: Mapping[str, Any] | None = None):
    """A ccxt instance from an id (with ``exchange_options``) or the caller's instance;
    rate limiting is switched on either way."""
    if isinstance(exchange, str):
        if exchange not in ccxt.exchanges:
            raise ValueError(f"unknown ccxt exchange id {exchange!r}; e.g. 'binanceusdm', "
                             f"'bybit', 'okx'")
        config: dict[str, Any] = dict(exchange_options or {})
        config["enableRateLimit"] = True
        # currencies are not needed for history (binance would sign a request for them)
        config["options"] = {"fetchCurrencies": False, **dict(config.get("options") or {})}
        ex = getattr(ccxt, exchange)(config)
    elif isinstance(exchange, ccxt.Exchange):
        if exchange_options:
            raise ValueError("exchange_options apply to an exchange id, not an instance")
        ex = exchange
        ex.enableRateLimit = True
    else:
        raise TypeError(f"exchange must be a ccxt id or a ccxt.Exchange instance, got "
                        f"{type(exchange).__name__}")
    return ex


def scrub(text: str, ex: Any) -> str:
    """``text`` with the exchange instance's credentials replaced by ``***``."""
    for name in ("apiKey", "secret", "password", "uid", "privateKey", "walletAddress",
                 "token"):
        value = getattr(ex, name, None)
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def call(fn: Callable, *args: Any, what: str = "request") -> Any:
    """``fn(*args)`` retried on ccxt.NetworkError with exponential backoff and jitter.

    BadSymbol becomes ValueError at once; other ccxt errors propagate (their message
    scrubbed of the instance's credentials). Retry messages carry the error class and
    ``what`` only (never the request, which may be signed)."""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return fn(*args)
        except ccxt.BadSymbol:
            raise ValueError(f"{what}: the exchange does not know this symbol") from None
        except ccxt.NetworkError as exc:
            name = type(exc).__name__
            if attempt == RETRY_ATTEMPTS:
                raise ConnectionError(f"{what}: {name}, giving up after {attempt} attempts "
                                      f"(the cache keeps every page written so far; run the "
                                      f"same fetch again to resume)") from None
            delay = RETRY_BASE_S * 2 ** (attempt - 1) * (0.5 + random.random())
            log.warning("%s: %s, retry %d/%d in %.1f s", what, name, attempt,
                        RETRY_ATTEMPTS - 1, delay)
            _sleep(delay)
        except ccxt.BaseError as exc:
            scrubbed = scrub(str(exc), getattr(fn, "__self__", None))
            if scrubbed != str(exc):  # a venue echoed a credential (e.g. in a URL)
                raise type(exc)(scrubbed) from None
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def public_market(market: Mapping[str, Any]) -> dict[str, Any]:
    """The public specs of a ccxt market (for the sidecar): contract size, precision,
    limits, fees, and Binance's liquidation fee."""
    out = {k: market.get(k) for k in _MARKET_FIELDS}
    info = market.get("info") or {}
    if isinstance(info, Mapping) and "liquidationFee" in info:
        out["info"] = {"liquidationFee": info["liquidationFee"]}
    return out


def funding_interval_hours(times: np.ndarray) -> np.ndarray:
    """Per settlement, the shorter of the spacings to its neighbours, in whole hours (8 for a
    lone settlement). A data hole then stays a hole; an 8h -> 4h change reads 4 from the
    first 4h spacing on."""
    times = np.asarray(times, dtype=np.int64)
    n = len(times)
    if n == 0:
        return np.array([], dtype=np.float64)
    if n == 1:
        return np.array([8.0])
    gaps = np.diff(times).astype(np.float64)
    prev = np.concatenate([[np.inf], gaps])
    nxt = np.concatenate([gaps, [np.inf]])
    return np.maximum(np.round(np.minimum(prev, nxt) / _HOUR_MS), 1.0)


def fetch_tiers(ex, symbol: str, data_dir: str | Path) -> Path | None:
    """Today's leverage tiers of ``symbol`` into ``<exchange>/<SYMBOL>-tiers.json`` where the
    exchange serves them (public, or signed with the instance's keys); None when it does not
    (load then falls back to the bundled dated table, with a warning)."""
    caps = capabilities(ex.id)
    if not ex.has.get("fetchMarketLeverageTiers"):
        return None
    if caps["tiers_need_credentials"] and not (ex.apiKey and ex.secret):
        log.info("%s %s: leverage tiers need credentials; skipped", ex.id, symbol)
        return None
    try:
        tiers = call(ex.fetch_market_leverage_tiers, symbol,
                     what=f"{ex.id} leverage tiers {symbol}")
    except (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.NotSupported) as exc:
        log.warning("%s %s: leverage tiers not served (%s); load uses the bundled table",
                    ex.id, symbol, type(exc).__name__)
        return None
    keys = ("tier", "minNotional", "maxNotional", "maintenanceMarginRate", "maxLeverage",
            "info")
    doc = {"exchange": ex.id, "symbol": symbol, "ccxt_version": ccxt.__version__,
           "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "tiers": [{k: t.get(k) for k in keys} for t in tiers or []]}
    return store.write_json(store.tiers_path(data_dir, ex.id, symbol), doc)


# ------------------------------------------------------------------------------ paging
def _candle_pages(ex, symbol: str, timeframe: str, tf_ms: int, start: int, end: int,
                  now: int, kind: str, limit: int,
                  window: bool = False) -> Iterable[list[list]]:
    """Pages of closed candles with start <= open < end (see ``ohlcv_window``)."""
    method = ex.fetch_mark_ohlcv if kind == "mark" else ex.fetch_ohlcv
    cursor = start
    while cursor < end:
        args: tuple = (symbol, timeframe, cursor, limit)
        stop = cursor + limit * tf_ms
        if window:
            args += ({"until": stop - 1},)
        rows = call(method, *args,
                    what=f"{ex.id} {kind} {symbol} {timeframe} from {iso(cursor)}")
        rows = sorted((r for r in rows or [] if r[0] >= cursor), key=lambda r: r[0])
        if not rows:
            if window and stop < min(end, now):
                cursor = stop
                continue
            return
        last_open = rows[-1][0]
        keep = [r for r in rows if r[0] < end and r[0] + tf_ms <= now]
        if keep:
            yield keep
        if last_open + tf_ms > now or last_open + tf_ms >= end:
            return
        cursor = last_open + tf_ms


def _funding_pages(ex, symbol: str, start: int, end: int, limit: int,
                   window: bool = False) -> Iterable[list]:
    """Pages of settlements with start <= time < end, cursor = last time + 1 ms.

    ``window``: each request also gets ``until`` = cursor + ``limit`` hours, so a venue that
    answers newest-first within the window cannot hide settlements even at 1h intervals."""
    cursor = start
    while cursor < end:
        args: tuple = (symbol, cursor, limit)
        stop = cursor + limit * _HOUR_MS
        if window:
            key, offset = capabilities(ex.id)["funding_until"]
            args += ({key: stop + offset},)
        rows = call(ex.fetch_funding_rate_history, *args,
                    what=f"{ex.id} funding {symbol} from {iso(cursor)}")
        rows = sorted((r for r in rows or [] if r.get("timestamp") is not None
                       and r["timestamp"] >= cursor), key=lambda r: r["timestamp"])
        if window and len(rows) < limit:  # the whole window came back
            keep = [[int(r["timestamp"]), float(r["fundingRate"])] for r in rows
                    if r["timestamp"] < end and r.get("fundingRate") is not None]
            if keep:
                yield keep
            if stop >= end:
                return
            cursor = stop
            continue
        if not rows:
            return
        keep = [[int(r["timestamp"]), float(r["fundingRate"])] for r in rows
                if r["timestamp"] < end and r.get("fundingRate") is not None]
        if keep:
            yield keep
        if rows[-1]["timestamp"] >= end:
            return
        cursor = int(rows[-1]["timestamp"]) + 1


def _to_frame(rows: list[list], kind: str) -> pd.DataFrame:
    if kind == "funding":
        frame = pd.DataFrame(rows, columns=["timestamp_ms", "funding_rate"])
        frame["funding_interval_hours"] = np.nan  # recomputed over the whole series
        return store.normalize(frame, kind)
    cols = list(store.COLUMNS[kind])
    frame = pd.DataFrame([r[:len(cols)] for r in rows], columns=cols)
    return store.normalize(frame, kind)


# ------------------------------------------------------------------------------ one series
class _Series:
    """The cache file of one (symbol, kind) and the pages being added to it."""

    def __init__(self, ex, data_dir, symbol, timeframe, kind, market):
        self.ex, self.symbol, self.timeframe, self.kind = ex, symbol, timeframe, kind
        self.path = store.cache_path(data_dir, ex.id, symbol, timeframe, kind)
        self.frame = store.read_series(self.path, ex.id, symbol, timeframe, kind)
        side = store.read_sidecar(self.path) if self.frame is not None else None
        self.checked_from = (side or {}).get("checked_from_ms")
        self.market = market
        self.dirty = False

    @property
    def first(self) -> int | None:
        return None if self.frame is None or self.frame.empty else int(
            self.frame["timestamp_ms"].iloc[0])

    @property
    def last(self) -> int | None:
        return None if self.frame is None or self.frame.empty else int(
            self.frame["timestamp_ms"].iloc[-1])

    def add(self, rows: list[list]) -> None:
        self.frame = store.merge(self.frame, _to_frame(rows, self.kind), self.kind)
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty or self.frame is None or self.frame.empty:
            return
        frame = self.frame
        if self.kind == "funding":
            frame = frame.copy()
            frame["funding_interval_hours"] = funding_interval_hours(
                frame["timestamp_ms"].to_numpy())
            self.frame = frame
        extra = {"market": self.market} if self.kind == "ohlcv" and self.market else None
        store.write_series(self.path, frame, exchange=self.ex.id, symbol=self.symbol,
                           timeframe=self.timeframe, kind=self.kind,
                           ccxt_version=ccxt.__version__, checked_from_ms=self.checked_from,
                           extra=extra)
        self.dirty = False


def _ranges(series: _Series, since: int, until: int, last_closed: int,
            tf_ms: int) -> list[tuple[str, int, int]]:
    """The (head|tail, start, end) ranges still missing for [since, until)."""
    if series.first is None:
        return [("tail", since, until)]
    out = []
    checked = series.checked_from if series.checked_from is not None else series.first
    if since < min(checked, series.first):
        out.append(("head", since, series.first))
    last = series.last
    if series.kind == "funding":
        if until - last > _HOUR_MS and last_closed > last:
            out.append(("tail", last, until))
    elif last < min(until - tf_ms, last_closed):
        out.append(("tail", last, until))  # re-check the last stored bar
    return out


def _progress():
    from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.fields[rows]:,} rows, {task.fields[pages]} pages"),
                    TimeElapsedColumn(), disable=not sys.stdout.isatty(), transient=False)


# ------------------------------------------------------------------------------ public
def fetch(exchange: Any, symbols: str | Sequence[str], timeframe: str, since: Any,
          until: Any = None, *, kinds: Sequence[str] = KINDS, data_dir: str | Path = "data",
          exchange_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Download ``kinds`` of ``symbols`` for [since, until) into the cache under
    ``data_dir``; returns one sidecar dict per series (rows, first/last ms, gaps, path).

    ``exchange``: a ccxt id (``"binanceusdm"``, ``"bybit"``, ``"okx"`` ...; created with
    ``exchange_options`` and ``enableRateLimit=True``) or a ready ccxt instance (its
    credentials stay inside it). ``since``/``until``: ISO dates or int ms UTC; ``until``
    defaults to now. Only what the cache lacks is downloaded (see the module doc).
    """
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown kinds {bad}; kinds: {KINDS}")
    tf_ms = store.timeframe_ms(timeframe)
    if timeframe.endswith("M"):
        raise ValueError("monthly bars have no fixed length; fetch 1d or 1w and resample")
    ex = make_exchange(exchange, exchange_options)
    caps = capabilities(ex.id)
    if ex.timeframes and timeframe not in ex.timeframes:
        raise ValueError(f"{ex.id} does not serve {timeframe!r} candles; it serves "
                         f"{sorted(ex.timeframes)}")
    if "mark" in kinds and not ex.has.get("fetchMarkOHLCV"):
        raise ValueError(f"{ex.id} has no mark-price candles (fetchMarkOHLCV); fetch "
                         f"kinds=('ohlcv', 'funding') and load with mark='last' if acceptable")
    if "funding" in kinds and not ex.has.get("fetchFundingRateHistory"):
        raise ValueError(f"{ex.id} has no funding-rate history (fetchFundingRateHistory)")
    call(ex.load_markets, what=f"{ex.id} load_markets")
    resolved = []
    for sym in symbols:
        if sym not in ex.markets:
            from perpbt.venues import normalize_symbol
            try:
                alt = normalize_symbol(sym)
            except ValueError:
                alt = None
            if alt not in ex.markets:
                raise ValueError(f"{ex.id} has no market {sym!r}; use the ccxt unified "
                                 f"symbol, e.g. 'BTC/USDT:USDT'")
            sym = alt
        resolved.append(sym)

    since_ms = to_ms(since)
    since_ms -= since_ms % tf_ms
    now = int(ex.milliseconds())
    until_ms = min(to_ms(until), now) if until is not None else now
    last_closed = (now // tf_ms) * tf_ms - tf_ms  # open of the last closed bar
    if until_ms <= since_ms:
        raise ValueError(f"empty range: since {iso(since_ms)} >= until {iso(until_ms)}")

    out = []
    _COUNTS.clear()
    with _progress() as progress:
        for sym in resolved:
            market = public_market(ex.market(sym))
            market["precision_mode"] = ex.precisionMode
            got_candles = False
            for kind in kinds:
                series = _Series(ex, data_dir, sym, timeframe, kind, market)
                limit = caps["funding_limit" if kind == "funding" else "ohlcv_limit"]
                task = progress.add_task(f"{ex.id} {sym} {timeframe} {kind}", total=None,
                                         rows=0, pages=0)
                for part, start, end in _ranges(series, since_ms, until_ms, last_closed,
                                                tf_ms):
                    added = _download(ex, series, part, start, end, sym, timeframe, tf_ms,
                                      now, kind, limit, progress, task)
                    if kind == "ohlcv" and added:
                        got_candles = True
                    if kind == "mark" and not added and got_candles and series.first is None:
                        raise ValueError(f"{ex.id} returned no mark-price candles for {sym} "
                                         f"{timeframe} from {iso(start)}: load with "
                                         f"mark='last' only if that is acceptable")
                series.flush()
                side = store.read_sidecar(series.path) if series.path.exists() else None
                out.append(dict(side or {"symbol": sym, "kind": kind, "rows": 0},
                                path=str(series.path)))
                out[-1].pop("market", None)
            fetch_tiers(ex, sym, data_dir)
    return out


def _tick(progress, task, rows: int) -> None:
    counts = _COUNTS.setdefault(task, [0, 0])
    counts[0] += rows
    counts[1] += 1
    progress.update(task, rows=counts[0], pages=counts[1])


_COUNTS: dict[Any, list[int]] = {}


def _download(ex, series: _Series, part: str, start: int, end: int, sym: str,
              timeframe: str, tf_ms: int, now: int, kind: str, limit: int, progress,
              task) -> int:
    """Fetch one range into ``series``; returns rows added. Tail pages are flushed every
    FLUSH_PAGES pages and on errors; a head range is kept only when complete."""
    window = capabilities(ex.id)["ohlcv_window"]
    pages = (_funding_pages(ex, sym, start, end, limit, window) if kind == "funding" else
             _candle_pages(ex, sym, timeframe, tf_ms, start, end, now, kind, limit, window))
    if part == "head":
        buffered = []
        for rows in pages:
            buffered.extend(rows)
            _tick(progress, task, len(rows))
        if buffered:
            series.add(buffered)
        series.checked_from = start
        series.dirty = True
        return len(buffered)
    added = 0
    fresh = series.first is None
    try:
        for i, rows in enumerate(pages, 1):
            series.add(rows)
            if fresh:
                series.checked_from = start
            added += len(rows)
            _tick(progress, task, len(rows))
            if i % FLUSH_PAGES == 0:
                series.flush()
    finally:
        series.flush()
    log.info("%s %s %s %s: %d rows from %s", ex.id, sym, timeframe, kind, added, iso(start))
    return added


class _CallableModule(types.ModuleType):
    """``perpbt.data.fetch`` is both this module and, called, :func:`fetch`."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return fetch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
