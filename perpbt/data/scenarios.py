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

Stress scenarios (issue 3): ``quiet_thin``, ``flash_crash``, ``squeeze``, ``mark_divergence``
and ``funding_regime``: 2,000-2,016 1h bars of default-like calm (same symbols, prices,
instruments and funding grid) around one designed event, each documented with its parameters
(units in the docstring) and what a leveraged long or short experiences in it. Their events
are placed by construction (fixed bars, exact depths), not drawn, so every seed shows them.
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


# ---------------------------------------------------------------------------------------------
# Stress scenarios: a few thousand 1h bars of calm market around one designed event.
# All returns are log returns per bar; "fraction" parameters are simple fractions of price
# (0.25 = 25 %); funding rates are per 8 h settlement (0.0001 = 0.01 %). Symbol 1 (SYNETH)
# moves by _SPEC["beta"] = 1.3 times symbol 0's common move (in log terms).
# ---------------------------------------------------------------------------------------------

STRESS_BARS = 2_000
_FUNDING_CAP = 0.0075          # |rate| per settlement, the largest cap of a major perp's table


def _check(name: str, value: float, lo: float, hi: float) -> float:
    value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return value


def _check_bar(name: str, bar: int, n_bars: int, room: int = 0) -> int:
    if not 1 <= int(bar) < n_bars - room:
        raise ValueError(f"{name}={bar} must lie in [1, {n_bars - room}) for n_bars={n_bars}")
    return int(bar)


def _calm(rng: np.random.Generator, n_bars: int, vol: float = 1.0) -> tuple[np.ndarray, ...]:
    """(r, sd): correlated (0.8) Student-t (5 df) log returns with hourly sd ``vol * sigma``."""
    sd = np.tile(_SPEC["sigma"] * vol, (n_bars, 1))
    shocks = rng.standard_t(5, size=(n_bars, 2)) / np.sqrt(5 / 3)
    shocks[:, 1] = 0.8 * shocks[:, 0] + 0.6 * shocks[:, 1]
    return sd * shocks, sd


def _settlements(start_ms: int, n_bars: int) -> np.ndarray:
    """Settlement times every 8 h (00/08/16 UTC) covering the bars."""
    period = 8 * HOUR_MS
    first = -(-start_ms // period) * period
    return np.arange(first, start_ms + n_bars * HOUR_MS, period, dtype=np.int64)


def _neutral_rates(rng: np.random.Generator, k: int) -> np.ndarray:
    """Binance-style ``F = P + clamp(0.0001 - P, +/-0.0005)`` on a small premium: mostly 0.0001."""
    premium = 0.0002 * rng.standard_normal((k, 1)) + 0.0001 * rng.standard_normal((k, 2))
    return premium + np.clip(0.0001 - premium, -0.0005, 0.0005)


def _settle_bar(times: np.ndarray, start_ms: int) -> np.ndarray:
    return (times - start_ms) // HOUR_MS


def _assemble(rng: np.random.Generator, r: np.ndarray, sd: np.ndarray, start_ms: int,
              rates: np.ndarray, *, mark_sd: np.ndarray | None = None,
              mark_alpha: np.ndarray | None = None, low_extra: np.ndarray | None = None,
              high_extra: np.ndarray | None = None, beyond_mark: np.ndarray | None = None,
              wick_cap: np.ndarray | None = None,
              volume_level: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The :func:`simulate`-style dict from log returns ``r`` (T, 2) and wick scale ``sd``.

    ``mark_sd``: wick scale of the mark (default ``sd``); ``mark_alpha`` (T,): the mark close
    moves this fraction of the way to last close * (1 + basis) each bar (1 = no lag);
    ``low_extra``/``high_extra`` (T, 2): extra log wick of last; ``beyond_mark`` (T, 2): last
    low = mark low * (1 - x) where x > 0, last high = mark high * (1 - x) where x < 0;
    ``wick_cap`` (T,) bool: bars whose ordinary wicks are capped at one ``sd``;
    ``volume_level`` (T, 1 or 2): multiplier of the base volume; ``rates`` (k, 2): funding
    per settlement of :func:`_settlements`.
    """
    T = len(r)
    zeros = np.zeros((T, 2))
    close = _SPEC["price"] * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([_SPEC["price"][None, :], close[:-1]])
    u, d = rng.exponential(0.6, (T, 2)), rng.exponential(0.6, (T, 2))
    if wick_cap is not None:
        u[wick_cap], d[wick_cap] = np.minimum(u[wick_cap], 1.0), np.minimum(d[wick_cap], 1.0)
    high = np.maximum(open_, close) * np.exp(sd * u + (zeros if high_extra is None else high_extra))
    low = np.minimum(open_, close) * np.exp(-sd * d - (zeros if low_extra is None else low_extra))
    basis = _ar1(0.00012 * rng.standard_t(5, size=(T, 2)), 0.9)
    target = np.log(close) + basis
    if mark_alpha is None:
        mark_log = target
    else:
        mark_log = np.empty_like(target)
        acc = target[0]
        for t in range(T):
            acc = acc + mark_alpha[t] * (target[t] - acc)
            mark_log[t] = acc
    mark_close = np.exp(mark_log)
    mark_open = np.vstack([open_[:1] * (1.0 + basis[:1]), mark_close[:-1]])
    msd = sd if mark_sd is None else mark_sd
    mark_high = np.maximum(mark_open, mark_close) * np.exp(0.7 * msd * u)
    mark_low = np.minimum(mark_open, mark_close) * np.exp(-0.7 * msd * d)
    if beyond_mark is not None:
        down, up = beyond_mark > 0, beyond_mark < 0
        low[down] = np.minimum(low[down], mark_low[down] * (1.0 - beyond_mark[down]))
        high[up] = np.maximum(high[up], mark_high[up] * (1.0 - beyond_mark[up]))
    tick = _SPEC["tick"]
    rnd = lambda x, step: np.round(x / step) * step  # noqa: E731  monotone: keeps OHLC order
    level = np.ones((T, 1)) if volume_level is None else volume_level
    volume = (_SPEC["volume"] * level * np.exp(0.3 * rng.standard_normal((T, 2)))
              * (0.6 + 0.8 * np.minimum(np.abs(r) / sd, 6.0)))
    return {"open": rnd(open_, tick), "high": rnd(high, tick), "low": rnd(low, tick),
            "close": rnd(close, tick), "volume": rnd(volume, _SPEC["lot"]),
            "mark_open": rnd(mark_open, tick / 100), "mark_high": rnd(mark_high, tick / 100),
            "mark_low": rnd(mark_low, tick / 100), "mark_close": rnd(mark_close, tick / 100),
            "funding_ms": _settlements(start_ms, T),
            "funding_rate": np.round(np.clip(rates, -_FUNDING_CAP, _FUNDING_CAP), 8)}


def _stress_market(build: Callable[[np.random.Generator, int], dict], seed: int) -> Market:
    start_ms = to_ms(START)
    return synthetic_market(build(np.random.default_rng(seed), start_ms), start_ms)


def quiet_thin(seed: int = 7, n_bars: int = STRESS_BARS, thin_at: int = 1_200,
               dry_bars: int = 48, thin_volume: float = 0.05, shock_at: int = 1_800,
               shock: float = -0.06, calm_vol: float = 0.5) -> Market:
    """A calm market whose liquidity dries up, then a small shock on the thin book.

    Parameters: ``n_bars`` 1h bars from 2021-01-01; hourly volatility ``calm_vol`` x the
    default's (0.5: about 0.33 % / 0.43 % an hour) throughout; from bar ``thin_at`` volume falls
    log-linearly over ``dry_bars`` bars to ``thin_volume`` (fraction, 0.05 = 5 %) of its calm
    level and stays there; at bar ``shock_at`` one bar moves ``shock`` (log return of symbol 0,
    -0.06 = about -5.8 %; symbol 1 moves 1.3x), its wick reaching a further ~one hourly sd.
    Funding stays neutral (mostly exactly 0.01 % per 8 h).

    What to expect: nothing happens in price terms until the shock. A 20x long (isolated,
    liquidation about 4.6 % below entry at tier 1) held into the shock is liquidated in the
    shock bar; a 10x long (about -9.6 %) survives it. Frictionless, the liquidation and any
    stop fill at their levels; with the execution model on, the thin bars are where spreads
    widen (thinness = recent typical volume / this bar's volume) and where a participation cap
    of ``participation * volume`` makes a position sized on calm-period volume need many bars
    (about 1 / thin_volume times as many) to close.
    """
    T = int(n_bars)
    thin_at = _check_bar("thin_at", thin_at, T)
    shock_at = _check_bar("shock_at", shock_at, T)
    thin_volume = _check("thin_volume", thin_volume, 1e-4, 1.0)
    shock = _check("shock", shock, -0.5, 0.5)
    calm_vol = _check("calm_vol", calm_vol, 0.01, 10.0)

    def build(rng, start_ms):
        r, sd = _calm(rng, T, calm_vol)
        r[shock_at] = shock * _SPEC["beta"]
        extra = np.zeros((T, 2))
        extra[shock_at] = sd[shock_at]
        steps = np.clip((np.arange(T) - thin_at) / max(int(dry_bars), 1), 0.0, 1.0)
        level = np.exp(np.log(thin_volume) * steps)[:, None]
        rates = _neutral_rates(rng, len(_settlements(start_ms, T)))
        side = {"low_extra": extra} if shock < 0 else {"high_extra": extra}
        return _assemble(rng, r, sd, start_ms, rates, volume_level=level, **side)

    return _stress_market(build, seed)


def flash_crash(seed: int = 7, n_bars: int = STRESS_BARS, crash_at: int = 1_500,
                depth: float = 0.25, crash_bars: int = 2, rebound: float = 0.7,
                rebound_bars: int = 4, mark_lag: float = 3.0) -> Market:
    """A fast drop and rebound of last price, with the mark lagging behind it.

    Parameters: ``n_bars`` 1h bars from 2021-01-01 of default-like calm; from bar ``crash_at``
    last price falls over ``crash_bars`` bars, its lowest low ``depth`` (fraction) below the
    pre-crash close for symbol 0 (symbol 1: 1.3x in log terms), the bottom bar's close about
    80 % of the way down; it then regains ``rebound`` (fraction) of the close-to-close drop over
    ``rebound_bars`` bars. Within the episode the mark close is an exponential average of last
    close with e-folding time ``mark_lag`` bars (the index of a venue whose constituents lag),
    and mark wicks keep their calm size, so the mark's low is much shallower than last's and
    comes later. Volume triples in the crash bars; funding turns to -0.2 % per 8 h (x1.3) for
    24 h after the crash.

    What to expect (defaults, symbol 0, seed 7, a long opened at the open of bar 1499): last
    low -11 % in bar 1500 and -25 % in bar 1501; mark low -3 %, -9 %, -11 %, then its minimum
    of about -12 % in bars 1503-1504 while last is already rebounding. A 20x long (isolated,
    liquidation about 4.6 % below entry) is liquidated on the mark in bar 1501, one bar after
    last price went through its liquidation price; a 10x long (about -9.6 %) in bar 1502, two
    bars after; an 8x long (about -12 %) only at the mark's minimum in bar 1503; a 7x or 5x long
    (about -14 % / -20 %) is never liquidated although last traded 25 % down, while any
    last-price stop above -25 % fills inside the crash.
    """
    T = int(n_bars)
    n_ep = int(crash_bars) + int(rebound_bars)
    crash_at = _check_bar("crash_at", crash_at, T, room=n_ep)
    depth = _check("depth", depth, 0.0, 0.9)
    rebound = _check("rebound", rebound, 0.0, 1.0)
    mark_lag = _check("mark_lag", mark_lag, 0.0, 1e6)
    if int(crash_bars) < 1 or int(rebound_bars) < 1:
        raise ValueError("crash_bars and rebound_bars must be at least 1")

    def build(rng, start_ms):
        r, sd = _calm(rng, T)
        drop = np.log1p(-depth)                       # log of the lowest low, symbol 0
        bottom = 0.8 * drop                           # log of the bottom close
        down = np.full(int(crash_bars), bottom / int(crash_bars))
        up = np.full(int(rebound_bars), -bottom * rebound / int(rebound_bars))
        path = np.concatenate([down, up])
        r[crash_at:crash_at + n_ep] = path[:, None] * _SPEC["beta"]
        low_bar = crash_at + int(crash_bars) - 1
        mark_sd, sd = sd, sd.copy()
        sd[crash_at:crash_at + n_ep] *= 3.0               # wide last wicks in the episode
        alpha = np.ones(T)
        if mark_lag > 0:
            window = slice(crash_at, min(T, crash_at + n_ep + int(10 * mark_lag) + 1))
            alpha[window] = 1.0 - np.exp(-1.0 / mark_lag)
        level = np.ones((T, 1))
        level[crash_at:crash_at + int(crash_bars)] = 3.0
        times = _settlements(start_ms, T)
        rates = _neutral_rates(rng, len(times))
        bars = _settle_bar(times, start_ms)
        hit = (bars >= crash_at) & (bars < crash_at + 24)
        rates[hit] = -0.002 * _SPEC["beta"]
        data = _assemble(rng, r, sd, start_ms, rates, mark_sd=mark_sd, mark_alpha=alpha,
                         volume_level=level)
        # the episode's lowest low is exactly the designed depth, in the bottom bar (the other
        # bars' wide wicks are cut there; all their closes lie above it)
        at = np.round(data["close"][low_bar] * np.exp(-(bottom - drop) * _SPEC["beta"])
                      / _SPEC["tick"]) * _SPEC["tick"]
        episode = data["low"][crash_at:crash_at + n_ep]
        episode[:] = np.maximum(episode, at)
        data["low"][low_bar] = at
        return data

    return _stress_market(build, seed)


def squeeze(seed: int = 7, n_bars: int = STRESS_BARS, squeeze_at: int = 1_500,
            rise: float = 0.35, squeeze_bars: int = 6, build_days: float = 7.0,
            pre_funding: float = -0.0005, spike_funding: float = 0.004,
            spike_days: float = 2.0) -> Market:
    """A short squeeze: crowded shorts pay funding, then a fast rise and a funding spike.

    Parameters: ``n_bars`` 1h bars from 2021-01-01 of default-like calm. For ``build_days``
    days before bar ``squeeze_at`` shorts crowd in: price drifts down (about -0.5 % a day) and
    funding settles near ``pre_funding`` (per 8 h; negative = shorts pay longs). From
    ``squeeze_at`` last close rises ``rise`` (fraction, symbol 0; symbol 1 1.3x in log terms)
    in ``squeeze_bars`` equal bars with upper wicks of about three hourly sd, on three times
    the volume; the perp then trades at a premium as longs chase, so funding jumps to
    ``spike_funding`` per 8 h (x1.3 for symbol 1, capped at 0.75 %) at the first settlement of
    the squeeze and decays linearly back to neutral over ``spike_days`` days. The chosen
    convention: negative funding before (shorts pay), strongly positive after (longs pay).

    What to expect (defaults, symbol 0): a short held through the build-up pays about 0.05 %
    of notional per settlement (about 1 % over the week); a 10x short (isolated, liquidation
    about +9.6 % from entry) is liquidated in the second squeeze bar (+5 % a bar), a 3x short
    (about +32 %) in the last bar, a 2x short (about +49 %) survives. A long that chases the
    squeeze pays ``spike_funding`` per settlement: 0.4 % of notional, 4 % of the margin of a
    10x position, every 8 h.
    """
    T = int(n_bars)
    n_sq = int(squeeze_bars)
    if n_sq < 1:
        raise ValueError("squeeze_bars must be at least 1")
    squeeze_at = _check_bar("squeeze_at", squeeze_at, T, room=n_sq)
    rise = _check("rise", rise, 0.0, 10.0)
    build_days = _check("build_days", build_days, 0.0, T / 24)
    spike_days = _check("spike_days", spike_days, 1 / 3, T / 24)
    pre_funding = _check("pre_funding", pre_funding, -_FUNDING_CAP, _FUNDING_CAP)
    spike_funding = _check("spike_funding", spike_funding, -_FUNDING_CAP, _FUNDING_CAP)

    def build(rng, start_ms):
        r, sd = _calm(rng, T)
        build_from = max(0, squeeze_at - int(round(build_days * 24)))
        r[build_from:squeeze_at] -= 0.0002 * _SPEC["beta"]
        r[squeeze_at:squeeze_at + n_sq] = np.log1p(rise) / n_sq * _SPEC["beta"]
        extra = np.zeros((T, 2))
        extra[squeeze_at:squeeze_at + n_sq] = 3.0 * sd[squeeze_at:squeeze_at + n_sq]
        level = np.ones((T, 1))
        level[squeeze_at:squeeze_at + n_sq] = 3.0
        times = _settlements(start_ms, T)
        rates = _neutral_rates(rng, len(times))
        bars = _settle_bar(times, start_ms)
        pre = (bars >= build_from) & (bars < squeeze_at)
        rates[pre] = pre_funding + 0.0001 * rng.standard_normal((int(pre.sum()), 2))
        spike = (bars >= squeeze_at) & (bars < squeeze_at + spike_days * 24)
        decay = np.linspace(1.0, 0.0, int(spike.sum()), endpoint=False)
        rates[spike] = (0.0001 + (spike_funding - 0.0001) * decay[:, None]
                        * np.array([1.0, _SPEC["beta"][1]]))
        return _assemble(rng, r, sd, start_ms, rates, high_extra=extra, volume_level=level)

    return _stress_market(build, seed)


def mark_divergence(seed: int = 7, n_bars: int = STRESS_BARS,
                    wick_at: tuple[int, ...] = (500, 1_000, 1_500), depth: float = 0.10,
                    sides: str = "alternate") -> Market:
    """Last price wicks far through a mark that does not follow, on chosen bars.

    Parameters: ``n_bars`` 1h bars from 2021-01-01 of default-like calm; on each bar of
    ``wick_at`` (bar indices) last price spikes ``depth`` (fraction, both symbols) beyond the
    mark's range: last low = mark low * (1 - depth) on a downward wick, last high = mark high
    * (1 + depth) on an upward one; ``sides`` "down", "up" or "alternate" (down first). On
    those bars last close = last open (no net move) and the ordinary wicks of last and mark are
    at most one hourly sd (0.65 % / 0.85 %), so the mark's range stays within about 0.6 % of
    the open and last and mark closes agree to the basis (a few bp).

    What to expect (defaults): a 20x long opened at the open of a downward wick bar has its
    liquidation price about 4.6 % below entry: last trades 10 % below the mark's low, which
    stays within about 0.6 % of entry, so on the venue's mark trigger the long is NOT
    liquidated, while a last-price stop anywhere between entry - 0.6 % and entry - 10 % fills
    (and a backtester that liquidates on last price wrongly wipes the margin out). The same
    holds for a 20x short on an upward wick bar.
    """
    T = int(n_bars)
    bars = [_check_bar("wick_at", b, T) for b in wick_at]
    depth = _check("depth", depth, 0.0, 0.9)
    if sides not in ("down", "up", "alternate"):
        raise ValueError(f"sides must be 'down', 'up' or 'alternate', got {sides!r}")

    def build(rng, start_ms):
        r, sd = _calm(rng, T)
        beyond = np.zeros((T, 2))
        capped = np.zeros(T, dtype=bool)
        for i, bar in enumerate(bars):
            down = sides == "down" or (sides == "alternate" and i % 2 == 0)
            r[bar] = 0.0
            beyond[bar] = depth if down else -depth
            capped[bar] = True
        rates = _neutral_rates(rng, len(_settlements(start_ms, T)))
        return _assemble(rng, r, sd, start_ms, rates, beyond_mark=beyond, wick_cap=capped)

    return _stress_market(build, seed)


def funding_regime(seed: int = 7, n_bars: int = 2_016, switch_at: int = 1_008,
                   extreme_rate: float = 0.003, after_rate: float = -0.001,
                   rate_noise: float = 0.0003, trend: float = 0.25, unwind: float = 0.20,
                   unwind_bars: int = 12) -> Market:
    """Persistent extreme funding for weeks, then a regime switch that flips its sign.

    Parameters: ``n_bars`` 1h bars from 2021-01-01 (2,016 = 12 weeks) of default-like
    volatility. Regime 1 (bars before ``switch_at``, 6 weeks by default): funding per 8 h
    settles at ``extreme_rate`` + N(0, ``rate_noise``) for both symbols (longs pay), while price
    trends up ``trend`` (fraction, symbol 0; symbol 1 1.3x in log terms) over the regime
    (the noise is demeaned within the regime, so last close at ``switch_at - 1`` is exactly
    the start price times ``1 + trend``, up to the tick). At
    ``switch_at`` the crowded longs unwind: price falls ``unwind`` (fraction) over
    ``unwind_bars`` bars and funding switches to ``after_rate`` + N(0, ``rate_noise``)
    (negative by default: shorts pay) for the rest of the market.

    What to expect (defaults, symbol 0): a long held through regime 1 pays 126 settlements x
    0.3 % = about 38 % of notional in funding against a price gain of 25 %, so being right on
    direction still loses money; at 10x (isolated) that is 3 % of margin per settlement and
    the margin alone could not carry it (funding is paid from the free balance first). A short
    receives the funding but, isolated at 10x (liquidation about +9.6 %), is liquidated by the
    trend since funding received goes to the free balance, not to the position's margin; a 2x
    short survives and earns. In regime 2 the roles swap, and the unwind liquidates longs
    above about 5x that were opened near the top.
    """
    T = int(n_bars)
    switch_at = _check_bar("switch_at", switch_at, T, room=int(unwind_bars))
    extreme_rate = _check("extreme_rate", extreme_rate, -_FUNDING_CAP, _FUNDING_CAP)
    after_rate = _check("after_rate", after_rate, -_FUNDING_CAP, _FUNDING_CAP)
    rate_noise = _check("rate_noise", rate_noise, 0.0, 0.01)
    trend = _check("trend", trend, -0.9, 10.0)
    unwind = _check("unwind", unwind, 0.0, 0.9)
    if int(unwind_bars) < 1:
        raise ValueError("unwind_bars must be at least 1")

    def build(rng, start_ms):
        r, sd = _calm(rng, T)
        r[:switch_at] -= r[:switch_at].mean(axis=0)       # the regime's net move is the trend
        r[:switch_at] += np.log1p(trend) / switch_at * _SPEC["beta"]
        n_un = int(unwind_bars)
        r[switch_at:switch_at + n_un] = np.log1p(-unwind) / n_un * _SPEC["beta"]
        level = np.ones((T, 1))
        level[switch_at:switch_at + n_un] = 3.0
        times = _settlements(start_ms, T)
        bars = _settle_bar(times, start_ms)
        mean = np.where(bars < switch_at, extreme_rate, after_rate)[:, None]
        rates = mean + rate_noise * rng.standard_normal((len(times), 2))
        return _assemble(rng, r, sd, start_ms, rates, volume_level=level)

    return _stress_market(build, seed)


SCENARIOS: dict[str, Callable[..., Market]] = {
    "default": default_market,
    "quiet_thin": quiet_thin,
    "flash_crash": flash_crash,
    "squeeze": squeeze,
    "mark_divergence": mark_divergence,
    "funding_regime": funding_regime,
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
