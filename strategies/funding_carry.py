"""Funding carry: fade extreme funding, short when longs pay a lot, long when shorts do.

Run it: ``perpbt run funding_carry --param threshold=0.0005 --scenario funding_regime``.

``funding_rate`` holds the rate (fraction per settlement, 0.0001 = 0.01 %) on the bars that
settle and NaN on the others; the rate that belongs to bar t is settled at t's open, so at
t's close the last settled rate is the forward-filled frame at t (no look-ahead). At bar t's
close: last rate > ``threshold`` -> target -``exposure`` (short, receiving funding); last rate
< -``threshold`` -> +``exposure`` (long); otherwise 0 (flat). Before the first settlement the
target is NaN (flat). The order fills at t+1's open. The threshold is per settlement: on
symbols that settle every 4 h or 2 h the same yearly carry needs a smaller threshold.
"""

from __future__ import annotations

import numpy as np

import perpbt as pb


class FundingCarry(pb.Strategy):
    """Short while the last funding rate is above ``threshold``, long while below -threshold."""

    threshold: float = 0.0005  # funding rate per settlement (fraction); 0.05 %
    exposure: float = 1.0  # |notional| / equity while in a position

    def signals(self, m):
        if not self.threshold >= 0:
            raise ValueError(f"{self!r} needs threshold >= 0")
        last_rate = m.funding_rate.ffill()  # the last settled rate, known at each bar's close
        side = np.sign(last_rate.where(last_rate.abs() > self.threshold, 0.0))
        return -self.exposure * side  # NaN before the first settlement keeps flat
