"""The execution model (DESIGN section 6): spread, square-root impact, participation cap, numba.

Every quantity here is a fraction of price unless stated. Per bar t and symbol n the run
precomputes, from bars up to t-1 only (no look-ahead at the open):

- ``range_ewm``: exponentially weighted mean of the log range ln(high / low), per bar;
- ``volume_ewm``: the same of the bar volume (base units);
- ``hs_open[t]``: half spread of a fill at t's open = base * widening(range[t-1] / range_ewm,
  volume_ewm / volume[t-1]);
- ``hs_in[t]``: half spread of a stop or forced fill inside bar t, which may use bar t's own
  range and volume: base * widening(range[t] / range_ewm, volume_ewm / volume[t]);
- ``sigma[t]``: per-bar volatility for impact, Parkinson's range estimator
  range_ewm / (2 sqrt(ln 2)); ``typ_volume[t]``: volume_ewm (the volume an order at the open
  expects, since bar t's is not known yet).

widening(r, h) = min(max_widening, max(r, 1) ** range_exponent * max(h, 1) ** thin_exponent):
1 in an ordinary bar, growing with an unusually wide bar and with thinness. A forced close
multiplies the half spread by ``stress``. Impact of q base units against volume v is
``impact_k * sigma * sqrt(q / v)`` (the square-root law). A buy fills at
ref * (1 + half spread + impact), a sell at ref * (1 - half spread - impact).
At most ``participation * volume[t]`` base units of a symbol fill in bar t (the bar's volume
is what traded while the order worked: a stated convention).
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb

PARKINSON = 1.0 / (2.0 * np.sqrt(np.log(2.0)))


@jit_nb(inline="always")
def widening_nb(range_ratio, thinness, range_exponent, thin_exponent, max_widening):
    """Spread multiplier (>= 1) from the bar's range relative to recent ranges and thinness."""
    w = max(range_ratio, 1.0) ** range_exponent * max(thinness, 1.0) ** thin_exponent
    return min(w, max_widening)


@jit_nb
def execution_state_nb(high, low, volume, base_half_spread, span, range_exponent,
                       thin_exponent, max_widening, hs_open, hs_in, sigma, typ_volume):
    """Fill the (T, N) arrays hs_open, hs_in, sigma and typ_volume (see the module notes).

    Bar 0 has no history: its state is that of an ordinary bar (widening 1) with its own
    range as the recent range, and typical volume = its volume.
    """
    n_bars, n_sym = high.shape
    alpha = 2.0 / (span + 1.0)
    for n in range(n_sym):
        base = base_half_spread[n]
        rng0 = np.log(high[0, n] / low[0, n])
        r_ewm = rng0
        v_ewm = volume[0, n]
        prev_range = rng0
        prev_volume = volume[0, n]
        for t in range(n_bars):
            rng = np.log(high[t, n] / low[t, n])
            vol = volume[t, n]
            # state known at t's open: EWMs up to t-1 and bar t-1 itself
            ratio_open = prev_range / r_ewm if r_ewm > 0.0 else 1.0
            thin_open = v_ewm / prev_volume if prev_volume > 0.0 else max_widening
            hs_open[t, n] = base * widening_nb(ratio_open, thin_open, range_exponent,
                                               thin_exponent, max_widening)
            ratio_in = rng / r_ewm if r_ewm > 0.0 else 1.0
            thin_in = v_ewm / vol if vol > 0.0 else max_widening
            hs_in[t, n] = base * widening_nb(ratio_in, thin_in, range_exponent, thin_exponent,
                                             max_widening)
            sigma[t, n] = PARKINSON * r_ewm
            typ_volume[t, n] = v_ewm
            if t > 0:
                r_ewm += alpha * (rng - r_ewm)
                v_ewm += alpha * (vol - v_ewm)
            prev_range = rng
            prev_volume = vol


@jit_nb(inline="always")
def impact_nb(qty_abs, volume, sigma, impact_k):
    """Square-root impact, fraction of price: impact_k * sigma * sqrt(qty / volume)."""
    if qty_abs <= 0.0:
        return 0.0
    if volume <= 0.0:
        return impact_k * sigma * 1e3  # no volume at all: a prohibitive but finite impact
    return impact_k * sigma * np.sqrt(qty_abs / volume)


@jit_nb(inline="always")
def fill_price_nb(ref, order_sign, half_spread, qty_abs, volume, sigma, impact_k):
    """Average fill of a market order of ``qty_abs`` (order_sign +1 buy, -1 sell) around
    ``ref``; a sell never fills below 0."""
    cost = half_spread + impact_nb(qty_abs, volume, sigma, impact_k)
    p = ref * (1.0 + order_sign * cost)
    return max(p, 0.0)


@jit_nb(inline="always")
def qty_within_limit_nb(ref, order_sign, limit, half_spread, volume, sigma, impact_k):
    """Largest quantity whose average fill is no worse than ``limit`` (inf: any size; 0: none).

    Solves ref * (1 + sign * (hs + k * sigma * sqrt(q / v))) = limit for q.
    """
    room = order_sign * (limit / ref - 1.0) - half_spread  # price room left for impact
    if room < 0.0:
        return 0.0
    unit = impact_k * sigma
    if unit <= 0.0 or volume <= 0.0:
        return np.inf if volume > 0.0 or unit <= 0.0 else 0.0
    return volume * (room / unit) ** 2


@jit_nb(inline="always")
def cap_left_nb(t, n, volume, participation, cap_bar, cap_used):
    """Base units symbol n may still fill in bar t under the participation cap."""
    if cap_bar[n] != t:
        cap_bar[n] = t
        cap_used[n] = 0.0
    return max(participation[n] * volume[t, n] - cap_used[n], 0.0)
