"""The floor: a minimal hand-written leveraged bar loop in numba (one symbol, isolated margin).

What it does per bar, and nothing more: funding on the position held before the open (at
``mark_open``), a liquidation check at ``mark_open`` and a stop check at the open, the target
exposure of the previous bar applied at the open (qty = target * equity / open, taker fee on
the traded notional), then a liquidation check against a precomputed liquidation price on
``mark_low``/``mark_high`` and stop/take checks against precomputed levels on ``low``/``high``,
and the equity at ``mark_close`` written to a preallocated array. One maintenance rate (no
tiers), a liquidation loses the isolated margin, no records, no intrabar path: any engine
that does more costs more than this.

Units: prices in quote, ``qty`` in base units, rates and fees as fractions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class MinimalConfig(NamedTuple):
    leverage: float         # exchange leverage: isolated margin = notional / leverage
    fee: float              # taker fee, fraction of notional
    mmr: float              # maintenance margin rate (one tier)
    stop: float             # stop distance from entry, fraction; NaN = none
    take: float             # take-profit distance from entry, fraction; NaN = none
    initial_capital: float  # quote


@njit(cache=True, error_model="numpy", nogil=True)
def run_minimal_nb(open_, low, high, mark_open, mark_low, mark_high, mark_close, funding_rate,
                   targets, cfg, equity_out):
    """Run the loop; returns (final wallet, liquidations, stops + takes, settlements, orders).

    All series are 1-D float64 of the same length T; ``targets[t]`` (NaN = keep) executes at
    ``open_[t + 1]``; ``equity_out`` (T,) receives the equity at each bar's mark close.
    """
    n_bars = open_.shape[0]
    wallet = cfg.initial_capital
    qty = 0.0
    entry = 0.0
    margin = 0.0
    liq = np.nan
    stop = np.nan
    take = np.nan
    last_target = 0.0
    n_liq = 0
    n_exit = 0
    n_settle = 0
    n_orders = 0
    for t in range(n_bars):
        o = open_[t]
        mo = mark_open[t]
        if qty != 0.0:
            rate = funding_rate[t]
            if not np.isnan(rate):
                wallet -= qty * mo * rate
                n_settle += 1
            if (qty > 0.0 and mo <= liq) or (qty < 0.0 and mo >= liq):
                wallet -= margin
                qty = 0.0
                n_liq += 1
            elif (qty > 0.0 and o <= stop) or (qty < 0.0 and o >= stop):
                wallet += qty * (o - entry) - abs(qty) * o * cfg.fee
                qty = 0.0
                n_exit += 1
        if t > 0:
            tgt = targets[t - 1]
            if not np.isnan(tgt) and tgt != last_target:
                last_target = tgt
                equity = wallet + qty * (mo - entry)
                new_qty = tgt * max(equity, 0.0) / o
                wallet += qty * (o - entry) - abs(new_qty - qty) * o * cfg.fee
                qty = new_qty
                entry = o
                margin = abs(qty) * o / cfg.leverage
                side = 1.0 if qty > 0.0 else -1.0
                liq = entry * (1.0 - side * (1.0 / cfg.leverage - cfg.mmr))
                stop = entry * (1.0 - side * cfg.stop)
                take = entry * (1.0 + side * cfg.take)
                n_orders += 1
        if qty != 0.0:  # long: low first (pessimistic); the liquidation wins a tie
            if (qty > 0.0 and mark_low[t] <= liq) or (qty < 0.0 and mark_high[t] >= liq):
                wallet -= margin
                qty = 0.0
                n_liq += 1
            elif qty > 0.0 and low[t] <= stop or qty < 0.0 and high[t] >= stop:
                wallet += qty * (stop - entry) - abs(qty) * stop * cfg.fee
                qty = 0.0
                n_exit += 1
            elif qty > 0.0 and high[t] >= take or qty < 0.0 and low[t] <= take:
                wallet += qty * (take - entry) - abs(qty) * take * cfg.fee
                qty = 0.0
                n_exit += 1
        equity_out[t] = wallet + qty * (mark_close[t] - entry)
    return wallet, n_liq, n_exit, n_settle, n_orders


def run_minimal(arrays: dict, targets: np.ndarray, cfg: MinimalConfig
                ) -> tuple[np.ndarray, tuple]:
    """The loop on column 0 of a perpbt ``Market.arrays`` dict; returns (equity, counts)."""
    col = lambda k: np.ascontiguousarray(arrays[k][:, 0], dtype=np.float64)  # noqa: E731
    equity = np.empty(len(targets))
    cfg = MinimalConfig(*(float(v) for v in cfg))
    out = run_minimal_nb(col("open"), col("low"), col("high"), col("mark_open"),
                         col("mark_low"), col("mark_high"), col("mark_close"),
                         col("funding_rate"), np.ascontiguousarray(targets, dtype=np.float64),
                         cfg, equity)
    return equity, out
