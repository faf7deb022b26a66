"""The one bar loop (DESIGN section 4), numba.

For bar t: (0) dated tier tables switch; (1) funding on the position held before the open;
(2) the open: liquidation at mark_open, stops and take-profits at last open, repeated until
none fires; (3) the orders decided at t-1's close; (4) the intrabar path; (5) mark to close.
Runtime flags in ``cfg`` select margin mode, venue, intrabar order and funding policy, so one
compiled kernel serves every option.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb

from perpbt.engine.funding import settle_funding_nb
from perpbt.engine.intrabar import build_path_nb, walk_nb
from perpbt.engine.liquidation import refresh_liq_prices_nb
from perpbt.engine.orders import execute_orders_nb
from perpbt.engine.requirements import requirement_nb
from perpbt.engine.state import (A_BUST, A_EQUITY_OPEN, A_WALLET, C_BUST_BAR, C_ERROR,
                                 C_TIER_CHANGES)
from perpbt.enums import MarginMode, PriceTrigger
from perpbt.margin import tier_index_nb

BUST_FRACTION = 1e-9


@jit_nb
def switch_tables_nb(time_ms, ps, ins):
    """Advance each symbol's dated tier table; True when any changed."""
    changed = False
    n_tables = ins.table_since.shape[1]
    for n in range(ps.qty.shape[0]):
        while ps.table[n] + 1 < n_tables and ins.table_since[n, ps.table[n] + 1] <= time_ms:
            ps.table[n] += 1
            changed = True
    return changed


@jit_nb
def _touches(low, high, level, direction):
    if np.isnan(level):
        return False
    if direction > 0:
        return low <= level
    return high >= level


@jit_nb(inline="always")
def bar_may_fire_nb(t, mkt, ps, ins, cfg, wallet):
    """Cheap pre-check: can any liquidation, stop or take-profit happen inside bar t?

    Cross: a lower bound of the account's health (every mark at its adverse extreme, every
    requirement at the mark high) must be positive for the walk to be skipped.
    """
    cross = cfg.margin_mode == MarginMode.cross
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
            worst_equity += q * ((m_lo if q > 0 else m_hi) - ps.entry[n])
            d = ps.table[n]
            worst_req += requirement_nb(cfg.venue, abs(q), m_hi, ps.entry[n], ins.tier_floor[n, d],
                                        ins.tier_mmr[n, d], ins.tier_amt[n, d],
                                        ins.tier_count[n, d], ins.taker_fee[n])
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


@jit_nb
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


@jit_nb(inline="always")
def mark_to_close_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
    """Step 5: equity, margin ratio, tiers and liquidation distances at the close.

    Per-bar functions must not contain a call that passes the big state tuples to a
    non-inlined kernel, even in a branch never taken: LLVM then materializes the tuples on
    every call (measured: 2 ns -> 300+ ns per bar). Rare work is called from run_nb.
    """
    cross = cfg.margin_mode == MarginMode.cross
    n_sym = ps.qty.shape[0]
    marks = mkt.mark_close[t]
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
            upnl = q * (mark - ps.entry[n])
            equity += upnl
            d = ps.table[n]
            floor = ins.tier_floor[n, d]
            count = ins.tier_count[n, d]
            tier = tier_index_nb(floor, count, abs(q) * mark)
            mm = abs(q) * mark * ins.tier_mmr[n, d, tier] - ins.tier_amt[n, d, tier]
            req = requirement_nb(cfg.venue, abs(q), mark, ps.entry[n], floor, ins.tier_mmr[n, d],
                                 ins.tier_amt[n, d], count, ins.taker_fee[n])
            tot_req += req
            if cross:
                used += abs(q) * mark / cfg.leverage[n]
            else:
                used += ps.margin[n]
                balance = ps.margin[n] + upnl
                ratio = req / balance if balance > 0.0 else np.inf
                worst_ratio = max(worst_ratio, ratio)
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


@jit_nb
def next_switch_nb(ps, ins):
    """Earliest date at which any symbol's next dated tier table takes over."""
    earliest = np.iinfo(np.int64).max
    n_tables = ins.table_since.shape[1]
    for n in range(ps.qty.shape[0]):
        if ps.table[n] + 1 < n_tables:
            earliest = min(earliest, ins.table_since[n, ps.table[n] + 1])
    return earliest


@jit_nb
def settlement_due_nb(t, qty, funding_rate, funding_covered):
    """Is there a settlement (or a coverage hole) for an open position at bar t?"""
    for n in range(qty.shape[0]):
        if qty[n] != 0.0 and (not np.isnan(funding_rate[t, n]) or not funding_covered[t, n]):
            return True
    return False


@jit_nb
def open_equity_nb(marks, wallet, qty, entry):
    """wallet + unrealized PnL at ``marks`` (quote)."""
    total = wallet
    for n in range(qty.shape[0]):
        if qty[n] != 0.0:
            total += qty[n] * (marks[n] - entry[n])
    return total


@jit_nb
def count_open_nb(qty):
    count = 0
    for n in range(qty.shape[0]):
        if qty[n] != 0.0:
            count += 1
    return count


@jit_nb
def target_changed_nb(t, targets, last_target):
    """Does any symbol's target at t-1 differ from its last non-NaN target?"""
    for n in range(targets.shape[1]):
        tgt = targets[t - 1, n]
        if not np.isnan(tgt) and tgt != last_target[n]:
            return True
    return False


@jit_nb
def run_nb(mkt, ins, cfg, targets, ps, acct, cnt, buf, scratch):
    """Run the whole history; records and per-bar outputs land in ``buf``, counts in ``cnt``."""
    n_bars, n_sym = mkt.open.shape
    last_path, mark_path, marks, kinks, want, has_order = scratch
    acct[A_WALLET] = cfg.initial_capital
    cross = cfg.margin_mode == MarginMode.cross
    next_switch = next_switch_nb(ps, ins)
    for t in range(n_bars):
        dirty = False
        if mkt.time_ms[t] >= next_switch:
            dirty = switch_tables_nb(mkt.time_ms[t], ps, ins)
            next_switch = next_switch_nb(ps, ins)
        n_open = count_open_nb(ps.qty)
        if n_open > 0:
            if settlement_due_nb(t, ps.qty, mkt.funding_rate, mkt.funding_covered):
                dirty |= settle_funding_nb(t, mkt, ps, cfg, acct, cnt, buf)
                if cnt[C_ERROR] != 0:
                    return
            if dirty or (cross and n_open > 1):
                refresh_liq_prices_nb(mkt.mark_open[t], ps, ins, cfg, acct[A_WALLET])
            build_path_nb(t, mkt, ps, cfg, last_path, mark_path)
            walk_nb(t, 0.0, 0.0, mkt, ps, ins, cfg, acct, cnt, buf, last_path, mark_path, marks,
                    kinks)
        equity_open = open_equity_nb(mkt.mark_open[t], acct[A_WALLET], ps.qty, ps.entry)
        acct[A_EQUITY_OPEN] = equity_open
        if equity_open <= BUST_FRACTION * cfg.initial_capital and acct[A_BUST] == 0.0:
            acct[A_BUST] = 1.0
            cnt[C_BUST_BAR] = t
        if t > 0 and target_changed_nb(t, targets, ps.last_target):
            if execute_orders_nb(t, targets, mkt, ps, ins, cfg, acct, cnt, buf, want, has_order):
                refresh_liq_prices_nb(mkt.mark_open[t], ps, ins, cfg, acct[A_WALLET])
                stamp_new_trades_nb(t, mkt, ps, buf)
        if count_open_nb(ps.qty) > 0:
            if bar_may_fire_nb(t, mkt, ps, ins, cfg, acct[A_WALLET]):
                build_path_nb(t, mkt, ps, cfg, last_path, mark_path)
                walk_nb(t, 0.0, 3.0, mkt, ps, ins, cfg, acct, cnt, buf, last_path, mark_path,
                        marks, kinks)
            if cross and count_open_nb(ps.qty) > 1:
                # the others' marks moved: each cross liquidation price depends on them
                refresh_liq_prices_nb(mkt.mark_close[t], ps, ins, cfg, acct[A_WALLET])
        mark_to_close_nb(t, mkt, ps, ins, cfg, acct, cnt, buf)
        if cnt[C_ERROR] != 0:
            return
