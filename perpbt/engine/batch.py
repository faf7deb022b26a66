"""Several engine runs in one jitted call: the combinations of a sweep that share the market,
the instruments, the targets (the same arrays) and every ``EngineConfig`` field but their
stop rule and margin mode.

Each run starts from a fresh position state and scratch, reset here in place, and writes
into one set of record buffers; only the parts of its stats leave the call (the rest of
``Result.stats()`` is arithmetic on them: perpbt.result.stats_row). pb.sweep calls it once
per such group of combinations in a chunk, so the Python around a run (its arguments
unboxed, a Result built, its stats read) is paid once per group, and the GIL is released for
the whole group.

A run's config is built here (``config_with_nb``) from the group's shared config, the run's
margin mode and its row of ``StopRows``: the stop fields of every stop of a sweep, stacked
once per sweep in each process (``stack_stop_fields``). Nothing is converted per run in
Python: a numba typed List of configs cost about 0.04 ms per run to fill and to empty, under
the GIL the other threads of a sweep wait on.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from perpbt._jit import jit_nb
from perpbt.engine.loop import run_nb
from perpbt.engine.state import C_ERROR, C_FILLS, C_FUNDING, C_LIQS, C_TRADES, EngineConfig
from perpbt.engine.stats import equity_stats_nb, record_stats_nb

# columns of run_batch_nb's ``out`` rows: equity_stats_nb, record_stats_nb, the final equity
(B_MEAN, B_SD, B_DOWNSIDE, B_WINS, B_CLOSED, B_FEES, B_RECEIVED, B_MIN_DIST,
 B_BEYOND, B_FINAL) = range(10)
N_BATCH_OUT = 10


class StopRows(NamedTuple):
    """The EngineConfig fields of a stop rule (backtest.STOP_CONFIG_FIELDS), one row per
    stop (M stops, N symbols, T bars)."""
    stop_pct: np.ndarray      # (M, N) fraction of entry; NaN = none
    stop_trigger: np.ndarray  # (M,) int64 enums.PriceTrigger
    stop_dist_t: np.ndarray   # (M, T, N) ATR distance in price per fill bar, zero past
                              # the row's dist_bars; (M, 0, N) when no stop has one
    dist_bars: np.ndarray     # (M,) int64 rows of stop_dist_t that are the stop's: T or 0
    trail: np.ndarray         # (M,) bool
    breakeven: np.ndarray     # (M, N) fraction of entry; NaN = none
    time_stop: np.ndarray     # (M, N) int64 bars; -1 = none
    dyn_stops: np.ndarray     # (M,) bool


def stack_stop_fields(fields: Sequence[Mapping]) -> StopRows:
    """``StopRows`` from each stop's fields (a mapping with the STOP_CONFIG_FIELDS keys, as
    backtest._stop_fields gives), in order."""
    n_bars = max((f["stop_dist_t"].shape[0] for f in fields), default=0)
    n_sym = fields[0]["stop_pct"].shape[0] if fields else 0
    dist = np.zeros((len(fields), n_bars, n_sym))
    for row, f in enumerate(fields):
        dist[row, :f["stop_dist_t"].shape[0]] = f["stop_dist_t"]
    return StopRows(
        stop_pct=np.array([f["stop_pct"] for f in fields], dtype=np.float64).reshape(-1, n_sym),
        stop_trigger=np.array([f["stop_trigger"] for f in fields], dtype=np.int64),
        stop_dist_t=dist,
        dist_bars=np.array([f["stop_dist_t"].shape[0] for f in fields], dtype=np.int64),
        trail=np.array([f["trail"] for f in fields], dtype=np.bool_),
        breakeven=np.array([f["breakeven"] for f in fields],
                           dtype=np.float64).reshape(-1, n_sym),
        time_stop=np.array([f["time_stop"] for f in fields], dtype=np.int64).reshape(-1, n_sym),
        dyn_stops=np.array([f["dyn_stops"] for f in fields], dtype=np.bool_))


@jit_nb(inline="always")
def config_with_nb(cfg, margin_mode, stops, row):
    """``cfg`` with ``margin_mode`` and the stop of ``stops`` row ``row``: the config
    prepare_run gives for that stop and margin mode when nothing else differs (the same
    numba type as ``cfg``, so run_nb is not compiled again)."""
    return EngineConfig(
        margin_mode=margin_mode, venue=cfg.venue, liq_policy=cfg.liq_policy,
        intrabar=cfg.intrabar, funding_mode=cfg.funding_mode,
        initial_capital=cfg.initial_capital, leverage=cfg.leverage,
        stop_pct=stops.stop_pct[row], stop_trigger=stops.stop_trigger[row],
        take_pct=cfg.take_pct, take_trigger=cfg.take_trigger, record_bars=cfg.record_bars,
        exec_on=cfg.exec_on, participation=cfg.participation, impact_k=cfg.impact_k,
        stress=cfg.stress, carry_orders=cfg.carry_orders, base_half_spread=cfg.base_half_spread,
        exec_span=cfg.exec_span, exec_window=cfg.exec_window,
        range_exponent=cfg.range_exponent, thin_exponent=cfg.thin_exponent,
        max_widening=cfg.max_widening,
        stop_dist_t=stops.stop_dist_t[row, :stops.dist_bars[row]], trail=stops.trail[row],
        breakeven=stops.breakeven[row], time_stop=stops.time_stop[row],
        dyn_stops=stops.dyn_stops[row], notional_targets=cfg.notional_targets,
        stop_frac_t=cfg.stop_frac_t, exec_state=cfg.exec_state, exec_done=cfg.exec_done,
        quiet_stretch=cfg.quiet_stretch)


@jit_nb(_nrt=True)  # it returns arrays to Python
def config_at_nb(cfg, margin_mode, stops, row):
    """config_with_nb, callable from Python (tests: a config returns as an EngineConfig)."""
    return config_with_nb(cfg, margin_mode, stops, row)


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


@jit_nb(_nrt=True)  # the array copies below (numba allocates where source and target may overlap)
def run_batch_nb(mkt, ins, cfg, margin_modes, stop_rows, stops, targets, order_bars, ps,
                 ps_floats, ps_ints, float_init, int_init, scratch, buf, liq_bytes, accts, cnts,
                 out):
    """Run k, for each k of ``margin_modes``: ``cfg`` with margin mode ``margin_modes[k]``
    and the stop of row ``stop_rows[k]`` of ``stops`` (a StopRows); its account and counts
    land in ``accts[k]`` and ``cnts[k]`` (zeros on entry), the parts of its stats in
    ``out[k]`` (B_* columns).

    ``ps`` is a state.new_position_state, its fields rows of ``ps_floats`` and ``ps_ints``,
    set back to ``float_init`` and ``int_init`` (state.position_template) before each run;
    the scratch is zeroed. ``liq_bytes`` is ``buf.liqs`` as bytes, zero on entry:
    liquidation records get fields after they are written, so the records a run wrote are
    zeroed after it. A run that stopped on an error (``cnts[k, C_ERROR]`` != 0: a record
    buffer too small, a position on a bar without funding data) leaves its ``out`` row NaN;
    the caller runs it again alone."""
    n_bars = buf.equity.shape[0]
    liq_size = liq_bytes.shape[0] // max(buf.liqs.shape[0], 1)  # bytes per record
    for k in range(margin_modes.shape[0]):
        run_cfg = config_with_nb(cfg, margin_modes[k], stops, stop_rows[k])
        ps_floats[:] = float_init
        ps_ints[:] = int_init
        reset_scratch_nb(scratch)
        acct = accts[k]
        cnt = cnts[k]
        run_nb(mkt, ins, run_cfg, targets, order_bars, ps, acct, cnt, buf, scratch)
        liq_bytes[:min(cnt[C_LIQS] * liq_size, liq_bytes.shape[0])] = 0
        out[k, :] = np.nan
        if cnt[C_ERROR] != 0:
            continue
        mean, sd, downside = equity_stats_nb(buf.equity, run_cfg.initial_capital)
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
