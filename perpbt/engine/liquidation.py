"""Liquidation prices of open positions and the cross equity split (DESIGN section 5), numba.

The liquidation policies themselves, takeover included, are in engine/forced.py.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.requirements import (close_fee_rate_flat_nb, position_requirement_nb,
                                        requirement_nb)
from perpbt.enums import MarginMode
from perpbt.margin import liq_price_nb


@jit_nb
def refresh_liq_prices_flat_nb(marks, qty, entry, margin, fees_outside, liq_rec, table,
                               liq_price, liq_price_fees, floor, cap, mmr, amt, count, taker,
                               clearance, venue, cross, wallet):
    """refresh_liq_prices_nb on flat arrays (a call passing the state tuples costs ~200 ns)."""
    n_sym = qty.shape[0]
    tot_req = 0.0
    tot_req_fee = 0.0
    tot_upnl = 0.0
    if cross:
        for j in range(n_sym):
            q = qty[j]
            if q != 0.0:
                d = table[j]
                r = requirement_nb(venue, abs(q), marks[j], entry[j], floor[j, d], mmr[j, d],
                                   amt[j, d], count[j, d], taker[j])
                cfr = close_fee_rate_flat_nb(venue, clearance[j], taker[j])
                tot_req += r
                tot_req_fee += r + cfr * abs(q) * marks[j]
                tot_upnl += q * (marks[j] - entry[j])
    for n in range(n_sym):
        q = qty[n]
        if q == 0.0 or liq_rec[n] >= 0:  # flat, or inside a multibar close
            liq_price[n] = np.nan
            liq_price_fees[n] = np.nan
            continue
        cfr = close_fee_rate_flat_nb(venue, clearance[n], taker[n])
        d = table[n]
        side = 1 if q > 0 else -1
        q_abs = abs(q)
        if cross:
            own_req = requirement_nb(venue, q_abs, marks[n], entry[n], floor[n, d], mmr[n, d],
                                     amt[n, d], count[n, d], taker[n])
            own_fee = cfr * q_abs * marks[n]
            other_upnl = tot_upnl - q * (marks[n] - entry[n])
            liq_price[n] = liq_price_nb(side, q_abs, entry[n], wallet, floor[n, d], cap[n, d],
                                        mmr[n, d], amt[n, d], count[n, d], venue,
                                        tot_req - own_req, other_upnl, taker[n], 0.0)
            liq_price_fees[n] = liq_price_nb(side, q_abs, entry[n], wallet, floor[n, d],
                                             cap[n, d], mmr[n, d], amt[n, d], count[n, d],
                                             venue, tot_req_fee - own_req - own_fee,
                                             other_upnl, taker[n], cfr)
        else:
            liq_price[n] = liq_price_nb(side, q_abs, entry[n], margin[n], floor[n, d],
                                        cap[n, d], mmr[n, d], amt[n, d], count[n, d], venue,
                                        0.0, 0.0, taker[n], 0.0)
            liq_price_fees[n] = liq_price_nb(side, q_abs, entry[n],
                                             margin[n] - fees_outside[n], floor[n, d],
                                             cap[n, d], mmr[n, d], amt[n, d], count[n, d],
                                             venue, 0.0, 0.0, taker[n], cfr)


@jit_nb(inline="always")
def refresh_liq_prices_nb(marks, ps, ins, cfg, wallet):
    """Both liquidation prices of every open position (others held at ``marks`` in cross).

    Without fees: the venue's trigger solved for the price. With fees: isolated margin net of
    open fees paid from outside it, close cost = clearance + taker (OKX: clearance only); in
    cross the wallet already carries the fees paid and the other positions' close costs are
    added to their requirements.
    """
    refresh_liq_prices_flat_nb(marks, ps.qty, ps.entry, ps.margin, ps.fees_outside, ps.liq_rec,
                               ps.table, ps.liq_price, ps.liq_price_fees, ins.tier_floor,
                               ins.tier_cap, ins.tier_mmr, ins.tier_amt, ins.tier_count,
                               ins.taker_fee, ins.clearance_fee, cfg.venue,
                               cfg.margin_mode == MarginMode.cross, wallet)


@jit_nb
def cross_share_weight_nb(n, marks, tot_req, tot_notional, ps, ins, cfg):
    """Symbol n's share of the cross equity at a liquidation: its requirement over the sum
    (DESIGN 5), or its notional over the total when nothing is required."""
    if tot_req > 0.0:
        return position_requirement_nb(n, marks[n], ps, ins, cfg) / tot_req
    return abs(ps.qty[n]) * marks[n] / tot_notional
