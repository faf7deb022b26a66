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
    """Close the whole position when price moves ``pct`` (fraction) against the entry."""

    pct: float
    trigger: str = "last"

    def __post_init__(self) -> None:
        if not (0.0 < float(self.pct) < 1.0):
            raise ValueError(f"StopLoss.pct must be a fraction in (0, 1), got {self.pct!r}")
        parse_enum(PriceTrigger, self.trigger, "StopLoss.trigger")


@dataclass(frozen=True)
class TakeProfit:
    """Close the whole position when price moves ``pct`` (fraction) in its favour."""

    pct: float
    trigger: str = "last"

    def __post_init__(self) -> None:
        if not (0.0 < float(self.pct)):
            raise ValueError(f"TakeProfit.pct must be a positive fraction, got {self.pct!r}")
        parse_enum(PriceTrigger, self.trigger, "TakeProfit.trigger")


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
