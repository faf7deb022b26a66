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
from perpbt.engine.fills import advance_best_nb, stop_level_at_nb
from perpbt.engine.orders import execute_orders_nb, time_stops_nb
from perpbt.engine.prefetch import prefetch_step_nb
from perpbt.engine.requirements import requirement_nb
from perpbt.engine.stats import drawdown_step_nb
from perpbt.engine.state import (A_BUST, A_EQUITY_OPEN, A_MAX_DD, A_WALLET,
                                 C_BUST_BAR, C_ERROR, C_LIQ_ACTIVE, C_QUIET_BARS, C_STATES,
                                 C_TIER_CHANGES, C_WORKING, QUIET_BLOCK, QUIET_SUBBLOCK)
from perpbt.engine.working import count_working_nb, work_at_open_nb
from perpbt.enums import ErrorCode, MarginMode, PriceTrigger
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


@jit_nb(inline="always")
def _touches(low, high, level, direction):
    if np.isnan(level):
        return False
    if direction > 0:
        return low <= level
    return high >= level


@jit_nb(inline="always")
def exits_may_fire_nb(t, qty, liq_price, stop_level, take_level, last_lo, last_hi, mark_lo,
                      mark_hi, stop_on_mark, take_on_mark, check_liq):
    """Cheap pre-check on flat arrays: can a stop, take-profit or (isolated) liquidation fire
    within [lo, hi] of bar t? Pass open/mark_open as both lo and hi for the open (step 2)."""
    for n in range(qty.shape[0]):
        q = qty[n]
        if q == 0.0:
            continue
        down = 1.0 if q > 0 else -1.0
        m_lo = mark_lo[t, n]
        m_hi = mark_hi[t, n]
        if check_liq and _touches(m_lo, m_hi, liq_price[n], down):
            return True
        if stop_on_mark:
            hit = _touches(m_lo, m_hi, stop_level[n], down)
        else:
            hit = _touches(last_lo[t, n], last_hi[t, n], stop_level[n], down)
        if hit:
            return True
        if take_on_mark:
            hit = _touches(m_lo, m_hi, take_level[n], -down)
        else:
            hit = _touches(last_lo[t, n], last_hi[t, n], take_level[n], -down)
        if hit:
            return True
    return False


@jit_nb(inline="always")
def cross_may_liquidate_nb(t, wallet, qty, entry, table, mark_lo, mark_hi, tier_floor, tier_mmr,
                           tier_amt, tier_count, taker_fee, venue):
    """Lower bound of the cross account's health over bar t (every mark at its adverse
    extreme, every requirement at the mark high) is not positive."""
    worst = wallet
    for n in range(qty.shape[0]):
        q = qty[n]
        if q == 0.0:
            continue
        worst += q * ((mark_lo[t, n] if q > 0 else mark_hi[t, n]) - entry[n])
        d = table[n]
        worst -= requirement_nb(venue, abs(q), mark_hi[t, n], entry[n], tier_floor[n, d],
                                tier_mmr[n, d], tier_amt[n, d], tier_count[n, d], taker_fee[n])
    return worst <= 0.0


@jit_nb(inline="always")
def may_fire_nb(t, lo, hi, m_lo, m_hi, qty, entry, liq, stops, takes, table, floor, mmr, amt,
                count, taker, venue, cross, wallet, stop_on_mark, take_on_mark, cross_live):
    """Either pre-check, on flat arrays: (lo, hi) = (open, open) for the open, (low, high)
    for the whole bar; the same for the mark. ``cross_live``: the cross account can still
    be liquidated (no multibar close under way)."""
    if exits_may_fire_nb(t, qty, liq, stops, takes, lo, hi, m_lo, m_hi, stop_on_mark,
                         take_on_mark, not cross):
        return True
    return cross_live and cross_may_liquidate_nb(t, wallet, qty, entry, table, m_lo, m_hi, floor, mmr,
                                            amt, count, taker, venue)


@jit_nb
def fire_events_nb(t, s_to, mkt, ps, ins, cfg, acct, cnt, buf, scratch):
    """Walk bar t's path from the open to ``s_to`` (0: the open only); True if any fired."""
    build_path_nb(t, mkt, ps, cfg, scratch.last_path, scratch.mark_path)
    return walk_nb(t, 0.0, s_to, mkt, ps, ins, cfg, acct, cnt, buf, scratch) > 0


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
def update_bands_nb(qty, liq_price, stop_level, take_level, table, tier, tier_floor, tier_count,
                    stop_on_mark, take_on_mark, cross, bands):
    """Each open position's quiet band: the open intervals of last (bands[n, 0:2]) and mark
    (bands[n, 2:4]) inside which no liquidation (isolated), stop, take-profit or tier change
    can happen. False when a position's tier is not known yet (bands unusable this bar)."""
    for n in range(qty.shape[0]):
        q = qty[n]
        if q == 0.0:
            continue
        k = tier[n]
        if k < 0:
            return False
        # in side-adjusted prices (price * side) every adverse level (stop, isolated
        # liquidation) is a lower bound and every favourable one (take-profit) an upper bound
        side = 1.0 if q > 0 else -1.0
        adv_last, adv_mark, fav_last, fav_mark = -np.inf, -np.inf, np.inf, np.inf
        if not np.isnan(stop_level[n]):
            if stop_on_mark:
                adv_mark = side * stop_level[n]
            else:
                adv_last = side * stop_level[n]
        if not np.isnan(take_level[n]):
            if take_on_mark:
                fav_mark = side * take_level[n]
            else:
                fav_last = side * take_level[n]
        if not cross and not np.isnan(liq_price[n]):
            adv_mark = max(adv_mark, side * liq_price[n])
        if q > 0:
            l_lo, l_hi, m_lo, m_hi = adv_last, fav_last, adv_mark, fav_mark
        else:
            l_lo, l_hi, m_lo, m_hi = -fav_last, -adv_last, -fav_mark, -adv_mark
        d = table[n]
        q_abs = abs(q)
        if k > 0:
            m_lo = max(m_lo, tier_floor[n, d, k] / q_abs)
        if k + 1 < tier_count[n, d]:
            m_hi = min(m_hi, tier_floor[n, d, k + 1] / q_abs)
        bands[n, 0] = l_lo
        bands[n, 1] = l_hi
        bands[n, 2] = m_lo
        bands[n, 3] = m_hi
    return True


@jit_nb(inline="always")
def bar_quiet_nb(t, qty, bands, low, high, mark_low, mark_high):
    """Did bar t (both price paths, open included) stay strictly inside every band?"""
    for n in range(qty.shape[0]):
        if qty[n] != 0.0 and not (low[t, n] > bands[n, 0] and high[t, n] < bands[n, 1]
                                  and mark_low[t, n] > bands[n, 2]
                                  and mark_high[t, n] < bands[n, 3]):
            return False
    return True


@jit_nb(inline="always")
def close_positions_nb(t, qty, entry, liq_price, table, tier, min_dist, mark_close, mark_lo,
                       mark_hi, tier_floor, tier_count, quiet):
    """Step 5 on flat arrays (the hot path: no state tuples, see module notes).

    ``quiet``: the bar stayed inside every position's quiet band, so each tier is the cached
    one. Returns (unrealized PnL at mark_close, tier changes, any tier moved incl. a first
    one). Margin used and margin ratio per bar are rebuilt after the run
    (engine/outputs.py).
    """
    upnl_sum = 0.0
    changes = 0
    moved = False
    for n in range(qty.shape[0]):
        q = qty[n]
        if q == 0.0:
            tier[n] = -1
            continue
        mark = mark_close[t, n]
        upnl_sum += q * (mark - entry[n])
        if quiet and tier[n] >= 0:
            k = tier[n]
        else:
            d = table[n]
            k = tier_index_nb(tier_floor[n, d], tier_count[n, d], abs(q) * mark)
        if k != tier[n]:
            moved = True
            if tier[n] >= 0:
                changes += 1
        tier[n] = k
        if q > 0:
            dist = (mark_lo[t, n] - liq_price[n]) / mark_lo[t, n]
        else:
            dist = (liq_price[n] - mark_hi[t, n]) / mark_hi[t, n]
        if dist < min_dist[n]:
            min_dist[n] = dist
    return upnl_sum, changes, moved


@jit_nb(inline="always")
def fold_min_dist_nb(qty, liq_price, adverse, min_dist):
    """After a quiet stretch: each position's closest distance to its liquidation price, from
    the stretch's most adverse mark (the distance is monotone in the mark)."""
    for n in range(qty.shape[0]):
        if qty[n] == 0.0:
            continue
        m = adverse[n]
        if qty[n] > 0:
            dist = (m - liq_price[n]) / m
        else:
            dist = (liq_price[n] - m) / m
        if dist < min_dist[n]:
            min_dist[n] = dist


@jit_nb(inline="always")
def in_band_nb(t, n, bands, low, high, mark_low, mark_high):
    """Did bar t's last and mark ranges of symbol n stay strictly inside its quiet band?"""
    return (low[t, n] > bands[n, 0] and high[t, n] < bands[n, 1]
            and mark_low[t, n] > bands[n, 2] and mark_high[t, n] < bands[n, 3])


@jit_nb(inline="always")
def range_quiet_nb(b_lo, b_hi, b_m_lo, b_m_hi, q, q_abs, e, wallet, lo_band, hi_band,
                   m_lo_band, m_hi_band, check_bust, bust_level, cross, venue, t_floor, t_mmr,
                   t_amt, t_count, t_taker):
    """Do one position's last range (b_lo, b_hi) and mark range (b_m_lo, b_m_hi), of a bar
    or a block of bars, pass every test of a quiet bar: strictly inside the bands, the
    equity at the adverse mark above the bust level (``check_bust``), and (``cross``) above
    the requirement at the mark high?"""
    if not (b_lo > lo_band and b_hi < hi_band and b_m_lo > m_lo_band and b_m_hi < m_hi_band):
        return False
    equity_worst = wallet + q * ((b_m_lo if q > 0 else b_m_hi) - e)
    if check_bust and equity_worst <= bust_level:
        return False
    if cross:
        return equity_worst - requirement_nb(venue, q_abs, b_m_hi, e, t_floor, t_mmr, t_amt,
                                             t_count, t_taker) > 0.0
    return True


@jit_nb(inline="always")
def block_quiet_nb(block_range, k, q, q_abs, e, wallet, lo_band, hi_band, m_lo_band, m_hi_band,
                   check_bust, bust_level, cross, venue, t_floor, t_mmr, t_amt, t_count,
                   t_taker):
    """``range_quiet_nb`` of block k of one symbol's block ranges ((blocks, 1, 4)): its
    extremes bound each bar's (the bust check and the cross requirement at the adverse
    ones), so a pass means every bar of the block passes."""
    return range_quiet_nb(block_range[k, 0, 0], block_range[k, 0, 1], block_range[k, 0, 2],
                          block_range[k, 0, 3], q, q_abs, e, wallet, lo_band, hi_band,
                          m_lo_band, m_hi_band, check_bust, bust_level, cross, venue, t_floor,
                          t_mmr, t_amt, t_count, t_taker)


@jit_nb(inline="always")
def block_adverse_nb(rng, k, full, t, stop, long, mark_low, mark_high):
    """The most adverse mark (low for a long, high for a short) over bars t .. stop-1 of
    block k: the block's own extreme when the bars are the whole block, else bar by bar."""
    if full:
        return rng[k, 0, 2] if long else rng[k, 0, 3]
    if long:
        worst = np.inf
        for i in range(np.uint64(t), np.uint64(stop)):
            worst = min(worst, mark_low[i, 0])
    else:
        worst = -np.inf
        for i in range(np.uint64(t), np.uint64(stop)):
            worst = max(worst, mark_high[i, 0])
    return worst


@jit_nb(inline="always")
def drawdown_may_move_nb(rng, k, long, wallet, q, e, peak, dd_floor):
    """Can the equity of one position over block k (rng: (blocks, 1, 4) ranges) reach a new
    peak or fall below the drawdown floor? Equity is monotone in the mark, so it lies
    between its values at the block's mark extremes (mark close within mark low and high)."""
    eq_hi = wallet + q * ((rng[k, 0, 3] if long else rng[k, 0, 2]) - e)
    eq_lo = wallet + q * ((rng[k, 0, 2] if long else rng[k, 0, 3]) - e)
    return eq_hi > peak or eq_lo < dd_floor


@jit_nb(inline="always")
def drawdown_steps_nb(equity, start, stop, peak, dd_floor, max_dd):
    """drawdown_step_nb over equity[start:stop]."""
    for i in range(np.uint64(start), np.uint64(stop)):
        peak, dd_floor, max_dd = drawdown_step_nb(equity[i], peak, dd_floor, max_dd)
    return peak, dd_floor, max_dd


@jit_nb
def quiet_one_nb(t, t_stop, q, e, lo_band, hi_band, m_lo_band, m_hi_band, low, high,
                 mark_low, mark_high, mark_close, block_range, subblock_range, wallet,
                 bust_level, check_bust, cross, venue, t_floor, t_mmr, t_amt, t_count, t_taker,
                 equity_out, peak, dd_floor, max_dd):
    """``quiet_stretch_nb`` for one symbol (a short argument list of scalars and the arrays
    it reads: the loop calls it at every stretch; ``mark_close`` is the 1-D column).
    Returns (first bar not run, the most adverse mark of the position over the bars run,
    peak, dd_floor, max_dd).

    A 64-bar block that starts at t and ends in the stretch is tested whole from its range;
    else the 8-bar block containing t, even when t is not its first bar or the stretch ends
    inside it: the block's extremes bound those of any of its bars, so a pass covers every
    bar of the stretch inside it (the position's most adverse mark is then taken bar by bar
    over those bars: the block's would include bars outside the stretch). A block that
    failed is not tested again; the bars from there are tested one by one (a bar that fails
    ends the stretch). The drawdown's running state skips a block whose equity range (from
    its mark range) can reach neither a new peak nor the drawdown floor, and within a
    64-bar block that can, each such 8-bar block (engine/stats.py: drawdown_step_nb)."""
    if q == 0.0:
        if check_bust and wallet <= bust_level:
            return t, np.nan, peak, dd_floor, max_dd
        if t < t_stop:  # the same equity at every bar: one drawdown step is all of them
            peak, dd_floor, max_dd = drawdown_step_nb(wallet, peak, dd_floor, max_dd)
        while t < t_stop:
            equity_out[t] = wallet
            t += 1
        return t, np.nan, peak, dd_floor, max_dd
    long = q > 0
    q_abs = abs(q)
    adv = np.inf if long else -np.inf
    n_sub = subblock_range.shape[0]
    failed_block = -1
    failed_sub = -1
    while t < t_stop:
        ok = False
        k = t // QUIET_BLOCK
        stop = t + QUIET_BLOCK
        rng = block_range
        size = QUIET_BLOCK
        full = True
        if t % QUIET_BLOCK == 0 and stop <= t_stop and k != failed_block:
            ok = block_quiet_nb(block_range, np.uint64(k), q, q_abs, e, wallet, lo_band,
                                hi_band, m_lo_band, m_hi_band, check_bust, bust_level, cross,
                                venue, t_floor, t_mmr, t_amt, t_count, t_taker)
            if not ok:
                failed_block = k
        if not ok:
            k = t // QUIET_SUBBLOCK
            stop = min((k + 1) * QUIET_SUBBLOCK, t_stop)
            rng = subblock_range
            size = QUIET_SUBBLOCK
            full = t % QUIET_SUBBLOCK == 0 and stop - t == QUIET_SUBBLOCK
            if k != failed_sub and k < n_sub:
                ok = block_quiet_nb(subblock_range, np.uint64(k), q, q_abs, e, wallet,
                                    lo_band, hi_band, m_lo_band, m_hi_band, check_bust,
                                    bust_level, cross, venue, t_floor, t_mmr, t_amt, t_count,
                                    t_taker)
                if not ok:
                    failed_sub = k
        # unsigned indices: t >= 0 here, and numba then emits no negative-index
        # wraparound per access (which also kept the block loop from plain vector loads)
        ut = np.uint64(t)
        if ok:
            uk = np.uint64(k)
            worst = block_adverse_nb(rng, uk, full, t, stop, long, mark_low, mark_high)
            adv = min(adv, worst) if long else max(adv, worst)
            for i in range(ut, np.uint64(stop)):
                equity_out[i] = wallet + q * (mark_close[i] - e)
            if drawdown_may_move_nb(rng, uk, long, wallet, q, e, peak, dd_floor):
                if size == QUIET_BLOCK:  # its 8-bar blocks, each from its own range
                    for j in range(QUIET_BLOCK // QUIET_SUBBLOCK):
                        a = t + j * QUIET_SUBBLOCK
                        if drawdown_may_move_nb(subblock_range, np.uint64(a // QUIET_SUBBLOCK),
                                                long, wallet, q, e, peak, dd_floor):
                            peak, dd_floor, max_dd = drawdown_steps_nb(
                                equity_out, a, a + QUIET_SUBBLOCK, peak, dd_floor, max_dd)
                else:
                    peak, dd_floor, max_dd = drawdown_steps_nb(equity_out, t, stop, peak,
                                                               dd_floor, max_dd)
            t = stop
            continue
        m_lo = mark_low[ut, 0]
        m_hi = mark_high[ut, 0]
        # cross: cross_may_liquidate_nb for the one position, the same arithmetic
        if not range_quiet_nb(low[ut, 0], high[ut, 0], m_lo, m_hi, q, q_abs, e, wallet,
                              lo_band, hi_band, m_lo_band, m_hi_band, check_bust, bust_level,
                              cross, venue, t_floor, t_mmr, t_amt, t_count, t_taker):
            break
        worst = m_lo if long else m_hi
        adv = min(adv, worst) if long else max(adv, worst)
        equity = wallet + q * (mark_close[ut] - e)
        equity_out[ut] = equity
        peak, dd_floor, max_dd = drawdown_step_nb(equity, peak, dd_floor, max_dd)
        t += 1
    return t, adv, peak, dd_floor, max_dd


@jit_nb
def quiet_stretch_nb(t, t_stop, qty, entry, bands, low, high, mark_low, mark_high, mark_close,
                     wallet, bust_level, check_bust, cross_args, adverse, equity_out, peak,
                     dd_floor, max_dd):
    """Run bars t, t+1, ... < t_stop while nothing can happen in them; returns (the first
    bar it did not run, peak, dd_floor, max_dd) (the drawdown's running state,
    engine/stats.py: drawdown_step_nb). Several symbols; one symbol: ``quiet_one_nb``.

    The caller picks ``t_stop`` at or before the next bar with orders, a settlement (or a
    coverage hole) or a tier-table switch. A bar runs here when every open position's last
    and mark ranges stay strictly inside its quiet band (no stop, take-profit, isolated
    liquidation or tier change can happen), the cross account cannot reach its
    requirement, and (``check_bust``) the equity at the bar's most adverse marks, a lower
    bound of the equity at the open and at the close, is above the bust level. Such a bar
    changes nothing but the equity at mark close, which the full loop computes with the
    same arithmetic. ``adverse`` receives each position's most adverse mark for the
    liquidation distance (engine/loop.py: fold_min_dist_nb).
    """
    n_sym = qty.shape[0]
    cross, table, floor, mmr, amt, count, taker, venue = cross_args
    for n in range(n_sym):
        adverse[n] = np.inf if qty[n] > 0 else -np.inf
    while t < t_stop:
        upnl_worst = 0.0
        upnl = 0.0
        for n in range(n_sym):
            q = qty[n]
            if q == 0.0:
                continue
            if not in_band_nb(t, n, bands, low, high, mark_low, mark_high):
                return t, peak, dd_floor, max_dd
            e = entry[n]
            upnl_worst += q * ((mark_low[t, n] if q > 0 else mark_high[t, n]) - e)
            upnl += q * (mark_close[t, n] - e)
        if cross and cross_may_liquidate_nb(t, wallet, qty, entry, table, mark_low, mark_high,
                                            floor, mmr, amt, count, taker, venue):
            return t, peak, dd_floor, max_dd
        if check_bust and wallet + upnl_worst <= bust_level:
            return t, peak, dd_floor, max_dd
        for n in range(n_sym):
            q = qty[n]
            if q > 0:
                adverse[n] = min(adverse[n], mark_low[t, n])
            elif q < 0:
                adverse[n] = max(adverse[n], mark_high[t, n])
        equity = wallet + upnl
        equity_out[t] = equity
        peak, dd_floor, max_dd = drawdown_step_nb(equity, peak, dd_floor, max_dd)
        t += 1
    return t, peak, dd_floor, max_dd


@jit_nb(inline="always")
def record_bar_nb(t, qty, entry, margin, liq_price, liq_price_fees, wallet, states, cnt):
    """Append each symbol's state and the wallet at bar t's close to ``states`` (only on bars
    where either changed; Result forward-fills)."""
    for n in range(qty.shape[0]):
        i = cnt[C_STATES]
        if i >= states.shape[0]:
            cnt[C_ERROR] = ErrorCode.capacity
            return
        r = states[i]
        r["bar"] = t
        r["symbol"] = n
        r["qty"] = qty[n]
        r["entry"] = entry[n] if qty[n] != 0.0 else np.nan
        r["liq_price"] = liq_price[n] if qty[n] != 0.0 else np.nan
        r["liq_price_fees"] = liq_price_fees[n] if qty[n] != 0.0 else np.nan
        r["margin"] = margin[n]
        r["wallet"] = wallet
        cnt[C_STATES] = i + 1


@jit_nb
def dyn_may_fire_nb(t, mkt, ps, cfg):
    """Can a trailing or break-even stop fire in bar t? Its level may rise within the bar up
    to what the bar's favourable extreme implies: check the adverse extreme against that."""
    on_mark = cfg.stop_trigger == PriceTrigger.mark
    for n in range(ps.qty.shape[0]):
        q = ps.qty[n]
        if q == 0.0 or ps.exit_work[n] >= 0 or ps.liq_rec[n] >= 0:
            continue
        hi = mkt.mark_high[t, n] if on_mark else mkt.high[t, n]
        lo = mkt.mark_low[t, n] if on_mark else mkt.low[t, n]
        if q > 0:
            level = stop_level_at_nb(n, max(ps.best[n], hi), ps, cfg)
            if level >= lo:
                return True
        else:
            level = stop_level_at_nb(n, min(ps.best[n], lo), ps, cfg)
            if level <= hi:
                return True
    return False


@jit_nb
def dyn_after_bar_nb(t, mkt, ps, cfg):
    """After bar t: the best price since entry takes the bar's favourable extreme (the walk
    already moved the levels at its segment ends); True if a level moved."""
    on_mark = cfg.stop_trigger == PriceTrigger.mark
    moved = False
    for n in range(ps.qty.shape[0]):
        q = ps.qty[n]
        if q == 0.0:
            continue
        if q > 0:
            fav = mkt.mark_high[t, n] if on_mark else mkt.high[t, n]
        else:
            fav = mkt.mark_low[t, n] if on_mark else mkt.low[t, n]
        moved |= advance_best_nb(n, fav, ps, cfg)
    return moved


@jit_nb(inline="always")
def first_bar_at_nb(time_ms, when):
    """Index of the first bar at or after ``when`` (ms); len(time_ms) when none."""
    return np.searchsorted(time_ms, when, side="left")


@jit_nb
def next_switch_nb(ps, ins):
    """Earliest date at which any symbol's next dated tier table takes over."""
    earliest = np.iinfo(np.int64).max
    n_tables = ins.table_since.shape[1]
    for n in range(ps.qty.shape[0]):
        if ps.table[n] + 1 < n_tables:
            earliest = min(earliest, ins.table_since[n, ps.table[n] + 1])
    return earliest


@jit_nb(inline="always")
def settlement_due_nb(t, qty, funding_rate, funding_covered):
    """Is there a settlement (or a coverage hole) for an open position at bar t?"""
    for n in range(qty.shape[0]):
        if qty[n] != 0.0 and (not np.isnan(funding_rate[t, n]) or not funding_covered[t, n]):
            return True
    return False


@jit_nb(inline="always")
def open_equity_nb(marks, wallet, qty, entry):
    """wallet + unrealized PnL at ``marks`` (quote)."""
    total = wallet
    for n in range(qty.shape[0]):
        if qty[n] != 0.0:
            total += qty[n] * (marks[n] - entry[n])
    return total


@jit_nb(inline="always")
def count_open_nb(qty):
    count = 0
    for n in range(qty.shape[0]):
        if qty[n] != 0.0:
            count += 1
    return count


@jit_nb(inline="always")
def target_changed_nb(t, targets, last_target):
    """Does any symbol's target at t-1 differ from its last non-NaN target?"""
    for n in range(targets.shape[1]):
        tgt = targets[t - 1, n]
        if not np.isnan(tgt) and tgt != last_target[n]:
            return True
    return False


@jit_nb
def run_nb(mkt, ins, cfg, targets, order_bars, ps, acct, cnt, buf, scratch):
    """Run the whole history; records and per-bar outputs land in ``buf``, counts in ``cnt``.

    ``order_bars``: the bars whose open sends orders, then T (engine/scan.py). Between
    those, settlements and table switches, runs of bars where nothing can happen go through
    ``quiet_stretch_nb``.

    The per-bar path calls only helpers on flat arrays; the state tuples are passed only to
    the rare steps (funding, liquidation prices, events, orders). See the module notes.
    """
    n_bars = mkt.open.shape[0]
    want, has_order = scratch.want, scratch.has_order
    qty, entry, margin, liq, trade_id = ps.qty, ps.entry, ps.margin, ps.liq_price, ps.trade_id
    stops, takes, table, tier = ps.stop_level, ps.take_level, ps.table, ps.tier
    o, lo, hi = mkt.open, mkt.low, mkt.high
    m_o, m_lo, m_hi, m_c = mkt.mark_open, mkt.mark_low, mkt.mark_high, mkt.mark_close
    floor, mmr, amt, count, taker = (ins.tier_floor, ins.tier_mmr, ins.tier_amt, ins.tier_count,
                                     ins.taker_fee)
    cross = cfg.margin_mode == MarginMode.cross
    stop_on_mark = cfg.stop_trigger == PriceTrigger.mark
    take_on_mark = cfg.take_trigger == PriceTrigger.mark
    bust_level = BUST_FRACTION * cfg.initial_capital
    acct[A_WALLET] = cfg.initial_capital
    next_switch = next_switch_nb(ps, ins)
    bands = scratch.bands
    bands_ok = False  # the quiet bands describe the current positions
    has_time_stops = False
    for n in range(qty.shape[0]):
        if cfg.time_stop[n] >= 0:
            has_time_stops = True
    # bars that can take the quiet stretch: no time stop or moving stop to track per bar
    stretch_ok = cfg.quiet_stretch and not has_time_stops and not cfg.dyn_stops
    switch_bar = first_bar_at_nb(mkt.time_ms, next_switch)
    cross_args = (cross, table, floor, mmr, amt, count, taker, cfg.venue)
    adverse = scratch.refs
    # one symbol: the mark close as a 1-D view for quiet_one_nb (valid for any N; used
    # only when N == 1)
    one = qty.shape[0] == 1
    m_c_1 = m_c.reshape(m_c.size)
    # the maximum drawdown's running state (engine/stats.py: drawdown_step_nb)
    peak = cfg.initial_capital
    dd_floor = peak
    max_dd = 0.0
    logged_wallet = np.nan
    settle_bars = mkt.settle_bars
    oi = 0  # order_bars[oi] and settle_bars[si]: the next such bar at or after t
    si = 0
    t = 0
    while t < n_bars:
        while order_bars[oi] < t:
            oi += 1
        while settle_bars[si] < t:
            si += 1
        t_stop = min(order_bars[oi], settle_bars[si], switch_bar)
        if (stretch_ok and 0 < t < t_stop and cnt[C_WORKING] == 0
                and (bands_ok or count_open_nb(qty) == 0)
                and not (cross and count_open_nb(qty) > 1)):
            if t_stop < n_bars:  # the bar ending the stretch: its rows load while it runs
                prefetch_step_nb(t_stop, mkt, targets, cfg, buf.equity)
            if one:
                d = table[0]
                t_next, adv, peak, dd_floor, max_dd = quiet_one_nb(
                    t, t_stop, qty[0], entry[0], bands[0, 0], bands[0, 1], bands[0, 2],
                    bands[0, 3], lo, hi, m_lo, m_hi, m_c_1, mkt.block_range,
                    mkt.subblock_range, acct[A_WALLET], bust_level, acct[A_BUST] == 0.0, cross,
                    cfg.venue, floor[0, d], mmr[0, d], amt[0, d], count[0, d], taker[0],
                    buf.equity, peak, dd_floor, max_dd)
                adverse[0] = adv
            else:
                t_next, peak, dd_floor, max_dd = quiet_stretch_nb(
                    t, t_stop, qty, entry, bands, lo, hi, m_lo, m_hi, m_c, acct[A_WALLET],
                    bust_level, acct[A_BUST] == 0.0, cross_args, adverse, buf.equity, peak,
                    dd_floor, max_dd)
            if t_next > t:
                cnt[C_QUIET_BARS] += t_next - t
                fold_min_dist_nb(qty, liq, adverse, ps.min_dist)
                t = t_next
                if t >= n_bars:
                    break
        dirty = False
        changed = False
        quiet = False
        # the precomputed next-event bars answer these without reading rows that the quiet
        # stretch did not bring into cache (time, funding, targets)
        if t >= switch_bar:
            dirty = switch_tables_nb(mkt.time_ms[t], ps, ins)
            next_switch = next_switch_nb(ps, ins)
            switch_bar = first_bar_at_nb(mkt.time_ms, next_switch)
            if dirty:  # tier indices refer to the old table: look them up afresh at the close
                tier[:] = -1
                bands_ok = False
        n_open = count_open_nb(qty)
        if n_open > 0:
            if settle_bars[si] == t and settlement_due_nb(t, qty, mkt.funding_rate,
                                                          mkt.funding_covered):
                settled = settle_funding_nb(t, mkt, ps, cfg, acct, cnt, buf)
                if cnt[C_ERROR] != 0:
                    return
                dirty |= settled == 2
                changed |= settled == 1  # the wallet alone moved: logged, nothing to refresh
            if cnt[C_WORKING] > 0 and work_at_open_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
                dirty = True  # carried exits and forced closes filled at the open
                count_working_nb(ps, cnt)
            if has_time_stops and time_stops_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
                dirty = True
                count_working_nb(ps, cnt)
            if dirty or (cross and n_open > 1):
                refresh_liq_prices_nb(m_o[t], ps, ins, cfg, acct[A_WALLET])
                changed |= dirty
            if dirty or not bands_ok:
                bands_ok = update_bands_nb(qty, liq, stops, takes, table, tier, floor, count,
                                           stop_on_mark, take_on_mark, cross, bands)
            quiet = bands_ok and bar_quiet_nb(t, qty, bands, lo, hi, m_lo, m_hi)
            cross_live = cross and cnt[C_LIQ_ACTIVE] == 0
            if quiet:  # no level inside the bar's range: only the cross account can fire
                fire = cross_live and cross_may_liquidate_nb(t, acct[A_WALLET], qty, entry, table,
                                                        m_o, m_o, floor, mmr, amt, count, taker,
                                                        cfg.venue)
            else:
                fire = may_fire_nb(t, o, o, m_o, m_o, qty, entry, liq, stops, takes, table,
                                   floor, mmr, amt, count, taker, cfg.venue, cross,
                                   acct[A_WALLET], stop_on_mark, take_on_mark, cross_live)
            if fire and fire_events_nb(t, 0.0, mkt, ps, ins, cfg, acct, cnt, buf, scratch):
                changed = True
                quiet = bands_ok = False
                count_working_nb(ps, cnt)
        equity_open = open_equity_nb(m_o[t], acct[A_WALLET], qty, entry)
        acct[A_EQUITY_OPEN] = equity_open
        if equity_open <= bust_level and acct[A_BUST] == 0.0:
            acct[A_BUST] = 1.0
            cnt[C_BUST_BAR] = t
        if t > 0 and (cnt[C_WORKING] > 0 or (order_bars[oi] == t
                                             and target_changed_nb(t, targets, ps.last_target))):
            if execute_orders_nb(t, targets, mkt, ps, ins, cfg, acct, cnt, buf, want, has_order):
                refresh_liq_prices_nb(m_o[t], ps, ins, cfg, acct[A_WALLET])
                stamp_new_trades_nb(t, mkt, ps, buf)
                changed = True
                quiet = bands_ok = False
            count_working_nb(ps, cnt)
        n_open = count_open_nb(qty)
        if n_open > 0:
            cross_live = cross and cnt[C_LIQ_ACTIVE] == 0
            if quiet:
                fire = cross_live and cross_may_liquidate_nb(t, acct[A_WALLET], qty, entry, table,
                                                        m_lo, m_hi, floor, mmr, amt, count,
                                                        taker, cfg.venue)
            else:
                fire = may_fire_nb(t, lo, hi, m_lo, m_hi, qty, entry, liq, stops, takes, table,
                                   floor, mmr, amt, count, taker, cfg.venue, cross,
                                   acct[A_WALLET], stop_on_mark, take_on_mark, cross_live)
            if cfg.dyn_stops and not fire and dyn_may_fire_nb(t, mkt, ps, cfg):
                fire = True  # a trailing / break-even level may rise into the bar's range
                quiet = False
            if fire and fire_events_nb(t, 3.0, mkt, ps, ins, cfg, acct, cnt, buf, scratch):
                changed = True
                quiet = bands_ok = False
                n_open = count_open_nb(qty)
                count_working_nb(ps, cnt)
            if cfg.dyn_stops and n_open > 0 and dyn_after_bar_nb(t, mkt, ps, cfg):
                bands_ok = False
            if cross and n_open > 1:
                # the others' marks moved: each cross liquidation price depends on them
                refresh_liq_prices_nb(m_c[t], ps, ins, cfg, acct[A_WALLET])
        # step 5: mark to close
        upnl, changes, moved = close_positions_nb(t, qty, entry, liq, table, tier, ps.min_dist,
                                                  m_c, m_lo, m_hi, floor, count, quiet)
        cnt[C_TIER_CHANGES] += changes
        if moved or not bands_ok:
            # set the bands for the next bar now (nothing moves them before its open but a
            # table switch or a settlement, which redo them): the bar after an order or an
            # event can take the quiet stretch
            bands_ok = n_open > 0 and update_bands_nb(qty, liq, stops, takes, table, tier, floor,
                                                      count, stop_on_mark, take_on_mark, cross,
                                                      bands)
        wallet = acct[A_WALLET]
        equity = wallet + upnl
        if cfg.record_bars and (changed or t == 0 or (cross and n_open > 1)
                                or wallet != logged_wallet):
            record_bar_nb(t, qty, entry, margin, liq, ps.liq_price_fees, wallet, buf.states,
                          cnt)
            logged_wallet = wallet
        buf.equity[t] = equity
        peak, dd_floor, max_dd = drawdown_step_nb(equity, peak, dd_floor, max_dd)
        if equity <= bust_level and acct[A_BUST] == 0.0:
            acct[A_BUST] = 1.0
            cnt[C_BUST_BAR] = t
        if cnt[C_ERROR] != 0:
            return
        t += 1
    acct[A_MAX_DD] = max_dd
    for n in range(qty.shape[0]):  # trades still open at the end
        if trade_id[n] >= 0:
            buf.trades[trade_id[n]]["min_liq_distance"] = ps.min_dist[n]
