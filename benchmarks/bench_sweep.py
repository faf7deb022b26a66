"""Sweep benchmark: 1,000 combinations (strategy parameter x stop x leverage) on one
100,000-bar series, stats only, through ``pb.sweep`` and through vectorbt; then the speed-up of
``pb.sweep`` from one core to two.

    NUMBA_CACHE_DIR=/tmp/nbc_bench python benchmarks/bench_sweep.py [--combos 1000]
        [--bars 100000] [--repeat 15]

The series is ``bench_engine.make_market(bars)`` (1-minute bars, funding every 8 h, an
illustrative 4-tier table). The strategy is ``strategies/ma_cross.py`` (resolved by name as
``perpbt run ma_cross`` does) with ``slow=240`` and ``exposure=3``; the grid is ``fast`` x
``stop`` (percent of entry) x ``leverage``, about the cube root of ``--combos`` values each.
Every perpbt mechanism is on: funding (strict), tiered maintenance, stops, liquidation (the
venue's policy) and the execution model (``execution=True``).

vectorbt runs ``Portfolio.from_signals`` once over all the columns: the same MaCross entries
(long and short, edge-triggered, shifted one bar so they fill at the next open), ``sl_stop``
per column, taker fee, each entry with all the column's cash (vectorbt has no leverage, so
each leverage value is one more identical column: the same simulation work per combination),
``total_return`` per column. vectorbt does less per bar (no funding, tiers, liquidation or
execution model), so the comparison favours it.
The signal frames are built outside the timed region on both sides except that ``pb.sweep``
computes the strategy's signals itself (once per ``fast`` value; a few ms each).

Throughput is ``pb.sweep``'s default executor, ``"local"``: threads in this process, one per
core (the kernels release the GIL); the 1-thread figure and its ratio are printed too.

Every contender runs once per round (1 and 2 threads in alternating order), ``--repeat``
interleaved rounds (vectorbt, about 20 s a call, in the first ``--vbt-repeat``), so a slow
phase of this shared machine hits them alike; the figures are medians, the ratios ratios of
medians (and best against best). Core scaling: ``pb.LocalExecutor(max_workers=1)`` against
the default (2 threads here, sharing the market), and ``pb.ProcessExecutor(max_workers=2)``
(processes; the pool is created by each sweep, so its start-up is part of the time, as a
user pays it). Two references are measured in every round too and printed beside each
round's speed-up: the engine alone (the sweep's own engine calls, recorded once, replayed
on 1 and on 2 threads with no Python between them: ``EngineReplay``) and two of the
machine: numba multiply-adds on 2 threads against serially (``ArithmeticCheck``: about 2x
on two cores, less when the vCPUs land on hyper-threads of one core) and pure-Python busy
loops in 2 processes (``MachineCheck``); the host's other tenants move all of them from
about 1.1x to 2x within minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_engine as be  # noqa: E402

SLOW = 240          # bars (4 h of 1-minute bars)
EXPOSURE = 3.0      # |notional| / equity
TARGETS = dict(vbt_ratio=30.0, two_core_speedup=1.7)


def axes_for(combos: int) -> tuple[list[int], list[float], list[float]]:
    """(fast values, stops, leverages) whose product is about ``combos`` (cube root each)."""
    n = max(1, round(combos ** (1.0 / 3.0)))
    n_lev = max(1, math.ceil(combos / (n * n)))
    fasts = [int(v) for v in np.linspace(10, 120, n).round()] if n > 1 else [30]
    fasts = sorted(set(fasts))
    stops = [float(v) for v in np.round(np.linspace(0.005, 0.05, n), 4)] if n > 1 else [0.02]
    levs = [float(v) for v in np.round(np.linspace(5, 50, n_lev), 2)] if n_lev > 1 else [20.0]
    return fasts, stops, levs


def ma_cross_class():
    from perpbt.cli import load_strategy_class, resolve_strategy_path

    return load_strategy_class(*resolve_strategy_path("ma_cross"))


def sweep_runner(market, strategy_cls, fasts, stops, levs, executor):
    import perpbt as pb

    def run():
        return pb.sweep(market, strategy_cls, {"fast": fasts, "slow": SLOW, "exposure": EXPOSURE},
                        stop=stops, leverage=levs, margin="isolated", venue="binance",
                        initial_capital=be.CAPITAL, execution=True, funding="strict",
                        executor=executor, progress=False)
    return run


def vbt_inputs(market, strategy_cls, fasts, stops, levs):
    """(close, open, entries, short_entries, sl_stop) with one column per combination, in
    pb.sweep's row order (fast, then stop, then leverage; the last varies fastest)."""
    index = market.index.tz_localize(None)  # see bench_engine.vbt_runner
    T = len(index)
    n_inner = len(stops) * len(levs)
    n_cols = len(fasts) * n_inner
    entries = np.zeros((T, n_cols), dtype=bool)
    short_entries = np.zeros((T, n_cols), dtype=bool)
    for k, fast in enumerate(fasts):
        tgt = strategy_cls(fast=fast, slow=SLOW, exposure=EXPOSURE).signals(market)
        from perpbt.backtest import target_frame

        frame, _ = target_frame(market, tgt)
        x = frame.iloc[:, 0].to_numpy(dtype=float)
        # pb: the target at t fills at t+1's open and only a change of target is an order
        prev = np.concatenate(([np.nan], x[:-1]))
        changed = ~np.isnan(x) & ~(x == prev)
        long_e = np.zeros(T, dtype=bool)
        short_e = np.zeros(T, dtype=bool)
        long_e[1:] = (changed & (x > 0))[:-1]
        short_e[1:] = (changed & (x < 0))[:-1]
        cols = slice(k * n_inner, (k + 1) * n_inner)
        entries[:, cols] = long_e[:, None]
        short_entries[:, cols] = short_e[:, None]
    sl = np.array([s for s in stops for _ in levs] * len(fasts), dtype=float)[None, :]
    close = market.arrays["close"][:, 0]
    opens = market.arrays["open"][:, 0]
    return index, close, opens, entries, short_entries, sl


def vbt_runner(market, strategy_cls, fasts, stops, levs):
    import vectorbt as vbt

    index, close, opens, entries, short_entries, sl = vbt_inputs(market, strategy_cls, fasts,
                                                                 stops, levs)
    cols = pd.RangeIndex(entries.shape[1], name="combo")
    close_df = pd.DataFrame(np.broadcast_to(close[:, None], entries.shape), index=index,
                            columns=cols)
    price_df = pd.DataFrame(np.broadcast_to(opens[:, None], entries.shape), index=index,
                            columns=cols)
    entries_df = pd.DataFrame(entries, index=index, columns=cols)
    short_df = pd.DataFrame(short_entries, index=index, columns=cols)

    def run():
        pf = vbt.Portfolio.from_signals(close_df, entries_df, short_entries=short_df,
                                        price=price_df, sl_stop=sl, fees=be.TAKER,
                                        init_cash=be.CAPITAL, freq="1min")
        return pf.total_return()
    return run


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


class MachineCheck:
    """Pure-Python busy loops: serial time / time in a pool of ``workers`` processes (what
    the machine itself gives from more cores at that moment, the ceiling for any executor).
    The pool starts once; each call is one measurement (about 0.5 s), so every round of
    the benchmark gets its own ceiling (the host's other tenants come and go)."""

    def __init__(self, workers: int, n: int = 3_000_000) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.workers, self.n = workers, n
        self.pool = ProcessPoolExecutor(workers)
        list(self.pool.map(_burn, [1_000] * workers))  # start the workers outside the timing

    def __call__(self) -> float:
        t0 = time.perf_counter()
        list(self.pool.map(_burn, [self.n] * self.workers))
        par = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(self.workers):
            _burn(self.n)
        return (time.perf_counter() - t0) / par

    def close(self) -> None:
        self.pool.shutdown()


def thread_speedup(work, parts) -> float:
    """Time of ``work(part)`` for each part one after another / their time on one thread
    each, started together."""
    import threading

    t0 = time.perf_counter()
    for part in parts:
        work(part)
    serial = time.perf_counter() - t0
    threads = [threading.Thread(target=work, args=(part,)) for part in parts]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return serial / (time.perf_counter() - t0)


def _multiply_adds(values: np.ndarray, reps: int) -> float:
    total = 0.0
    for _ in range(reps):
        for i in range(values.shape[0]):
            total += values[i] * values[i] * 1.0001 + values[i]
    return total


class ArithmeticCheck:
    """A numba loop that keeps a core's vector units busy (multiply-adds over a 4 kB array,
    in L1: no memory traffic, nothing shared): serial time of ``workers`` calls / their
    time on ``workers`` threads. About 2x on two cores of their own; below it when the
    vCPUs share those units (hyper-threads of one core) or run vector code at lower clocks
    when both are busy, which cannot be told apart from inside the VM. Not a ceiling for
    the engine (scalar, branchy code): its replay reached 2x in runs where this stayed
    near 1.7x."""

    def __init__(self, workers: int, reps: int = 600_000) -> None:
        from numba import njit

        self.kernel = njit(nogil=True, fastmath=True)(_multiply_adds)
        self.values = [np.random.default_rng(w).random(512) for w in range(workers)]
        self.reps = reps
        for v in self.values:
            self.kernel(v, 1)  # compile outside the timing

    def __call__(self) -> float:
        return thread_speedup(lambda values: self.kernel(values, self.reps), self.values)


class EngineReplay:
    """The engine calls of one sweep on 1 thread (pb.sweep's ``run_batch_nb`` calls,
    recorded), replayed with no Python between them: serial time / time with the calls
    split over ``workers`` threads, each with its own position state, scratch and record
    buffers. What the second core gives the engine's own work at that moment, the part of
    a sweep that Python cannot slow down."""

    def __init__(self, sweep_one, workers: int) -> None:
        import copy

        from perpbt.engine.state import new_position_state, new_scratch

        sweep_mod = sys.modules["perpbt.sweep"]
        kernel = sweep_mod.run_batch_nb
        calls: list = []

        def record(*args):
            calls.append(args)  # its arrays are the call's own or the thread's (replaced)
            return kernel(*args)

        sweep_mod.run_batch_nb = record
        try:
            sweep_one()
        finally:
            sweep_mod.run_batch_nb = kernel
        self.kernel, self.workers = kernel, workers
        self.lanes = []
        for w in range(workers):
            first = calls[0]
            n_sym = first[8].qty.shape[0]
            ps = new_position_state(n_sym)
            scratch = new_scratch(n_sym, first[1].tier_floor.shape[2])
            bufs: dict = {}
            lane = []
            # run_batch_nb's arguments: the state 8-10, scratch 13, buffers 14-15,
            # accounts 16, counts 17, stats 18 (this lane's own)
            for args in calls[w::workers]:
                a = list(args)
                buf = bufs.setdefault(id(a[14]), copy.deepcopy(a[14]))
                a[8:11] = [ps, ps.qty.base, ps.trade_id.base]
                a[13:19] = [scratch, buf, buf.liqs.view(np.uint8), np.zeros_like(a[16]),
                            np.zeros_like(a[17]), np.empty_like(a[18])]
                lane.append(a)
            self.lanes.append(lane)

    def _run(self, lane) -> None:
        for a in lane:
            a[16][...] = 0.0  # accounts and counts start at zero (run_batch_nb's contract)
            a[17][...] = 0
            self.kernel(*a)

    def __call__(self) -> float:
        return thread_speedup(self._run, self.lanes)


timed = be._time_once  # (seconds, result) of one call after a gc pass


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--combos", type=int, default=1_000)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-vbt", action="store_true")
    ap.add_argument("--vbt-repeat", type=int, default=3,
                    help="rounds that also run vectorbt (about 20 s each at the defaults)")
    args = ap.parse_args(argv)

    import perpbt as pb

    market, _ = be.make_market(args.bars)
    strategy_cls = ma_cross_class()
    fasts, stops, levs = axes_for(args.combos)
    n = len(fasts) * len(stops) * len(levs)
    print(f"sweep benchmark: {n:,} combinations ({len(fasts)} fast x {len(stops)} stops x "
          f"{len(levs)} leverages) on {args.bars:,} bars, stats only; funding, tiers, stops, "
          f"liquidations and the execution model on")
    out: dict = {"combos": n, "bars": args.bars}

    one = sweep_runner(market, strategy_cls, fasts, stops, levs, pb.LocalExecutor(1))
    local = sweep_runner(market, strategy_cls, fasts, stops, levs, "local")  # default
    procs = sweep_runner(market, strategy_cls, fasts, stops, levs,
                         pb.ProcessExecutor(max_workers=args.workers))
    sweep_runner(market, strategy_cls, fasts[:1], stops[:1], levs[:1], "local")()  # compile
    vbt = None if args.skip_vbt else vbt_runner(market, strategy_cls, fasts, stops, levs)
    if vbt is not None:
        out["vbt_first_s"] = timed(vbt)[0]  # compiles vectorbt's kernels for these layouts

    # interleaved rounds: every contender once per round, so a slow phase of this shared
    # machine hits them alike; vectorbt (about 20 s a call) in the first --vbt-repeat rounds
    t1, t2, tp, tv, ceiling, engine, arith = [], [], [], [], [], [], []
    frames = []
    check = MachineCheck(args.workers)
    replay = EngineReplay(one, args.workers)
    arithmetic = ArithmeticCheck(args.workers)
    try:
        for r in range(args.repeat):
            # 1 thread first in even rounds, 2 threads first in odd ones: a machine that
            # drifts faster or slower within a round biases neither side
            for runner in ((one, local) if r % 2 == 0 else (local, one)):
                t, result = timed(runner)
                if runner is one:
                    t1.append(t)
                    frame = result
                else:
                    t2.append(t)
                    frames.append(result)
            tp.append(timed(procs)[0])
            ceiling.append(check())
            engine.append(replay())
            arith.append(arithmetic())
            if vbt is not None and r < args.vbt_repeat:
                tv.append(timed(vbt)[0])
    finally:
        check.close()
    assert all(f.equals(frame) for f in frames), "1 thread and the default executor differ"
    med = statistics.median
    out.update(perpbt_one_s=med(t1), perpbt_one_runs_per_s=n / med(t1), perpbt_s=med(t2),
               perpbt_runs_per_s=n / med(t2), liquidations=int(frame["liquidations"].sum()),
               threads=os.cpu_count(), one_core_s=med(t1), two_core_s=med(t2),
               process_s=med(tp))
    rounds = f"median of {args.repeat} interleaved rounds"
    print(f"perpbt pb.sweep, 1 thread             {med(t1):8.2f} s  {n / med(t1):10,.1f} runs/s"
          f"  (min {min(t1):.2f}, max {max(t1):.2f}; {out['liquidations']:,} liquidations in "
          f"all runs)")
    print(f"perpbt pb.sweep, default ({os.cpu_count()} threads)  {med(t2):8.2f} s  "
          f"{n / med(t2):10,.1f} runs/s  (min {min(t2):.2f}, max {max(t2):.2f})")
    print(f"perpbt pb.sweep, {args.workers} processes         {med(tp):8.2f} s  "
          f"{n / med(tp):10,.1f} runs/s  (pool start-up included)")
    if tv:
        out.update(vbt_s=med(tv), vbt_runs_per_s=n / med(tv), ratio=med(tv) / med(t2),
                   ratio_one_thread=med(tv) / med(t1), ratio_best=min(tv) / min(t2),
                   ratio_median=med(tv) / med(t2), ratio_one_thread_median=med(tv) / med(t1))
        print(f"vectorbt from_signals sl_stop         {med(tv):8.2f} s  "
              f"{n / med(tv):10,.1f} runs/s  (min {min(tv):.2f}, max {max(tv):.2f} over "
              f"{len(tv)} rounds; the first call, compiling, took {out['vbt_first_s']:.2f} s)")
        print(f"throughput ratio perpbt / vectorbt ({rounds}): {out['ratio']:.2f}x with "
              f"pb.sweep's default executor, {out['ratio_one_thread']:.2f}x on 1 thread; "
              f"best against best {out['ratio_best']:.2f}x (target {TARGETS['vbt_ratio']:.0f}x)")
    speedups = [a / b for a, b in zip(t1, t2)]
    proc_speedups = [a / b for a, b in zip(t1, tp)]
    out.update(speedup=med(speedups), speedup_min=min(speedups), speedup_max=max(speedups),
               process_speedup=med(proc_speedups))
    print(f"speed-up 1 -> {args.workers} threads ({rounds}): {out['speedup']:.2f}x (min "
          f"{out['speedup_min']:.2f}, max {out['speedup_max']:.2f}; target "
          f"{TARGETS['two_core_speedup']:.1f}x)")
    print(f"the same with {args.workers} processes (pb.ProcessExecutor, pool start-up "
          f"included): {out['process_speedup']:.2f}x (min {min(proc_speedups):.2f}, max "
          f"{max(proc_speedups):.2f})")
    out.update(machine_speedup=med(ceiling), machine_speedup_min=min(ceiling),
               machine_speedup_max=max(ceiling),
               speedups=[round(x, 3) for x in speedups], ceilings=[round(x, 3) for x in ceiling])
    print(f"machine check ({rounds}): pure-Python busy loops in {args.workers} processes run "
          f"{out['machine_speedup']:.2f}x faster than serially (min {min(ceiling):.2f}, max "
          f"{max(ceiling):.2f}; the ceiling on this machine at that moment)")
    out.update(engine_speedup=med(engine), engine_speedups=[round(x, 3) for x in engine])
    print(f"engine only ({rounds}): the sweep's engine calls replayed with no Python between "
          f"them run {out['engine_speedup']:.2f}x faster on {args.workers} threads than on 1 "
          f"(min {min(engine):.2f}, max {max(engine):.2f})")
    out.update(arithmetic_speedup=med(arith), arithmetic_speedups=[round(x, 3) for x in arith])
    print(f"arithmetic check ({rounds}): a numba loop of vectorized multiply-adds in L1 runs "
          f"{out['arithmetic_speedup']:.2f}x faster on {args.workers} threads than serially "
          f"(min {min(arith):.2f}, max {max(arith):.2f}; about 2x on two cores of their own)")
    print(f"per round, 1 -> {args.workers} threads (engine only; arithmetic; busy loops): "
          + ", ".join(f"{a:.2f}x ({e:.2f}x; {m:.2f}x; {c:.2f}x)"
                      for a, e, m, c in zip(speedups, engine, arith, ceiling)))
    return out


if __name__ == "__main__":
    main()
