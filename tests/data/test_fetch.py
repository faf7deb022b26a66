"""fetch/load through ccxt's real request path, served Binance wire-format responses.

The ccxt instance is real; only its ``fetch(url, method, headers, body)`` is replaced by
:class:`FakeBinance`, which answers ``/fapi/v1/exchangeInfo`` from tests/fixtures and
generates ``/fapi/v1/klines``, ``/fapi/v1/markPriceKlines`` and ``/fapi/v1/fundingRate``
from the request's startTime/endTime/limit, so ccxt's parsing and our pagination both run.
No network.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import ccxt
import numpy as np
import pytest

from perpbt.data import fetch as F
from perpbt.data import store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binanceusdm"
H = 3_600_000
T0 = F.to_ms("2021-01-01")


def kline(t: int, shift: float = 0.0) -> list:
    """A Binance kline row (strings, as on the wire); prices derivable from the open time."""
    c = 100.0 + (t // H) % 7 + shift
    return [t, f"{c - 0.5}", f"{c + 1}", f"{c - 1}", f"{c}", "12.5", t + H - 1, "1250.0", 42,
            "6.0", "600.0", "0"]


class FakeBinance:
    """Installs itself as ``ex.fetch``; records (path, params) of every request."""

    def __init__(self, ex, *, kline_start=T0 - 1000 * H, kline_end=None, mark_start=None,
                 settlements=(), fail=None, listings=None):
        self.ex = ex
        self.listings = {"BTCUSDT": T0 - 1000 * H, "ETHUSDT": T0 - 1000 * H, **(listings or {})}
        self.calls: list[tuple[str, dict]] = []
        self.kline_start, self.kline_end = kline_start, kline_end
        self.mark_start = kline_start if mark_start is None else mark_start
        self.settlements = sorted(settlements)
        self.fail = fail  # fail(path, params, n_calls_of_path) may raise
        self.info = json.loads((FIXTURES / "exchangeInfo.json").read_text())
        ex.fetch = self.fetch
        ex.rateLimit = 0.01  # keep ccxt's throttle on, but fast

    def urls(self, suffix: str) -> list[dict]:
        return [q for p, q in self.calls if p.endswith(suffix)]

    def starts(self, suffix: str) -> list[int]:
        return [int(q["startTime"]) for q in self.urls(suffix)]

    def fetch(self, url, method="GET", headers=None, body=None):
        parsed = urlparse(url)
        q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        path = parsed.path
        self.calls.append((path, q))
        if self.fail is not None:
            self.fail(path, q, sum(1 for p, _ in self.calls if p == path))
        if path == "/fapi/v1/exchangeInfo":
            return self.info
        if path == "/fapi/v1/leverageBracket":  # signed: only with credentials
            assert "signature" in q and headers.get("X-MBX-APIKEY")
            return json.loads((FIXTURES / "leverageBracket.json").read_text())
        if q.get("symbol") not in (None, *self.listings):
            raise ccxt.BadSymbol("binanceusdm {\"code\":-1121,\"msg\":\"Invalid symbol.\"}")
        if path in ("/fapi/v1/klines", "/fapi/v1/markPriceKlines"):
            mark = path.endswith("markPriceKlines")
            first = self.mark_start if mark else self.kline_start
            first = max(first, self.listings[q["symbol"]])
            now = self.ex.milliseconds()
            stop = now if self.kline_end is None else min(self.kline_end - 1, now)
            if "endTime" in q:
                stop = min(stop, int(q["endTime"]))
            start = max(int(q["startTime"]), first)
            start += (-start) % H
            limit = int(q.get("limit", 500))
            return [kline(t, 0.25 if mark else 0.0)
                    for t in range(start, stop + 1, H)][:limit]
        if path == "/fapi/v1/fundingRate":
            start = int(q.get("startTime", 0))
            end = int(q.get("endTime", 2**62))
            limit = int(q.get("limit", 100))
            start = max(start, self.listings[q["symbol"]])
            rows = [t for t in self.settlements if start <= t <= end][:limit]
            return [{"symbol": q["symbol"], "fundingTime": t, "fundingRate": "0.00010000",
                     "markPrice": "100.0"} for t in rows]
        raise AssertionError(f"unexpected request {url}")


def make(**kw):
    ex = ccxt.binanceusdm({"options": {"fetchCurrencies": False}})
    return ex, FakeBinance(ex, **kw)


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(F, "RETRY_BASE_S", 0.0)
    monkeypatch.setattr(F, "_sleep", lambda s: None)


def small_pages(monkeypatch, ohlcv=10, funding=5):
    monkeypatch.setitem(F.CAPABILITIES, "binanceusdm",
                        {"ohlcv_limit": ohlcv, "funding_limit": funding, "venue": "binance",
                         "ohlcv_window": False})


def stored(tmp_path, kind, tf="1h", exchange="binanceusdm"):
    path = store.cache_path(tmp_path, exchange, "BTC/USDT:USDT", tf, kind)
    return store.read_series(path, exchange, "BTC/USDT:USDT", tf, kind)


# ------------------------------------------------------------------------------ fetch
def test_pagination_over_several_pages(tmp_path, monkeypatch):
    small_pages(monkeypatch)
    settle = [T0 + i * 8 * H + 2 for i in range(3)]  # exchange jitter: +2 ms
    ex, fake = make(settlements=settle)
    out = F.fetch(ex, "BTC/USDT:USDT", "1h", "2021-01-01", "2021-01-02", data_dir=tmp_path)
    assert fake.starts("/fapi/v1/klines") == [T0, T0 + 10 * H, T0 + 20 * H]
    assert fake.starts("/fapi/v1/markPriceKlines") == [T0, T0 + 10 * H, T0 + 20 * H]
    for kind, shift in (("ohlcv", 0.0), ("mark", 0.25)):
        frame = stored(tmp_path, kind)
        assert frame["timestamp_ms"].tolist() == [T0 + i * H for i in range(24)]
        assert frame["close"].tolist() == [100.0 + (t // H) % 7 + shift
                                           for t in frame["timestamp_ms"]]
    assert stored(tmp_path, "ohlcv")["volume"].eq(12.5).all()
    funding = stored(tmp_path, "funding")
    assert funding["timestamp_ms"].tolist() == settle
    assert funding["funding_rate"].tolist() == [0.0001] * 3
    assert {d["kind"]: d["rows"] for d in out} == {"ohlcv": 24, "mark": 24, "funding": 3}
    assert all(d["gaps"] == [] for d in out)


def test_funding_interval_change_8h_to_4h_keeps_every_settlement(tmp_path, monkeypatch):
    small_pages(monkeypatch, funding=4)
    settle = [T0 + i * 8 * H for i in range(6)]  # 2 days at 8h
    settle += [settle[-1] + (i + 1) * 4 * H + 1 for i in range(12)]  # then 2 days at 4h
    ex, fake = make(settlements=settle)
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 4 * 24 * H, kinds=("funding",),
            data_dir=tmp_path)
    funding = stored(tmp_path, "funding")
    assert funding["timestamp_ms"].tolist() == settle
    assert funding["funding_interval_hours"].tolist() == [8.0] * 5 + [4.0] * 13
    starts = fake.starts("/fapi/v1/fundingRate")
    assert starts[0] == T0
    assert starts[1:] == [settle[i] + 1 for i in (3, 7, 11, 15, 17)]  # last + 1 ms
    assert not fake.urls("klines")


def test_interrupted_download_resumes_without_duplicates_or_gaps(tmp_path, monkeypatch):
    small_pages(monkeypatch)

    def boom(path, q, n):
        if path == "/fapi/v1/klines" and n == 3:
            raise ccxt.ExchangeError("binanceusdm connection dropped")

    ex, fake = make(fail=boom)
    with pytest.raises(ccxt.ExchangeError):
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 48 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    part = stored(tmp_path, "ohlcv")
    assert part["timestamp_ms"].tolist() == [T0 + i * H for i in range(20)]  # 2 whole pages
    assert not list(tmp_path.rglob("*.tmp"))

    ex2, fake2 = make()
    F.fetch(ex2, "BTC/USDT:USDT", "1h", T0, T0 + 48 * H, kinds=("ohlcv",), data_dir=tmp_path)
    assert fake2.starts("/fapi/v1/klines") == [T0 + 19 * H, T0 + 29 * H, T0 + 39 * H]
    full = stored(tmp_path, "ohlcv")
    assert full["timestamp_ms"].tolist() == [T0 + i * H for i in range(48)]
    side = store.read_sidecar(store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT",
                                               "1h", "ohlcv"))
    assert side["gaps"] == [] and side["first_ms"] == T0 and side["last_ms"] == T0 + 47 * H


def test_rate_limit_is_retried_then_succeeds(tmp_path, monkeypatch):
    sleeps = []
    monkeypatch.setattr(F, "RETRY_BASE_S", 1.0)
    monkeypatch.setattr(F, "_sleep", sleeps.append)

    def limited(path, q, n):
        if path == "/fapi/v1/klines" and n <= 2:
            raise ccxt.RateLimitExceeded("binanceusdm 429 Too Many Requests")

    ex, fake = make(fail=limited)
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 5 * H, kinds=("ohlcv",), data_dir=tmp_path)
    assert len(fake.urls("/fapi/v1/klines")) == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.5 and 1.0 <= sleeps[1] <= 3.0
    assert len(stored(tmp_path, "ohlcv")) == 5


def test_network_errors_give_up_after_bounded_attempts(tmp_path):
    def down(path, q, n):
        if path == "/fapi/v1/klines":
            raise ccxt.RequestTimeout("binanceusdm GET timed out")

    ex, fake = make(fail=down)
    with pytest.raises(ConnectionError, match="giving up after 5 attempts"):
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 5 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    assert len(fake.urls("/fapi/v1/klines")) == F.RETRY_ATTEMPTS


def test_non_network_error_is_not_retried(tmp_path):
    def bad(path, q, n):
        if path == "/fapi/v1/klines":
            raise ccxt.ExchangeError("binanceusdm something else")

    ex, fake = make(fail=bad)
    with pytest.raises(ccxt.ExchangeError):
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 5 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    assert len(fake.urls("/fapi/v1/klines")) == 1


def test_bad_symbol_timeframe_and_missing_mark_are_immediate_errors(tmp_path):
    ex, fake = make()
    with pytest.raises(ValueError, match="no market 'FOO/USDT:USDT'"):
        F.fetch(ex, "FOO/USDT:USDT", "1h", T0, data_dir=tmp_path)
    assert [p for p, _ in fake.calls] == ["/fapi/v1/exchangeInfo"]
    with pytest.raises(ValueError, match="does not serve '7m'"):
        F.fetch(ex, "BTC/USDT:USDT", "7m", T0, data_dir=tmp_path)
    with pytest.raises(ValueError, match="monthly bars"):
        F.fetch(ex, "BTC/USDT:USDT", "1M", T0, data_dir=tmp_path)
    ex.has = dict(ex.has, fetchMarkOHLCV=False)
    with pytest.raises(ValueError, match="no mark-price candles"):
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, data_dir=tmp_path)
    # a BadSymbol raised by the exchange itself (market listed but rejected) -> ValueError
    ex2, fake2 = make(fail=lambda p, q, n: (_ for _ in ()).throw(
        ccxt.BadSymbol("binanceusdm Invalid symbol")) if p.endswith("klines") else None)
    with pytest.raises(ValueError, match="does not know this symbol"):
        F.fetch(ex2, "BTC/USDT:USDT", "1h", T0, T0 + 3 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    assert len(fake2.urls("/fapi/v1/klines")) == 1
    assert not list(tmp_path.rglob("*.parquet"))


def test_symbol_without_mark_candles_is_a_clear_error(tmp_path):
    ex, fake = make(kline_start=T0, mark_start=T0 + 10_000 * H)
    with pytest.raises(ValueError, match="no mark-price candles for BTC/USDT:USDT"):
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 5 * H, kinds=("ohlcv", "mark"),
                data_dir=tmp_path)


def test_incremental_second_call_asks_only_for_the_missing_ends(tmp_path):
    ex, fake = make(settlements=[T0 - 8 * H + i * 8 * H for i in range(12)])
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 24 * H, data_dir=tmp_path)
    assert fake.starts("/fapi/v1/klines") == [T0]
    ex2, fake2 = make(settlements=[T0 - 8 * H + i * 8 * H for i in range(12)])
    F.fetch(ex2, "BTC/USDT:USDT", "1h", T0 - 12 * H, T0 + 48 * H, data_dir=tmp_path)
    # head up to the first stored bar, tail from the last stored bar (re-checked)
    assert fake2.starts("/fapi/v1/klines") == [T0 - 12 * H, T0 + 23 * H]
    assert fake2.starts("/fapi/v1/markPriceKlines") == [T0 - 12 * H, T0 + 23 * H]
    assert fake2.starts("/fapi/v1/fundingRate")[:2] == [T0 - 12 * H, T0 + 16 * H]
    frame = stored(tmp_path, "ohlcv")
    assert frame["timestamp_ms"].tolist() == [T0 - 12 * H + i * H for i in range(60)]
    assert stored(tmp_path, "funding")["timestamp_ms"].tolist() == [
        T0 - 8 * H + i * 8 * H for i in range(7)]
    # nothing missing: no candle request at all
    ex3, fake3 = make()
    F.fetch(ex3, "BTC/USDT:USDT", "1h", T0 - 12 * H, T0 + 48 * H, kinds=("ohlcv", "mark"),
            data_dir=tmp_path)
    assert [p for p, _ in fake3.calls] == ["/fapi/v1/exchangeInfo"]


def test_head_before_listing_is_asked_once(tmp_path):
    ex, fake = make(kline_start=T0)
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0 - 100 * H, T0 + 5 * H, kinds=("ohlcv",),
            data_dir=tmp_path)
    assert stored(tmp_path, "ohlcv")["timestamp_ms"].iloc[0] == T0
    ex2, fake2 = make(kline_start=T0)
    F.fetch(ex2, "BTC/USDT:USDT", "1h", T0 - 50 * H, T0 + 5 * H, kinds=("ohlcv",),
            data_dir=tmp_path)
    assert fake2.urls("klines") == []


def test_still_open_candle_is_dropped(tmp_path):
    ex, fake = make()
    now = ex.milliseconds()
    F.fetch(ex, "BTC/USDT:USDT", "1h", now - 6 * H, kinds=("ohlcv",), data_dir=tmp_path)
    times = stored(tmp_path, "ohlcv")["timestamp_ms"].to_numpy()
    assert times[-1] + H <= ex.milliseconds()
    assert times[-1] + 2 * H > now  # the last closed bar is there
    assert (np.diff(times) == H).all()


def test_corrupt_cache_file_is_reported_and_left_alone(tmp_path):
    path = store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 this is not parquet")
    ex, fake = make()
    with pytest.raises(store.CacheError, match=str(path).replace("\\", "\\\\")):
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 5 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    assert path.read_bytes() == b"PAR1 this is not parquet"
    assert not fake.urls("klines")


def test_credentials_never_leave_the_exchange(tmp_path, monkeypatch, caplog, capsys):
    key, secret = "DUMMYKEY8f3a1c", "DUMMYSECRETz9q7w"

    class Served(ccxt.binanceusdm):
        def __init__(self, config=None):
            super().__init__(config)
            FakeBinance(self, settlements=[T0 + 8 * H])

    monkeypatch.setattr(ccxt, "binanceusdm", Served)
    caplog.set_level(logging.DEBUG)
    errors = []
    out = F.fetch("binanceusdm", "BTC/USDT:USDT", "1h", T0, T0 + 12 * H, data_dir=tmp_path,
                  exchange_options={"apiKey": key, "secret": secret,
                                    "options": {"fetchCurrencies": False}})
    for bad in ("DOGE/USDT:USDT", "../../x"):
        try:
            F.fetch("binanceusdm", bad, "1h", T0, data_dir=tmp_path,
                    exchange_options={"apiKey": key, "secret": secret})
        except ValueError as exc:
            errors.append(repr(exc) + str(exc))
    assert len(errors) == 2
    from perpbt.data.load import load

    market = load(Served({"apiKey": key, "secret": secret,
                          "options": {"fetchCurrencies": False}}), "BTC/USDT:USDT", "1h", T0,
                  T0 + 12 * H, data_dir=tmp_path)
    printed = capsys.readouterr()
    tiers = json.loads(store.tiers_path(tmp_path, "binanceusdm", "BTC/USDT:USDT").read_text())
    assert [t["maxNotional"] for t in tiers["tiers"]] == [50000, 250000, 3000000]
    table = market.instruments["BTC/USDT:USDT"].tiers[0]
    assert "fetch_market_leverage_tiers" in table.source
    assert list(table.maint_amount) == [0.0, 50.0, 1300.0]
    texts = [printed.out, printed.err, caplog.text, repr(out), repr(market), *errors]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(texts) > 8
    for text in texts:
        assert key not in text and secret not in text


def test_exchange_errors_echoing_a_credential_are_scrubbed(tmp_path):
    key = "DUMMYKEYechoed42"

    def echo(path, q, n):
        if path == "/fapi/v1/klines":
            raise ccxt.ExchangeError(f"binanceusdm GET https://x/?api_key={key} 400")

    ex = ccxt.binanceusdm({"apiKey": key, "secret": "DUMMYSECRETechoed",
                           "options": {"fetchCurrencies": False}})
    FakeBinance(ex, fail=echo)
    with pytest.raises(ccxt.ExchangeError) as info:
        F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 3 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    assert key not in str(info.value) and "api_key=***" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ------------------------------------------------------------------------------ load
def test_load_builds_a_market_from_the_cache_and_offline_names_the_command(tmp_path):
    from perpbt.data.load import load

    settle = [T0 + i * 8 * H for i in range(4)]
    with pytest.raises(ValueError, match=r"perpbt fetch binanceusdm BTC/USDT:USDT "
                                         r"--timeframe 1h --since 2021-01-01"):
        load("binanceusdm", "BTC/USDT:USDT", "1h", "2021-01-01", "2021-01-02", offline=True,
             data_dir=tmp_path)
    ex, fake = make(settlements=settle)
    with pytest.warns(UserWarning, match="bundled"):
        market = load(ex, ["BTC/USDT:USDT"], "1h", "2021-01-01", "2021-01-02",
                      data_dir=tmp_path)
    assert market.symbols == ("BTC/USDT:USDT",)
    assert market.n_bars == 24
    assert market.time_ms[0] == T0
    assert market.frame("close").iloc[:, 0].tolist() == [100.0 + (T0 // H + i) % 7
                                                         for i in range(24)]
    assert market.frame("mark_close").iloc[:, 0].tolist() == [100.25 + (T0 // H + i) % 7
                                                              for i in range(24)]
    assert np.isfinite(market.frame("funding_rate").iloc[[0, 8, 16], 0]).all()
    n_requests = len(fake.calls)
    again = load("binanceusdm", "BTC/USDT:USDT", "1h", T0 + 2 * H, T0 + 10 * H,
                 offline=True, data_dir=tmp_path)
    assert again.n_bars == 8 and len(fake.calls) == n_requests
    with pytest.raises(ValueError, match="perpbt fetch binanceusdm"):
        load("binanceusdm", "BTC/USDT:USDT", "1h", "2020-12-01", "2021-01-02", offline=True,
             data_dir=tmp_path)


def test_load_aligns_symbols_with_different_histories(tmp_path):
    from perpbt.data.load import load
    from perpbt.market import CoverageWarning

    settle = [T0 + i * 8 * H for i in range(4)]
    ex, fake = make(settlements=settle, listings={"ETHUSDT": T0 + 5 * H})
    with pytest.warns(CoverageWarning, match=r"ETH|BTC"):
        market = load(ex, ["BTC/USDT:USDT", "ETH/USDT:USDT"], "1h", T0, T0 + 24 * H,
                      data_dir=tmp_path)
    assert market.symbols == ("BTC/USDT:USDT", "ETH/USDT:USDT")
    # policy: one grid, trimmed to the span every series of every symbol covers
    assert market.time_ms[0] == T0 + 8 * H  # ETH's first settlement after its listing
    assert market.time_ms[-1] == T0 + 23 * H
    assert set(market.instruments) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert market.instruments["ETH/USDT:USDT"].tick_size == 0.01
    assert market.instruments["BTC/USDT:USDT"].tick_size == 0.1
    assert market.instruments["BTC/USDT:USDT"].lot_size == 0.001
    eth = store.read_series(store.cache_path(tmp_path, "binanceusdm", "ETH/USDT:USDT", "1h",
                                             "ohlcv"), "binanceusdm", "ETH/USDT:USDT", "1h",
                            "ohlcv")
    assert eth["timestamp_ms"].iloc[0] == T0 + 5 * H


def test_interrupted_head_download_leaves_the_cache_as_it_was(tmp_path, monkeypatch):
    small_pages(monkeypatch)
    ex, fake = make()
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 10 * H, kinds=("ohlcv",), data_dir=tmp_path)
    path = store.cache_path(tmp_path, "binanceusdm", "BTC/USDT:USDT", "1h", "ohlcv")
    before = path.read_bytes()

    def boom(p, q, n):
        if p == "/fapi/v1/klines" and n == 2:
            raise ccxt.ExchangeError("binanceusdm dropped")

    ex2, fake2 = make(fail=boom)
    with pytest.raises(ccxt.ExchangeError):
        F.fetch(ex2, "BTC/USDT:USDT", "1h", T0 - 30 * H, T0 + 10 * H, kinds=("ohlcv",),
                data_dir=tmp_path)
    assert path.read_bytes() == before
    ex3, fake3 = make()
    F.fetch(ex3, "BTC/USDT:USDT", "1h", T0 - 30 * H, T0 + 10 * H, kinds=("ohlcv",),
            data_dir=tmp_path)
    assert fake3.starts("/fapi/v1/klines") == [T0 - 30 * H, T0 - 20 * H, T0 - 10 * H]
    assert stored(tmp_path, "ohlcv")["timestamp_ms"].tolist() == [
        T0 - 30 * H + i * H for i in range(40)]


def test_progress_stays_quiet_off_a_terminal(tmp_path, capsys):
    ex, fake = make()
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 3 * H, kinds=("ohlcv",), data_dir=tmp_path)
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""


# ------------------------------------------------------------------------------ cli
def test_cli_fetch_and_data_list(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from perpbt.cli import app

    class Served(ccxt.binanceusdm):
        def __init__(self, config=None):
            super().__init__(config)
            FakeBinance(self, settlements=[T0 + 8 * H])

    monkeypatch.setattr(ccxt, "binanceusdm", Served)
    runner = CliRunner()
    res = runner.invoke(app, ["fetch", "binanceusdm", "BTC/USDT:USDT", "--timeframe", "1h",
                              "--since", "2021-01-01", "--until", "2021-01-02", "--kinds",
                              "ohlcv,funding", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "ohlcv" in res.output and "funding" in res.output and "24" in res.output
    assert not list(tmp_path.rglob("*-mark.parquet"))
    res = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "BTC/USDT:USDT" in res.output and "2021-01-01 00:00" in res.output
    assert "2021-01-01 23:00" in res.output
    res = runner.invoke(app, ["fetch", "binanceusdm", "NOPE/USDT:USDT", "--since",
                              "2021-01-01", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "no market 'NOPE/USDT:USDT'" in res.output
    res = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path / "empty")])
    assert res.exit_code == 0 and "no cached data" in res.output


def test_windowed_pages_step_over_empty_windows(tmp_path, monkeypatch):
    monkeypatch.setitem(F.CAPABILITIES, "binanceusdm",
                        {"ohlcv_limit": 10, "funding_limit": 5, "venue": "binance",
                         "ohlcv_window": True})
    ex, fake = make(listings={"BTCUSDT": T0 + 25 * H})
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 40 * H, kinds=("ohlcv",), data_dir=tmp_path)
    asked = [(int(q["startTime"]), int(q["endTime"])) for q in fake.urls("/fapi/v1/klines")]
    assert asked == [(T0 + i * H, T0 + (i + 10) * H - 1) for i in (0, 10, 20, 30)]
    assert stored(tmp_path, "ohlcv")["timestamp_ms"].tolist() == [
        T0 + i * H for i in range(25, 40)]


# ------------------------------------------------------------------------------ bybit
class FakeBybit:
    """Bybit v5 wire format: newest-first lists under result.list, strings everywhere."""

    def __init__(self, ex, *, listing=T0 - 1000 * H, settlements=()):
        self.ex, self.listing, self.settlements = ex, listing, sorted(settlements)
        self.calls: list[tuple[str, dict]] = []
        self.info = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "bybit"
                                / "instruments-info-linear.json").read_text())
        ex.fetch = self.fetch
        ex.rateLimit = 0.01

    def params(self, suffix):
        return [q for p, q in self.calls if p.endswith(suffix)]

    def fetch(self, url, method="GET", headers=None, body=None):
        parsed = urlparse(url)
        q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.calls.append((parsed.path, q))
        ok = {"retCode": 0, "retMsg": "OK", "retExtInfo": {}, "time": self.ex.milliseconds()}
        if parsed.path == "/v5/market/instruments-info":
            if q.get("status") == "PreLaunch":
                return dict(ok, result={"category": "linear", "list": [],
                                        "nextPageCursor": ""})
            return self.info
        if parsed.path == "/v5/market/risk-limit":
            return json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "bybit"
                               / "risk-limit-linear.json").read_text())
        if parsed.path in ("/v5/market/kline", "/v5/market/mark-price-kline"):
            mark = parsed.path.endswith("mark-price-kline")
            now = self.ex.milliseconds()
            lo = max(int(q["start"]), self.listing)
            lo += (-lo) % H
            hi = min(int(q.get("end", now)), now)
            times = list(range(lo, hi + 1, H))[::-1][:int(q["limit"])]  # newest first
            rows = []
            for t in times:
                r = kline(t, 0.25 if mark else 0.0)
                rows.append([str(t), *r[1:5]] if mark else [str(t), *r[1:6], "1250.0"])
            return dict(ok, result={"symbol": "BTCUSDT", "category": "linear", "list": rows})
        if parsed.path == "/v5/market/funding/history":
            lo, hi = int(q["startTime"]), int(q["endTime"])
            times = [t for t in self.settlements if lo <= t <= hi][::-1][:int(q["limit"])]
            return dict(ok, result={"category": "linear", "list": [
                {"symbol": "BTCUSDT", "fundingRate": "0.0001",
                 "fundingRateTimestamp": str(t)} for t in times]})
        raise AssertionError(f"unexpected request {url}")


def test_bybit_wire_format_pages_and_funding_interval_change(tmp_path, monkeypatch):
    monkeypatch.setitem(F.CAPABILITIES, "bybit", {"ohlcv_limit": 10, "funding_limit": 12,
                                                  "venue": "bybit", "ohlcv_window": True})
    settle = [T0 + i * 8 * H for i in range(4)]  # 8h, then 1h settlements
    settle += [settle[-1] + (i + 1) * H for i in range(30)]
    ex = ccxt.bybit({"options": {"fetchMarkets": {"types": ["linear"]}}})
    fake = FakeBybit(ex, listing=T0 + 3 * H, settlements=settle)
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 60 * H, data_dir=tmp_path)
    starts = [int(q["start"]) for q in fake.params("/v5/market/kline")]
    assert starts == [T0 + i * H for i in (0, 10, 20, 30, 40, 50)]
    for kind, shift in (("ohlcv", 0.0), ("mark", 0.25)):
        frame = stored(tmp_path, kind, exchange="bybit")
        assert frame["timestamp_ms"].tolist() == [T0 + i * H for i in range(3, 60)]
        assert frame["close"].tolist() == [100.0 + (t // H) % 7 + shift
                                           for t in frame["timestamp_ms"]]
    funding = stored(tmp_path, "funding", exchange="bybit")
    assert funding["timestamp_ms"].tolist() == [t for t in settle if t < T0 + 60 * H]
    assert funding["funding_interval_hours"].iloc[0] == 8.0
    assert funding["funding_interval_hours"].iloc[-1] == 1.0
    tiers = json.loads(store.tiers_path(tmp_path, "bybit", "BTC/USDT:USDT").read_text())
    assert [t["maxNotional"] for t in tiers["tiers"]] == [2000000, 2600000]
    # a second call with nothing new asks for no candles
    fake2 = FakeBybit(ex, listing=T0 + 3 * H, settlements=settle)
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 60 * H, kinds=("ohlcv", "mark"),
            data_dir=tmp_path)
    assert not fake2.params("kline")


# ------------------------------------------------------------------------------ okx
class FakeOkx:
    """OKX v5 wire format: data lists newest-first; before = newer than, after = older than."""

    def __init__(self, ex, *, settlements=()):
        self.ex, self.settlements = ex, sorted(settlements)
        self.calls: list[tuple[str, dict]] = []
        self.info = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "okx"
                                / "instruments-swap.json").read_text())
        ex.fetch = self.fetch
        ex.rateLimit = 0.01

    def params(self, suffix):
        return [q for p, q in self.calls if p.endswith(suffix)]

    def window(self, q, times):
        lo, hi = int(q.get("before", -1)), int(q.get("after", 2**62))
        return [t for t in times if lo < t < hi][::-1][:int(q.get("limit", 100))]

    def fetch(self, url, method="GET", headers=None, body=None):
        parsed = urlparse(url)
        q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.calls.append((parsed.path, q))
        if parsed.path == "/api/v5/public/instruments":
            return self.info
        now = self.ex.milliseconds()
        bars = range(T0 - 1000 * H, now, H)
        if parsed.path == "/api/v5/market/history-candles":
            return {"code": "0", "msg": "", "data": [
                [str(t), *kline(t)[1:5], "1250", "12.5", "1250.0", "1"]
                for t in self.window(q, bars)]}
        if parsed.path == "/api/v5/market/history-mark-price-candles":
            return {"code": "0", "msg": "", "data": [
                [str(t), *kline(t, 0.25)[1:5], "1"] for t in self.window(q, bars)]}
        if parsed.path == "/api/v5/public/funding-rate-history":
            return {"code": "0", "msg": "", "data": [
                {"fundingRate": "0.0001", "fundingTime": str(t), "instId": "BTC-USDT-SWAP",
                 "instType": "SWAP", "method": "next_period", "realizedRate": "0.0001"}
                for t in self.window(q, self.settlements)]}
        if parsed.path == "/api/v5/public/position-tiers":
            return {"code": "0", "msg": "", "data": []}
        raise AssertionError(f"unexpected request {url}")


def test_okx_wire_format_pages_and_funding(tmp_path, monkeypatch):
    monkeypatch.setitem(F.CAPABILITIES, "okx", {
        "ohlcv_limit": 10, "funding_limit": 10, "venue": "okx", "ohlcv_window": True,
        "funding_until": ("after", 0)})
    settle = [T0 + i * 8 * H for i in range(3)] + [T0 + 16 * H + i * 2 * H for i in range(1, 12)]
    ex = ccxt.okx({"options": {"fetchMarkets": {"types": ["swap"]}}})
    fake = FakeOkx(ex, settlements=settle)
    F.fetch(ex, "BTC/USDT:USDT", "1h", T0, T0 + 36 * H, data_dir=tmp_path)
    assert len(fake.params("history-candles")) == 4
    for kind, shift in (("ohlcv", 0.0), ("mark", 0.25)):
        frame = stored(tmp_path, kind, exchange="okx")
        assert frame["timestamp_ms"].tolist() == [T0 + i * H for i in range(36)]
        assert frame["close"].tolist() == [100.0 + (t // H) % 7 + shift
                                           for t in frame["timestamp_ms"]]
    assert stored(tmp_path, "ohlcv", exchange="okx")["volume"].eq(12.5).all()  # base units
    funding = stored(tmp_path, "funding", exchange="okx")
    assert funding["timestamp_ms"].tolist() == [t for t in settle if t < T0 + 36 * H]
    assert funding["funding_interval_hours"].tolist()[:2] == [8.0, 8.0]
    assert funding["funding_interval_hours"].iloc[-1] == 2.0
