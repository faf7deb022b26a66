"""Donchian breakout with an ATR stop: long above the prior N-bar high, short below the prior
N-bar low, flat when the close crosses the channel's middle; the stop sits ``stop_atr`` ATRs
from the entry (the strategy's default stop, which ``pb.backtest(stop=...)`` overrides).

Run it: ``perpbt run donchian_atr --param lookback=48 --leverage 5``.

Channel of bars t-N .. t-1 (shifted: no look-ahead); the decision at t's close fills at t+1's
open. The ATR is Wilder's (period 14) as known at the fill bar's open (perpbt.risk.atr_before).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import perpbt as pb


class DonchianAtr(pb.Strategy):
    """Breakout of the prior ``lookback``-bar channel, exit at its middle, ATR stop."""

    lookback: int = 48  # bars
    exposure: float = 1.0  # |notional| / equity while in a position
    default_stop = pb.StopLoss(atr=2.0, atr_period=14)

    def signals(self, m):
        if self.lookback < 2:
            raise ValueError(f"DonchianAtr needs lookback >= 2, got {self.lookback}")
        upper = m.high.rolling(self.lookback).max().shift(1)
        lower = m.low.rolling(self.lookback).min().shift(1)
        middle = (upper + lower) / 2
        target = pd.DataFrame(np.nan, index=m.close.index, columns=m.close.columns)
        target = target.mask((m.close - middle) * (m.close.shift(1) - middle.shift(1)) < 0, 0.0)
        target = target.mask(m.close > upper, self.exposure)
        return target.mask(m.close < lower, -self.exposure)
