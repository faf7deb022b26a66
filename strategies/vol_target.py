"""Volatility-targeted trend: the sign of the past return, sized to a target volatility.

Run it: ``perpbt run vol_target --param lookback=168 --param target_vol=0.4``.

At bar t's close, from last-price closes up to t: direction = sign(close[t] /
close[t - lookback] - 1); realized volatility = sample standard deviation of the last
``vol_window`` simple bar returns, annualised by sqrt(bars per year), with bars per year =
365 days / the market's timeframe (perps trade around the clock); target = direction *
target_vol / realized_vol, rounded to a multiple of ``step`` (small volatility moves do not
trade: every change of the target is an order) and capped at ``max_exposure``. NaN during
the warm-up keeps flat. The order fills at t+1's open.
"""

from __future__ import annotations

import numpy as np

import perpbt as pb

YEAR_MS = 365 * 24 * 3_600_000


class VolTarget(pb.Strategy):
    """Trend direction over ``lookback`` bars, exposure = target_vol / realized vol, capped."""

    lookback: int = 168  # bars of the trend return
    vol_window: int = 168  # bars of the realized volatility
    target_vol: float = 0.5  # annualised volatility of the position (fraction)
    max_exposure: float = 2.0  # cap on |notional| / equity
    step: float = 0.25  # exposure grid

    def signals(self, m):
        if self.lookback < 1 or self.vol_window < 2 or not self.step > 0:
            raise ValueError(f"{self!r} needs lookback >= 1, vol_window >= 2, step > 0")
        direction = np.sign(m.close / m.close.shift(self.lookback) - 1.0)
        bars_per_year = YEAR_MS / m.timeframe_ms
        vol = m.close.pct_change().rolling(self.vol_window).std() * np.sqrt(bars_per_year)
        size = (self.target_vol / vol / self.step).round() * self.step
        return direction * size.clip(upper=self.max_exposure)
