"""Stop and take-profit rules turned into per-symbol engine parameters.

Distances are fractions of the average entry price (0.02 = 2 %). ``trigger`` says which price
fires the rule: ``"last"`` (fills at the stop level, or at the open on a gap) or ``"mark"``
(fills at the last price when the mark reaches the level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perpbt.enums import PriceTrigger, parse_enum


@dataclass(frozen=True)
class StopLoss:
    """Close the whole position when price moves against it by a distance: ``pct`` (fraction
    of the average entry) or ``atr`` times the ATR(``atr_period``) known at the fill bar's open
    (Wilder's true-range average up to the bar before). ``trailing=True`` measures the distance
    from the best price since entry instead of the entry; the level moves at the end of each
    intrabar segment and applies from the next one (DESIGN 4)."""

    pct: float | None = None
    trigger: str = "last"
    atr: float | None = None
    atr_period: int = 14
    trailing: bool = False

    def __post_init__(self) -> None:
        if (self.pct is None) == (self.atr is None):
            raise ValueError("StopLoss needs exactly one of pct (fraction of entry) or atr "
                             f"(multiple of ATR), got pct={self.pct!r}, atr={self.atr!r}")
        if self.pct is not None and not (0.0 < float(self.pct) < 1.0):
            raise ValueError(f"StopLoss.pct must be a fraction in (0, 1), got {self.pct!r}")
        if self.atr is not None and not float(self.atr) > 0.0:
            raise ValueError(f"StopLoss.atr must be a positive multiple, got {self.atr!r}")
        if not int(self.atr_period) >= 1:
            raise ValueError(f"StopLoss.atr_period must be >= 1, got {self.atr_period!r}")
        parse_enum(PriceTrigger, self.trigger, "StopLoss.trigger")


@dataclass(frozen=True)
class BreakEven:
    """Move the stop to the entry price once price has moved ``after`` (fraction of entry) in
    the position's favour (on the stop's trigger price); combines with a StopLoss (the
    tighter level wins) or stands alone."""

    after: float

    def __post_init__(self) -> None:
        if not float(self.after) > 0.0:
            raise ValueError(f"BreakEven.after must be a positive fraction, got {self.after!r}")


@dataclass(frozen=True)
class TimeStop:
    """Exit at the open of the bar ``bars`` bars after the entry bar (DESIGN 4)."""

    bars: int

    def __post_init__(self) -> None:
        if not int(self.bars) >= 1:
            raise ValueError(f"TimeStop.bars must be >= 1, got {self.bars!r}")


@dataclass(frozen=True)
class TakeProfit:
    """Close the whole position when price moves ``pct`` (fraction) in its favour."""

    pct: float
    trigger: str = "last"

    def __post_init__(self) -> None:
        if not (0.0 < float(self.pct)):
            raise ValueError(f"TakeProfit.pct must be a positive fraction, got {self.pct!r}")
        parse_enum(PriceTrigger, self.trigger, "TakeProfit.trigger")


def stop_rules(stop, market) -> dict:
    """The engine's stop parameters from ``stop``: None, a fraction, a StopLoss, BreakEven or
    TimeStop, or a list of them (at most one of each kind; the first hit wins)."""
    rules = [] if stop is None else list(stop) if isinstance(stop, (list, tuple)) else [stop]
    n_sym = market.n_symbols
    out = dict(stop_pct=np.full(n_sym, np.nan), stop_trigger=PriceTrigger.last,
               stop_dist_t=np.zeros((0, n_sym)), trail=False,
               breakeven=np.full(n_sym, np.nan), time_stop=np.full(n_sym, -1, dtype=np.int64))
    seen = set()
    for rule in rules:
        if isinstance(rule, (int, float)) and not isinstance(rule, bool):
            rule = StopLoss(float(rule))
        if not isinstance(rule, (StopLoss, BreakEven, TimeStop)):
            raise TypeError(f"stop: expected a fraction, StopLoss, BreakEven, TimeStop or a "
                            f"list of them, got {rule!r}")
        if type(rule) in seen:
            raise ValueError(f"stop: more than one {type(rule).__name__} in {rules!r}")
        seen.add(type(rule))
        if isinstance(rule, StopLoss):
            out["stop_trigger"] = parse_enum(PriceTrigger, rule.trigger, "StopLoss.trigger")
            out["trail"] = bool(rule.trailing)
            if rule.pct is not None:
                out["stop_pct"] = np.full(n_sym, float(rule.pct))
            else:
                out["stop_dist_t"] = float(rule.atr) * atr_before(market, int(rule.atr_period))
        elif isinstance(rule, BreakEven):
            out["breakeven"] = np.full(n_sym, float(rule.after))
        else:
            out["time_stop"] = np.full(n_sym, int(rule.bars), dtype=np.int64)
    return out


def atr_before(market, period: int) -> np.ndarray:
    """(T, N) Wilder ATR (quote) as known at each bar's open: true range max(high, prev close)
    - min(low, prev close), smoothed with pandas ewm(alpha=1/period, adjust=False), shifted by
    one bar; NaN before ``period`` bars of history."""
    import pandas as pd

    a = market.arrays
    prev_close = np.vstack([np.full((1, market.n_symbols), np.nan), a["close"][:-1]])
    high = np.fmax(a["high"], prev_close)
    low = np.fmin(a["low"], prev_close)
    tr = pd.DataFrame(high - low)
    atr = tr.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean().to_numpy()
    out = np.full_like(atr, np.nan)
    out[1:] = atr[:-1]
    return np.ascontiguousarray(out)


def exit_rule_arrays(rule: "StopLoss | TakeProfit | float | None", cls: type,
                     n_symbols: int) -> tuple[np.ndarray, int]:
    """(pct per symbol with NaN = none, trigger int) for the engine config."""
    if rule is None:
        return np.full(n_symbols, np.nan), PriceTrigger.last
    if isinstance(rule, (int, float)):
        rule = cls(float(rule))
    if not isinstance(rule, cls):
        raise TypeError(f"expected {cls.__name__}, a float fraction or None, got {rule!r}")
    return (np.full(n_symbols, float(rule.pct)),
            parse_enum(PriceTrigger, rule.trigger, f"{cls.__name__}.trigger"))
