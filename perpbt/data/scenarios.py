"""Synthetic markets shipped with the package: deterministic from a seed, no files.

``scenario(name, seed=7, **params)`` looks ``name`` up in :data:`SCENARIOS`. Adding one is one
function ``def my_scenario(seed: int = 7, ...) -> Market`` plus one entry in ``SCENARIOS``;
:func:`simulate` and :func:`synthetic_market` are the shared building blocks.

The default market ("SYNBTC/USDT:USDT", "SYNETH/USDT:USDT", 1h, 17,520 bars = 730 days from
2021-01-01) is illustrative, not calibrated to any venue:

- **Returns.** Correlated (rho 0.8) Student-t (4 df) shocks scaled by a slowly moving
  volatility regime (log-AR(1)); hourly base volatility 0.65 % / 0.85 % (about 61 % / 80 %
  a year); rare fat-tailed common jumps; two crash episodes (about -30 % and -22 % over a few
  hours, one bar of about -12 % whose last-price wick overshoots the mark by ~10 %), after
  which volatility stays raised for days.
- **OHLC.** open = previous close; wicks beyond max/min(open, close) exponential in the
  current volatility; last prices rounded to the tick (0.1 / 0.01), which keeps
  low <= min(open, close) <= max(open, close) <= high.
- **Mark.** Last close times (1 + basis), basis an AR(1) of a few bp; mark open = previous
  mark close; mark wicks 0.7 of last's. About one bar in 1,500 (and the crash bars) has a
  last-price wick 2-8 % beyond the mark's range.
- **Volume** (base units) rises with volatility and with |return|, x2 in crash bars.
- **Funding** every 8 h (00/08/16 UTC), Binance-style ``F = P + clamp(0.0001 - P, +/-0.0005)``
  on a premium P whose mean switches between neutral (F mostly exactly 0.0001), hot (longs
  pay ~0.05 %) and cold (shorts pay) regimes, and turns sharply negative in crashes;
  covered on every bar.
- **Instruments.** Illustrative tier tables (``illustrative=True``, source "perpbt
  synthetic") shaped like a major perp's, continuous maintenance amounts; lot 0.001 / 0.01.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Callable

import numpy as np
import pandas as pd

from perpbt._validate import to_ms
from perpbt.instruments import Instrument, load_tiers
from perpbt.market import Market

HOUR_MS = 3_600_000
SYMBOLS = ("SYNBTC/USDT:USDT", "SYNETH/USDT:USDT")
START = "2021-01-01"
N_BARS = 17_520

# (cap, maintenance margin rate, max leverage) per tier, floors = previous caps
_TIERS = {
    "SYNBTC/USDT:USDT": [(300e3, 0.004, 125), (800e3, 0.005, 100), (3e6, 0.01, 50),
                         (12e6, 0.025, 20), (50e6, 0.05, 10), (100e6, 0.1, 5),
                         (200e6, 0.125, 4), (300e6, 0.15, 3), (500e6, 0.25, 2),
                         (800e6, 0.5, 1)],
    "SYNETH/USDT:USDT": [(250e3, 0.005, 100), (1e6, 0.0065, 75), (5e6, 0.01, 50),
                         (10e6, 0.02, 25), (20e6, 0.05, 10), (50e6, 0.1, 5),
                         (100e6, 0.125, 4), (200e6, 0.15, 3), (400e6, 0.25, 2),
                         (600e6, 0.5, 1)],
}
# per symbol: start price, hourly vol, jump beta, tick, lot, base hourly volume (base units)
_SPEC = {"price": np.array([30_000.0, 2_000.0]), "sigma": np.array([0.0065, 0.0085]),
         "beta": np.array([1.0, 1.3]), "tick": np.array([0.1, 0.01]),
         "lot": np.array([0.001, 0.01]), "volume": np.array([8_000.0, 90_000.0])}
# common log returns of a crash, bar by bar (symbol 1 scaled by its beta); the -0.12 bar wicks
_CRASHES = ([-0.02, -0.035, -0.015, -0.12, 0.05, -0.04, -0.05, 0.03, 0.02],
            [-0.03, -0.02, -0.09, 0.04, -0.05, -0.03, 0.02])


def illustrative_tiers(rows: list[tuple[float, float, float]]) -> list[dict]:
    """Binance-shaped brackets with maintenance amounts making maintenance margin continuous."""
    out, floor, cum, prev_mmr = [], 0.0, 0.0, rows[0][1]
    for i, (cap, mmr, lev) in enumerate(rows):
        cum += floor * (mmr - prev_mmr)
        out.append({"bracket": i + 1, "initialLeverage": lev, "notionalFloor": floor,
                    "notionalCap": cap, "maintMarginRatio": mmr, "cum": cum})
        floor, prev_mmr = cap, mmr
    return out


def _ar1(noise: np.ndarray, phi: float) -> np.ndarray:
    out = np.empty_like(noise)
    acc = np.zeros(noise.shape[1:])
    for t in range(len(noise)):
        acc = phi * acc + noise[t]
        out[t] = acc
    return out


def _crash_starts(rng: np.random.Generator, n_bars: int) -> list[int]:
    if n_bars < 1_000:
        return []
    return [int(n_bars * 0.31) + int(rng.integers(-200, 200)),
            int(n_bars * 0.74) + int(rng.integers(-200, 200))]


def simulate(rng: np.random.Generator, n_bars: int, start_ms: int) -> dict[str, np.ndarray]:
    """(T, 2) arrays open..volume, mark_*, and settlement rows (funding_ms, funding_rate)."""
    T, N = n_bars, 2
    sigma, beta = _SPEC["sigma"], _SPEC["beta"]
    vol_mult = np.exp(_ar1(0.015 * rng.standard_normal((T, 1)), 0.998) - 0.03)
    shocks = rng.standard_t(4, size=(T, N)) / np.sqrt(2.0)
    shocks[:, 1] = 0.8 * shocks[:, 0] + 0.6 * shocks[:, 1]         # corr 0.8, unit variance
    jumps = (rng.random(T) < 1 / 1200) * (rng.standard_t(3, size=T) * 0.015 - 0.003)
    common = np.zeros(T)
    wick_bars, starts = [], _crash_starts(rng, T)
    for start, path in zip(starts, _CRASHES):
        common[start:start + len(path)] += path[:max(0, T - start)]
        wick_bars.append(start + int(np.argmin(path)))
        after = np.arange(T - start)
        vol_mult[start:, 0] *= 1.0 + 3.0 * np.exp(-after / 72.0)
    sd = sigma * vol_mult                                              # (T, N)
    r = 0.00003 + sd * shocks + (jumps + common)[:, None] * beta      # ~ +30 %/yr drift
    close = _SPEC["price"] * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([_SPEC["price"][None, :], close[:-1]])
    up = sd * rng.exponential(0.6, (T, N))
    down = sd * rng.exponential(0.6, (T, N))
    spike = rng.random((T, N)) < 1 / 1500
    side = rng.random((T, N)) < 0.5
    extra = rng.uniform(0.02, 0.08, (T, N)) * spike
    for bar in wick_bars:
        if bar < T:
            spike[bar], side[bar], extra[bar] = True, False, 0.10
    tick = _SPEC["tick"]
    rnd = lambda x, step: np.round(x / step) * step  # noqa: E731  monotone: keeps OHLC order
    out = {"open": rnd(open_, tick), "close": rnd(close, tick),
           "high": rnd(np.maximum(open_, close) * np.exp(up + extra * side), tick),
           "low": rnd(np.minimum(open_, close) * np.exp(-down - extra * ~side), tick)}
    basis = _ar1(0.00012 * rng.standard_t(5, size=(T, N)), 0.9)
    mark_close = close * (1.0 + basis)
    mark_open = np.vstack([open_[:1] * (1.0 + basis[:1]), mark_close[:-1]])
    out |= {"mark_open": rnd(mark_open, tick / 100), "mark_close": rnd(mark_close, tick / 100),
            "mark_high": rnd(np.maximum(mark_open, mark_close) * np.exp(0.7 * up), tick / 100),
            "mark_low": rnd(np.minimum(mark_open, mark_close) * np.exp(-0.7 * down), tick / 100)}
    activity = vol_mult * np.exp(0.35 * rng.standard_normal((T, N)))
    volume = _SPEC["volume"] * activity * (0.6 + 0.8 * np.minimum(np.abs(r) / sd, 6.0))
    volume[np.abs(common) > 0] *= 2.0
    out["volume"] = rnd(volume, _SPEC["lot"])
    out |= _funding(rng, start_ms, T, starts)
    return out


def _funding(rng: np.random.Generator, start_ms: int, n_bars: int,
             crashes: list[int]) -> dict[str, np.ndarray]:
    """Settlements every 8 h from the first 00/08/16 UTC bar; regime-switching premium."""
    period = 8 * HOUR_MS
    first = -(-start_ms // period) * period
    times = np.arange(first, start_ms + n_bars * HOUR_MS, period, dtype=np.int64)
    k = len(times)
    means = np.array([0.0001, 0.0010, -0.0008])                        # neutral, hot, cold
    state = np.empty(k, dtype=np.int64)
    switch = rng.random(k) < 1 / 70
    draws = rng.choice(3, size=k, p=[0.6, 0.25, 0.15])
    current = 0
    for i in range(k):
        if switch[i]:
            current = int(draws[i])
        state[i] = current
    premium = means[state][:, None] + 0.00025 * rng.standard_normal((k, 1)) \
        + 0.0001 * rng.standard_normal((k, 2))
    for bar in crashes:
        at = start_ms + bar * HOUR_MS
        hit = (times >= at) & (times < at + 24 * HOUR_MS)
        premium[hit] = -0.004 * _SPEC["beta"]
    rate = premium + np.clip(0.0001 - premium, -0.0005, 0.0005)
    return {"funding_ms": times, "funding_rate": np.round(np.clip(rate, -0.0075, 0.0075), 8)}


def synthetic_market(data: dict[str, np.ndarray], start_ms: int,
                     symbols: tuple[str, str] = SYMBOLS) -> Market:
    """A validated Market (1h) from :func:`simulate` output, with illustrative instruments."""
    T = len(data["close"])
    time_ms = start_ms + HOUR_MS * np.arange(T, dtype=np.int64)
    ohlcv, mark, funding, instruments = {}, {}, {}, {}
    for n, sym in enumerate(symbols):
        ohlcv[sym] = pd.DataFrame({"timestamp_ms": time_ms} | {
            f: data[f][:, n] for f in ("open", "high", "low", "close", "volume")})
        mark[sym] = pd.DataFrame({"timestamp_ms": time_ms} | {
            f: data["mark_" + f][:, n] for f in ("open", "high", "low", "close")})
        funding[sym] = pd.DataFrame({"timestamp_ms": data["funding_ms"],
                                     "funding_rate": data["funding_rate"][:, n],
                                     "funding_interval_hours": 8})
        rows = _TIERS.get(sym, _TIERS[SYMBOLS[n]])
        table = load_tiers(illustrative_tiers(rows), source="perpbt synthetic",
                           as_of="synthetic", illustrative=True, symbol=sym)
        instruments[sym] = Instrument(sym, (table,), tick_size=float(_SPEC["tick"][n]),
                                      lot_size=float(_SPEC["lot"][n]))
    return Market.from_frames(ohlcv, mark, funding, timeframe="1h", instruments=instruments,
                              strict=True)


def default_market(seed: int = 7, n_bars: int = N_BARS) -> Market:
    """Two correlated synthetic perps, 1h bars from 2021-01-01 (see the module docstring)."""
    if n_bars < 2:
        raise ValueError(f"n_bars must be at least 2, got {n_bars}")
    start_ms = to_ms(START)
    data = simulate(np.random.default_rng(seed), int(n_bars), start_ms)
    return synthetic_market(data, start_ms)


SCENARIOS: dict[str, Callable[..., Market]] = {
    "default": default_market,
}


def scenario(name: str, seed: int = 7, **params) -> Market:
    """The synthetic Market called ``name`` (see ``SCENARIOS``), deterministic in ``seed``."""
    if name not in SCENARIOS:
        close = difflib.get_close_matches(name, list(SCENARIOS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown scenario {name!r}{hint}; available: {sorted(SCENARIOS)}")
    func = SCENARIOS[name]
    accepted = [p for p in inspect.signature(func).parameters if p != "seed"]
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"scenario {name!r} has no parameter {key!r}{hint}; "
                             f"parameters: {accepted}")
    return func(seed=seed, **params)
