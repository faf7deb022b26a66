"""Target orders at the open (DESIGN sections 1.1 and 4 step 3), numba.

A target row decided at t-1's close executes at t's open when it differs from the last non-NaN
target. qty = target * E / open, with E = wallet + unrealized at mark_open after funding and the
open's liquidations and stops (one E for all symbols, fees excluded), rounded toward zero to
the lot size; a target of 0 closes fully. All reducing legs execute first, then the increasing
legs in symbol order. An increase is cut to the notional the leverage's tiers allow and to the
free balance (isolated: added margin <= wallet - isolated margins; cross: sum of initial
margins <= E); a cut never shrinks an existing position and is recorded, as is an increase
below the minimum notional. Without the execution model every order fills at the open; with
it, at the open +/- half spread +/- impact (state known before the open), at most the
participation cap, the remainder cancelled or carried to later opens (``carry_orders``).
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.execution import cap_left_nb, fill_price_nb, quote_cfg_nb
from perpbt.engine.fills import increase_position_nb, reduce_position_nb
from perpbt.engine.records import write_order_nb
from perpbt.engine.requirements import is_cross_nb, sum_margin_nb
from perpbt.engine.state import A_BUST, A_EQUITY_OPEN, A_WALLET, C_LIQ_ACTIVE, C_STOPS
from perpbt.enums import FillReason, OrderStatus


@jit_nb
def round_to_lot_nb(qty_abs, lot):
    """Round an absolute quantity toward zero to a multiple of ``lot`` (0 = no rounding)."""
    if lot <= 0.0:
        return qty_abs
    steps = np.floor(qty_abs / lot + 1e-9)
    return steps * lot


@jit_nb
def desired_positions_nb(t, targets, mkt, ps, ins, cfg, acct, want, has_order):
    """Fill ``want`` with the target positions of the orders sent at t's open."""
    any_order = False
    equity = acct[A_EQUITY_OPEN]
    for n in range(ps.qty.shape[0]):
        has_order[n] = False
        tgt = targets[t - 1, n]
        if np.isnan(tgt) or tgt == ps.last_target[n]:
            if not np.isnan(ps.pending[n]):  # a carried remainder keeps working
                has_order[n] = True
                any_order = True
                want[n] = ps.pending[n]
            continue
        ps.last_target[n] = tgt
        has_order[n] = True
        any_order = True
        if tgt == 0.0:
            want[n] = 0.0
            continue
        notional = abs(tgt) if cfg.notional_targets else abs(tgt) * max(equity, 0.0)
        qty_abs = round_to_lot_nb(notional / mkt.open[t, n], ins.lot_size[n])
        want[n] = qty_abs if tgt > 0 else -qty_abs
    return any_order


@jit_nb
def _initial_margin_nb(t, mkt, ps, cfg):
    total = 0.0
    for j in range(ps.qty.shape[0]):
        total += abs(ps.qty[j]) * mkt.open[t, j] / cfg.leverage[j]
    return total


@jit_nb
def _capped_increase_nb(t, n, add_abs, price, mkt, ps, ins, cfg, acct):
    """The increase after the tier and balance caps, and the status naming the binding cap."""
    status = OrderStatus.filled
    d = ps.table[n]
    room_tier = ins.max_notional[n, d] / price - abs(ps.qty[n])
    if add_abs > room_tier:
        add_abs = max(room_tier, 0.0)
        status = OrderStatus.cut_tier
    if is_cross_nb(cfg):
        room = (acct[A_EQUITY_OPEN] - _initial_margin_nb(t, mkt, ps, cfg)) * cfg.leverage[n] / price
    else:
        room = (acct[A_WALLET] - sum_margin_nb(ps)) * cfg.leverage[n] / price
    if add_abs > room * (1.0 + 1e-12):
        add_abs = max(room, 0.0)
        status = OrderStatus.cut_margin
    return add_abs, status


@jit_nb
def open_fill_nb(t, n, qty_abs, order_sign, mkt, ps, cfg):
    """(quantity, price) of a market order at t's open: all of it at the open without the
    execution model; with it, capped by participation and priced with spread and impact."""
    price = mkt.open[t, n]
    if not cfg.exec_on:
        return qty_abs, price
    avail = cap_left_nb(t, n, mkt.volume, cfg.participation, ps.cap_bar, ps.cap_used)
    q = min(qty_abs, avail)
    hs, sigma, vol = quote_cfg_nb(t, n, False, mkt, cfg)
    price = fill_price_nb(price, order_sign, hs, q, vol, sigma, cfg.impact_k[n])
    ps.cap_used[n] += q
    return q, price


# inlined into its one call site (the loop): passing its ~600-word argument list at every
# order bar cost about 10 % of a sweep run
@jit_nb(inline="always")
def execute_orders_nb(t, targets, mkt, ps, ins, cfg, acct, cnt, buf, want, has_order):
    """Send the orders of bar t's open; returns True when any position changed."""
    if not desired_positions_nb(t, targets, mkt, ps, ins, cfg, acct, want, has_order):
        return False
    n_sym = ps.qty.shape[0]
    for n in range(n_sym):
        ps.pending[n] = np.nan  # re-set below for what is left unfilled
        if has_order[n] and (ps.liq_rec[n] >= 0 or (is_cross_nb(cfg) and cnt[C_LIQ_ACTIVE] > 0)):
            write_order_nb(buf, cnt, t, n, want[n] - ps.qty[n], 0.0,
                           OrderStatus.rejected_liquidating)
            has_order[n] = False
    if acct[A_BUST] > 0.0:
        for n in range(n_sym):
            if has_order[n]:
                write_order_nb(buf, cnt, t, n, want[n] - ps.qty[n], 0.0, OrderStatus.rejected_bust)
        return False
    changed = False
    for n in range(n_sym):  # reducing legs first (a flip closes here, then opens below)
        q = ps.qty[n]
        if not has_order[n] or q == 0.0:
            continue
        w = want[n]
        if w == 0.0 or w * q < 0.0:
            closed = abs(q)
        elif abs(w) < abs(q):
            closed = abs(q) - abs(w)
        else:
            continue
        ps.exit_work[n] = -1  # the user's order replaces a still-working exit
        side = 1.0 if q > 0 else -1.0
        filled, price = open_fill_nb(t, n, closed, -side, mkt, ps, cfg)
        if filled < closed:
            _remainder_nb(t, n, -side * closed, -side * filled, want, ps, cfg, cnt, buf)
        if filled <= 0.0:
            continue
        reduce_position_nb(n, filled, price, ins.taker_fee[n], FillReason.order, t,
                           0.0, ps, cfg, acct, cnt, buf)
        changed = True
    for n in range(n_sym):  # increasing legs in symbol order
        if not has_order[n]:
            continue
        q = ps.qty[n]
        w = want[n]
        if w == 0.0 or abs(w) <= abs(q) * (1.0 + 1e-9):  # no dust after a rounding reduce
            continue
        if w * q < 0.0:
            continue  # the closing leg of a flip did not complete: open nothing yet
        price = mkt.open[t, n]
        side = 1.0 if w > 0 else -1.0
        requested = abs(w) - abs(q)
        if cfg.exec_on:  # size the caps with the price the order will pay
            hs, sigma, vol = quote_cfg_nb(t, n, False, mkt, cfg)
            price = fill_price_nb(price, side, hs, requested, vol, sigma, cfg.impact_k[n])
        add_abs, status = _capped_increase_nb(t, n, requested, price, mkt, ps, ins, cfg, acct)
        add_abs = round_to_lot_nb(add_abs, ins.lot_size[n])
        if add_abs <= 0.0:
            write_order_nb(buf, cnt, t, n, side * requested, 0.0, OrderStatus.rejected_zero)
            continue
        if add_abs * price < ins.min_notional[n]:
            write_order_nb(buf, cnt, t, n, side * requested, 0.0,
                           OrderStatus.rejected_min_notional)
            continue
        if status != OrderStatus.filled:
            write_order_nb(buf, cnt, t, n, side * requested, side * add_abs, status)
        ps.exit_work[n] = -1
        filled, price = open_fill_nb(t, n, add_abs, side, mkt, ps, cfg)
        if filled < add_abs:
            _remainder_nb(t, n, side * add_abs, side * filled, want, ps, cfg, cnt, buf)
        if filled <= 0.0:
            continue
        increase_position_nb(n, side * filled, price, ins.taker_fee[n], FillReason.order, t,
                             0.0, ps, cfg, acct, cnt, buf)
        changed = True
    return changed


@jit_nb
def time_stops_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
    """Positions held ``time_stop`` bars since their entry bar exit at t's open (the rest,
    if the participation cap binds, keeps working at the next opens); True if any did."""
    any_exit = False
    for n in range(ps.qty.shape[0]):
        q = ps.qty[n]
        limit = cfg.time_stop[n]
        if (q == 0.0 or limit < 0 or ps.entry_bar[n] < 0 or t - ps.entry_bar[n] < limit
                or ps.liq_rec[n] >= 0 or ps.exit_work[n] >= 0):
            continue
        side = 1.0 if q > 0 else -1.0
        filled, price = open_fill_nb(t, n, abs(q), -side, mkt, ps, cfg)
        if filled > 0.0:
            reduce_position_nb(n, filled, price, ins.taker_fee[n], FillReason.time_stop, t,
                               0.0, ps, cfg, acct, cnt, buf)
            any_exit = True
        if ps.qty[n] != 0.0:
            ps.exit_work[n] = FillReason.time_stop
            ps.stop_level[n] = np.nan
            ps.take_level[n] = np.nan
        cnt[C_STOPS] += 1
    return any_exit


@jit_nb
def _remainder_nb(t, n, requested, filled, want, ps, cfg, cnt, buf):
    """The participation cap filled part of an order: record it; carry the target or not."""
    write_order_nb(buf, cnt, t, n, requested, filled, OrderStatus.partial)
    if cfg.carry_orders:
        ps.pending[n] = want[n]
