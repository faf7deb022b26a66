"""Donchian breakout, long only: enter above the prior N-bar high, exit below the prior N/2 low.

Run it: ``perpbt run breakout --param lookback=72 --stop 0.03``.

At bar t's close: if the close is above the highest high of bars t-N .. t-1, the target is
``exposure`` (long); if it is below the lowest low of bars t-N/2 .. t-1, the target is 0
(flat); otherwise the target is NaN, which keeps whatever is held. The order fills at t+1's
open. After a stop or a liquidation the symbol stays flat until the next breakout signal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import perpbt as pb


class Breakout(pb.Strategy):
    """Long above the prior ``lookback``-bar high, flat below the prior ``lookback // 2`` low."""

    lookback: int = 48  # bars
    exposure: float = 1.0  # |notional| / equity while long

    def signals(self, m):
        if self.lookback < 2:
            raise ValueError(f"Breakout needs lookback >= 2, got {self.lookback}")
        upper = m.high.rolling(self.lookback).max().shift(1)
        lower = m.low.rolling(self.lookback // 2).min().shift(1)
        target = pd.DataFrame(np.nan, index=m.close.index, columns=m.close.columns)
        target = target.mask(m.close < lower, 0.0)
        return target.mask(m.close > upper, self.exposure)
