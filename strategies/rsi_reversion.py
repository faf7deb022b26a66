"""RSI mean reversion: long when oversold, short when overbought, out when RSI crosses back.

Run it: ``perpbt run rsi_reversion --param period=14 --param lower=25 --param upper=75``.

RSI is Wilder's (J. W. Wilder, *New Concepts in Technical Trading Systems*, 1978): average
gain and average loss of the last-price closes smoothed with Wilder's moving average, which is
an exponential average with alpha = 1 / period (pandas ``ewm(alpha=1/period, adjust=False)``,
seeded with the first change rather than a ``period``-bar mean, a difference that decays as
(1 - 1/period)^bars); RSI = 100 - 100 / (1 + avg_gain / avg_loss), NaN for the first
``period`` bars.

At bar t's close: RSI < ``lower`` -> target +``exposure`` (long); RSI > ``upper`` ->
-``exposure`` (short); RSI crossing ``exit_level`` (between t-1 and t, either way) -> 0 (flat);
otherwise NaN, which keeps the position. The order fills at t+1's open.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import perpbt as pb


def wilder_rsi(close: pd.DataFrame, period: int) -> pd.DataFrame:
    """Wilder's RSI (0..100) of each column; 100 when there was no loss in the window."""
    change = close.diff()
    smooth = dict(alpha=1.0 / period, adjust=False, min_periods=period)
    gain = change.clip(lower=0.0).ewm(**smooth).mean()
    loss = (-change).clip(lower=0.0).ewm(**smooth).mean()
    return 100.0 - 100.0 / (1.0 + gain / loss)  # loss 0: gain/loss = inf -> 100


class RsiReversion(pb.Strategy):
    """Long below ``lower``, short above ``upper``, flat when RSI crosses ``exit_level``."""

    period: int = 14  # bars
    lower: float = 30.0  # RSI level (0..100)
    upper: float = 70.0
    exit_level: float = 50.0
    exposure: float = 1.0  # |notional| / equity while in a position

    def signals(self, m):
        if self.period < 2 or not 0 < self.lower < self.exit_level < self.upper < 100:
            raise ValueError(f"{self!r} needs period >= 2 and 0 < lower < exit_level < upper "
                             f"< 100")
        rsi = wilder_rsi(m.close, self.period)
        above, was_above = rsi > self.exit_level, rsi.shift(1) > self.exit_level
        crossed = (above != was_above) & rsi.notna() & rsi.shift(1).notna()
        target = pd.DataFrame(np.nan, index=rsi.index, columns=rsi.columns)
        target = target.mask(crossed, 0.0)
        target = target.mask(rsi < self.lower, self.exposure)
        return target.mask(rsi > self.upper, -self.exposure)
