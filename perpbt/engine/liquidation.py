"""Liquidation prices and the ``takeover`` liquidation policy (DESIGN section 5), numba.

Takeover: the venue takes the position over at the bankruptcy price. With
X = side * qty * (trigger mark - bankruptcy price), the clearance fee is
min(rate * qty * BP, max(X, 0)) and the insurance fund changes by X - fee (negative when the
price gapped beyond the bankruptcy price: the fund covers it). The user ends with zero of the
isolated margin, or of the cross equity, so user loss = -upnl at trigger + X.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.records import close_trade_nb, write_fill_nb, write_liq_nb
from perpbt.engine.requirements import (close_fee_rate_nb, is_cross_nb, position_requirement_nb,
                                        upnl_nb)
from perpbt.engine.state import A_CLEARANCE, A_INSURANCE, A_WALLET, C_EVENTS, C_LIQS
from perpbt.enums import FillReason
from perpbt.margin import bankruptcy_price_nb, liq_price_nb


@jit_nb
def _liq_price_for_nb(n, margin, other_mm, other_upnl, close_fee_rate, ps, ins, cfg):
    q = ps.qty[n]
    d = ps.table[n]
    side = 1 if q > 0 else -1
    return liq_price_nb(side, abs(q), ps.entry[n], margin, ins.tier_floor[n, d],
                        ins.tier_cap[n, d], ins.tier_mmr[n, d], ins.tier_amt[n, d],
                        ins.tier_count[n, d], cfg.venue, other_mm, other_upnl,
                        ins.taker_fee[n], close_fee_rate)


@jit_nb
def refresh_liq_prices_nb(marks, ps, ins, cfg, wallet):
    """Both liquidation prices of every open position (others held at ``marks`` in cross).

    Without fees: the venue's trigger solved for the price. With fees: isolated margin net of
    open fees paid from outside it, close cost = clearance + taker (OKX: clearance only); in
    cross the wallet already carries the fees paid and the other positions' close costs are
    added to their requirements.
    """
    n_sym = ps.qty.shape[0]
    cross = is_cross_nb(cfg)
    tot_req = 0.0
    tot_req_fee = 0.0
    tot_upnl = 0.0
    if cross:
        for j in range(n_sym):
            if ps.qty[j] != 0.0:
                r = position_requirement_nb(j, marks[j], ps, ins, cfg)
                tot_req += r
                tot_req_fee += r + close_fee_rate_nb(j, ins, cfg) * abs(ps.qty[j]) * marks[j]
                tot_upnl += upnl_nb(j, marks[j], ps)
    for n in range(n_sym):
        if ps.qty[n] == 0.0 or ps.liq_rec[n] >= 0:  # flat, or inside a multibar close
            ps.liq_price[n] = np.nan
            ps.liq_price_fees[n] = np.nan
            continue
        cfr = close_fee_rate_nb(n, ins, cfg)
        if cross:
            own_req = position_requirement_nb(n, marks[n], ps, ins, cfg)
            own_fee = cfr * abs(ps.qty[n]) * marks[n]
            own_upnl = upnl_nb(n, marks[n], ps)
            other_upnl = tot_upnl - own_upnl
            ps.liq_price[n] = _liq_price_for_nb(n, wallet, tot_req - own_req, other_upnl, 0.0,
                                                ps, ins, cfg)
            ps.liq_price_fees[n] = _liq_price_for_nb(n, wallet, tot_req_fee - own_req - own_fee,
                                                     other_upnl, cfr, ps, ins, cfg)
        else:
            ps.liq_price[n] = _liq_price_for_nb(n, ps.margin[n], 0.0, 0.0, 0.0, ps, ins, cfg)
            ps.liq_price_fees[n] = _liq_price_for_nb(n, ps.margin[n] - ps.fees_outside[n],
                                                     0.0, 0.0, cfr, ps, ins, cfg)


@jit_nb
def _takeover_one_nb(n, bar, s, trigger_mark, share, event_id, ps, ins, cfg, acct, cnt, buf):
    """Close symbol n at its bankruptcy price; ``share`` is the margin balance it loses."""
    q = ps.qty[n]
    side = 1 if q > 0 else -1
    qty_abs = abs(q)
    upnl = upnl_nb(n, trigger_mark, ps)
    bp = trigger_mark - side * share / qty_abs
    if side == 1 and bp < 0.0:
        bp = 0.0
    realized = q * (bp - ps.entry[n])
    x = q * (trigger_mark - bp)
    fee = min(ins.clearance_fee[n] * qty_abs * bp, max(x, 0.0))
    fee = max(fee, 0.0)
    acct[A_WALLET] += realized
    acct[A_INSURANCE] += x - fee
    acct[A_CLEARANCE] += fee
    tid = ps.trade_id[n]
    write_fill_nb(buf, cnt, bar, n, s, -q, bp, 0.0, realized, FillReason.liquidation, 0, tid, 0.0)
    write_liq_nb(buf, cnt, event_id, bar, n, s, trigger_mark, ps.liq_price[n],
                 ps.liq_price_fees[n], bp, q, bp, fee, -realized, x - fee, upnl, 1,
                 cfg.liq_policy)
    r = buf.liqs[cnt[C_LIQS] - 1]
    r["full"] = 1
    r["taken_over"] = qty_abs
    r["trade_id"] = tid
    close_trade_nb(buf, cnt, tid, bar, qty_abs, bp, realized, 0.0, FillReason.liquidation, 1)
    ps.qty[n] = 0.0
    ps.entry[n] = 0.0
    ps.margin[n] = 0.0
    ps.fees_outside[n] = 0.0
    ps.trade_id[n] = -1
    ps.min_dist[n] = np.inf
    ps.stop_level[n] = np.nan
    ps.take_level[n] = np.nan


@jit_nb
def liquidate_isolated_nb(n, bar, s, trigger_mark, ps, ins, cfg, acct, cnt, buf):
    """Takeover of one isolated position: the user loses exactly its margin."""
    cnt[C_EVENTS] += 1
    # bankruptcy price where the isolated margin is exhausted
    q = ps.qty[n]
    side = 1 if q > 0 else -1
    bp = bankruptcy_price_nb(side, abs(q), ps.entry[n], ps.margin[n], 0.0)
    share = q * (trigger_mark - bp)  # margin balance at the trigger = what the user loses
    margin = ps.margin[n]
    _takeover_one_nb(n, bar, s, trigger_mark, share, cnt[C_EVENTS], ps, ins, cfg, acct, cnt,
                     buf)
    # the margin left the wallet through the realized loss; nothing else is owed
    return margin


@jit_nb
def cross_share_weight_nb(n, marks, tot_req, tot_notional, ps, ins, cfg):
    """Symbol n's share of the cross equity at a liquidation: its requirement over the sum
    (DESIGN 5), or its notional over the total when nothing is required."""
    if tot_req > 0.0:
        return position_requirement_nb(n, marks[n], ps, ins, cfg) / tot_req
    return abs(ps.qty[n]) * marks[n] / tot_notional


@jit_nb
def liquidate_cross_nb(bar, s, marks, ps, ins, cfg, acct, cnt, buf):
    """Takeover of the whole cross account at the trigger marks.

    The account equity E at the trigger is split in proportion to each position's
    requirement (maintenance margin): share_i = E * MM_i / sum(MM), and each position closes
    at BP_i = M_i - side_i * share_i / qty_i, so the user's losses sum to the whole wallet.
    """
    cnt[C_EVENTS] += 1
    n_sym = ps.qty.shape[0]
    equity = acct[A_WALLET]
    tot_req = 0.0
    tot_notional = 0.0
    for n in range(n_sym):
        if ps.qty[n] != 0.0:
            equity += upnl_nb(n, marks[n], ps)
            tot_req += position_requirement_nb(n, marks[n], ps, ins, cfg)
            tot_notional += abs(ps.qty[n]) * marks[n]
    for n in range(n_sym):
        if ps.qty[n] == 0.0:
            continue
        weight = cross_share_weight_nb(n, marks, tot_req, tot_notional, ps, ins, cfg)
        _takeover_one_nb(n, bar, s, marks[n], equity * weight, cnt[C_EVENTS], ps, ins, cfg,
                         acct, cnt, buf)
