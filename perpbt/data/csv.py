"""Read the documented CSV layout (``shared/data/README.md``) into a Market.

Layout: ``<directory>/<SYMBOL>/klines_<tf>.csv`` (timestamp_ms,open,high,low,close,volume),
``mark_<tf>.csv`` (timestamp_ms,open,high,low,close), ``funding.csv`` (timestamp_ms,
funding_rate[,funding_interval_hours,raw_calc_time_ms]) and optionally
``leverage_brackets.json``. ``<SYMBOL>`` is the exchange id ("BTCUSDT"); the Market uses ccxt
names ("BTC/USDT:USDT").

File choice per symbol and kind (klines, mark):

1. ``<kind>_<tf>.csv`` when it exists (the full history);
2. otherwise the date-ranged files ``<kind>_<tf>_<YYYY-MM-DD>_<YYYY-MM-DD>.csv`` (end date
   inclusive) overlapping ``[since, until)``. Files whose ranges touch (the next starts at most
   one day after the previous ends) are concatenated (overlapping rows: the earlier file's
   win). When the selected files form several separate runs, the **latest run** is used and a
   :class:`CoverageWarning` names the files left out; choose another period with
   ``since``/``until``.

Leverage brackets become an :class:`Instrument` (``lot_size=0``) with dated tier tables: the
oldest table (``historical[...]``) is effective from 0 -- it is the oldest we have, so bars
before its date use it too (an approximation) -- and each newer table from its date; the
newest ``brackets`` table is dated from the json (``as_of``, else the ``YYYY.M`` release in
``source``: "freqtrade ... 2026.9" -> 2026-09-01).
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from perpbt import _validate as V
from perpbt.data.align import to_ccxt_symbol, to_exchange_id
from perpbt.instruments import Instrument, load_tiers
from perpbt.market import CoverageWarning, Market

_DAY = timedelta(days=1)


def _root(directory: str | Path) -> Path:
    root = Path(directory).expanduser()
    if (root / "binance_usdm").is_dir():
        root = root / "binance_usdm"
    if not root.is_dir():
        raise FileNotFoundError(f"no data directory at {root}")
    return root


def _ranged(folder: Path, kind: str, tf: str) -> list[tuple[date, date, Path]]:
    day = r"(\d{4}-\d{2}-\d{2})"
    pattern = re.compile(rf"{kind}_{re.escape(tf)}_{day}_{day}\.csv")
    out = []
    for path in folder.glob(f"{kind}_{tf}_*.csv"):
        match = pattern.fullmatch(path.name)
        if match:
            start, end = (date.fromisoformat(g) for g in match.groups())
            out.append((start, end, path))
    return sorted(out)


def pick_files(folder: Path, kind: str, tf: str, since_ms: int | None = None,
               until_ms: int | None = None) -> list[Path]:
    """The files to read for one symbol and kind ("klines" or "mark"); [] when none."""
    exact = folder / f"{kind}_{tf}.csv"
    if exact.is_file():
        return [exact]
    ranged = []
    for start, end, path in _ranged(folder, kind, tf):
        start_ms, end_ms = V.to_ms(str(start)), V.to_ms(str(end + _DAY))
        if (since_ms is None or end_ms > since_ms) and (until_ms is None or start_ms < until_ms):
            ranged.append((start, end, path))
    runs: list[list[tuple[date, date, Path]]] = []
    for item in ranged:
        if runs and item[0] <= max(e for _, e, _ in runs[-1]) + _DAY:
            runs[-1].append(item)
        else:
            runs.append([item])
    if len(runs) > 1:
        left_out = [p.name for run in runs[:-1] for _, _, p in run]
        warnings.warn(f"{folder.name}: {kind} {tf} files do not join up; using the latest "
                      f"run {[p.name for _, _, p in runs[-1]]} and leaving out {left_out} "
                      f"(choose with since=/until=)", CoverageWarning, stacklevel=3)
    return [p for _, _, p in runs[-1]] if runs else []


def _read(paths: list[Path], since_ms: int | None, until_ms: int | None) -> pd.DataFrame:
    frames = [pd.read_csv(p, engine="pyarrow") for p in paths]
    frame = frames[0]
    for nxt in frames[1:]:  # touching or overlapping ranges: keep the earlier file's rows
        nxt = nxt[nxt["timestamp_ms"] > frame["timestamp_ms"].iloc[-1]]
        frame = pd.concat([frame, nxt], ignore_index=True)
    if since_ms is not None:
        frame = frame[frame["timestamp_ms"] >= since_ms]
    if until_ms is not None:
        frame = frame[frame["timestamp_ms"] < until_ms]
    return frame.reset_index(drop=True)


def _newest_date(doc: dict[str, Any]) -> str:
    """"YYYY-MM[-DD]" of the newest table: ``as_of``, else the YYYY.M release in ``source``."""
    if doc.get("as_of"):
        return str(doc["as_of"])
    match = re.search(r"\b(20\d\d)\.(\d{1,2})\b", str(doc.get("source", "")))
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError("cannot date the newest 'brackets' table: no as_of and no YYYY.M "
                         "release in its source")
    return f"{match.group(1)}-{int(match.group(2)):02d}"


def _date_ms(day: str) -> int:
    return V.to_ms(day if len(day) > 7 else day + "-01")


def read_brackets(path: str | Path, symbol: str | None = None) -> Instrument:
    """An Instrument (``lot_size=0``) from a ``leverage_brackets.json`` with dated tables."""
    path = Path(path)
    doc = json.loads(path.read_text())
    symbol = to_ccxt_symbol(symbol or doc.get("symbol") or path.parent.name)
    source = str(doc.get("source", path.name))
    dated = [(day, rows, f"{path.name} historical[{day!r}]")      # (as_of, rows, source)
             for day, rows in (doc.get("historical") or {}).items()]
    if doc.get("brackets"):
        dated.append((_newest_date(doc), doc["brackets"], source))
    if not dated:
        raise ValueError(f"{path}: no 'brackets' or 'historical' tier tables")
    dated.sort(key=lambda item: _date_ms(item[0]))
    tables = tuple(
        load_tiers(rows, effective_from_ms=0 if i == 0 else _date_ms(day), source=src,
                   as_of=day, symbol=symbol)
        for i, (day, rows, src) in enumerate(dated))
    return Instrument(symbol=symbol, tiers=tables, lot_size=0.0,
                      extra={"brackets_file": str(path),
                             "note": "the oldest table also applies before its date"})


def available_symbols(directory: str | Path, timeframe: str = "1h") -> list[str]:
    """Exchange ids of the subfolders holding klines of ``timeframe``."""
    root, tf = _root(directory), V.timeframe_str(V.parse_timeframe(timeframe))
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir()
                  and ((p / f"klines_{tf}.csv").is_file() or _ranged(p, "klines", tf)))


def read_csv(directory: str | Path, symbols: str | Iterable[str] | None = None,
             timeframe: str = "1h", *, mark_fallback: str = "error", strict: bool = False,
             since: Any = None, until: Any = None) -> Market:
    """Read klines, mark, funding and brackets of ``symbols`` into one Market.

    ``directory`` is the ``binance_usdm`` folder or its parent. ``symbols`` are exchange ids
    ("BTCUSDT") or ccxt names ("BTC/USDT:USDT"); default: every subfolder with klines of this
    timeframe. ``since``/``until`` (ISO str, Timestamp or int ms) keep bars opening in
    [since, until). Missing mark files are an error unless ``mark_fallback="last"``; a missing
    ``funding.csv`` leaves that symbol's funding uncovered. Coverage trimming warns
    (``strict=True`` raises), see ``Market.from_frames``.
    """
    root = _root(directory)
    tf = V.timeframe_str(V.parse_timeframe(timeframe))
    since_ms = None if since is None else V.to_ms(since)
    until_ms = None if until is None else V.to_ms(until)
    if symbols is None:
        ids = available_symbols(root, tf)
        if not ids:
            raise FileNotFoundError(f"no <SYMBOL>/klines_{tf}*.csv under {root}")
    else:
        ids = [to_exchange_id(s) for s in ([symbols] if isinstance(symbols, str) else symbols)]
    ohlcv, mark, funding, instruments = {}, {}, {}, {}
    for sid in ids:
        folder, name = root / sid, to_ccxt_symbol(sid)
        klines = pick_files(folder, "klines", tf, since_ms, until_ms) if folder.is_dir() else []
        if not klines:
            raise FileNotFoundError(
                f"{name}: no klines_{tf}*.csv in {folder}; symbols with {tf} klines: "
                f"{available_symbols(root, tf)}")
        ohlcv[name] = _read(klines, since_ms, until_ms)
        marks = pick_files(folder, "mark", tf, since_ms, until_ms)
        if marks:
            mark[name] = _read(marks, since_ms, until_ms)
        elif mark_fallback != "last":
            raise ValueError(f"{name}: no mark_{tf}*.csv in {folder}; pass mark_fallback='last' "
                             f"to use the last price as mark (recorded in market.mark_source)")
        if (folder / "funding.csv").is_file():
            funding[name] = pd.read_csv(folder / "funding.csv", engine="pyarrow")
        if (folder / "leverage_brackets.json").is_file():
            instruments[name] = read_brackets(folder / "leverage_brackets.json", name)
    return Market.from_frames(ohlcv, mark, funding, timeframe=tf, instruments=instruments,
                              mark_fallback=mark_fallback, strict=strict)
