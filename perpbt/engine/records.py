"""Writers of the preallocated record arrays (dtypes in perpbt.dtypes), numba.

Capacities are computed before the run from the targets (see backtest.py). A writer that
would overflow sets ``ErrorCode.capacity`` and writes nothing; backtest() raises on it, so a
capacity bug is loud, never a silent truncation. (No ``raise`` here: a kernel that can raise is
an opaque call in the per-bar path.)
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.state import C_ERROR, C_FILLS, C_FUNDING, C_LIQS, C_ORDERS, C_TRADES
from perpbt.enums import ErrorCode


@jit_nb
def write_fill_nb(buf, cnt, bar, n, s, dq, price, fee, realized, reason, beyond, tid, pos_after):
    i = cnt[C_FILLS]
    if i >= buf.fills.shape[0]:
        cnt[C_ERROR] = ErrorCode.capacity
        return
    r = buf.fills[i]
    r["bar"] = bar
    r["symbol"] = n
    r["s"] = s
    r["qty"] = dq
    r["price"] = price
    r["fee"] = fee
    r["realized"] = realized
    r["reason"] = reason
    r["beyond_bankruptcy"] = beyond
    r["trade_id"] = tid
    r["position_after"] = pos_after
    cnt[C_FILLS] = i + 1


@jit_nb
def write_order_nb(buf, cnt, bar, n, requested, filled, status):
    i = cnt[C_ORDERS]
    if i >= buf.orders.shape[0]:
        cnt[C_ERROR] = ErrorCode.capacity
        return
    r = buf.orders[i]
    r["bar"] = bar
    r["symbol"] = n
    r["requested_qty"] = requested
    r["filled_qty"] = filled
    r["status"] = status
    cnt[C_ORDERS] = i + 1


@jit_nb
def write_funding_nb(buf, cnt, bar, n, qty, mark, rate, payment):
    i = cnt[C_FUNDING]
    if i >= buf.funding.shape[0]:
        cnt[C_ERROR] = ErrorCode.capacity
        return
    r = buf.funding[i]
    r["bar"] = bar
    r["symbol"] = n
    r["qty"] = qty
    r["mark"] = mark
    r["rate"] = rate
    r["payment"] = payment
    cnt[C_FUNDING] = i + 1


@jit_nb
def write_liq_nb(buf, cnt, event_id, bar, n, s, trigger_mark, lp, lpf, bp, qty, avg_fill,
                 clearance_fee, user_loss, insurance_change, upnl, bars, policy):
    i = cnt[C_LIQS]
    if i >= buf.liqs.shape[0]:
        cnt[C_ERROR] = ErrorCode.capacity
        return
    r = buf.liqs[i]
    r["event_id"] = event_id
    r["bar"] = bar
    r["symbol"] = n
    r["s"] = s
    r["trigger_mark"] = trigger_mark
    r["liq_price"] = lp
    r["liq_price_fees"] = lpf
    r["bankruptcy_price"] = bp
    r["qty"] = qty
    r["avg_fill"] = avg_fill
    r["clearance_fee"] = clearance_fee
    r["user_loss"] = user_loss
    r["insurance_change"] = insurance_change
    r["upnl_at_trigger"] = upnl
    r["bars"] = bars
    r["policy"] = policy
    cnt[C_LIQS] = i + 1


@jit_nb
def open_trade_nb(buf, cnt, n, side, bar):
    i = cnt[C_TRADES]
    if i >= buf.trades.shape[0]:
        cnt[C_ERROR] = ErrorCode.capacity
        return i - 1
    r = buf.trades[i]
    r["trade_id"] = i
    r["symbol"] = n
    r["side"] = side
    r["entry_bar"] = bar
    r["exit_bar"] = -1
    r["entry_price"] = 0.0
    r["exit_price"] = np.nan
    r["qty"] = 0.0
    r["entry_value"] = 0.0
    r["closed_qty"] = 0.0
    r["exit_value"] = 0.0
    r["pnl"] = 0.0
    r["fees"] = 0.0
    r["funding"] = 0.0
    r["liq_price"] = np.nan
    r["liq_price_fees"] = np.nan
    r["stop_price"] = np.nan
    r["stop_beyond_liq"] = 0
    r["beyond_bankruptcy"] = 0
    r["exit_reason"] = -1
    r["liquidated"] = 0
    r["min_liq_distance"] = np.inf
    cnt[C_TRADES] = i + 1
    return i


@jit_nb
def add_to_trade_nb(buf, tid, qty_abs_after, add_qty, price, fee):
    r = buf.trades[tid]
    r["entry_value"] += add_qty * price
    r["fees"] += fee
    if qty_abs_after > r["qty"]:
        r["qty"] = qty_abs_after


@jit_nb
def reduce_trade_nb(buf, tid, closed_qty, price, realized, fee):
    r = buf.trades[tid]
    r["closed_qty"] += closed_qty
    r["exit_value"] += closed_qty * price
    r["pnl"] += realized
    r["fees"] += fee


@jit_nb
def finish_trade_nb(buf, tid, bar, reason, liquidated):
    r = buf.trades[tid]
    r["exit_bar"] = bar
    r["exit_reason"] = reason
    r["liquidated"] = liquidated
    if r["closed_qty"] > 0.0:
        r["exit_price"] = r["exit_value"] / r["closed_qty"]
    if liquidated == 1:
        r["min_liq_distance"] = 0.0


@jit_nb
def close_trade_nb(buf, cnt, tid, bar, closed_qty, price, realized, fee, reason, liquidated):
    reduce_trade_nb(buf, tid, closed_qty, price, realized, fee)
    finish_trade_nb(buf, tid, bar, reason, liquidated)
