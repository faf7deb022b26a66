"""Sizing rules: how big a position the strategy's direction becomes (issue 5, DESIGN 1.1).

A strategy's targets say the direction and when (the sign, 0 = flat, NaN = keep); a sizing
rule replaces each non-zero target's magnitude with its own size, decided at that bar's close
from data up to that bar (so the fill at the next open sees no future). Sizes are exposures
(|notional| / equity) except ``FixedNotional``, which sizes in quote.

Every size is capped by the leverage (an exposure above it cannot be margined: the cap is
recorded in ``Result.sizing_caps``), then by the engine: the notional the instrument's tiers
allow at that leverage and the available balance (recorded as ``cut_tier`` / ``cut_margin``
orders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from perpbt.margin import liquidation_price

YEAR_MS = 365.0 * 24 * 3600 * 1000


@dataclass(frozen=True)
class EquityFraction:
    """Exposure = ``fraction`` of equity (1.0: notional equal to equity)."""

    fraction: float


@dataclass(frozen=True)
class FixedNotional:
    """Every position is ``notional`` quote (USDT) at the fill's open price."""

    notional: float


@dataclass(frozen=True)
class RiskPerTrade:
    """Size so that the exit at the stop, or at the liquidation price with fees if that is
    nearer (isolated: the whole margin), loses ``risk`` (fraction of equity), fees included:
    exposure = risk / (d + taker * (2 - d)) with d the stop distance (fraction of entry), or
    risk / (1 / leverage + taker) when the liquidation price with fees comes first."""

    risk: float


@dataclass(frozen=True)
class VolTarget:
    """Exposure = ``target_vol`` / realized volatility (both annualised, fractions), the
    realized one from the standard deviation of the last ``lookback`` bar log returns."""

    target_vol: float
    lookback: int = 100


@dataclass(frozen=True)
class Kelly:
    """Fractional Kelly: exposure = ``fraction`` * ``edge`` / variance, with ``edge`` the
    expected log return per bar the researcher assumes and the variance of the last
    ``lookback`` bar log returns (Kelly's f* = mu / sigma^2 for a continuous bet)."""

    edge: float
    fraction: float = 0.5
    lookback: int = 100


RULES = (EquityFraction, FixedNotional, RiskPerTrade, VolTarget, Kelly)


def _check(rule) -> None:
    if not isinstance(rule, RULES):
        raise TypeError(f"sizing: expected one of {[r.__name__ for r in RULES]} or None, "
                        f"got {rule!r}")
    for name, value in vars(rule).items():
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{type(rule).__name__}.{name} must be positive, got {value!r}")


def _log_returns(market) -> pd.DataFrame:
    close = market.close
    return np.log(close / close.shift(1))


def stop_distance(stop_rules: dict, market) -> np.ndarray:
    """(T, N) stop distance as a fraction of a fill at the next open, known at bar t's close:
    a percent stop's fraction, or k * ATR(through t) / close[t] for an ATR stop (NaN: none)."""
    n_bars, n_sym = market.n_bars, market.n_symbols
    if stop_rules["stop_dist_t"].shape[0] > 0:  # ATR: the distance used at fill bar t+1
        dist = np.full((n_bars, n_sym), np.nan)
        dist[:-1] = stop_rules["stop_dist_t"][1:] / market.arrays["close"][:-1]
        return dist
    return np.broadcast_to(stop_rules["stop_pct"], (n_bars, n_sym)).copy()


def liq_distance_with_fees(inst, leverage: float, taker: float, clearance: float,
                           venue: str, time_ms: int) -> float:
    """Distance (fraction of entry) from entry to an isolated long's liquidation price with
    fees at ``leverage``, on the first tier of the table in force at ``time_ms``."""
    table = inst.tier_table_at(time_ms)
    lp = liquidation_price("long", 1.0, 1.0, 1.0 / leverage - taker, float(table.mmr[0]),
                           float(table.maint_amount[0]), venue=venue, taker_fee=taker,
                           close_fee_rate=clearance + taker)
    return 1.0 - lp


def sizes(rule, market, leverage: np.ndarray, *, stop_rules: dict, insts, taker: np.ndarray,
          clearance: np.ndarray, venue: str, cross: bool) -> np.ndarray:
    """(T, N) size of a position decided at each bar's close (exposure, or quote for
    FixedNotional)."""
    n_bars, n_sym = market.n_bars, market.n_symbols
    if isinstance(rule, EquityFraction):
        return np.full((n_bars, n_sym), float(rule.fraction))
    if isinstance(rule, FixedNotional):
        return np.full((n_bars, n_sym), float(rule.notional))
    if isinstance(rule, RiskPerTrade):
        d = stop_distance(stop_rules, market)
        if cross and np.isnan(d).all():
            raise ValueError("RiskPerTrade in cross margin needs a stop: the account, not a "
                             "position's margin, is what a cross liquidation takes")
        out = np.empty((n_bars, n_sym))
        for n in range(n_sym):
            by_stop = rule.risk / (d[:, n] + taker[n] * (2.0 - d[:, n]))
            if cross:
                out[:, n] = by_stop
                continue
            d_liq = liq_distance_with_fees(insts[n], leverage[n], taker[n], clearance[n],
                                           venue, int(market.time_ms[0]))
            by_liq = rule.risk / (1.0 / leverage[n] + taker[n])
            out[:, n] = np.where(np.isnan(d[:, n]) | (d[:, n] >= d_liq), by_liq, by_stop)
        return out
    ret = _log_returns(market)
    if isinstance(rule, VolTarget):
        per_year = YEAR_MS / market.timeframe_ms
        vol = ret.rolling(rule.lookback).std().to_numpy() * np.sqrt(per_year)
        return rule.target_vol / vol
    var = ret.rolling(rule.lookback).var().to_numpy()
    return rule.fraction * rule.edge / var


def apply_sizing(rule, frame: pd.DataFrame, market, leverage: np.ndarray, **kw
                 ) -> tuple[pd.DataFrame, bool, pd.DataFrame]:
    """(sized targets, notional mode, caps): each non-zero target takes the rule's size at its
    bar with the target's sign; 0 and NaN stay. Exposures above the leverage are capped
    there, one row per capped target in ``caps`` (time, symbol, wanted, size)."""
    _check(rule)
    size = sizes(rule, market, leverage, **kw)
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    # a size is decided at an entry (a new direction); while the direction holds the
    # position is kept as sized (NaN), so state-style targets do not rebalance every bar
    sign = np.sign(values)
    prev = pd.DataFrame(sign).ffill().shift(1).to_numpy()
    active = np.isfinite(values) & (values != 0.0) & (sign != prev)
    held = np.isfinite(values) & (values != 0.0) & ~active
    sized = np.where(active, sign * size, np.where(held, np.nan, values))
    undefined = active & ~np.isfinite(size)
    if undefined.any():  # warm-up of a rolling estimate: no size yet, keep the position
        sized[undefined] = np.nan
    caps = []
    notional = isinstance(rule, FixedNotional)
    if not notional:
        over = active & ~undefined & (np.abs(sized) > leverage[None, :])
        for t, n in zip(*np.nonzero(over)):
            caps.append((market.index[t], market.symbols[n], float(sized[t, n]),
                         float(np.sign(sized[t, n]) * leverage[n])))
        sized = np.where(over, np.sign(sized) * leverage[None, :], sized)
    cap_frame = pd.DataFrame(caps, columns=["time", "symbol", "wanted", "size"])
    return pd.DataFrame(sized, index=frame.index, columns=frame.columns), notional, cap_frame
