"""engine/batch.py: several runs in one jitted call give each run's own numbers.

A batch reuses one position state, scratch and set of record buffers run after run (reset
inside the call), and builds each run's config from the group's shared one, its margin mode
and its row of the stop table. Each run's config must be the one prepare_run gives, and its
account, counts and stats must equal the same combination run alone through pb.backtest,
bit for bit, whatever the runs before it left behind; a run that stops on an error is run
again alone by pb.sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perpbt as pb
from perpbt.backtest import (allocate_buffers, buffer_sizes, execute_run, prepare_run,
                             reused_buffers, stop_fields)
from perpbt.engine.batch import (B_BEYOND, B_CLOSED, B_DOWNSIDE, B_FEES, B_FINAL, B_MEAN,
                                 B_MIN_DIST, B_RECEIVED, B_SD, B_WINS, N_BATCH_OUT,
                                 config_at_nb, reset_scratch_nb, run_batch_nb,
                                 stack_stop_fields)
from perpbt.engine.state import (A_BUST, A_CLEARANCE, A_INSURANCE, A_MAX_DD, C_ERROR, C_LIQS,
                                 C_TRADES, N_ACCT, N_CNT, Buffers, new_position_state,
                                 new_scratch, position_template)
from perpbt.enums import ErrorCode, MarginMode
from perpbt.market import Market
from perpbt.result import Result, stats_row

sweep_mod = sys.modules["perpbt.sweep"]  # the module (perpbt.sweep is also the function)

STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"
sys.path.insert(0, str(STRATEGIES))
from ma_cross import MaCross  # noqa: E402

sys.path.remove(str(STRATEGIES))


@pytest.fixture(scope="module")
def market():
    return pb.data.default_market().slice(None, "2021-02-01")


def test_reset_scratch_nb_zeroes_every_field():
    scratch = new_scratch(2, 4)
    for arr in scratch:
        arr[...] = 5
    reset_scratch_nb(scratch)
    for name, got, want in zip(scratch._fields, scratch, new_scratch(2, 4)):
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("execution", [None, True])
def test_batch_runs_equal_single_runs(market, execution):
    """Five configs (stops, margin modes, a trailing stop) at 40x exposure and 50x leverage (some
    runs liquidate) on one target frame
    and leverage; the state, scratch and buffers start dirty (filled with junk)."""
    memo: dict = {}
    frame = pb.backtest(market, MaCross(fast=6, slow=48, exposure=40.0), leverage=50).targets
    settings = [dict(stop=None, margin="isolated"), dict(stop=0.01, margin="isolated"),
                dict(stop=0.03, margin="cross"), dict(stop=None, margin="cross"),
                dict(stop=pb.StopLoss(pct=0.02, trailing=True), margin="isolated")]
    preps = [prepare_run(market, frame, leverage=50, stats_only=True, execution=execution,
                         _memo=memo, **kw) for kw in settings]
    first = preps[0]
    assert len({id(p.ins) for p in preps}) == len({id(p.values) for p in preps}) == 1
    # what the batch takes from the first config: every field but the stop and margin mode
    assert len({sweep_mod.group_key(p)[1] for p in preps}) == 1
    n_sym = market.n_symbols
    ps = new_position_state(n_sym)
    scratch = new_scratch(n_sym, first.ins.tier_floor.shape[2])
    for arr in (*ps, *scratch):
        arr[...] = 3
    sizes = buffer_sizes(first.changes, first.mkt, False, first.insts,
                         first.cfg.margin_mode == MarginMode.cross)
    buf = reused_buffers(None, sizes)
    # the stop table holds an unused stop first, then the runs' stops in reverse order
    stops = [0.07] + [kw["stop"] for kw in settings][::-1]
    table = stack_stop_fields([stop_fields(s, market, memo) for s in stops])
    rows = np.array([len(settings) - k for k in range(len(settings))], dtype=np.int64)
    margin_modes = np.array([p.cfg.margin_mode for p in preps], dtype=np.int64)
    accts = np.zeros((len(preps), N_ACCT))
    cnts = np.zeros((len(preps), N_CNT), dtype=np.int64)
    out = np.empty((len(preps), N_BATCH_OUT))
    float_init, int_init = position_template(n_sym)
    run_batch_nb(first.mkt, first.ins, first.cfg, margin_modes, rows, table, first.values,
                 first.order_bars, ps, ps.qty.base, ps.trade_id.base, float_init, int_init,
                 scratch, buf, buf.liqs.view(np.uint8), accts, cnts, out)
    liquidations = 0
    for k, prep in enumerate(preps):
        alone_buf, alone_acct, alone_cnt = execute_run(market, prep)
        np.testing.assert_array_equal(accts[k], alone_acct, err_msg=str(settings[k]))
        np.testing.assert_array_equal(cnts[k], alone_cnt, err_msg=str(settings[k]))
        alone = Result(market, prep.targets, prep.settings, alone_buf, alone_acct, alone_cnt,
                       prep.insts, True).stats_dict()
        o = out[k]
        got = stats_row(market.n_bars, market.timeframe_ms, prep.cfg.initial_capital,
                        float(o[B_FINAL]), o[B_MEAN], o[B_SD], o[B_DOWNSIDE],
                        float(accts[k, A_MAX_DD]), int(o[B_WINS]), int(o[B_CLOSED]), o[B_FEES],
                        o[B_RECEIVED], o[B_MIN_DIST], int(o[B_BEYOND]),
                        int(cnts[k, C_TRADES]), int(cnts[k, C_LIQS]),
                        float(accts[k, A_INSURANCE]), float(accts[k, A_CLEARANCE]),
                        bool(accts[k, A_BUST]))
        pd.testing.assert_series_equal(pd.Series(got, dtype=object),
                                       pd.Series(alone, dtype=object), check_exact=True)
        liquidations += int(cnts[k, C_LIQS])
    assert liquidations > 0  # the liquidation records are zeroed between runs


def test_sweep_reruns_a_batch_run_that_ran_out_of_room(market, monkeypatch):
    """Record buffers too small for every batched run (one fill, one trade): each run is
    run again alone (with more room, as pb.backtest does) and the frame is the same."""
    axes = dict(stop=[None, 0.01], leverage=[5, 20], margin=["isolated", "cross"])
    grid = {"fast": [6, 12], "slow": 48}
    one_chunk = pb.LocalExecutor(1, chunks_per_worker=1)  # groups of 4 (stop x margin)
    want = pb.sweep(market, MaCross, grid, executor=one_chunk, progress=False, **axes)
    errors = []
    real_batch = sweep_mod.run_batch_nb

    def spy(*args):
        real_batch(*args)
        errors.append(args[-2][:, C_ERROR].copy())  # cnts[:, C_ERROR]

    tiny = lambda *a, **k: buffer_sizes(*a, **k)._replace(fills=1, trades=1)  # noqa: E731
    monkeypatch.setattr(sweep_mod, "buffer_sizes", tiny)
    monkeypatch.setattr(sweep_mod, "reused_buffers",
                        lambda pool, sizes, **kw: allocate_buffers(sizes))
    monkeypatch.setattr(sweep_mod, "run_batch_nb", spy)
    got = pb.sweep(market, MaCross, grid, executor=one_chunk, progress=False, **axes)
    assert [len(e) for e in errors] == [4] * 4
    assert all((e == ErrorCode.capacity).all() for e in errors)  # every batched run stopped
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_sweep_error_in_a_batch_names_the_combination(market):
    """A position open on a bar without funding data stops the run; the sweep reruns it
    alone and raises pb.backtest's error, naming the combination."""
    arrays = {k: v.copy() for k, v in market.arrays.items()}
    arrays["funding_covered"][300:400] = False
    arrays["funding_rate"][300:400] = np.nan
    holed = Market(market.symbols, market.time_ms, market.timeframe_ms, arrays,
                   instruments=market.instruments)
    with pytest.raises(ValueError, match=r"sweep combination \d+ \(MaCross.*outside the "
                                         r"funding_rate coverage"):
        pb.sweep(holed, MaCross, {"fast": 6, "slow": 48}, stop=[None, 0.01],
                 executor=pb.LocalExecutor(1), progress=False)


def test_group_key_shares_all_but_stop_and_margin(market):
    """Preparations (one memo) that differ only in their stop and margin mode have equal
    group keys, so they run in one call; another take, capital or leverage does not."""
    memo: dict = {}
    frame = pb.backtest(market, MaCross(fast=6, slow=48), leverage=5).targets

    def prep(**kw):
        return prepare_run(market, frame, _memo=memo,
                           **{"leverage": 5, "stats_only": True, **kw})

    key = sweep_mod.group_key(prep(stop=0.01))[1]
    assert sweep_mod.group_key(prep(stop=pb.StopLoss(atr=2.0), margin="cross"))[1] == key
    for other in (dict(take=0.05), dict(initial_capital=5_000.0), dict(leverage=10)):
        assert sweep_mod.group_key(prep(stop=0.01, **other))[1] != key, other
    assert sweep_mod.group_key(prep(stop=0.01, stats_only=False)) is None  # runs alone


def test_stop_table_rows_built_once_and_extended(market):
    """The job's stop table: a row per stop of the job (each stop's engine fields, an ATR
    distance padded to the longest); a stop not seen yet adds a row, the old rows kept."""
    atr = pb.StopLoss(atr=2.0, trailing=True)
    job = sweep_mod.SweepJob(market, [], [], {}, stops=[None, 0.02, atr])
    table, rows = job.stop_rows([atr, None])
    assert rows == [2, 0] and len(table.stop_pct) == 3
    again, rows = job.stop_rows([0.02])
    assert again is table and rows == [1]  # built once
    assert table.stop_dist_t.shape == (3, market.n_bars, market.n_symbols)
    for row, stop in enumerate([None, 0.02, atr]):
        want = stop_fields(stop, market)
        n = want["stop_dist_t"].shape[0]
        assert table.dist_bars[row] == n and not table.stop_dist_t[row, n:].any()
        np.testing.assert_array_equal(table.stop_dist_t[row, :n], want["stop_dist_t"])
        for name in ("stop_pct", "stop_trigger", "trail", "breakeven", "time_stop",
                     "dyn_stops"):
            np.testing.assert_array_equal(getattr(table, name)[row], want[name], err_msg=name)
    # the job's memo now hands out the ATR distances from the table (held once)
    assert np.shares_memory(stop_fields(atr, market, job.memo)["stop_dist_t"],
                            table.stop_dist_t)
    late = pb.StopLoss(pct=0.03, trigger="mark")
    grown, rows = job.stop_rows([late, atr])
    assert rows == [3, 2] and grown is not table and len(grown.stop_pct) == 4
    for name, old, new in zip(table._fields, table, grown):
        np.testing.assert_array_equal(new[:3], old, err_msg=name)
    assert np.shares_memory(stop_fields(atr, market, job.memo)["stop_dist_t"],
                            grown.stop_dist_t)
    assert job.stop_rows([0.02, atr])[0] is grown  # nothing new: not built again


def test_reused_buffers_keep_the_batch_liquidations_apart():
    """The thread's own liquidation records go only to a caller that zeroes what each run
    wrote (run_batch_nb: ``zeroed_liqs``); any other caller gets new zeroed ones, so a
    single run's records never reach a batch."""
    pool: dict = {}
    sizes = Buffers(fills=8, orders=8, funding=4, liqs=6, trades=8, equity=20, states=0)
    single = reused_buffers(pool, sizes)
    batch = reused_buffers(pool, sizes, zeroed_liqs=True)
    assert single.fills is batch.fills and single.equity is batch.equity  # the thread's
    assert single.liqs is not batch.liqs and len(batch.liqs) == 6
    single.liqs.view(np.uint8)[:] = 7  # a single run's records stay its own
    assert reused_buffers(pool, sizes, zeroed_liqs=True).liqs is batch.liqs
    assert not batch.liqs.view(np.uint8).any()
    assert not reused_buffers(pool, sizes).liqs.view(np.uint8).any()
    bigger = sizes._replace(liqs=9)  # more room than held: new ones
    assert len(reused_buffers(pool, bigger, zeroed_liqs=True).liqs) == 9


@pytest.mark.parametrize("margin", ["isolated", "cross"])
@pytest.mark.parametrize("stop", [
    None, 0.02, pb.StopLoss(pct=0.01, trigger="mark"), pb.StopLoss(atr=2.0, trailing=True),
    [pb.StopLoss(pct=0.03), pb.BreakEven(after=0.01), pb.TimeStop(bars=30)]])
def test_batch_config_equals_prepare_run(market, stop, margin):
    """The config run_batch_nb builds for a run (config_with_nb: the group's config, the
    run's margin mode, its stop's row) is prepare_run's for that stop and margin, field by
    field, and of the same numba type (run_nb is not compiled again for it)."""
    import numba

    memo: dict = {}
    frame = pb.backtest(market, MaCross(fast=6, slow=48), leverage=5).targets
    kw = dict(leverage=5, stats_only=True, execution=True, _memo=memo)
    template = prepare_run(market, frame, stop=0.05, **kw)
    want = prepare_run(market, frame, stop=stop, margin=margin, **kw)
    table = stack_stop_fields([stop_fields(s, market, memo)
                               for s in (pb.StopLoss(atr=3.0), 0.05, stop)])
    got = config_at_nb(template.cfg, want.cfg.margin_mode, table, 2)
    for name, a, b in zip(want.cfg._fields, got, want.cfg):
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert a.dtype == b.dtype and a.shape == b.shape, name
        else:
            assert a == b and type(a) is type(b), name
    assert numba.typeof(want.cfg) in {sig.return_type for sig in config_at_nb.nopython_signatures}


def test_sweep_rows_equal_single_backtests_with_sizing_and_stops(market):
    """Every row of a sweep mixing stop kinds, sizing rules (prepared per combination),
    leverages and margin modes equals pb.backtest of that combination."""
    stops = [0.01, pb.StopLoss(atr=2.0, trailing=True),
             [pb.StopLoss(pct=0.03), pb.BreakEven(after=0.01), pb.TimeStop(bars=30)]]
    sizings = [None, pb.RiskPerTrade(0.02)]
    table = pb.sweep(market, MaCross, {"fast": 6, "slow": 48}, stop=stops, sizing=sizings,
                     leverage=[5, 20], margin=["isolated", "cross"], progress=False,
                     executor=pb.LocalExecutor(2, chunks_per_worker=2))
    assert len(table) == 3 * 2 * 2 * 2
    k = 0
    for stop in stops:
        for sizing in sizings:
            for leverage in (5, 20):
                for margin in ("isolated", "cross"):
                    direct = pb.backtest(market, MaCross(fast=6, slow=48), stop=stop,
                                         sizing=sizing, leverage=leverage, margin=margin,
                                         stats_only=True).stats_dict()
                    row = table.iloc[k]
                    for key, value in direct.items():
                        got = row[key]
                        assert got == value or (pd.isna(got) and pd.isna(value)), \
                            (k, key, got, value)
                    k += 1
