"""Per-bar account outputs rebuilt after the run from the state log, numba.

The loop writes one per-bar array, the equity curve; each symbol's state (position, entry,
isolated margin) and the wallet are logged only on bars where they changed. Wallet, margin
used and margin ratio per bar follow from that log and the mark closes, with the same
arithmetic as the loop's mark to close (DESIGN section 4, step 5), so they are computed here
when ``Result.equity`` is first read instead of being written on every bar of every run.
Writing three more (T,) arrays costs the loop about 2 ns/bar each in first-touch page faults.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.requirements import requirement_nb


@jit_nb(_nrt=True)  # allocates its small per-symbol work arrays
def bar_outputs_nb(states, mark_close, time_ms, table_since, tier_floor, tier_mmr, tier_amt,
                   tier_count, taker_fee, leverage, venue, cross, wallet_out, used_out,
                   ratio_out):
    """Fill wallet (quote), margin used (quote: isolated margins, or the cross initial margin
    notional at mark / leverage) and margin ratio (requirement / margin balance: the worst
    isolated position, or the cross account) for every bar.

    ``states`` is the loop's log in bar order; every logged bar has one row per symbol.
    """
    n_bars, n_sym = mark_close.shape
    qty = np.zeros(n_sym)
    entry = np.zeros(n_sym)
    margin = np.zeros(n_sym)
    table = np.zeros(n_sym, dtype=np.int64)
    n_tables = table_since.shape[1]
    wallet = 0.0
    i = 0
    n_rows = states.shape[0]
    for t in range(n_bars):
        while i < n_rows and states[i]["bar"] == t:
            r = states[i]
            n = r["symbol"]
            qty[n] = r["qty"]
            entry[n] = r["entry"]
            margin[n] = r["margin"]
            wallet = r["wallet"]
            i += 1
        upnl_sum = 0.0
        req_sum = 0.0
        used = 0.0
        worst = 0.0
        for n in range(n_sym):
            while table[n] + 1 < n_tables and table_since[n, table[n] + 1] <= time_ms[t]:
                table[n] += 1
            q = qty[n]
            if q == 0.0:
                continue
            mark = mark_close[t, n]
            q_abs = abs(q)
            upnl = q * (mark - entry[n])
            upnl_sum += upnl
            d = table[n]
            req = requirement_nb(venue, q_abs, mark, entry[n], tier_floor[n, d], tier_mmr[n, d],
                                 tier_amt[n, d], tier_count[n, d], taker_fee[n])
            req_sum += req
            if cross:
                used += q_abs * mark / leverage[n]
            else:
                used += margin[n]
                balance = margin[n] + upnl
                worst = max(worst, req / balance if balance > 0.0 else np.inf)
        if cross:
            equity = wallet + upnl_sum
            worst = req_sum / equity if equity > 0.0 else (np.inf if req_sum > 0.0 else 0.0)
        wallet_out[t] = wallet
        used_out[t] = used
        ratio_out[t] = worst
