"""The intrabar path and its events (DESIGN section 4, steps 2 and 4), numba.

Each bar is three straight segments O -> X1 -> X2 -> C in bar-time s in [0, 3]. X1 is the
extreme adverse to the position held after the open's orders (``pessimistic``) or low first
when close >= open (``ohlc``); the mark path follows last's order. An event at level L on
segment k from P_a to P_b happens at s = k + (L - P_a) / (P_b - P_a); a condition already true
where the walk starts fires there at the current price. The earliest event wins; events within
1e-9 of bar-time tie and resolve liquidation, then stop-loss, then take-profit, then the lower
symbol index. After each event liquidation prices are recomputed and the walk resumes from s.

Cross: the event is the first s where wallet + sum(unrealized(s)) <= sum(requirement(s)); the
condition is piecewise linear with kinks at segment ends and tier floors, so it is evaluated
there and the first crossing solved exactly inside its linear piece.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.execution import cap_left_nb, fill_price_nb, quote_cfg_nb
from perpbt.engine.fills import advance_best_nb, reduce_position_nb
from perpbt.engine.forced import liquidate_policy_nb
from perpbt.engine.liquidation import refresh_liq_prices_nb
from perpbt.engine.requirements import cross_health_nb, is_cross_nb
from perpbt.engine.state import A_WALLET, C_LIQ_ACTIVE, C_STOPS
from perpbt.enums import FillReason, Intrabar, PriceTrigger, Venue

EV_NONE = -1
EV_LIQ = 0
EV_STOP = 1
EV_TAKE = 2
TIE = 1e-9


@jit_nb
def build_path_nb(t, mkt, ps, cfg, last_path, mark_path):
    """Per-symbol last and mark paths (N, 4) of bar t: O, X1, X2, C."""
    for n in range(ps.qty.shape[0]):
        o = mkt.open[t, n]
        c = mkt.close[t, n]
        q = ps.qty[n]
        if cfg.intrabar == Intrabar.pessimistic and q != 0.0:
            low_first = q > 0.0
        else:
            low_first = c >= o
        last_path[n, 0] = o
        last_path[n, 3] = c
        mark_path[n, 0] = mkt.mark_open[t, n]
        mark_path[n, 3] = mkt.mark_close[t, n]
        if low_first:
            last_path[n, 1] = mkt.low[t, n]
            last_path[n, 2] = mkt.high[t, n]
            mark_path[n, 1] = mkt.mark_low[t, n]
            mark_path[n, 2] = mkt.mark_high[t, n]
        else:
            last_path[n, 1] = mkt.high[t, n]
            last_path[n, 2] = mkt.low[t, n]
            mark_path[n, 1] = mkt.mark_high[t, n]
            mark_path[n, 2] = mkt.mark_low[t, n]


@jit_nb
def price_at_nb(path, n, s):
    """Price of symbol n's path at bar-time s."""
    k = int(s)
    if k > 2:
        k = 2
    a = path[n, k]
    return a + (s - k) * (path[n, k + 1] - a)


@jit_nb
def marks_at_nb(mark_path, s, marks):
    for n in range(marks.shape[0]):
        marks[n] = price_at_nb(mark_path, n, s)


@jit_nb
def crossing_nb(path, n, k, s_cur, s_end, level, direction):
    """First s in [s_cur, s_end] of segment k where the path reaches ``level``.

    direction +1: the event is price <= level (falling); -1: price >= level (rising).
    Returns (s, price at the event, interior) with s = inf when it does not happen.
    """
    p_cur = price_at_nb(path, n, s_cur)
    if direction * (level - p_cur) >= 0.0:
        return s_cur, p_cur, False
    if s_end <= s_cur:
        return np.inf, np.nan, False
    p_end = price_at_nb(path, n, s_end)
    if direction * (level - p_end) >= 0.0:
        a = path[n, k]
        b = path[n, k + 1]
        s = k + (level - a) / (b - a)
        s = min(max(s, s_cur), s_end)
        return s, level, True
    return np.inf, np.nan, False


@jit_nb
def insertion_sort_nb(values, count):
    """Sort values[:count] in place (a handful of kink times; no allocation)."""
    for i in range(1, count):
        v = values[i]
        j = i - 1
        while j >= 0 and values[j] > v:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = v


@jit_nb
def cross_event_nb(k, s_cur, s_end, mark_path, ps, ins, cfg, wallet, marks, kinks):
    """First s in [s_cur, s_end] where the cross account reaches its requirement (inf: none)."""
    marks_at_nb(mark_path, s_cur, marks)
    g_prev = cross_health_nb(marks, wallet, ps, ins, cfg)
    if g_prev <= 0.0:
        return s_cur
    if s_end <= s_cur:
        return np.inf
    nk = 0
    if cfg.venue != Venue.bybit:  # bybit's requirement is fixed at entry value: no kinks
        for n in range(ps.qty.shape[0]):
            q = abs(ps.qty[n])
            a = mark_path[n, k]
            b = mark_path[n, k + 1]
            if q == 0.0 or a == b:
                continue
            d = ps.table[n]
            for i in range(1, ins.tier_count[n, d]):
                s = k + (ins.tier_floor[n, d, i] / q - a) / (b - a)
                if s_cur < s < s_end:
                    kinks[nk] = s
                    nk += 1
    kinks[nk] = s_end
    nk += 1
    insertion_sort_nb(kinks, nk)
    s_prev = s_cur
    for i in range(nk):
        s_i = kinks[i]
        marks_at_nb(mark_path, s_i, marks)
        g_i = cross_health_nb(marks, wallet, ps, ins, cfg)
        if g_i <= 0.0:
            return s_prev + (s_i - s_prev) * g_prev / (g_prev - g_i)
        s_prev = s_i
        g_prev = g_i
    return np.inf


@jit_nb
def _better(s, kind, n, best_s, best_kind, best_n):
    if s < best_s - TIE:
        return True
    if s > best_s + TIE:
        return False
    if kind != best_kind:
        return kind < best_kind
    return n < best_n


@jit_nb
def exit_fill_nb(t, n, s, ref, reason, mkt, ps, ins, cfg, acct, cnt, buf):
    """A triggered stop or take-profit: a market order for the whole position at ``ref``.

    With the execution model on, at most the participation cap left fills, at the spread
    (bar t's at s > 0; at the open, the state known before it) plus impact; the rest keeps
    working at the next opens (``exit_work``).
    """
    q_abs = abs(ps.qty[n])
    side = 1.0 if ps.qty[n] > 0 else -1.0
    q = q_abs
    price = ref
    if cfg.exec_on:
        avail = cap_left_nb(t, n, mkt.volume, cfg.participation, ps.cap_bar, ps.cap_used)
        q = min(q_abs, avail)
        hs, sigma, vol = quote_cfg_nb(t, n, s > 0.0, mkt, cfg)
        price = fill_price_nb(ref, -side, hs, q, vol, sigma, cfg.impact_k[n])
        ps.cap_used[n] += q
    if q > 0.0:
        reduce_position_nb(n, q, price, ins.taker_fee[n], reason, t, s, ps, cfg, acct, cnt, buf)
    if ps.qty[n] != 0.0:  # the rest works at the next opens
        ps.exit_work[n] = reason
        ps.stop_level[n] = np.nan
        ps.take_level[n] = np.nan


@jit_nb
def walk_nb(t, s_from, s_to, mkt, ps, ins, cfg, acct, cnt, buf, scratch):
    """Fire every event of bar t between s_from and s_to in time order; returns events fired."""
    last_path, mark_path, marks, kinks = (scratch.last_path, scratch.mark_path, scratch.marks,
                                          scratch.kinks)
    cross = is_cross_nb(cfg)
    n_sym = ps.qty.shape[0]
    s_cur = s_from
    fired = 0
    while True:
        n_open = 0
        for n in range(n_sym):
            if ps.qty[n] != 0.0:
                n_open += 1
        if n_open == 0:  # nothing left that can fire
            break
        k = min(int(s_cur), 2)
        s_end = min(float(k + 1), s_to)
        best_s = np.inf
        best_kind = EV_NONE
        best_n = -1
        best_price = np.nan
        if cross and cnt[C_LIQ_ACTIVE] == 0:
            s = cross_event_nb(k, s_cur, s_end, mark_path, ps, ins, cfg, acct[A_WALLET], marks,
                               kinks)
            if s < np.inf:
                best_s, best_kind, best_n = s, EV_LIQ, 0
        for n in range(n_sym):
            q = ps.qty[n]
            if q == 0.0:
                continue
            down = 1.0 if q > 0 else -1.0  # adverse direction of the position
            if not cross:
                s, px, _ = crossing_nb(mark_path, n, k, s_cur, s_end, ps.liq_price[n], down)
                if s < np.inf and _better(s, EV_LIQ, n, best_s, best_kind, best_n):
                    best_s, best_kind, best_n, best_price = s, EV_LIQ, n, px
            for kind in (EV_STOP, EV_TAKE):
                if kind == EV_STOP:
                    level, direction, trig = ps.stop_level[n], down, cfg.stop_trigger
                else:
                    level, direction, trig = ps.take_level[n], -down, cfg.take_trigger
                if np.isnan(level):
                    continue
                path = mark_path if trig == PriceTrigger.mark else last_path
                s, px, interior = crossing_nb(path, n, k, s_cur, s_end, level, direction)
                if s < np.inf and _better(s, kind, n, best_s, best_kind, best_n):
                    if trig == PriceTrigger.mark or not interior:
                        px = price_at_nb(last_path, n, s)
                    best_s, best_kind, best_n, best_price = s, kind, n, px
        if best_kind == EV_NONE:
            if cfg.dyn_stops:  # trailing / break-even levels move at segment ends
                stop_path = mark_path if cfg.stop_trigger == PriceTrigger.mark else last_path
                for n in range(n_sym):
                    if ps.qty[n] != 0.0:
                        advance_best_nb(n, price_at_nb(stop_path, n, s_end), ps, cfg)
            if s_end >= s_to:
                break
            s_cur = s_end
            continue
        if best_kind == EV_LIQ:
            marks_at_nb(mark_path, best_s, marks)
            if not cross:
                marks[best_n] = best_price  # the crossing level itself (no rounding drift)
            for j in range(n_sym):
                scratch.refs[j] = price_at_nb(last_path, j, best_s)
            w = scratch.liq_work
            liquidate_policy_nb(t, best_s, -1 if cross else best_n, marks, ps, ins, mkt, cfg,
                                acct, cnt, buf, scratch, scratch.order, w[0], w[1], w[2], w[3])
        else:
            reason = FillReason.stop_loss if best_kind == EV_STOP else FillReason.take_profit
            exit_fill_nb(t, best_n, best_s, best_price, reason, mkt, ps, ins, cfg, acct, cnt,
                         buf)
            cnt[C_STOPS] += 1
        fired += 1
        s_cur = best_s
        marks_at_nb(mark_path, s_cur, marks)
        refresh_liq_prices_nb(marks, ps, ins, cfg, acct[A_WALLET])
    return fired
