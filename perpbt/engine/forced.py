"""Liquidation policies ``takeover``, ``ioc``, ``tiered`` and ``multibar`` (DESIGN 5, 6), numba.

A liquidation first plans its forced fills without touching the books, then applies them:

- ``takeover``: nothing is sold; the venue takes the whole position at the bankruptcy price.
  With X = side * qty * (trigger mark - BP) the clearance fee is min(rate * qty * BP,
  max(X, 0)) and the fund changes by X - fee (negative after a gap beyond BP).

- ``ioc`` (Binance): one immediate-or-cancel order per position (cross: largest requirement
  first), limited at the bankruptcy price and capped by the execution model's liquidity. If
  a fill makes the account compliant again (margin balance above the requirement after the
  realized loss and the clearance fee), the order stops at the smallest such quantity
  (found by bisection) and the user keeps the rest. Otherwise whatever it could not fill is
  taken over at the bankruptcy price. "Compliant" keeps room for the clearance fee of
  closing what is left (margin balance > requirement + clearance on the remaining notional):
  without it, inside a tier with a maintenance amount any sliver would do, and the account
  would be back at the trigger at once. One IOC per position per bar: a position that needed
  one in this bar and triggers again in the same bar is taken over (otherwise a price
  grinding along the boundary would be liquidated in thousands of slivers).
- ``tiered`` (Bybit, OKX): fill-or-kill steps that bring the position's notional at the
  trigger mark down one tier (OKX: two) at a time, largest requirement first; after each step
  the account is checked and the process stops once it is compliant. A step the execution
  model cannot fill in full (participation cap or the bankruptcy-price limit) is killed and
  the rest is taken over; a tier-1 position is taken over whole.
- ``multibar`` (a stress option, not a venue's process): the whole position is sold into the
  book, at most the participation cap per bar, the remainder carried to the next bars' opens
  while the mark keeps moving; nothing is taken over.

Accounting. A partial liquidation (the user keeps the rest) books each fill like a trade at
its own price and charges the clearance fee on its notional; the fund is untouched. A full
liquidation leaves the user exactly zero of the position's margin (isolated) or of the cross
equity: each market fill realizes PnL at its price and then transfers
side * q * (fill - bankruptcy price) to the venue, and the taken-over rest closes at the
bankruptcy price. The venue's gain G = transfers + side * q_taken * (trigger mark - BP) pays
the clearance fee min(rate * |Q| * BP, max(G, 0)); the insurance fund changes by G - fee.
Without the execution model every forced fill is at the last price at the trigger, with no
cap (a frictionless book), still limited at the bankruptcy price under ioc and tiered.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.execution import (cap_left_nb, fill_price_nb, qty_within_limit_nb,
                                     quote_cfg_nb)
from perpbt.engine.fills import reduce_position_nb
from perpbt.engine.liquidation import cross_share_weight_nb
from perpbt.engine.records import write_liq_nb
from perpbt.engine.requirements import position_requirement_nb, upnl_nb
from perpbt.engine.state import (A_CLEARANCE, A_INSURANCE, A_WALLET, C_EVENTS, C_LIQ_ACTIVE,
                                 C_LIQS)
from perpbt.enums import FillReason, LiqPolicy, Venue
from perpbt.margin import bankruptcy_price_nb, tier_index_nb

COMPLIANT_EPS = 1e-9  # compliance margin, as a fraction of the position's notional


@jit_nb
def forced_quote_nb(t, n, s, stress, mkt, ps, cfg):
    """(available base units, half spread, impact volume, sigma) of a forced order of symbol
    n at bar-time s of bar t: the participation cap left and the stressed spread."""
    if not cfg.exec_on:
        return np.inf, 0.0, 1.0, 0.0
    avail = cap_left_nb(t, n, mkt.volume, cfg.participation, ps.cap_bar, ps.cap_used)
    # at the open nothing of bar t is known yet; inside it its range and volume are
    hs, sigma, vol = quote_cfg_nb(t, n, s > 0.0, mkt, cfg)
    return avail, hs * stress, vol, sigma


@jit_nb
def forced_price_nb(ref, order_sign, q, hs, vol, sigma, cfg, n):
    if not cfg.exec_on:
        return ref
    return fill_price_nb(ref, order_sign, hs, q, vol, sigma, cfg.impact_k[n])


@jit_nb
def requirement_at_nb(n, qty_abs, mark, ps, ins, cfg):
    """The venue's requirement of symbol n if it held ``qty_abs`` at ``mark``."""
    if qty_abs <= 0.0:
        return 0.0
    d = ps.table[n]
    floor = ins.tier_floor[n, d]
    count = ins.tier_count[n, d]
    if cfg.venue == Venue.bybit:
        notional = qty_abs * ps.entry[n]
    else:
        notional = qty_abs * mark
    k = tier_index_nb(floor, count, notional)
    req = notional * ins.tier_mmr[n, d, k] - ins.tier_amt[n, d, k]
    if cfg.venue == Venue.okx:
        req += ins.taker_fee[n] * qty_abs * mark
    return req


@jit_nb
def health_nb(marks, equity, ps, ins, cfg, rem, cross, n_iso, margin_balance):
    """Margin balance minus requirement minus the clearance fee of closing what is left,
    with the quantities ``rem`` left (cross: the account, ``equity`` already net of the
    planned fills' slippage and fees; isolated: symbol ``n_iso``, its margin balance scaling
    with the quantity kept). Positive: compliant again."""
    if cross:
        total = equity
        for j in range(rem.shape[0]):
            if rem[j] > 0.0:
                total -= (requirement_at_nb(j, rem[j], marks[j], ps, ins, cfg)
                          + ins.clearance_fee[j] * rem[j] * marks[j])
        return total
    q0 = abs(ps.qty[n_iso])
    kept = rem[n_iso]
    return (margin_balance * kept / q0
            - requirement_at_nb(n_iso, kept, marks[n_iso], ps, ins, cfg)
            - ins.clearance_fee[n_iso] * kept * marks[n_iso])


@jit_nb
def piece_cost_nb(q, p, mark, side, clearance):
    """Equity a forced fill of q at p costs against the mark: slippage + clearance fee."""
    return side * q * (mark - p) + clearance * q * p


@jit_nb
def health_after_nb(n, q, base, ref, side, hs, vol, sigma, marks, equity, ps, ins, cfg, rem,
                    cross, margin_balance):
    """health_nb after a forced fill of q base units of symbol n (rem[n] = base before)."""
    p = forced_price_nb(ref, -side, q, hs, vol, sigma, cfg, n)
    rem[n] = base - q
    cost = piece_cost_nb(q, p, marks[n], side, ins.clearance_fee[n]) if cross else 0.0
    h = health_nb(marks, equity - cost, ps, ins, cfg, rem, cross, n, margin_balance)
    rem[n] = base
    return h


@jit_nb
def min_compliant_qty_nb(n, q_hi, ref, side, hs, vol, sigma, marks, equity, ps, ins, cfg,
                         rem, cross, margin_balance, eps):
    """Smallest q in (0, q_hi] after which the account is compliant, or -1.

    Compliance is piecewise linear in the quantity kept, with kinks where the kept notional
    crosses a tier floor (the maintenance amount makes it non-monotone across floors), so the
    candidates are the points just below each floor, ascending in q, then q_hi; the first
    compliant candidate brackets the crossing with the one before it, and bisection finds it.
    Closing all of a position is never "compliant": that is a full liquidation.
    """
    base = rem[n]
    if q_hi >= base * (1.0 - 1e-12):
        q_hi = base * (1.0 - 1e-9)
    if q_hi <= 0.0:
        return -1.0
    d = ps.table[n]
    floor = ins.tier_floor[n, d]
    mark = marks[n]
    lo = 0.0
    hi = -1.0
    for i in range(ins.tier_count[n, d], 0, -1):  # floors from the top, then q_hi
        if i == ins.tier_count[n, d]:
            continue
        c = base - floor[i] * (1.0 - 1e-9) / mark
        if c <= lo or c >= q_hi:
            continue
        if health_after_nb(n, c, base, ref, side, hs, vol, sigma, marks, equity, ps, ins, cfg,
                           rem, cross, margin_balance) > eps:
            hi = c
            break
        lo = c
    if hi < 0.0:
        if health_after_nb(n, q_hi, base, ref, side, hs, vol, sigma, marks, equity, ps, ins,
                           cfg, rem, cross, margin_balance) <= eps:
            return -1.0
        hi = q_hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if health_after_nb(n, mid, base, ref, side, hs, vol, sigma, marks, equity, ps, ins,
                           cfg, rem, cross, margin_balance) > eps:
            hi = mid
        else:
            lo = mid
    return hi


@jit_nb
def tier_step_qty_nb(n, qty_abs, mark, steps, ps, ins):
    """Quantity to sell so the notional at ``mark`` drops ``steps`` tiers (0: tier 1 already)."""
    d = ps.table[n]
    floor = ins.tier_floor[n, d]
    k = tier_index_nb(floor, ins.tier_count[n, d], qty_abs * mark)
    if k == 0:
        return 0.0
    target = max(k - steps + 1, 1)  # keep the notional just below this tier's floor
    keep = floor[target] * (1.0 - 1e-9) / mark
    return max(qty_abs - keep, 0.0)


@jit_nb
def order_by_requirement_nb(marks, ps, ins, cfg, order):
    """Open symbols sorted by requirement, largest first; returns how many."""
    count = 0
    for n in range(ps.qty.shape[0]):
        if ps.qty[n] != 0.0:
            order[count] = n
            count += 1
    for i in range(1, count):
        j = i
        while j > 0:
            a = order[j - 1]
            b = order[j]
            if (position_requirement_nb(b, marks[b], ps, ins, cfg)
                    > position_requirement_nb(a, marks[a], ps, ins, cfg)):
                order[j - 1] = b
                order[j] = a
                j -= 1
            else:
                break
    return count


@jit_nb
def plan_forced_nb(t, s, marks, ps, ins, mkt, cfg, scratch, order, count, equity,
                   margin_balance, cross):
    """Plan the forced fills of a liquidation; returns (pieces, compliant).

    Pieces land in scratch.plan_n/q/p; scratch.rem holds what is left of each position.
    """
    policy = cfg.liq_policy
    if policy == LiqPolicy.takeover:  # nothing is sold: the venue takes it all at BP
        return 0, False
    rem = scratch.rem
    refs = scratch.refs
    bps = scratch.bps
    n_pieces = 0
    eq = equity
    steps = 2 if cfg.venue == Venue.okx else 1
    ioc_used = False  # an IOC already worked in this bar: the rest is taken over
    for i in range(count):
        if ps.partial_bar[order[i]] == t:
            ioc_used = True
    for i in range(count):
        n = order[i]
        q_all = rem[n]
        if q_all <= 0.0 or (policy == LiqPolicy.ioc and ioc_used):
            continue
        side = 1.0 if ps.qty[n] > 0 else -1.0
        order_sign = -side
        notional = q_all * marks[n]
        eps = COMPLIANT_EPS * max(notional, 1.0)
        while rem[n] > 0.0:
            avail, hs, vol, sigma = forced_quote_nb(t, n, s, cfg.stress[n], mkt, ps, cfg)
            if policy == LiqPolicy.multibar:
                q = min(rem[n], avail)
                compliant_q = -1.0
            else:
                within = np.inf
                if cfg.exec_on:
                    within = qty_within_limit_nb(refs[n], order_sign, bps[n], hs, vol, sigma,
                                                 cfg.impact_k[n])
                elif side * (refs[n] - bps[n]) < 0.0:
                    within = 0.0
                fillable = min(rem[n], avail, within)
                if policy == LiqPolicy.ioc:
                    q = fillable
                else:  # tiered: fill-or-kill one step
                    q = tier_step_qty_nb(n, rem[n], marks[n], steps, ps, ins)
                    if q <= 0.0 or q > fillable * (1.0 + 1e-12):
                        break  # tier 1, or killed: the rest is taken over
                if policy == LiqPolicy.ioc:
                    compliant_q = min_compliant_qty_nb(n, q, refs[n], side, hs, vol, sigma,
                                                       marks, eq, ps, ins, cfg, rem, cross,
                                                       margin_balance, eps)
                    if compliant_q > 0.0:
                        q = compliant_q
                else:
                    compliant_q = 1.0  # check the account after every step
            if q <= 0.0:
                break
            p = forced_price_nb(refs[n], order_sign, q, hs, vol, sigma, cfg, n)
            if cfg.exec_on:
                ps.cap_used[n] += q
            scratch.plan_n[n_pieces] = n
            scratch.plan_q[n_pieces] = q
            scratch.plan_p[n_pieces] = p
            n_pieces += 1
            rem[n] -= q
            if rem[n] <= 1e-12 * q_all:
                rem[n] = 0.0
            if cross:
                eq -= piece_cost_nb(q, p, marks[n], side, ins.clearance_fee[n])
            if policy == LiqPolicy.multibar:
                break
            if compliant_q > 0.0 and rem[n] > 0.0:
                if health_nb(marks, eq, ps, ins, cfg, rem, cross, n, margin_balance) > eps:
                    return n_pieces, True
            if policy == LiqPolicy.ioc:
                break
            if n_pieces >= scratch.plan_n.shape[0]:
                break
    return n_pieces, False


@jit_nb
def apply_partial_nb(t, s, n_pieces, marks, ps, ins, cfg, acct, cnt, buf, scratch, event_id,
                     lp, lpf, upnl_trig):
    """Book a partial liquidation: fills at their prices plus the clearance fee."""
    n_sym = ps.qty.shape[0]
    for n in range(n_sym):
        qty0 = ps.qty[n]
        tid = ps.trade_id[n]
        q_sum = 0.0
        value = 0.0
        fee_sum = 0.0
        realized_sum = 0.0
        for i in range(n_pieces):
            if scratch.plan_n[i] != n:
                continue
            q = scratch.plan_q[i]
            p = scratch.plan_p[i]
            realized_sum += reduce_position_nb(n, q, p, 0.0, FillReason.liquidation, t, s, ps,
                                               cfg, acct, cnt, buf)
            fee = ins.clearance_fee[n] * q * p
            acct[A_WALLET] -= fee
            acct[A_CLEARANCE] += fee
            q_sum += q
            value += q * p
            fee_sum += fee
        if q_sum <= 0.0:
            continue
        side = 1.0 if qty0 > 0 else -1.0
        if tid >= 0:
            buf.trades[tid]["fees"] += fee_sum
            if ps.qty[n] == 0.0:
                buf.trades[tid]["liquidated"] = 1
                buf.trades[tid]["min_liq_distance"] = 0.0
        ps.partial_bar[n] = t
        write_liq_nb(buf, cnt, event_id, t, n, s, marks[n], lp[n], lpf[n], scratch.bps[n],
                     side * q_sum, value / q_sum, fee_sum, -realized_sum + fee_sum, 0.0,
                     upnl_trig[n], 1, cfg.liq_policy)
        r = buf.liqs[cnt[C_LIQS] - 1]
        r["full"] = 0
        r["taken_over"] = 0.0
        r["trade_id"] = tid


@jit_nb
def finish_full_nb(n, rec, gain, ins, acct, buf):
    """Clearance fee and insurance-fund change of a completed full liquidation."""
    r = buf.liqs[rec]
    qty_abs = abs(r["qty"])
    fee = min(ins.clearance_fee[n] * qty_abs * r["bankruptcy_price"], max(gain, 0.0))
    fee = max(fee, 0.0)
    r["clearance_fee"] = fee
    r["insurance_change"] = gain - fee
    acct[A_CLEARANCE] += fee
    acct[A_INSURANCE] += gain - fee


@jit_nb
def forced_fill_full_nb(n, q, p, bp, t, s, ps, cfg, acct, cnt, buf):
    """One market fill of a full liquidation: realized at p, then side*q*(p - BP) to the
    venue, so the user's books move as if the fill were at the bankruptcy price."""
    side = 1.0 if ps.qty[n] > 0 else -1.0
    reduce_position_nb(n, q, p, 0.0, FillReason.liquidation, t, s, ps, cfg, acct, cnt, buf)
    transfer = side * q * (p - bp)
    acct[A_WALLET] -= transfer
    return transfer


@jit_nb
def apply_full_nb(t, s, n_only, n_pieces, marks, ps, ins, cfg, acct, cnt, buf, scratch,
                  event_id, lp, lpf, upnl_trig, user_loss):
    """Book a full liquidation of symbol ``n_only`` (-1: every cross position): market fills,
    the taken-over rest at the bankruptcy price, and (multibar) the remainder left working."""
    n_sym = ps.qty.shape[0]
    bps = scratch.bps
    for n in range(n_sym):
        qty0 = ps.qty[n]
        if qty0 == 0.0 or (n_only >= 0 and n != n_only):
            continue
        side = 1.0 if qty0 > 0 else -1.0
        tid = ps.trade_id[n]
        gain = 0.0
        value = 0.0
        filled = 0.0
        for i in range(n_pieces):
            if scratch.plan_n[i] != n:
                continue
            q = scratch.plan_q[i]
            p = scratch.plan_p[i]
            gain += forced_fill_full_nb(n, q, p, bps[n], t, s, ps, cfg, acct, cnt, buf)
            value += q * p
            filled += q
        rest = abs(ps.qty[n])
        taken = 0.0
        if rest > 0.0 and cfg.liq_policy != LiqPolicy.multibar:
            taken = rest
            reduce_position_nb(n, rest, bps[n], 0.0, FillReason.liquidation, t, s, ps, cfg,
                               acct, cnt, buf)
            gain += side * rest * (marks[n] - bps[n])
            value += rest * bps[n]
            filled += rest
        if taken > 0.0 and taken == filled:
            avg = bps[n]  # all taken over: exactly the bankruptcy price
        else:
            avg = value / filled if filled > 0.0 else np.nan
        write_liq_nb(buf, cnt, event_id, t, n, s, marks[n], lp[n], lpf[n], bps[n], qty0, avg,
                     0.0, user_loss[n], gain, upnl_trig[n], 1, cfg.liq_policy)
        rec = cnt[C_LIQS] - 1
        r = buf.liqs[rec]
        r["full"] = 1
        r["taken_over"] = taken
        r["trade_id"] = tid
        if ps.qty[n] == 0.0:
            finish_full_nb(n, rec, gain, ins, acct, buf)
            if tid >= 0:
                buf.trades[tid]["liquidated"] = 1
                buf.trades[tid]["min_liq_distance"] = 0.0
        else:  # multibar: the rest keeps working at the next opens
            ps.liq_rec[n] = rec
            ps.liq_bp[n] = bps[n]
            ps.stop_level[n] = np.nan
            ps.take_level[n] = np.nan
            ps.liq_price[n] = np.nan
            ps.liq_price_fees[n] = np.nan
            cnt[C_LIQ_ACTIVE] += 1


@jit_nb
def liquidate_policy_nb(t, s, n_iso, marks, ps, ins, mkt, cfg, acct, cnt, buf, scratch,
                        order, lp, lpf, upnl_trig, user_loss):
    """A liquidation under ioc, tiered or multibar at bar-time s of bar t.

    ``n_iso`` is the isolated symbol (-1: the cross account); ``marks`` the trigger marks and
    ``scratch.refs`` the last prices at s. lp, lpf, upnl_trig, user_loss are (N,) work arrays.
    Cross bankruptcy prices split the equity in proportion to the requirements (DESIGN 5).
    """
    cnt[C_EVENTS] += 1
    event_id = cnt[C_EVENTS]
    cross = n_iso < 0
    n_sym = ps.qty.shape[0]
    equity = acct[A_WALLET]
    tot_req = 0.0
    tot_notional = 0.0
    for n in range(n_sym):
        scratch.rem[n] = 0.0
        lp[n] = ps.liq_price[n]
        lpf[n] = ps.liq_price_fees[n]
        upnl_trig[n] = 0.0
        user_loss[n] = 0.0
        if ps.qty[n] == 0.0 or (not cross and n != n_iso):
            continue
        scratch.rem[n] = abs(ps.qty[n])
        upnl_trig[n] = upnl_nb(n, marks[n], ps)
        equity += upnl_trig[n]
        tot_req += position_requirement_nb(n, marks[n], ps, ins, cfg)
        tot_notional += abs(ps.qty[n]) * marks[n]
    margin_balance = 0.0
    if cross:
        count = order_by_requirement_nb(marks, ps, ins, cfg, order)
        for n in range(n_sym):
            if ps.qty[n] == 0.0:
                continue
            w = cross_share_weight_nb(n, marks, tot_req, tot_notional, ps, ins, cfg)
            side = 1.0 if ps.qty[n] > 0 else -1.0
            scratch.bps[n] = max(marks[n] - side * equity * w / abs(ps.qty[n]), 0.0)
    else:
        order[0] = n_iso
        count = 1
        side = 1 if ps.qty[n_iso] > 0 else -1
        scratch.bps[n_iso] = bankruptcy_price_nb(side, abs(ps.qty[n_iso]), ps.entry[n_iso],
                                                 ps.margin[n_iso], 0.0)
        margin_balance = ps.margin[n_iso] + upnl_trig[n_iso]
    for n in range(n_sym):  # what a full liquidation costs the user: closing at BP
        if scratch.rem[n] > 0.0:
            user_loss[n] = ps.qty[n] * (ps.entry[n] - scratch.bps[n])
    n_pieces, compliant = plan_forced_nb(t, s, marks, ps, ins, mkt, cfg, scratch, order, count,
                                         equity, margin_balance, cross)
    if compliant:
        apply_partial_nb(t, s, n_pieces, marks, ps, ins, cfg, acct, cnt, buf, scratch,
                         event_id, lp, lpf, upnl_trig)
    else:
        apply_full_nb(t, s, n_iso, n_pieces, marks, ps, ins, cfg, acct, cnt, buf, scratch,
                      event_id, lp, lpf, upnl_trig, user_loss)


@jit_nb
def continue_forced_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
    """Multibar: each carried forced close sells at bar t's open, at most the cap; a close
    that completes settles its clearance fee and insurance-fund change. True if any fill."""
    any_fill = False
    for n in range(ps.qty.shape[0]):
        rec = ps.liq_rec[n]
        if rec < 0:
            continue
        q_left = abs(ps.qty[n])
        side = 1.0 if ps.qty[n] > 0 else -1.0
        ref = mkt.open[t, n]
        avail, hs, vol, sigma = forced_quote_nb(t, n, 0.0, cfg.stress[n], mkt, ps, cfg)
        q = min(q_left, avail)
        r = buf.liqs[rec]
        if q > 0.0:
            p = forced_price_nb(ref, -side, q, hs, vol, sigma, cfg, n)
            if cfg.exec_on:
                ps.cap_used[n] += q
            filled_before = abs(r["qty"]) - q_left
            gain = forced_fill_full_nb(n, q, p, ps.liq_bp[n], t, 0.0, ps, cfg, acct, cnt, buf)
            r["avg_fill"] = (r["avg_fill"] * filled_before + q * p) / (filled_before + q)
            r["insurance_change"] += gain  # running venue gain until the close completes
            any_fill = True
        r["bars"] = t - r["bar"] + 1
        if ps.qty[n] == 0.0:
            gain = r["insurance_change"]
            finish_full_nb(n, rec, gain, ins, acct, buf)
            tid = r["trade_id"]
            if tid >= 0:
                buf.trades[tid]["liquidated"] = 1
                buf.trades[tid]["min_liq_distance"] = 0.0
            ps.liq_rec[n] = -1
            cnt[C_LIQ_ACTIVE] -= 1
        else:
            ps.stop_level[n] = np.nan
            ps.take_level[n] = np.nan
    return any_fill
