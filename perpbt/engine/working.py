"""Orders still working at an open (DESIGN section 6): carried stop and take-profit
remainders and multibar forced closes, numba.

A stop or take-profit that the participation cap could not fill in full keeps selling at each
following open, at the open's spread and impact, at most the cap per bar, until the position
is closed (or the user's own order replaces it). Multibar forced closes continue in
``forced.continue_forced_nb``.
"""

from __future__ import annotations

import numpy as np
from perpbt._jit import jit_nb
from perpbt.engine.execution import cap_left_nb, fill_price_nb, quote_cfg_nb
from perpbt.engine.fills import reduce_position_nb
from perpbt.engine.forced import continue_forced_nb
from perpbt.engine.state import C_LIQ_ACTIVE, C_WORKING


@jit_nb
def continue_exits_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
    """Each working exit sells at bar t's open; True if any filled."""
    any_fill = False
    for n in range(ps.qty.shape[0]):
        reason = ps.exit_work[n]
        if reason < 0:
            continue
        q_abs = abs(ps.qty[n])
        if q_abs == 0.0:
            ps.exit_work[n] = -1
            continue
        side = 1.0 if ps.qty[n] > 0 else -1.0
        avail = cap_left_nb(t, n, mkt.volume, cfg.participation, ps.cap_bar, ps.cap_used)
        q = min(q_abs, avail)
        if q > 0.0:
            hs, sigma, vol = quote_cfg_nb(t, n, False, mkt, cfg)
            price = fill_price_nb(mkt.open[t, n], -side, hs, q, vol, sigma, cfg.impact_k[n])
            ps.cap_used[n] += q
            reduce_position_nb(n, q, price, ins.taker_fee[n], reason, t, 0.0, ps, cfg, acct, cnt,
                               buf)
            any_fill = True
        if ps.qty[n] == 0.0:
            ps.exit_work[n] = -1
        else:
            ps.stop_level[n] = np.nan
            ps.take_level[n] = np.nan
    return any_fill


@jit_nb
def count_working_nb(ps, cnt):
    """Refresh C_WORKING: symbols with a carried order, a working exit or a multibar close."""
    count = 0
    for n in range(ps.qty.shape[0]):
        if ps.exit_work[n] >= 0 or ps.liq_rec[n] >= 0 or not np.isnan(ps.pending[n]):
            count += 1
    cnt[C_WORKING] = count


@jit_nb
def work_at_open_nb(t, mkt, ps, ins, cfg, acct, cnt, buf):
    """Step 2a: what still works from earlier bars fills at t's open; True if anything did."""
    changed = False
    if cnt[C_LIQ_ACTIVE] > 0:
        changed |= continue_forced_nb(t, mkt, ps, ins, cfg, acct, cnt, buf)
    if cfg.exec_on:
        changed |= continue_exits_nb(t, mkt, ps, ins, cfg, acct, cnt, buf)
    return changed
