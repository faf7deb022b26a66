"""One pass over the target exposures before the run (numba): order count and input errors."""

from __future__ import annotations

import numpy as np

from perpbt._jit import jit_nb

SCAN_OK = 0
SCAN_INF = 1  # an infinite exposure
SCAN_OVER_LEVERAGE = 2  # |exposure| > leverage in isolated mode


BLOCK = 32  # values checked at once for "all NaN" (the common case: no new target)


@jit_nb(inline="always")
def any_valid_nb(flat, i0, i1):
    """Is any of flat[i0:i1] not NaN? (branch-free, so it vectorizes)"""
    k = 0
    for i in range(i0, i1):
        k += flat[i] == flat[i]
    return k > 0


@jit_nb(_nrt=True)  # allocates its small work array
def scan_targets_nb(values, leverage, isolated, order_bars):
    """(target changes, error kind, bar, symbol) of a (T, N) exposure array.

    A change is a non-NaN value different from the symbol's last non-NaN value (the first
    non-NaN value counts): each is one order. The first error found in bar order is reported.
    ``order_bars`` (T + 1,) receives, in order, each bar whose open sends orders (t + 1 for a
    change in row t), then T as a sentinel: the loop skips ahead between them.
    """
    n_bars, n_sym = values.shape
    flat = values.reshape(-1)  # C order: row t, symbol n at t * n_sym + n
    size = flat.shape[0]
    last = np.full(n_sym, np.nan)
    changes = 0
    n_order_bars = 0
    last_row = -1
    for i0 in range(0, size, BLOCK):
        i1 = min(i0 + BLOCK, size)
        if not any_valid_nb(flat, i0, i1):
            continue
        for i in range(i0, i1):
            v = flat[i]
            if np.isnan(v):
                continue
            t = i // n_sym
            n = i - t * n_sym
            if np.isinf(v):
                return changes, SCAN_INF, t, n
            if isolated and abs(v) > leverage[n] * (1.0 + 1e-12):
                return changes, SCAN_OVER_LEVERAGE, t, n
            if v != last[n]:
                changes += 1
                last[n] = v
                if t != last_row and t + 1 < n_bars:
                    order_bars[n_order_bars] = t + 1
                    n_order_bars += 1
                    last_row = t
    order_bars[n_order_bars] = n_bars
    return changes, SCAN_OK, -1, -1
