"""One pass over the equity curve for Result.stats(), numba.

Per-bar returns r_t = E_t / E_{t-1} - 1 (E_{-1} = the initial capital; 0 where the previous
equity is not positive), their mean, standard deviation (population, ddof=0), downside
deviation sqrt(mean(min(r, 0)^2)), and the maximum drawdown 1 - E / running peak of
(initial capital, E_0, E_1, ...), all fractions. The variance sums are shifted by the first
return (no cancellation when returns are tiny against their mean); several numpy passes with
temporaries cost about 10x more on the sweeps' stats-only runs.
"""

from __future__ import annotations

import numpy as np

from perpbt._jit import jit_nb


@jit_nb
def equity_stats_nb(equity, start):
    """(mean return, std of returns, downside deviation, max drawdown) of a non-empty curve."""
    n = equity.shape[0]
    prev = start
    shift = 0.0
    s1 = 0.0
    s2 = 0.0
    down = 0.0
    peak = start
    max_dd = 0.0
    floor = peak  # equity below peak * (1 - max_dd) is a new maximum drawdown
    for t in range(n):
        e = equity[t]
        r = e / prev - 1.0 if prev > 0 else 0.0
        if t == 0:
            shift = r
        d = r - shift
        s1 += d
        s2 += d * d
        m = min(r, 0.0)
        down += m * m
        if e > peak:
            peak = e
            floor = peak * (1.0 - max_dd)
        elif e < floor:
            max_dd = 1.0 - e / peak
            floor = peak * (1.0 - max_dd)
        prev = e
    mean_d = s1 / n
    var = max(s2 / n - mean_d * mean_d, 0.0)
    return shift + mean_d, np.sqrt(var), np.sqrt(down / n), max_dd


@jit_nb
def record_stats_nb(fills, trades, funding):
    """The record part of Result.stats() in one pass each, with sequential sums:
    (winning closed trades, closed trades, fees paid, funding received, smallest finite
    liquidation distance or nan, trades whose stop lay beyond the liquidation price).
    A closed trade (exit bar >= 0) wins when pnl - fees + funding > 0; money in quote."""
    fees = 0.0
    for i in range(fills.shape[0]):
        fees += fills[i]["fee"]
    received = 0.0
    for i in range(funding.shape[0]):
        received += funding[i]["payment"]
    wins = 0
    closed = 0
    beyond = 0
    min_dist = np.inf
    for i in range(trades.shape[0]):
        tr = trades[i]
        if tr["exit_bar"] >= 0:
            closed += 1
            if tr["pnl"] - tr["fees"] + tr["funding"] > 0.0:
                wins += 1
        d = tr["min_liq_distance"]
        if np.isfinite(d) and d < min_dist:
            min_dist = d
        beyond += tr["stop_beyond_liq"]
    return wins, closed, fees, received, (min_dist if np.isfinite(min_dist) else np.nan), beyond
