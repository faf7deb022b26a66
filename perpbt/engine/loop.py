"""The one bar loop (DESIGN section 4), numba.

For bar t: (0) dated tier tables switch; (1) funding on the position held before the open;
(2) the open: liquidation at mark_open, stops and take-profits at last open, repeated until
none fires; (3) the orders decided at t-1's close; (4) the intrabar path; (5) mark to close.
Runtime flags in ``cfg`` select margin mode, venue, intrabar order and funding policy, so one
compiled kernel serves every option.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from perpbt.engine.funding import settle_funding_nb
from perpbt.engine.intrabar import build_path_nb, walk_nb
from perpbt.engine.liquidation import refresh_liq_prices_nb
from perpbt.engine.orders import execute_orders_nb
from perpbt.engine.requirements import (any_position_nb, equity_nb, is_cross_nb,
                                        maint_margin_at_nb, position_requirement_nb,
                                        tier_at_nb, upnl_nb)
from perpbt.engine.state import (A_BUST, A_EQUITY_OPEN, A_WALLET, C_BUST_BAR, C_ERROR,
                                 C_TIER_CHANGES)
from perpbt.enums import PriceTrigger, Venue

BUST_FRACTION = 1e-9


@njit(cache=True)
def switch_tables_nb(time_ms, ps, ins):
    """Advance each symbol's dated tier table; True when any changed."""
    changed = False
    n_tables = ins.table_since.shape[1]
    for n in range(ps.qty.shape[0]):
        while ps.table[n] + 1 < n_tables and ins.table_since[n, ps.table[n] + 1] <= time_ms:
            ps.table[n] += 1
            changed = True
    return changed


@njit(cache=True)
def _touches(low, high, level, direction):
    if np.isnan(level):
        return False
    if direction > 0:
        return low <= level
    return high >= level


@njit(cache=True)
def bar_may_fire_nb(t, mkt, ps, ins, cfg, wallet):
    """Cheap pre-check: can any liquidation, stop or take-profit happen inside bar t?"""
    cross = is_cross_nb(cfg)
    worst_equity = wallet
    worst_req = 0.0
    for n in range(ps.qty.shape[0]):
        q = ps.qty[n]
        if q == 0.0:
            continue
        down = 1.0 if q > 0 else -1.0
        m_lo = mkt.mark_low[t, n]
        m_hi = mkt.mark_high[t, n]
        if cross:
            worst_equity += upnl_nb(n, m_lo if q > 0 else m_hi, ps)
            worst_req += position_requirement_nb(n, m_hi, ps, ins, cfg)
        elif _touches(m_lo, m_hi, ps.liq_price[n], down):
            return True
        if cfg.stop_trigger == PriceTrigger.mark:
            lo, hi = m_lo, m_hi
        else:
            lo, hi = mkt.low[t, n], mkt.high[t, n]
        if _touches(lo, hi, ps.stop_level[n], down):
            return True
        if cfg.take_trigger == PriceTrigger.mark:
            lo, hi = m_lo, m_hi
        else:
            lo, hi = mkt.low[t, n], mkt.high[t, n]
        if _touches(lo, hi, ps.take_level[n], -down):
            return True
    return cross and worst_equity <= worst_req


@njit(cache=True)
def stamp_new_trades_nb(t, mkt, ps, buf):
    """Liquidation prices at entry and the stop-beyond-liquidation flag of trades opened at t."""
    for n in range(ps.qty.shape[0]):
        tid = ps.trade_id[n]
        if tid < 0 or buf.trades[tid]["entry_bar"] != t:
            continue
        r = buf.trades[tid]
        r["liq_price"] = ps.liq_price[n]
        r["liq_price_fees"] = ps.liq_price_fees[n]
        stop = ps.stop_level[n]
        if not np.isnan(stop):
            beyond = stop < ps.liq_price[n] if ps.qty[n] > 0 else stop > ps.liq_price[n]
            r["stop_beyond_liq"] = 1 if beyond else 0


@njit(cache=True)
def mark_to_close_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
    """Step 5: equity, margin ratio, tiers and liquidation distances at the close."""
    cross = is_cross_nb(cfg)
    n_sym = ps.qty.shape[0]
    marks = mkt.mark_close[t]
    n_open = 0
    for n in range(n_sym):
        if ps.qty[n] != 0.0:
            n_open += 1
    if cross and n_open > 1:  # the others' marks moved: cross prices depend on them
        refresh_liq_prices_nb(marks, ps, ins, cfg, acct[A_WALLET])
    wallet = acct[A_WALLET]
    equity = wallet
    tot_req = 0.0
    used = 0.0
    worst_ratio = 0.0
    for n in range(n_sym):
        q = ps.qty[n]
        mm = 0.0
        if q != 0.0:
            mark = marks[n]
            upnl = upnl_nb(n, mark, ps)
            equity += upnl
            mm = maint_margin_at_nb(n, mark, ps, ins)
            req = position_requirement_nb(n, mark, ps, ins, cfg)
            tot_req += req
            if cross:
                used += abs(q) * mark / cfg.leverage[n]
            else:
                used += ps.margin[n]
                balance = ps.margin[n] + upnl
                ratio = req / balance if balance > 0.0 else np.inf
                worst_ratio = max(worst_ratio, ratio)
            tier = tier_at_nb(n, mark, ps, ins)
            if ps.tier[n] >= 0 and tier != ps.tier[n]:
                cnt[C_TIER_CHANGES] += 1
            ps.tier[n] = tier
            tid = ps.trade_id[n]
            if tid >= 0:
                if q > 0:
                    adverse = mkt.mark_low[t, n]
                    dist = (adverse - ps.liq_price[n]) / adverse
                else:
                    adverse = mkt.mark_high[t, n]
                    dist = (ps.liq_price[n] - adverse) / adverse
                if dist < buf.trades[tid]["min_liq_distance"]:
                    buf.trades[tid]["min_liq_distance"] = dist
        else:
            ps.tier[n] = -1
        if cfg.record_bars:
            buf.position[t, n] = q
            buf.entry_price[t, n] = ps.entry[n] if q != 0.0 else np.nan
            buf.liq_price[t, n] = ps.liq_price[n]
            buf.liq_price_fees[t, n] = ps.liq_price_fees[n]
            buf.maint_margin[t, n] = mm
            buf.iso_margin[t, n] = ps.margin[n]
    if cross:
        worst_ratio = tot_req / equity if equity > 0.0 else (np.inf if tot_req > 0.0 else 0.0)
    buf.wallet[t] = wallet
    buf.equity[t] = equity
    buf.margin_used[t] = used
    buf.margin_ratio[t] = worst_ratio
    if equity <= BUST_FRACTION * cfg.initial_capital and acct[A_BUST] == 0.0:
        acct[A_BUST] = 1.0
        cnt[C_BUST_BAR] = t


@njit(cache=True)
def run_nb(mkt, ins, cfg, targets, ps, acct, cnt, buf):
    """Run the whole history; records and per-bar outputs land in ``buf``, counts in ``cnt``."""
    n_bars, n_sym = mkt.open.shape
    last_path = np.empty((n_sym, 4))
    mark_path = np.empty((n_sym, 4))
    marks = np.empty(n_sym)
    kinks = np.empty(n_sym * ins.tier_floor.shape[2] + 1)
    want = np.zeros(n_sym)
    has_order = np.zeros(n_sym, dtype=np.bool_)
    acct[A_WALLET] = cfg.initial_capital
    for t in range(n_bars):
        dirty = switch_tables_nb(mkt.time_ms[t], ps, ins)
        has_pos = any_position_nb(ps)
        if has_pos:
            dirty |= settle_funding_nb(t, mkt, ps, cfg, acct, cnt, buf)
            if cnt[C_ERROR] != 0:
                return
            if dirty or (is_cross_nb(cfg) and n_sym > 1):
                refresh_liq_prices_nb(mkt.mark_open[t], ps, ins, cfg, acct[A_WALLET])
            build_path_nb(t, mkt, ps, cfg, last_path, mark_path)
            walk_nb(t, 0.0, 0.0, mkt, ps, ins, cfg, acct, cnt, buf, last_path, mark_path, marks,
                    kinks)
        equity_open = equity_nb(mkt.mark_open[t], acct[A_WALLET], ps)
        acct[A_EQUITY_OPEN] = equity_open
        if equity_open <= BUST_FRACTION * cfg.initial_capital and acct[A_BUST] == 0.0:
            acct[A_BUST] = 1.0
            cnt[C_BUST_BAR] = t
        if t > 0 and execute_orders_nb(t, targets, mkt, ps, ins, cfg, acct, cnt, buf, want,
                                       has_order):
            refresh_liq_prices_nb(mkt.mark_open[t], ps, ins, cfg, acct[A_WALLET])
            stamp_new_trades_nb(t, mkt, ps, buf)
        if any_position_nb(ps) and bar_may_fire_nb(t, mkt, ps, ins, cfg, acct[A_WALLET]):
            build_path_nb(t, mkt, ps, cfg, last_path, mark_path)
            walk_nb(t, 0.0, 3.0, mkt, ps, ins, cfg, acct, cnt, buf, last_path, mark_path, marks,
                    kinks)
        mark_to_close_nb(t, mkt, ps, ins, cfg, acct, cnt, buf)
