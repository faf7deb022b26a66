"""The Parquet cache: names, sanitizing, atomic writes, merge, gaps, corrupt/foreign files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perpbt.data import store

H = 3_600_000
T0 = 1_609_459_200_000  # 2021-01-01


def bars(times, close=1.0):
    n = len(times)
    return pd.DataFrame({"timestamp_ms": times, "open": [close] * n, "high": [close] * n,
                         "low": [close] * n, "close": [close] * n, "volume": [2.0] * n})


def write(path, frame, **kw):
    args = dict(exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1h", kind="ohlcv")
    args.update(kw)
    return store.write_series(path, frame, **args)


def test_cache_path_layout_and_sanitizing(tmp_path):
    path = store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "mark")
    assert path == (tmp_path / "binanceusdm" / "BTC_USDT_USDT-1h-mark.parquet").resolve()
    for sym in ("../../etc/passwd", "..", "/abs/olute", "a\\..\\..\\b", "BTC/../../x"):
        try:
            p = store.cache_path(tmp_path, "binanceusdm", sym, "1h", "ohlcv")
        except ValueError:
            continue
        assert p.parent == (tmp_path / "binanceusdm").resolve()
        assert ".." not in p.name and "/" not in p.name
    for exchange in ("../x", "Binance", "a/b", ""):
        with pytest.raises(ValueError, match="invalid exchange id"):
            store.cache_path(tmp_path, exchange, "BTC/USDT:USDT", "1h", "ohlcv")
    with pytest.raises(ValueError, match="invalid timeframe"):
        store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "../1h", "ohlcv")
    with pytest.raises(ValueError, match="unknown kind"):
        store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "trades")


def test_to_ms_and_timeframes():
    assert store.to_ms("2021-01-01") == T0
    assert store.to_ms(T0) == T0
    assert store.to_ms("2021-01-01T01:00:00+01:00") == T0
    assert store.timeframe_ms("1h") == H and store.timeframe_ms("15m") == 900_000
    with pytest.raises(ValueError):
        store.to_ms("not a date")


def test_write_read_roundtrip_sidecar_and_no_temp_files(tmp_path):
    path = store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    times = [T0 + i * H for i in (0, 1, 2, 5, 6)]
    side = write(path, bars(times), ccxt_version="4.5.90", checked_from_ms=T0 - 10 * H)
    frame = store.read_series(path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    assert frame["timestamp_ms"].tolist() == times
    assert frame["timestamp_ms"].dtype == np.int64
    on_disk = json.loads(store.sidecar_path(path).read_text())
    assert on_disk == side
    assert side["gaps"] == [[T0 + 3 * H, T0 + 4 * H]]
    assert (side["first_ms"], side["last_ms"], side["rows"]) == (T0, T0 + 6 * H, 5)
    assert side["exchange"] == "binanceusdm" and side["ccxt_version"] == "4.5.90"
    assert "fetched_at" in side and side["checked_from_ms"] == T0 - 10 * H
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "BTC_USDT_USDT-1h-ohlcv.json", "BTC_USDT_USDT-1h-ohlcv.parquet"]
    listed = list(store.list_cache(tmp_path))
    assert len(listed) == 1 and listed[0]["path"] == str(path)
    assert store.read_series(path.with_name("ETH.parquet"), "binanceusdm", "ETH", "1h",
                             "ohlcv") is None


def test_merge_new_rows_win_and_times_stay_unique():
    old = bars([T0, T0 + H, T0 + 2 * H], close=1.0)
    new = bars([T0 + 2 * H, T0 + 3 * H], close=2.0)  # the re-checked last bar changed
    out = store.merge(old, new, "ohlcv")
    assert out["timestamp_ms"].tolist() == [T0 + i * H for i in range(4)]
    assert out["close"].tolist() == [1.0, 1.0, 2.0, 2.0]


def test_find_gaps():
    assert store.find_gaps(np.array([0, H, 2 * H]), H) == []
    assert store.find_gaps(np.array([0, 4 * H, 5 * H, 7 * H]), H) == [[H, 3 * H], [6 * H, 6 * H]]


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    write(path, bars([T0]))
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write(path, bars([T0, T0 + H]))
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_and_foreign_files_raise_with_their_path(tmp_path):
    path = store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(store.CacheError, match="corrupt cache file .*BTC_USDT_USDT-1h-ohlcv"):
        store.read_series(path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    assert path.read_bytes() == b"garbage"
    pq.write_table(pa.table({"a": [1, 2]}), path)  # a parquet file that is not ours
    with pytest.raises(store.CacheError, match="foreign cache file"):
        store.read_series(path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    write(path, bars([T0]), symbol="ETH/USDT:USDT")  # ours, but another symbol's
    with pytest.raises(store.CacheError, match="foreign cache file"):
        store.read_series(path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    store.sidecar_path(path).write_text("{not json")
    with pytest.raises(store.CacheError, match="corrupt cache sidecar"):
        store.read_sidecar(path)
