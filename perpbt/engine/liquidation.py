"""Liquidation prices of open positions and the cross equity split (DESIGN section 5), numba.

The liquidation policies themselves, takeover included, are in engine/forced.py.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.requirements import (close_fee_rate_nb, is_cross_nb, position_requirement_nb,
                                        upnl_nb)
from perpbt.margin import liq_price_nb


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
def cross_share_weight_nb(n, marks, tot_req, tot_notional, ps, ins, cfg):
    """Symbol n's share of the cross equity at a liquidation: its requirement over the sum
    (DESIGN 5), or its notional over the total when nothing is required."""
    if tot_req > 0.0:
        return position_requirement_nb(n, marks[n], ps, ins, cfg) / tot_req
    return abs(ps.qty[n]) * marks[n] / tot_notional
