"""The equity curve's stats for Result.stats(), numba.

Per-bar returns r_t = E_t / E_{t-1} - 1 (E_{-1} = the initial capital; 0 where the previous
equity is not positive), their mean, standard deviation (population, ddof=0), downside
deviation sqrt(mean(min(r, 0)^2)), and the maximum drawdown 1 - E / running peak of
(initial capital, E_0, E_1, ...), all fractions. The variance sums are shifted by the first
return (no cancellation when returns are tiny against their mean); several numpy passes with
temporaries cost about 10x more on the sweeps' stats-only runs. The sums run vectorized. The
drawdown (a running peak) is computed by the kernel as it runs (``drawdown_step_nb`` at each
close; a quiet block whose mark range cannot reach a new peak or the drawdown floor skips
it), which saves a pass over the curve; ``max_drawdown_nb`` is that pass, for reference.
"""

from __future__ import annotations

import numpy as np

from perpbt._jit import jit_nb


@jit_nb(fastmath={"reassoc", "nsz"})
def return_sums_nb(equity, shift):
    """(sum of d, sum of d^2, sum of min(r, 0)^2) over bars 1.. of the curve, d = r - shift.

    Each return reads both equities from the array (no value carried from the previous
    bar), and the sums may be reassociated: the loop runs four bars per vector instruction,
    divisions included (about 1.5x faster than one bar at a time). NaN and inf keep their
    IEEE meaning (no "fast" flag but reassociation and the sign of zero)."""
    s1 = 0.0
    s2 = 0.0
    down = 0.0
    for t in range(1, equity.shape[0]):
        prev = equity[t - 1]
        r = equity[t] / prev - 1.0
        r = r if prev > 0 else 0.0
        d = r - shift
        s1 += d
        s2 += d * d
        m = min(r, 0.0)
        down += m * m
    return s1, s2, down


DRAWDOWN_BLOCK = 16  # bars whose max and min are checked before looking at them one by one


@jit_nb(inline="always")
def drawdown_step_nb(equity, peak, floor, max_dd):
    """(peak, floor, max_dd) after one more equity value: a new peak, or equity below
    ``floor`` = peak * (1 - max_dd) is a new maximum drawdown 1 - equity / peak. The kernel
    runs it at every close (engine/loop.py), ``max_drawdown_nb`` over a whole curve; a
    repeated value changes nothing the second time."""
    if equity > peak:
        peak = equity
        floor = peak * (1.0 - max_dd)
    elif equity < floor:
        max_dd = 1.0 - equity / peak
        floor = peak * (1.0 - max_dd)
    return peak, floor, max_dd


@jit_nb
def max_drawdown_nb(equity, start):
    """1 - E / running peak of (start, E_0, E_1, ...), maximum over the curve; equity below
    peak * (1 - max so far) is a new maximum (no division on the other bars).

    A block of bars with no new peak and nothing below that floor changes neither, so its
    bars are looked at one by one only when its max or min says so: the min/max pass
    vectorizes, and the per-bar branches (hard to predict near a peak) run on few bars.
    The kernel computes the same number as it runs (``Result`` reads it from there); this
    pass is the reference the tests hold it to."""
    peak = start
    max_dd = 0.0
    floor = peak
    n = equity.shape[0]
    t = 0
    while t < n:
        stop = min(t + DRAWDOWN_BLOCK, n)
        hi = equity[t]
        lo = equity[t]
        for i in range(t + 1, stop):
            hi = max(hi, equity[i])
            lo = min(lo, equity[i])
        if hi > peak or lo < floor:
            for i in range(t, stop):
                peak, floor, max_dd = drawdown_step_nb(equity[i], peak, floor, max_dd)
        t = stop
    return max_dd


@jit_nb
def equity_stats_nb(equity, start):
    """(mean return, std of returns, downside deviation) of a non-empty curve."""
    n = equity.shape[0]
    shift = equity[0] / start - 1.0 if start > 0 else 0.0  # r_0; its d is 0
    s1, s2, down = return_sums_nb(equity, shift)
    down += min(shift, 0.0) ** 2
    mean_d = s1 / n
    var = max(s2 / n - mean_d * mean_d, 0.0)
    return shift + mean_d, np.sqrt(var), np.sqrt(down / n)


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
