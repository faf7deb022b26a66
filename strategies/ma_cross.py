"""Moving-average cross: long while the fast SMA is above the slow SMA, short while below.

Run it: ``perpbt run ma_cross --leverage 5 --param fast=12 --param slow=48``.

Both averages are of last-price closes up to and including bar t, so the target decided at
t's close fills at t+1's open (no look-ahead). Before the slow average has ``slow`` bars the
target is flat. ``exposure`` is the position's notional as a multiple of equity (1.0 = one
times equity); it must not exceed the leverage in isolated margin.
"""

from __future__ import annotations

import perpbt as pb


class MaCross(pb.Strategy):
    """Long when SMA(fast) > SMA(slow), short when SMA(fast) < SMA(slow)."""

    fast: int = 24  # bars
    slow: int = 96  # bars
    exposure: float = 1.0  # |notional| / equity while in a position

    def signals(self, m):
        if not 0 < self.fast < self.slow:
            raise ValueError(f"MaCross needs 0 < fast < slow, got fast={self.fast}, "
                             f"slow={self.slow}")
        fast = m.close.rolling(self.fast).mean()
        slow = m.close.rolling(self.slow).mean()
        return pb.Targets(long=fast > slow, short=fast < slow, exposure=self.exposure)
