"""One pass over the target exposures before the run (numba): order count and input errors."""

from __future__ import annotations

import numpy as np

from perpbt._jit import jit_nb

SCAN_OK = 0
SCAN_INF = 1  # an infinite exposure
SCAN_OVER_LEVERAGE = 2  # |exposure| > leverage in isolated mode


@jit_nb(_nrt=True)  # allocates its small work array
def scan_targets_nb(values, leverage, isolated):
    """(target changes, error kind, bar, symbol) of a (T, N) exposure array.

    A change is a non-NaN value different from the symbol's last non-NaN value (the first
    non-NaN value counts): each is one order. The first error found in bar order is reported.
    """
    n_bars, n_sym = values.shape
    changes = 0
    last = np.full(n_sym, np.nan)
    for t in range(n_bars):
        for n in range(n_sym):
            v = values[t, n]
            if np.isnan(v):
                continue
            if np.isinf(v):
                return changes, SCAN_INF, t, n
            if isolated and abs(v) > leverage[n] * (1.0 + 1e-12):
                return changes, SCAN_OVER_LEVERAGE, t, n
            if v != last[n]:
                changes += 1
                last[n] = v
    return changes, SCAN_OK, -1, -1
