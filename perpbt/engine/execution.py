"""The execution model (DESIGN section 6): spread, square-root impact, participation cap, numba.

Every quantity here is a fraction of price unless stated. At a fill in bar t of symbol n the
model reads, from bars strictly before t (no look-ahead at the open):

- ``range_ewm``: exponentially weighted mean (span ``span``) of the log range ln(high / low)
  over the ``window`` bars before t (the average restarts there: weights beyond a window of
  4 spans are below 0.1 %, and a fill costs O(window) instead of a pass over the history);
- ``volume_ewm``: the same of the bar volume (base units);

and then prices:

- at t's open: half spread = base * widening(range[t-1] / range_ewm, volume_ewm / volume[t-1]);
- inside bar t (stops, forced closes), which may use bar t's own range and volume:
  base * widening(range[t] / range_ewm, volume_ewm / volume[t]);
- per-bar volatility for impact, Parkinson's range estimator range_ewm / (2 sqrt(ln 2)), and
  the volume an order at the open expects, volume_ewm (bar t's is not known yet); a fill
  inside bar t uses bar t's volume.

widening(r, h) = min(max_widening, max(r, 1) ** range_exponent * max(h, 1) ** thin_exponent):
1 in an ordinary bar, growing with an unusually wide bar and with thinness. A forced close
multiplies the half spread by ``stress``. Impact of q base units against volume v is
``impact_k * sigma * sqrt(q / v)`` (the square-root law). A buy fills at
ref * (1 + half spread + impact), a sell at ref * (1 - half spread - impact).
At most ``participation * volume[t]`` base units of a symbol fill in bar t (the bar's volume
is what traded while the order worked: a stated convention).
Nothing is precomputed: the model costs only at fills, so a run with it on costs about what a
frictionless run costs; the recent state of each (bar, symbol) a fill needed is memoized per
Market, so later runs on the same market (sweeps) reuse it.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb

PARKINSON = 1.0 / (2.0 * np.sqrt(np.log(2.0)))


@jit_nb(inline="always")
def power_nb(x, exponent):
    """x ** exponent for x >= 1, without the libm call in the shipped model's cases
    (exponent 1 or 0.5, or x = 1: an ordinary bar)."""
    if exponent == 1.0:
        return x
    if x == 1.0 or exponent == 0.0:
        return 1.0
    if exponent == 0.5:
        return np.sqrt(x)
    return x ** exponent


@jit_nb(inline="always")
def widening_nb(range_ratio, thinness, range_exponent, thin_exponent, max_widening):
    """Spread multiplier (>= 1) from the bar's range relative to recent ranges and thinness."""
    w = (power_nb(max(range_ratio, 1.0), range_exponent)
         * power_nb(max(thinness, 1.0), thin_exponent))
    return min(w, max_widening)


@jit_nb
def recent_state_nb(t, n, high, low, volume, span, window):
    """(range_ewm, volume_ewm) of symbol n over the ``window`` bars before t (bar 0: its own)."""
    alpha = 2.0 / (span + 1.0)
    j0 = max(t - window, 0)
    r_ewm = np.log(high[j0, n] / low[j0, n])
    v_ewm = volume[j0, n]
    for j in range(j0 + 1, t):
        r_ewm += alpha * (np.log(high[j, n] / low[j, n]) - r_ewm)
        v_ewm += alpha * (volume[j, n] - v_ewm)
    return r_ewm, v_ewm


@jit_nb(inline="always")
def quote_from_state_nb(t, n, inside, r_ewm, v_ewm, high, low, volume, base, range_exponent,
                        thin_exponent, max_widening):
    """(half spread, sigma, impact volume) of a fill of symbol n in bar t from its recent
    state (range_ewm, volume_ewm)."""
    k = t if inside else max(t - 1, 0)
    rng = np.log(high[k, n] / low[k, n])
    vol = volume[k, n]
    ratio = rng / r_ewm if r_ewm > 0.0 else 1.0
    thin = v_ewm / vol if vol > 0.0 else max_widening
    hs = base * widening_nb(ratio, thin, range_exponent, thin_exponent, max_widening)
    return hs, PARKINSON * r_ewm, volume[t, n] if inside else v_ewm


@jit_nb
def quote_nb(t, n, inside, high, low, volume, base, span, window, range_exponent,
             thin_exponent, max_widening):
    """(half spread, sigma, impact volume) of a fill of symbol n in bar t: at the open
    (``inside`` False: state before t) or inside the bar (may use bar t's range and volume)."""
    r_ewm, v_ewm = recent_state_nb(t, n, high, low, volume, span, window)
    return quote_from_state_nb(t, n, inside, r_ewm, v_ewm, high, low, volume, base,
                               range_exponent, thin_exponent, max_widening)


@jit_nb
def quote_cfg_nb(t, n, inside, mkt, cfg):
    """quote_nb with the run's parameters (cfg) on the market arrays (mkt).

    The recent state of (t, n) is a pure function of the market and (span, window):
    ``cfg.exec_state`` / ``cfg.exec_done`` memoize it per Market (perpbt.backtest), so the
    runs of a sweep compute each bar's state once.
    """
    if cfg.exec_done.shape[0] > 0:
        if not cfg.exec_done[t, n]:
            r, v = recent_state_nb(t, n, mkt.high, mkt.low, mkt.volume, cfg.exec_span,
                                   cfg.exec_window)
            cfg.exec_state[t, n, 0] = r
            cfg.exec_state[t, n, 1] = v
            cfg.exec_done[t, n] = True
        r_ewm = cfg.exec_state[t, n, 0]
        v_ewm = cfg.exec_state[t, n, 1]
    else:
        r_ewm, v_ewm = recent_state_nb(t, n, mkt.high, mkt.low, mkt.volume, cfg.exec_span,
                                       cfg.exec_window)
    return quote_from_state_nb(t, n, inside, r_ewm, v_ewm, mkt.high, mkt.low, mkt.volume,
                               cfg.base_half_spread[n], cfg.range_exponent, cfg.thin_exponent,
                               cfg.max_widening)


@jit_nb
def quote_table_nb(high, low, volume, base, span, window, range_exponent, thin_exponent,
                   max_widening, hs_open, hs_in, sigma, typ_volume):
    """Every bar's quotes as (T, N) arrays (for inspection and tests; the run never calls it)."""
    n_bars, n_sym = high.shape
    for n in range(n_sym):
        for t in range(n_bars):
            hs_open[t, n], sigma[t, n], typ_volume[t, n] = quote_nb(
                t, n, False, high, low, volume, base[n], span, window, range_exponent,
                thin_exponent, max_widening)
            hs_in[t, n], _, _ = quote_nb(t, n, True, high, low, volume, base[n], span, window,
                                         range_exponent, thin_exponent, max_widening)


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
