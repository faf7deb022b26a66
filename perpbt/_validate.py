"""Time helpers and input validation for Market construction.

Every check raises ``ValueError`` naming the symbol, the column and the FIRST offending bar as
ISO UTC with its row number in the input frame, e.g.
``"ETH/USDT:USDT: mark_low is NaN at 2021-05-19T13:00:00Z (bar 12)"``.

This module sits below ``perpbt.market`` and ``perpbt.data``: it imports only numpy and pandas.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
PRICE_FIELDS = ("open", "high", "low", "close")


# ---------------------------------------------------------------------------- time helpers
def parse_timeframe(timeframe: str | int) -> int:
    """``"1h"`` -> 3_600_000 (ccxt spelling: s, m, h, d, w; an int is taken as ms)."""
    if isinstance(timeframe, (int, np.integer)) and not isinstance(timeframe, bool):
        if timeframe <= 0:
            raise ValueError(f"timeframe must be positive, got {timeframe} ms")
        return int(timeframe)
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(timeframe))
    if not match or int(match.group(1)) == 0:
        hint = " (months have no fixed length)" if str(timeframe).strip().endswith("M") else ""
        raise ValueError(f"cannot parse timeframe {timeframe!r}: expected e.g. '1m', '5m', '1h', "
                         f"'4h', '1d', '1w'{hint}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def timeframe_str(timeframe_ms: int) -> str:
    """3_600_000 -> ``"1h"`` (the largest unit dividing it)."""
    for unit in ("w", "d", "h", "m", "s"):
        if timeframe_ms % _UNIT_MS[unit] == 0:
            return f"{timeframe_ms // _UNIT_MS[unit]}{unit}"
    return f"{timeframe_ms}ms"


def iso(ms: int | np.integer) -> str:
    """int ms UTC -> ``"2021-05-19T13:00:00Z"`` (milliseconds shown only when non-zero)."""
    ms = int(ms)
    text = pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def to_ms(value: Any) -> int:
    """ISO string, pandas/py datetime, numpy datetime64 or int ms -> int ms UTC.

    Naive strings and datetimes are taken as UTC.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value) or value != int(value):
            raise ValueError(f"time {value!r} is not an integer number of ms")
        return int(value)
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        raise ValueError(f"cannot read time {value!r}")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value) // 1_000_000  # .value is ns whatever the unit


def index_from_ms(time_ms: np.ndarray) -> pd.DatetimeIndex:
    """int64 ms -> UTC DatetimeIndex named ``time``."""
    return pd.DatetimeIndex(np.asarray(time_ms, dtype=np.int64).astype("datetime64[ms]"),
                            tz="UTC", name="time")


def _datetimes_to_ms(values: Any) -> np.ndarray:
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return idx.as_unit("ms").asi8.astype(np.int64)


# ------------------------------------------------------------------------ frame extraction
def frame_times(frame: pd.DataFrame, symbol: str, series: str) -> np.ndarray:
    """The bar-open (or settlement) times of a frame as int64 ms.

    Taken from a ``timestamp_ms`` column (int ms), else a DatetimeIndex, else a ``timestamp``
    or ``date`` column (datetimes; naive means UTC; integers are taken as ms).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{symbol}: {series} must be a pandas DataFrame, "
                        f"got {type(frame).__name__}")
    if "timestamp_ms" in frame.columns:
        col = frame["timestamp_ms"]
        if col.isna().any():
            raise ValueError(f"{symbol}: {series} timestamp_ms is NaN at row "
                             f"{int(np.argmax(col.isna().to_numpy()))}")
        values = col.to_numpy()
        if values.dtype.kind == "f" and np.any(values != np.round(values)):
            raise ValueError(f"{symbol}: {series} timestamp_ms holds fractional milliseconds")
        if values.dtype.kind not in "iuf":
            raise ValueError(f"{symbol}: {series} timestamp_ms must hold integer ms, got "
                             f"{values.dtype}")
        return values.astype(np.int64)
    if isinstance(frame.index, pd.DatetimeIndex):
        return _datetimes_to_ms(frame.index)
    for name in ("timestamp", "date"):
        if name in frame.columns:
            col = frame[name]
            if col.isna().any():
                raise ValueError(f"{symbol}: {series} {name} is missing at row "
                                 f"{int(np.argmax(col.isna().to_numpy()))}")
            if col.dtype.kind in "iu":
                return col.to_numpy().astype(np.int64)
            return _datetimes_to_ms(col)
    raise ValueError(f"{symbol}: {series} frame has no timestamp_ms column, no DatetimeIndex "
                     f"and no timestamp/date column (columns: {list(frame.columns)})")


def frame_columns(frame: pd.DataFrame, columns: Sequence[str], symbol: str,
                  series: str) -> dict[str, np.ndarray]:
    """The named columns as float64 arrays; a missing column is a ValueError."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{symbol}: {series} frame lacks column(s) {missing} "
                         f"(has {list(frame.columns)})")
    out = {}
    for c in columns:
        try:
            out[c] = np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{symbol}: {series} column {c} is not numeric ({exc})") from None
    return out


# ---------------------------------------------------------------------------------- checks
def _fail(symbol: str, field: str, what: str, times: np.ndarray, row: int) -> None:
    raise ValueError(f"{symbol}: {field} {what} at {iso(times[row])} (bar {row})")


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def check_times(times: np.ndarray, symbol: str, series: str) -> None:
    """Strictly increasing timestamps: unsorted or duplicate rows are an error."""
    if len(times) < 2:
        return
    diff = np.diff(times)
    row = _first(diff <= 0)
    if row is not None:
        kind = "duplicate" if diff[row] == 0 else "unsorted"
        raise ValueError(f"{symbol}: {series} timestamps {kind}: {iso(times[row + 1])} "
                         f"(bar {row + 1}) follows {iso(times[row])} (bar {row})")


def check_prices(symbol: str, prefix: str, times: np.ndarray,
                 cols: dict[str, np.ndarray]) -> None:
    """NaN or non-positive prices; high below low, max(open, close) or low above min(...)."""
    for name in PRICE_FIELDS:
        values = cols[name]
        row = _first(np.isnan(values))
        if row is not None:
            _fail(symbol, prefix + name, "is NaN", times, row)
        row = _first(~(values > 0) | np.isinf(values))
        if row is not None:
            _fail(symbol, prefix + name, f"is not a positive finite price ({float(values[row])!r})",
                  times, row)
    o, h, lo, c = (cols[n] for n in PRICE_FIELDS)
    checks = (
        ("high", h < lo, lambda r: f"is below {prefix}low ({float(h[r])!r} < {float(lo[r])!r})"),
        ("high", h < np.maximum(o, c),
         lambda r: f"is below max({prefix}open, {prefix}close) ({float(h[r])!r} < "
                   f"{float(max(o[r], c[r]))!r})"),
        ("low", lo > np.minimum(o, c),
         lambda r: f"is above min({prefix}open, {prefix}close) ({float(lo[r])!r} > "
                   f"{float(min(o[r], c[r]))!r})"),
    )
    for name, bad, text in checks:
        row = _first(bad)
        if row is not None:
            _fail(symbol, prefix + name, text(row), times, row)


def check_volume(symbol: str, times: np.ndarray, volume: np.ndarray) -> None:
    row = _first(np.isnan(volume))
    if row is not None:
        _fail(symbol, "volume", "is NaN", times, row)
    row = _first((volume < 0) | np.isinf(volume))
    if row is not None:
        _fail(symbol, "volume", f"is negative or infinite ({float(volume[row])!r})", times, row)


def check_grid(symbol: str, series: str, times: np.ndarray, timeframe_ms: int) -> None:
    """Constant spacing of one timeframe: a missing bar or a finer spacing is an error."""
    if len(times) < 2:
        return
    diff = np.diff(times)
    row = _first(diff != timeframe_ms)
    if row is None:
        return
    step = timeframe_str(timeframe_ms)
    if diff[row] > timeframe_ms and diff[row] % timeframe_ms == 0:
        missing = diff[row] // timeframe_ms - 1
        raise ValueError(f"{symbol}: {series} has a gap: {missing} missing {step} bar(s) from "
                         f"{iso(times[row] + timeframe_ms)} to {iso(times[row + 1] - timeframe_ms)}"
                         f" (bar {row + 1} at {iso(times[row + 1])} follows {iso(times[row])})")
    raise ValueError(f"{symbol}: {series} bar at {iso(times[row + 1])} (bar {row + 1}) is "
                     f"{diff[row]} ms after the previous one, not on the {step} grid")


def infer_timeframe(times_by_key: dict[str, np.ndarray]) -> int:
    """The bar spacing shared by every series (the smallest step of each); else ValueError."""
    steps = {}
    for key, times in times_by_key.items():
        if len(times) >= 2:
            diff = np.diff(times)
            positive = diff[diff > 0]
            if len(positive):
                steps[key] = int(positive.min())
    if not steps:
        raise ValueError("timeframe not inferable: every series has fewer than 2 bars; "
                         "pass timeframe='1h' (or the right one)")
    if len(set(steps.values())) > 1:
        listing = ", ".join(f"{k}: {timeframe_str(v)}" for k, v in steps.items())
        raise ValueError(f"timeframe not inferable: series disagree ({listing}); pass timeframe=")
    return next(iter(steps.values()))


def check_funding(symbol: str, times: np.ndarray, rates: np.ndarray,
                  interval_hours: np.ndarray | None) -> None:
    """Settlement times sorted and unique, rates finite and within [-1, 1]."""
    check_times(times, symbol, "funding")
    row = _first(np.isnan(rates))
    if row is not None:
        _fail(symbol, "funding_rate", "is NaN", times, row)
    row = _first(~(np.abs(rates) <= 1.0))
    if row is not None:
        _fail(symbol, "funding_rate", f"is outside [-1, 1] ({float(rates[row])!r})", times, row)
    if interval_hours is not None:
        row = _first(interval_hours <= 0)
        if row is not None:
            _fail(symbol, "funding_interval_hours",
                  f"is not positive ({float(interval_hours[row])!r})", times, row)
