"""Funding settlement (DESIGN section 4 step 1), numba.

On a settlement bar every open position receives ``-side * qty * mark_open * rate`` (rate > 0:
longs pay, shorts receive), on the position held before any fill at the open. Isolated: a
payment comes from the free balance first, the remainder from that position's margin; a receipt
goes to the free balance.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.records import write_funding_nb
from perpbt.engine.requirements import is_cross_nb, sum_margin_nb
from perpbt.engine.state import (A_WALLET, C_ERROR, C_ERROR_BAR, C_ERROR_SYMBOL,
                                 C_SETTLEMENTS)
from perpbt.enums import ErrorCode, FundingMode
from perpbt.margin import funding_payment_nb


@jit_nb
def settle_funding_nb(t, mkt, ps, cfg, acct, cnt, buf):
    """Apply bar t's settlements; returns 0 when nothing changed, 1 when only the wallet
    changed (no liquidation price moves in isolated margin), 2 when an isolated margin or
    the cross wallet changed."""
    changed = 0
    for n in range(ps.qty.shape[0]):
        q = ps.qty[n]
        if q == 0.0 or ps.liq_rec[n] >= 0:  # a position in a multibar close is the venue's
            continue
        if not mkt.funding_covered[t, n]:
            if cfg.funding_mode == FundingMode.strict:
                cnt[C_ERROR] = ErrorCode.funding_uncovered
                cnt[C_ERROR_BAR] = t
                cnt[C_ERROR_SYMBOL] = n
                return changed
            continue
        rate = mkt.funding_rate[t, n]
        if np.isnan(rate):
            continue
        mark = mkt.mark_open[t, n]
        side = 1 if q > 0 else -1
        payment = funding_payment_nb(side, abs(q), mark, rate)
        acct[A_WALLET] += payment
        changed = max(changed, 2 if is_cross_nb(cfg) else 1)
        if payment < 0.0 and not is_cross_nb(cfg):
            free = acct[A_WALLET] - sum_margin_nb(ps)
            if free < 0.0:
                ps.margin[n] -= min(-free, -payment, ps.margin[n])
                changed = 2
        tid = ps.trade_id[n]
        if tid >= 0:
            buf.trades[tid]["funding"] += payment
        write_funding_nb(buf, cnt, t, n, q, mark, rate, payment)
        cnt[C_SETTLEMENTS] += 1
    return changed
