"""engine/batch.py: several runs in one jitted call give each run's own numbers.

A batch reuses one position state, scratch and set of record buffers run after run (reset
inside the call). Each run's account, counts and stats must equal the same combination run
alone through pb.backtest, bit for bit, whatever the runs before it left behind; a run that
stops on an error is run again alone by pb.sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perpbt as pb
from perpbt.backtest import (allocate_buffers, buffer_sizes, execute_run, prepare_run,
                             reused_buffers)
from perpbt.engine.batch import (B_BEYOND, B_CLOSED, B_DOWNSIDE, B_FEES, B_FINAL, B_MEAN,
                                 B_MIN_DIST, B_RECEIVED, B_SD, B_WINS, N_BATCH_OUT,
                                 reset_scratch_nb, run_batch_nb)
from perpbt.engine.state import (A_BUST, A_CLEARANCE, A_INSURANCE, A_MAX_DD, C_ERROR, C_LIQS,
                                 C_TRADES, N_ACCT, N_CNT, new_position_state, new_scratch,
                                 position_template)
from perpbt.enums import ErrorCode, MarginMode
from perpbt.market import Market
from perpbt.result import Result, stats_row
from perpbt.sweep import config_type

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
    n_sym = market.n_symbols
    ps = new_position_state(n_sym)
    scratch = new_scratch(n_sym, first.ins.tier_floor.shape[2])
    for arr in (*ps, *scratch):
        arr[...] = 3
    sizes = buffer_sizes(first.changes, first.mkt, False, first.insts,
                         first.cfg.margin_mode == MarginMode.cross)
    buf = reused_buffers(None, sizes)
    from numba.typed import List

    cfgs = List.empty_list(config_type(first.cfg))
    for p in preps:
        cfgs.append(p.cfg)
    accts = np.zeros((len(preps), N_ACCT))
    cnts = np.zeros((len(preps), N_CNT), dtype=np.int64)
    out = np.empty((len(preps), N_BATCH_OUT))
    float_init, int_init = position_template(n_sym)
    run_batch_nb(first.mkt, first.ins, cfgs, first.values, first.order_bars, ps, ps.qty.base,
                 ps.trade_id.base, float_init, int_init, scratch, buf, buf.liqs.view(np.uint8),
                 accts, cnts, out)
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
    monkeypatch.setattr(sweep_mod, "reused_buffers", lambda pool, sizes: allocate_buffers(sizes))
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


def test_a_config_of_another_numba_type_runs_alone(market, monkeypatch):
    """A config that does not convert to the group's numba type (here a float32 stop
    array) leaves the batch and runs alone; the others run batched."""
    frame = pb.backtest(market, MaCross(fast=6, slow=48)).targets
    job = sweep_mod.SweepJob(market, [frame], ["MaCross"], {"stats_only": True})
    combos = [sweep_mod.Combo(i, 0, stop, 10, "isolated", "binance")
              for i, stop in enumerate([None, 0.01, 0.02])]
    group = [(c, sweep_mod._prepare(job, c)) for c in combos]
    odd = group[1][1]
    group[1] = (group[1][0], odd._replace(cfg=odd.cfg._replace(
        stop_pct=odd.cfg.stop_pct.astype(np.float32))))
    alone = []
    monkeypatch.setattr(sweep_mod, "run_combo",
                        lambda job, combo: alone.append(combo.index) or {"alone": True})
    sizes = sweep_mod.batch_key(group[0][1])[-1]
    part = dict(sweep_mod.run_batch(job, group, sizes))
    assert alone == [1] and part[1] == {"alone": True}
    for i in (0, 2):
        direct = pb.backtest(market, frame, stop=combos[i].stop, leverage=10,
                             stats_only=True).stats_dict()
        assert part[i].keys() == direct.keys()
        for key, value in direct.items():
            assert part[i][key] == value or (np.isnan(part[i][key]) and np.isnan(value)), key


def test_config_list_is_reused_per_thread_and_cleared(market):
    """pb.sweep's typed List of configs: one per thread and config type, emptied on reuse
    (a new one costs about 0.5 ms, most of the Python around a batched call)."""
    import threading

    memo: dict = {}
    frame = pb.backtest(market, MaCross(fast=6, slow=48), leverage=5).targets
    prep = prepare_run(market, frame, leverage=5, stats_only=True, _memo=memo)
    pool: dict = {}
    first = sweep_mod.config_list(pool, prep.cfg)
    first.append(prep.cfg)
    first.append(prep.cfg)
    again = sweep_mod.config_list(pool, prep.cfg)
    assert again is first and len(again) == 0
    other: list = []
    worker = threading.Thread(target=lambda: other.append(sweep_mod.config_list(pool,
                                                                                prep.cfg)))
    worker.start()
    worker.join()
    assert other[0] is not first and len(other[0]) == 0
    float32 = prep.cfg._replace(stop_pct=prep.cfg.stop_pct.astype(np.float32))
    assert sweep_mod.config_list(pool, float32) is not first  # another numba type


@pytest.mark.parametrize("stop", [
    None, 0.02, pb.StopLoss(pct=0.01, trigger="mark"), pb.StopLoss(atr=2.0, trailing=True),
    [pb.StopLoss(pct=0.03), pb.BreakEven(after=0.01), pb.TimeStop(bars=30)]])
def test_with_stop_equals_prepare_run(market, stop):
    """pb.sweep prepares a combination that differs from an earlier one only in its stop
    with backtest.with_stop: every config field, the settings and the rest of the
    preparation are what prepare_run gives for that stop."""
    from perpbt.backtest import with_stop

    memo: dict = {}
    frame = pb.backtest(market, MaCross(fast=6, slow=48), leverage=5).targets
    kw = dict(leverage=5, stats_only=True, execution=True, _memo=memo)
    template = prepare_run(market, frame, stop=0.05, **kw)
    got = with_stop(template, market, stop, memo)
    want = prepare_run(market, frame, stop=stop, **kw)
    for name, a, b in zip(want.cfg._fields, got.cfg, want.cfg):
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert a.dtype == b.dtype, name
        else:
            assert a == b and type(a) is type(b), name
    assert got.settings == want.settings
    for name in ("mkt", "ins", "values", "order_bars", "targets"):
        assert getattr(got, name) is getattr(want, name), name  # the memo's, shared
    assert got.changes == want.changes and got.caps is want.caps is None


def test_with_stop_refuses_a_sizing_rule(market):
    from perpbt.backtest import with_stop

    frame = pb.backtest(market, MaCross(fast=6, slow=48), leverage=5).targets
    prep = prepare_run(market, frame, leverage=5, stop=0.02, stats_only=True,
                       sizing=pb.sizing.RiskPerTrade(0.01))
    with pytest.raises(ValueError, match="sizing rule"):
        with_stop(prep, market, 0.03)
