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
from perpbt.engine.requirements import requirement_nb
from perpbt.engine.state import (A_BUST, A_EQUITY_OPEN, A_WALLET, C_BUST_BAR, C_ERROR,
                                 C_LIQ_ACTIVE, C_STATES, C_TIER_CHANGES, C_WORKING)
from perpbt.engine.working import count_working_nb, work_at_open_nb
from perpbt.enums import ErrorCode, MarginMode, PriceTrigger, Venue
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
def close_positions_nb(t, qty, entry, margin, liq_price, table, tier, min_dist,
                       mark_close, mark_lo, mark_hi, tier_floor, tier_mmr, tier_amt, tier_count,
                       taker_fee, leverage, venue, cross, mm_out, quiet, record):
    """Step 5 on flat arrays (the hot path: no state tuples, see module notes).

    ``quiet``: the bar stayed inside every position's quiet band, so each tier is the cached
    one. Returns (unrealized, requirement, margin used, worst isolated ratio, tier changes,
    any tier moved incl. a first one); writes each symbol's maintenance margin at mark_close
    into ``mm_out``.
    """
    upnl_sum = 0.0
    req_sum = 0.0
    used = 0.0
    worst = 0.0
    changes = 0
    moved = False
    for n in range(qty.shape[0]):
        q = qty[n]
        if q == 0.0:
            tier[n] = -1
            mm_out[n] = 0.0
            continue
        mark = mark_close[t, n]
        q_abs = abs(q)
        upnl = q * (mark - entry[n])
        upnl_sum += upnl
        d = table[n]
        if quiet and tier[n] >= 0:
            k = tier[n]
        else:
            k = tier_index_nb(tier_floor[n, d], tier_count[n, d], q_abs * mark)
        mm_out[n] = q_abs * mark * tier_mmr[n, d, k] - tier_amt[n, d, k]
        if venue == Venue.binance:
            req = mm_out[n]
        elif venue == Venue.okx:
            req = mm_out[n] + taker_fee[n] * q_abs * mark
        else:
            req = requirement_nb(venue, q_abs, mark, entry[n], tier_floor[n, d],
                                 tier_mmr[n, d], tier_amt[n, d], tier_count[n, d], taker_fee[n])
        req_sum += req
        if cross:
            used += q_abs * mark / leverage[n]
        else:
            used += margin[n]
            if record:  # the margin ratio is a per-bar output only
                balance = margin[n] + upnl
                worst = max(worst, req / balance if balance > 0.0 else np.inf)
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
    return upnl_sum, req_sum, used, worst, changes, moved


@jit_nb(inline="always")
def record_bar_nb(t, qty, entry, margin, liq_price, liq_price_fees, states, cnt):
    """Append each symbol's state at bar t's close to ``states`` (only on bars where it
    changed; Result forward-fills)."""
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
def run_nb(mkt, ins, cfg, targets, ps, acct, cnt, buf, scratch):
    """Run the whole history; records and per-bar outputs land in ``buf``, counts in ``cnt``.

    The per-bar path calls only helpers on flat arrays; the state tuples are passed only to
    the rare steps (funding, liquidation prices, events, orders). See the module notes.
    """
    n_bars = mkt.open.shape[0]
    marks, want, has_order = scratch.marks, scratch.want, scratch.has_order
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
    for t in range(n_bars):
        dirty = False
        changed = False
        quiet = False
        if mkt.time_ms[t] >= next_switch:
            dirty = switch_tables_nb(mkt.time_ms[t], ps, ins)
            next_switch = next_switch_nb(ps, ins)
            if dirty:  # tier indices refer to the old table: look them up afresh at the close
                tier[:] = -1
                bands_ok = False
        n_open = count_open_nb(qty)
        if n_open > 0:
            if settlement_due_nb(t, qty, mkt.funding_rate, mkt.funding_covered):
                dirty |= settle_funding_nb(t, mkt, ps, cfg, acct, cnt, buf)
                if cnt[C_ERROR] != 0:
                    return
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
        if t > 0 and (cnt[C_WORKING] > 0 or target_changed_nb(t, targets, ps.last_target)):
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
        # step 5: mark to close (marks doubles as the per-symbol maintenance margin buffer)
        upnl, req, used, worst, changes, moved = close_positions_nb(
            t, qty, entry, margin, liq, table, tier, ps.min_dist, m_c, m_lo, m_hi,
            floor, mmr, amt, count, taker, cfg.leverage, cfg.venue, cross, marks, quiet,
            cfg.record_bars)
        cnt[C_TIER_CHANGES] += changes
        if moved:
            bands_ok = False
        wallet = acct[A_WALLET]
        equity = wallet + upnl
        if cross and cfg.record_bars:
            worst = req / equity if equity > 0.0 else (np.inf if req > 0.0 else 0.0)
        if cfg.record_bars and (changed or t == 0 or (cross and n_open > 1)):
            record_bar_nb(t, qty, entry, margin, liq, ps.liq_price_fees, buf.states, cnt)
        buf.equity[t] = equity
        if cfg.record_bars:  # stats-only runs (sweeps) keep the equity curve alone
            buf.wallet[t] = wallet
            buf.margin_used[t] = used
            buf.margin_ratio[t] = worst
        if equity <= bust_level and acct[A_BUST] == 0.0:
            acct[A_BUST] = 1.0
            cnt[C_BUST_BAR] = t
        if cnt[C_ERROR] != 0:
            return
    for n in range(qty.shape[0]):  # trades still open at the end
        if trade_id[n] >= 0:
            buf.trades[trade_id[n]]["min_liq_distance"] = ps.min_dist[n]
