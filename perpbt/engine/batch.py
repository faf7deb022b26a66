"""Several engine runs in one jitted call: the combinations of a sweep that share the market,
the instruments and the targets (the same arrays), and differ only in their ``EngineConfig``
(stop, margin mode ...).

Each run starts from a fresh position state and scratch, reset here in place, and writes
into one set of record buffers; only the parts of its stats leave the call (the rest of
``Result.stats()`` is arithmetic on them: perpbt.result.stats_row). pb.sweep calls it once
per such group of combinations in a chunk, so the Python around a run (its arguments
unboxed, a Result built, its stats read) is paid once per group, and the GIL is released for
the whole group. The configs come as a numba typed List (the one function of the engine
compiled with numba's runtime, which the List needs).
"""

from __future__ import annotations

import numpy as np

from perpbt._jit import jit_nb
from perpbt.engine.loop import run_nb
from perpbt.engine.state import C_ERROR, C_FILLS, C_FUNDING, C_LIQS, C_TRADES
from perpbt.engine.stats import equity_stats_nb, record_stats_nb

# columns of run_batch_nb's ``out`` rows: equity_stats_nb, record_stats_nb, the final equity
(B_MEAN, B_SD, B_DOWNSIDE, B_WINS, B_CLOSED, B_FEES, B_RECEIVED, B_MIN_DIST,
 B_BEYOND, B_FINAL) = range(10)
N_BATCH_OUT = 10


@jit_nb(inline="always")
def reset_scratch_nb(scratch):
    """Every work array of ``scratch`` zeroed, as state.new_scratch gives them."""
    scratch.last_path[:] = 0.0
    scratch.mark_path[:] = 0.0
    scratch.marks[:] = 0.0
    scratch.kinks[:] = 0.0
    scratch.want[:] = 0.0
    scratch.has_order[:] = False
    scratch.bands[:] = 0.0
    scratch.refs[:] = 0.0
    scratch.bps[:] = 0.0
    scratch.rem[:] = 0.0
    scratch.plan_n[:] = 0
    scratch.plan_q[:] = 0.0
    scratch.plan_p[:] = 0.0
    scratch.order[:] = 0
    scratch.liq_work[:] = 0.0


@jit_nb(_nrt=True)
def run_batch_nb(mkt, ins, cfgs, targets, order_bars, ps, ps_floats, ps_ints, float_init,
                 int_init, scratch, buf, liq_bytes, accts, cnts, out):
    """Run ``cfgs[k]`` for each k: its account and counts land in ``accts[k]`` and
    ``cnts[k]`` (zeros on entry), the parts of its stats in ``out[k]`` (B_* columns).

    ``ps`` is a state.new_position_state, its fields rows of ``ps_floats`` and ``ps_ints``,
    set back to ``float_init`` and ``int_init`` (state.position_template) before each run;
    the scratch is zeroed. ``liq_bytes`` is ``buf.liqs`` as bytes, zero on entry:
    liquidation records get fields after they are written, so the records a run wrote are
    zeroed after it. A run that stopped on an error (``cnts[k, C_ERROR]`` != 0: a record
    buffer too small, a position on a bar without funding data) leaves its ``out`` row NaN;
    the caller runs it again alone."""
    n_bars = buf.equity.shape[0]
    liq_size = liq_bytes.shape[0] // max(buf.liqs.shape[0], 1)  # bytes per record
    for k in range(len(cfgs)):
        cfg = cfgs[k]
        ps_floats[:] = float_init
        ps_ints[:] = int_init
        reset_scratch_nb(scratch)
        acct = accts[k]
        cnt = cnts[k]
        run_nb(mkt, ins, cfg, targets, order_bars, ps, acct, cnt, buf, scratch)
        liq_bytes[:min(cnt[C_LIQS] * liq_size, liq_bytes.shape[0])] = 0
        out[k, :] = np.nan
        if cnt[C_ERROR] != 0:
            continue
        mean, sd, downside = equity_stats_nb(buf.equity, cfg.initial_capital)
        wins, closed, fees, received, min_dist, beyond = record_stats_nb(
            buf.fills[:cnt[C_FILLS]], buf.trades[:cnt[C_TRADES]], buf.funding[:cnt[C_FUNDING]])
        out[k, B_MEAN] = mean
        out[k, B_SD] = sd
        out[k, B_DOWNSIDE] = downside
        out[k, B_WINS] = wins
        out[k, B_CLOSED] = closed
        out[k, B_FEES] = fees
        out[k, B_RECEIVED] = received
        out[k, B_MIN_DIST] = min_dist
        out[k, B_BEYOND] = beyond
        out[k, B_FINAL] = buf.equity[n_bars - 1]
