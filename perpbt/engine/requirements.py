"""Maintenance requirement and account health per venue (DESIGN section 5), numba.

The requirement is what a position must keep as margin balance before the venue liquidates:
- binance: notional at mark * mmr - maint_amount (tier of the notional at mark), no fees;
- okx: the same plus the taker fee on the notional at mark;
- bybit: maintenance margin at entry value (tier of the entry notional).
"""

from __future__ import annotations

from perpbt._jit import jit_nb
from perpbt.enums import MarginMode, Venue
from perpbt.margin import maint_margin_nb


@jit_nb(inline="always")
def requirement_nb(venue, qty_abs, mark, entry, floor, mmr, amt, n_tiers, taker_fee):
    """Maintenance requirement (quote) of one position under the venue's trigger."""
    if qty_abs <= 0.0:
        return 0.0
    if venue == Venue.bybit:
        return maint_margin_nb(qty_abs * entry, floor, mmr, amt, n_tiers)
    notional = qty_abs * mark
    req = maint_margin_nb(notional, floor, mmr, amt, n_tiers)
    if venue == Venue.okx:
        req += taker_fee * notional
    return req


@jit_nb
def position_requirement_nb(n, mark, ps, ins, cfg):
    """requirement_nb for symbol n at ``mark`` with its tier table in force."""
    d = ps.table[n]
    return requirement_nb(cfg.venue, abs(ps.qty[n]), mark, ps.entry[n], ins.tier_floor[n, d],
                          ins.tier_mmr[n, d], ins.tier_amt[n, d], ins.tier_count[n, d],
                          ins.taker_fee[n])


@jit_nb
def upnl_nb(n, mark, ps):
    """Unrealized PnL (quote) of symbol n at ``mark``."""
    q = ps.qty[n]
    if q == 0.0:
        return 0.0
    return q * (mark - ps.entry[n])


@jit_nb
def cross_health_nb(marks, wallet, ps, ins, cfg):
    """wallet + sum(unrealized) - sum(requirement) at the given marks (cross account)."""
    total = wallet
    for n in range(ps.qty.shape[0]):
        if ps.qty[n] != 0.0:
            total += upnl_nb(n, marks[n], ps) - position_requirement_nb(n, marks[n], ps, ins, cfg)
    return total


@jit_nb
def sum_margin_nb(ps):
    total = 0.0
    for n in range(ps.margin.shape[0]):
        total += ps.margin[n]
    return total


@jit_nb
def is_cross_nb(cfg):
    return cfg.margin_mode == MarginMode.cross


@jit_nb(inline="always")
def close_fee_rate_flat_nb(venue, clearance_fee, taker_fee):
    """Close cost in the liquidation price with fees: clearance + taker (OKX: clearance)."""
    if venue == Venue.okx:
        return clearance_fee
    return clearance_fee + taker_fee


@jit_nb
def close_fee_rate_nb(n, ins, cfg):
    """close_fee_rate_flat_nb of symbol n."""
    return close_fee_rate_flat_nb(cfg.venue, ins.clearance_fee[n], ins.taker_fee[n])
