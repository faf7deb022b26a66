"""Applying a fill to a position: realized PnL, isolated margin, fees (DESIGN section 5), numba.

Isolated: an increase posts add_qty * fill / leverage; the open fee is then taken from the free
balance and any remainder from that position's margin. A reduction releases margin pro rata
(margin * closed / |qty|) with the realized PnL; the close fee is paid after the release.
Cross: everything settles in the shared wallet.
The fill price is given (the core engine is frictionless; the execution model supplies it).
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.records import (add_to_trade_nb, finish_trade_nb, open_trade_nb,
                                   reduce_trade_nb, write_fill_nb)
from perpbt.engine.requirements import is_cross_nb, sum_margin_nb
from perpbt.engine.state import A_WALLET


@jit_nb
def stop_level_at_nb(n, best, ps, cfg):
    """The stop level of symbol n given the best price since entry: the distance from the
    entry (trailing: from ``best``), moved to the entry once the break-even move is reached."""
    side = 1.0 if ps.qty[n] > 0 else -1.0
    entry = ps.entry[n]
    d = ps.stop_dist[n]
    level = np.nan
    if not np.isnan(d):
        level = (best if cfg.trail else entry) - side * d
    be = cfg.breakeven[n]
    if not np.isnan(be) and side * (best - entry) >= be * entry:
        if np.isnan(level) or side * (entry - level) > 0.0:
            level = entry
    return level


@jit_nb
def stop_level_nb(n, ps, cfg):
    return stop_level_at_nb(n, ps.best[n], ps, cfg)


@jit_nb
def advance_best_nb(n, price, ps, cfg):
    """A new best price since entry moves trailing and break-even stops; True if it did."""
    side = 1.0 if ps.qty[n] > 0 else -1.0
    if not side * (price - ps.best[n]) > 0.0:
        return False
    ps.best[n] = price
    if ps.exit_work[n] >= 0 or ps.liq_rec[n] >= 0:
        return False  # an exit or a forced close is already working: no level any more
    old = ps.stop_level[n]
    ps.stop_level[n] = stop_level_nb(n, ps, cfg)
    return not (ps.stop_level[n] == old)


@jit_nb
def set_exit_levels_nb(n, bar, ps, cfg, buf):
    """Stop and take-profit levels after a fill at ``bar``: the stop distance is a fraction
    of the average entry, or the ATR distance of the fill bar (known at t-1's close)."""
    q = ps.qty[n]
    if q == 0.0:
        ps.stop_level[n] = np.nan
        ps.take_level[n] = np.nan
        ps.stop_frac[n] = np.nan
        return
    side = 1.0 if q > 0 else -1.0
    if cfg.stop_frac_t.shape[0] > 0 and not np.isnan(cfg.stop_frac_t[bar, n]):
        ps.stop_frac[n] = cfg.stop_frac_t[bar, n]  # the strategy's own stop for this fill
    if not np.isnan(ps.stop_frac[n]):
        ps.stop_dist[n] = ps.entry[n] * ps.stop_frac[n]
    elif cfg.stop_dist_t.shape[0] > 0:
        ps.stop_dist[n] = cfg.stop_dist_t[bar, n]
    else:
        ps.stop_dist[n] = ps.entry[n] * cfg.stop_pct[n]  # NaN pct -> no stop
    ps.stop_level[n] = stop_level_nb(n, ps, cfg)
    ps.take_level[n] = ps.entry[n] * (1.0 + side * cfg.take_pct[n])
    tid = ps.trade_id[n]
    if tid >= 0:
        buf.trades[tid]["stop_price"] = ps.stop_level[n]


@jit_nb
def reduce_position_nb(n, closed_abs, price, fee_rate, reason, bar, s, ps, cfg, acct, cnt, buf):
    """Close ``closed_abs`` base units of symbol n at ``price``; returns the realized PnL."""
    q = ps.qty[n]
    side = 1.0 if q > 0 else -1.0
    q_abs = abs(q)
    if closed_abs > q_abs:
        closed_abs = q_abs
    realized = side * closed_abs * (price - ps.entry[n])
    fee = fee_rate * closed_abs * price
    beyond = 0
    if is_cross_nb(cfg):
        acct[A_WALLET] += realized - fee
        if acct[A_WALLET] < 0.0 and realized < 0.0:
            beyond = 1  # the fill left the shared wallet negative: beyond bankruptcy
    else:
        frac = closed_abs / q_abs
        release = ps.margin[n] * frac
        if -realized > release:
            beyond = 1  # filled beyond the bankruptcy price: the full loss is realized
        ps.margin[n] -= release
        ps.fees_outside[n] *= 1.0 - frac
        acct[A_WALLET] += realized - fee
    new_q = q - side * closed_abs
    if abs(new_q) <= 1e-12 * q_abs:
        new_q = 0.0
    ps.qty[n] = new_q
    tid = ps.trade_id[n]
    write_fill_nb(buf, cnt, bar, n, s, -side * closed_abs, price, fee, realized, reason, beyond,
                  tid, new_q)
    if tid >= 0:
        reduce_trade_nb(buf, tid, closed_abs, price, realized, fee)
        if beyond == 1:
            buf.trades[tid]["beyond_bankruptcy"] = 1
    if new_q == 0.0:
        ps.entry[n] = 0.0
        ps.margin[n] = 0.0
        ps.fees_outside[n] = 0.0
        if tid >= 0:
            buf.trades[tid]["min_liq_distance"] = ps.min_dist[n]
            finish_trade_nb(buf, tid, bar, reason, 0)
        ps.min_dist[n] = np.inf
        ps.trade_id[n] = -1
        ps.entry_bar[n] = -1
    set_exit_levels_nb(n, bar, ps, cfg, buf)
    return realized


@jit_nb
def increase_position_nb(n, add_signed, price, fee_rate, reason, bar, s, ps, cfg, acct, cnt,
                         buf):
    """Add ``add_signed`` base units (same side as the position, or from flat) at ``price``."""
    q = ps.qty[n]
    add_abs = abs(add_signed)
    side = 1 if add_signed > 0 else -1
    tid = ps.trade_id[n]
    if q == 0.0:
        tid = open_trade_nb(buf, cnt, n, side, bar)
        ps.trade_id[n] = tid
        ps.entry_bar[n] = bar
        ps.best[n] = price
    new_abs = abs(q) + add_abs
    ps.entry[n] = (abs(q) * ps.entry[n] + add_abs * price) / new_abs
    ps.qty[n] = q + add_signed
    fee = fee_rate * add_abs * price
    acct[A_WALLET] -= fee
    if not is_cross_nb(cfg):
        ps.margin[n] += add_abs * price / cfg.leverage[n]
        free = acct[A_WALLET] - sum_margin_nb(ps)
        from_margin = 0.0
        if free < 0.0:
            from_margin = min(fee, -free, ps.margin[n])
            ps.margin[n] -= from_margin
        ps.fees_outside[n] += fee - from_margin
    write_fill_nb(buf, cnt, bar, n, s, add_signed, price, fee, 0.0, reason, 0, tid, ps.qty[n])
    add_to_trade_nb(buf, tid, new_abs, add_abs, price, fee)
    buf.trades[tid]["entry_price"] = ps.entry[n]
    set_exit_levels_nb(n, bar, ps, cfg, buf)
