"""The Parquet cache of downloaded history: one file per exchange, symbol, timeframe and kind.

Layout (``data_dir`` defaults to ``./data``)::

    data/<exchange>/<BTC_USDT_USDT>-<timeframe>-<kind>.parquet    the rows, sorted, unique times
    data/<exchange>/<BTC_USDT_USDT>-<timeframe>-<kind>.json       sidecar: exchange, symbol,
                                                                  ccxt version, first/last
                                                                  timestamp, gaps, fetched_at

Kinds and columns (times are int64 ms UTC, bar opens or settlement times):

- ``ohlcv``:   timestamp_ms, open, high, low, close, volume (last price, base units)
- ``mark``:    timestamp_ms, open, high, low, close (mark price)
- ``funding``: timestamp_ms, funding_rate (fraction), funding_interval_hours

Every write is atomic (a temporary file in the same folder, fsync, ``os.replace``): an
interrupted download leaves the file as it was or with whole pages. The file's identity
(exchange, symbol, timeframe, kind) is stored in the Parquet schema metadata; a file that does
not parse, or parses but belongs to something else, raises :class:`CacheError` naming its path
and is never rewritten. This module never sees credentials: sidecars hold only the fields
above. Only ``perpbt.data.fetch`` imports ccxt.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

KINDS = ("ohlcv", "mark", "funding")
COLUMNS = {
    "ohlcv": ("timestamp_ms", "open", "high", "low", "close", "volume"),
    "mark": ("timestamp_ms", "open", "high", "low", "close"),
    "funding": ("timestamp_ms", "funding_rate", "funding_interval_hours"),
}
META_KEY = b"perpbt"
_EXCHANGE_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
_TIMEFRAME_RE = re.compile(r"[0-9]{1,4}[smhdwM]")
_TF_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
                "M": 2_592_000_000}


class CacheError(ValueError):
    """A cache file that is corrupt, foreign or unsafe; the message names its path."""


# --------------------------------------------------------------------------------- names
def to_ms(value: Any) -> int:
    """int ms, an ISO date/time string (UTC unless it says otherwise), a datetime or
    Timestamp -> int ms UTC."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ValueError(f"cannot read time {value!r}: give an ISO date ('2021-01-01') or "
                         f"int milliseconds") from None
    if ts is pd.NaT:
        raise ValueError(f"cannot read time {value!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def timeframe_ms(timeframe: str) -> int:
    """``"1h"`` -> 3_600_000 (``"1M"`` counts 30 days; only used for spacing checks)."""
    if not isinstance(timeframe, str) or not _TIMEFRAME_RE.fullmatch(timeframe):
        raise ValueError(f"invalid timeframe {timeframe!r}: expected e.g. '1m', '1h', '1d'")
    return int(timeframe[:-1]) * _TF_UNITS_MS[timeframe[-1]]


def symbol_slug(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC_USDT_USDT"``: only ``[A-Za-z0-9_]``, never a path."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", str(symbol)).strip("_")
    if not slug or len(slug) > 100:
        raise ValueError(f"symbol {symbol!r} gives no usable cache file name")
    return slug


def cache_path(data_dir: str | Path, exchange: str, symbol: str, timeframe: str,
               kind: str) -> Path:
    """The Parquet file of one series; always inside ``data_dir`` (names are sanitized)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {KINDS}")
    if not isinstance(exchange, str) or not _EXCHANGE_RE.fullmatch(exchange):
        raise ValueError(f"invalid exchange id {exchange!r}: expected a ccxt id such as "
                         f"'binanceusdm'")
    timeframe_ms(timeframe)
    root = Path(data_dir).resolve()
    path = (root / exchange / f"{symbol_slug(symbol)}-{timeframe}-{kind}.parquet").resolve()
    if root not in path.parents:  # defence in depth; the sanitizing above already ensures it
        raise ValueError(f"cache path for {symbol!r} would leave {root}")
    return path


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def tiers_path(data_dir: str | Path, exchange: str, symbol: str) -> Path:
    """``<data_dir>/<exchange>/<SYMBOL>-tiers.json``: leverage tiers as fetched (dated)."""
    base = cache_path(data_dir, exchange, symbol, "1h", "ohlcv")
    return base.with_name(f"{symbol_slug(symbol)}-tiers.json")


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    text = json.dumps(doc, indent=1, sort_keys=True).encode()
    _atomic_write(Path(path), lambda fh: fh.write(text))
    return Path(path)


def read_json(path: Path, what: str = "file") -> dict[str, Any] | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise CacheError(f"corrupt cache {what} {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise CacheError(f"corrupt cache {what} {path}: not a JSON object")
    return doc


# --------------------------------------------------------------------------------- frames
def normalize(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Columns of ``kind`` with fixed dtypes, sorted by time, one row per time (last wins)."""
    out = pd.DataFrame({c: frame[c].to_numpy(dtype=np.int64 if c == "timestamp_ms"
                                               else np.float64) for c in COLUMNS[kind]})
    out = out.drop_duplicates("timestamp_ms", keep="last").sort_values("timestamp_ms")
    return out.reset_index(drop=True)


def merge(old: pd.DataFrame | None, new: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Old rows + new rows; on equal times the new row wins (the re-checked last bar)."""
    if old is None or old.empty:
        return normalize(new, kind)
    return normalize(pd.concat([old, new], ignore_index=True), kind)


def find_gaps(times: np.ndarray, step_ms: int) -> list[list[int]]:
    """``[first missing open, last missing open]`` per hole in a bar series of step ``step_ms``."""
    times = np.asarray(times, dtype=np.int64)
    if len(times) < 2:
        return []
    diffs = np.diff(times)
    idx = np.nonzero(diffs != step_ms)[0]
    return [[int(times[i] + step_ms), int(times[i + 1] - step_ms)] for i in idx
            if diffs[i] > step_ms]


# --------------------------------------------------------------------------------- io
def _identity(exchange: str, symbol: str, timeframe: str, kind: str) -> dict[str, str]:
    return {"exchange": exchange, "symbol": symbol, "timeframe": timeframe, "kind": kind}


def read_series(path: Path, exchange: str, symbol: str, timeframe: str,
                kind: str) -> pd.DataFrame | None:
    """The cached rows, ``None`` when the file does not exist; CacheError when it is corrupt
    or belongs to another series (the file is left untouched)."""
    path = Path(path)
    if not path.exists():
        return None
    import pyarrow.parquet as pq  # loaded on first cache access, not at import

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise CacheError(f"corrupt cache file {path}: {type(exc).__name__}: {exc}. Move or "
                         f"delete it and fetch again; it is never rewritten automatically"
                         ) from None
    meta = (table.schema.metadata or {}).get(META_KEY)
    want = _identity(exchange, symbol, timeframe, kind)
    try:
        got = json.loads(meta) if meta else None
    except ValueError:
        got = None
    if not isinstance(got, dict) or {k: got.get(k) for k in want} != want:
        raise CacheError(f"foreign cache file {path}: it is not perpbt's {kind} {timeframe} "
                         f"series of {symbol} on {exchange} (found {got!r}); move or delete it")
    if tuple(table.column_names) != COLUMNS[kind]:
        raise CacheError(f"corrupt cache file {path}: columns {table.column_names}, expected "
                         f"{list(COLUMNS[kind])}")
    frame = table.to_pandas()
    times = frame["timestamp_ms"].to_numpy()
    if len(times) > 1 and not (np.diff(times) > 0).all():
        raise CacheError(f"corrupt cache file {path}: times not strictly increasing")
    return frame


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_series(path: Path, frame: pd.DataFrame, *, exchange: str, symbol: str,
                 timeframe: str, kind: str, ccxt_version: str = "",
                 checked_from_ms: int | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Atomically replace the Parquet file and its sidecar; returns the sidecar dict.

    ``checked_from_ms``: the earliest time already asked for (rows before the first row do
    not exist on the exchange), so a later call does not ask again for the head.
    ``extra``: more public fields for the sidecar (the market's specs)."""
    frame = normalize(frame, kind)
    ident = _identity(exchange, symbol, timeframe, kind)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({META_KEY: json.dumps(ident).encode()})
    _atomic_write(path, lambda fh: pq.write_table(table, fh))
    times = frame["timestamp_ms"].to_numpy()
    step = timeframe_ms(timeframe)
    sidecar = dict(ident)
    sidecar.update({
        "ccxt_version": ccxt_version,
        "rows": int(len(times)),
        "first_ms": int(times[0]) if len(times) else None,
        "last_ms": int(times[-1]) if len(times) else None,
        "checked_from_ms": None if checked_from_ms is None else int(checked_from_ms),
        "gaps": [] if kind == "funding" else find_gaps(times, step),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    if extra:
        sidecar.update(extra)
    text = json.dumps(sidecar, indent=1, sort_keys=True).encode()
    _atomic_write(sidecar_path(path), lambda fh: fh.write(text))
    return sidecar


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of a Parquet file (None if absent); CacheError if it does not parse."""
    return read_json(sidecar_path(Path(path)), "sidecar")


def list_cache(data_dir: str | Path = "data") -> Iterator[dict[str, Any]]:
    """One dict per cached series (from the sidecars): exchange, symbol, timeframe, kind,
    rows, first_ms, last_ms, gaps, path. A Parquet file without sidecar is listed with
    ``error``."""
    root = Path(data_dir)
    if not root.is_dir():
        return
    for path in sorted(root.glob("*/*.parquet")):
        try:
            doc = read_sidecar(path)
        except CacheError as exc:
            doc = {"error": str(exc)}
        if doc is None:
            doc = {"error": f"no sidecar for {path}"}
        doc = {k: v for k, v in doc.items() if k != "market"}
        doc["path"] = str(path)
        yield doc
