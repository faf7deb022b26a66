"""Engine benchmark: perpbt vs vectorbt ``Portfolio.from_orders`` vs a minimal numba loop.

One synthetic 1-minute series (default 1,000,000 bars, about 1.9 years) and one set of target
exposure changes feed every contender. Timings are interleaved (each repeat runs every
contender once) and the minimum over repeats is reported, in ns per bar. Also measured, in
subprocesses: the first-call compile time with an empty ``NUMBA_CACHE_DIR`` and a fresh
process's import + first call with that cache warm.

    NUMBA_CACHE_DIR=/tmp/nbc_bench python benchmarks/bench_engine.py [--bars N] [--repeat R]

See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from minimal_loop import MinimalConfig, run_minimal  # noqa: E402

SYMBOL = "BTC/USDT:USDT"
START_MS = 1_672_531_200_000  # 2023-01-01T00:00Z
TIMEFRAME_MS = 60_000
P0 = 30_000.0
SIGMA = 0.0004            # per-minute log-return volatility (about 1.5 % a day)
SEG = 300                 # bars between target changes
OFFSET = 50               # first target bar
SCHEDULE = np.array([8.0, -8.0, 3.0, 0.0])   # target exposures, cycled
FUNDING_EVERY = 480       # 8 h of 1-minute bars
EVENT_EVERY = 48          # crash events repeat every 48 segments (two of each kind)
SLIDE_SEGS = (5, 28)      # segments (mod EVENT_EVERY) with a slide against the position
GAP_SEGS = (12, 37)       # ... with a gap against it (one long, one short: price-neutral)
SLIDE_AT, SLIDE_LEN, SLIDE_MOVE = 60, 20, 0.045   # 4.5 % over 20 bars: hits the 3 % stop
GAP_AT, GAP_MOVE = 100, 0.0495  # an open 4.95 % beyond the entry: isolated at 20x
# (liquidation ~4 %) is liquidated and loses its margin (0.4 x equity at entry, exposure 8);
# cross survives, stops out at the open and loses 8 x 4.95 % + the fee: the same, so both
# margin modes stay solvent

LEVERAGE = 20.0
CAPITAL = 10_000.0
TAKER, MAKER, CLEARANCE = 0.0005, 0.0002, 0.005
STOP, TAKE = 0.03, 0.06
# ccxt fetch_leverage_tiers shape; Binance-style cum keeps maintenance margin continuous
TIERS = [
    dict(tier=1, minNotional=0, maxNotional=50_000, maintenanceMarginRate=0.005,
         maxLeverage=50, info={"cum": "0"}),
    dict(tier=2, minNotional=50_000, maxNotional=250_000, maintenanceMarginRate=0.01,
         maxLeverage=25, info={"cum": "250"}),
    dict(tier=3, minNotional=250_000, maxNotional=1_000_000, maintenanceMarginRate=0.02,
         maxLeverage=20, info={"cum": "2750"}),
    dict(tier=4, minNotional=1_000_000, maxNotional=5_000_000, maintenanceMarginRate=0.05,
         maxLeverage=10, info={"cum": "32750"}),
]
TARGETS = dict(kernel_ns=10.0, vbt_ratio=10.0, warm_start_s=1.5)
COUNT_KEYS = ("settlements", "stops", "liquidations", "tier_changes")


# ---------------------------------------------------------------------------- the series
def _simulate_series(n_bars, z_ret, z_hi, z_lo, funding_rate, exposure_at, out):
    """Fill ``out`` (8, T): open, high, low, close, mark_high, mark_low, drift, est. equity.

    A GBM whose drift is re-chosen at each target change so that a rough model of the account
    (isolated, fees, funding, stop/take, gap liquidation) stays near the initial capital: the
    run survives thousands of fee-paying orders and liquidations without going bust, and the
    position notional keeps crossing the 50k tier floor. Crash events (adverse slides that hit
    the stop, adverse gaps that liquidate) are placed in fixed segments.
    """
    log_target = np.log(CAPITAL)
    close_prev = P0
    wallet = CAPITAL
    qty = 0.0
    entry = 0.0
    margin = 0.0
    drift = 0.0
    side = 0.0
    for t in range(n_bars):
        seg = (t - OFFSET - 1) // SEG if t > OFFSET else -1
        pos = (t - OFFSET - 1) % SEG if t > OFFSET else -1
        in_event = seg >= 0 and pos >= 0
        slide = 0.0
        o = close_prev
        k = seg % EVENT_EVERY
        if in_event and (k == GAP_SEGS[0] or k == GAP_SEGS[1]) and pos == GAP_AT and qty != 0.0:
            o = entry * (1.0 - GAP_MOVE * side)
        if (in_event and (k == SLIDE_SEGS[0] or k == SLIDE_SEGS[1])
                and SLIDE_AT <= pos < SLIDE_AT + SLIDE_LEN):
            slide = -SLIDE_MOVE / SLIDE_LEN * side
        # the account model at the open: funding, gap liquidation / stop, then the order
        if qty != 0.0:
            rate = funding_rate[t]
            if not np.isnan(rate):
                wallet -= qty * o * rate
            liq = entry * (1.0 - 0.04) if qty > 0 else entry * (1.0 + 0.04)
            stop = entry * (1.0 - STOP) if qty > 0 else entry * (1.0 + STOP)
            if (qty > 0 and o <= liq) or (qty < 0 and o >= liq):
                wallet -= margin  # past bankruptcy: the isolated margin is lost
                qty = 0.0
            elif (qty > 0 and o <= stop) or (qty < 0 and o >= stop):
                wallet += qty * (o - entry) - TAKER * abs(qty) * o
                qty = 0.0
        tgt = exposure_at[t - 1] if t > 0 else np.nan
        if not np.isnan(tgt):
            equity = wallet + qty * (o - entry)
            new_qty = tgt * max(equity, 0.0) / o
            wallet += qty * (o - entry) - TAKER * abs(new_qty - qty) * o
            qty = new_qty
            entry = o
            margin = abs(qty) * o / LEVERAGE
            side = 1.0 if tgt > 0 else (-1.0 if tgt < 0 else 0.0)
            want = 0.005 + 0.3 * (log_target - np.log(max(equity, 1.0)))
            want = min(max(want, -0.05), 0.12)
            # only the +-8 legs steer (symmetric, so the price itself has no trend)
            drift = side * want / (abs(tgt) * SEG) if abs(tgt) >= 8.0 else 0.0
        r = drift + slide + SIGMA * z_ret[t]
        c = o * np.exp(r)
        top = max(o, c)
        bot = min(o, c)
        hi = top * np.exp(0.6 * SIGMA * abs(z_hi[t]))
        lo = bot * np.exp(-0.6 * SIGMA * abs(z_lo[t]))
        if qty != 0.0:  # intrabar: stop, then take (pessimistic enough for a controller)
            stop = entry * (1.0 - STOP) if qty > 0 else entry * (1.0 + STOP)
            take = entry * (1.0 + TAKE) if qty > 0 else entry * (1.0 - TAKE)
            if (qty > 0 and lo <= stop) or (qty < 0 and hi >= stop):
                wallet += qty * (stop - entry) - TAKER * abs(qty) * stop
                qty = 0.0
            elif (qty > 0 and hi >= take) or (qty < 0 and lo <= take):
                wallet += qty * (take - entry) - TAKER * abs(qty) * take
                qty = 0.0
        out[0, t] = o
        out[1, t] = hi
        out[2, t] = lo
        out[3, t] = c
        out[4, t] = top * np.exp(0.3 * SIGMA * abs(z_hi[t]))
        out[5, t] = bot * np.exp(-0.3 * SIGMA * abs(z_lo[t]))
        out[6, t] = drift
        out[7, t] = wallet + qty * (c - entry)
        close_prev = c


simulate_series_nb = njit(cache=True, error_model="numpy")(_simulate_series)


def target_exposures(n_bars: int) -> np.ndarray:
    """(T,) target exposure per bar, NaN = keep: SCHEDULE cycled every SEG bars."""
    exposure = np.full(n_bars, np.nan)
    bars = np.arange(OFFSET, n_bars, SEG)
    exposure[bars] = SCHEDULE[np.arange(len(bars)) % len(SCHEDULE)]
    return exposure


def make_instrument():
    from perpbt.instruments import Instrument, load_tiers

    table = load_tiers(TIERS, illustrative=True, symbol=SYMBOL, source="bench (illustrative)")
    return Instrument(SYMBOL, tiers=(table,), taker_fee=TAKER, maker_fee=MAKER,
                      clearance_fee=CLEARANCE)


def make_market(n_bars: int, seed: int = 7, jit: bool = True):
    """(market, exposure (T,)): the deterministic synthetic market and its target exposures."""
    from perpbt.market import Market

    rng = np.random.default_rng(seed)
    z_ret, z_hi, z_lo = rng.standard_normal((3, n_bars))
    funding = np.full(n_bars, np.nan)
    settle = np.arange(0, n_bars, FUNDING_EVERY)
    sign = np.where(rng.random(len(settle)) < 0.7, 1.0, -1.0)
    funding[settle] = sign * rng.uniform(0.0001, 0.001, len(settle))
    exposure = target_exposures(n_bars)
    out = np.empty((8, n_bars))
    (simulate_series_nb if jit else _simulate_series)(n_bars, z_ret, z_hi, z_lo, funding,
                                                       exposure, out)
    o, h, lo, c, mh, ml = out[:6]
    col = lambda a: np.ascontiguousarray(a.reshape(-1, 1))  # noqa: E731
    arrays = dict(open=col(o), high=col(h), low=col(lo), close=col(c),
                  volume=col(np.exp(rng.standard_normal(n_bars)) * 50.0),
                  mark_open=col(o), mark_high=col(mh), mark_low=col(ml), mark_close=col(c),
                  funding_rate=col(funding), funding_covered=np.ones((n_bars, 1), dtype=bool))
    time_ms = START_MS + TIMEFRAME_MS * np.arange(n_bars, dtype=np.int64)
    market = Market([SYMBOL], time_ms, TIMEFRAME_MS, arrays,
                    instruments={SYMBOL: make_instrument()})
    return market, exposure


# ---------------------------------------------------------------------------- contenders
@contextlib.contextmanager
def kernel_timer(sink: list):
    """Time ``run_nb`` alone inside ``pb.backtest`` (wraps the name perpbt.backtest imported)."""
    import perpbt  # noqa: F401

    bt = sys.modules["perpbt.backtest"]
    orig = bt.run_nb

    def timed(*args):
        t0 = time.perf_counter()
        orig(*args)
        sink.append(time.perf_counter() - t0)

    bt.run_nb = timed
    try:
        yield
    finally:
        bt.run_nb = orig


def perpbt_runner(market, targets, margin="isolated", stats_only=False):
    import perpbt as pb

    def run():
        return pb.backtest(market, targets, venue="binance", margin=margin, leverage=LEVERAGE,
                           initial_capital=CAPITAL, stop=STOP, take=TAKE, stats_only=stats_only)
    return run


def vbt_runner(market, exposure, engine):
    """from_orders on the same closes: each target change is an order at the next open.

    vectorbt has no leverage or margin: the target exposure is scaled to a target percent of
    value (exposure / 8, so +-1, 0.375, 0), which keeps the same orders at the same bars.
    The index is tz-naive: given perpbt's UTC index, vectorbt's shape checks turn it into an
    object array of Timestamps (about 7 s per million bars with pandas 3), which would be
    measuring pandas, not vectorbt.
    """
    import pandas as pd
    import vectorbt as vbt

    index = market.index.tz_localize(None)
    close = pd.Series(market.arrays["close"][:, 0], index=index, name=SYMBOL)
    price = pd.Series(market.arrays["open"][:, 0], index=index, name=SYMBOL)
    size = np.full(len(exposure), np.nan)
    size[1:] = exposure[:-1] / SCHEDULE.max()
    size = pd.Series(size, index=index, name=SYMBOL)

    def run():
        pf = vbt.Portfolio.from_orders(close, size, size_type="targetpercent", price=price,
                                       direction="both", fees=TAKER, init_cash=CAPITAL,
                                       freq="1min", engine=engine)
        return pf, pf.total_return()
    return run


def rust_available() -> bool:
    try:
        from vectorbt._engine import is_rust_available
    except ImportError:
        return False
    return bool(is_rust_available())


def minimal_runner(market, exposure):
    cfg = MinimalConfig(leverage=LEVERAGE, fee=TAKER, mmr=0.01, stop=STOP, take=TAKE,
                        initial_capital=CAPITAL)

    def run():
        return run_minimal(market.arrays, exposure, cfg)
    return run


# ---------------------------------------------------------------------------- subprocesses
CHILD = r"""
import json, sys, time
{prelude}
t0 = time.perf_counter()
import perpbt as pb
t1 = time.perf_counter()
sys.path.insert(0, {here!r})
import bench_engine as be
market, exposure = be.make_market({bars}, jit=False)
targets = be.targets_frame(market, exposure)
t2 = time.perf_counter()
res = be.perpbt_runner(market, targets)()
t3 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, call_s=t3 - t2, ready_s=(t1 - t0) + (t3 - t2),
                      fills=res.counts["fills"])))
"""


# perpbt's runtime install has no scipy (only vectorbt, a dev extra, pulls it in), and numba's
# first dispatch imports scipy.linalg (~0.2 s) when it is there, to probe for BLAS. This
# prelude makes a child see the runtime install's environment: scipy is not importable.
NO_SCIPY = r"""
import importlib.abc
class _NoScipy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoScipy())
"""


def run_child(cache_dir: str, bars: int = 2_000, no_scipy: bool = False,
              python: str | None = None) -> dict:
    """One fresh process: import perpbt, build a small market, run one backtest. Python's own
    bytecode cache is allowed (``PYTHONDONTWRITEBYTECODE`` dropped), as in any installed
    package; a warm start means both caches are warm. ``python`` runs the child in another
    interpreter, e.g. a venv holding only perpbt's runtime install."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = CHILD.format(here=str(HERE), bars=bars, prelude=NO_SCIPY if no_scipy else "")
    t0 = time.perf_counter()
    # cwd is the benchmarks folder: another interpreter then imports its own installed perpbt
    proc = subprocess.run([python or sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=str(HERE))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def measure_startup(repeat: int, runtime_python: str | None = None) -> dict:
    """Cold compile (empty cache) once, then ``max(repeat, 3)`` warm fresh processes in the
    dev environment and as many in the runtime install, interleaved. The runtime install is
    ``runtime_python`` (a venv with ``pip install perpbt`` only) when given, else this
    interpreter with scipy hidden (the only difference that matters at start-up)."""
    with tempfile.TemporaryDirectory(prefix="perpbt_nbc_") as cache_dir, \
            tempfile.TemporaryDirectory(prefix="perpbt_nbc_rt_") as runtime_cache:
        cold = run_child(cache_dir)
        if runtime_python:
            run_child(runtime_cache, python=runtime_python)  # its own cold compile
        warm, runtime = [], []
        for _ in range(max(repeat, 3)):
            warm.append(run_child(cache_dir))
            runtime.append(run_child(runtime_cache, python=runtime_python) if runtime_python
                           else run_child(cache_dir, no_scipy=True))
    pick = lambda runs, key: float(np.median([w[key] for w in runs]))  # noqa: E731
    return dict(cold_ready_s=cold["ready_s"], cold_wall_s=cold["wall_s"],
                cold_import_s=cold["import_s"], cold_call_s=cold["call_s"],
                warm_import_s=pick(warm, "import_s"), warm_call_s=pick(warm, "call_s"),
                warm_ready_s=pick(warm, "ready_s"), warm_wall_s=pick(warm, "wall_s"),
                warm_ready_min_s=min(w["ready_s"] for w in warm),
                runtime_import_s=pick(runtime, "import_s"),
                runtime_call_s=pick(runtime, "call_s"),
                runtime_ready_s=pick(runtime, "ready_s"),
                runtime_ready_min_s=min(w["ready_s"] for w in runtime))


# ---------------------------------------------------------------------------- main
def targets_frame(market, exposure):
    import pandas as pd

    return pd.DataFrame({SYMBOL: exposure}, index=market.index)


def _time_once(fn):
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-subprocess", action="store_true",
                    help="skip the cold-compile and warm-start subprocesses")
    ap.add_argument("--skip-vbt", action="store_true", help="skip vectorbt")
    ap.add_argument("--runtime-python", default=None,
                    help="python of a venv holding only perpbt's runtime install (no dev extra), "
                         "for the warm start; default: this python with scipy hidden")
    args = ap.parse_args(argv)
    n = args.bars

    t0 = time.perf_counter()
    import perpbt  # noqa: F401
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    market, exposure = make_market(n, seed=args.seed)
    t_data = time.perf_counter() - t0
    targets = targets_frame(market, exposure)
    n_changes = int(np.count_nonzero(~np.isnan(exposure)))
    print(f"perpbt engine benchmark: {n:,} bars x 1 symbol ({n * TIMEFRAME_MS / 86_400_000 / 365.25:.2f}"
          f" years of 1m), {n_changes:,} target changes, leverage {LEVERAGE:g}, stop {STOP:g}, "
          f"take {TAKE:g}, {args.repeat} interleaved repeats (min)")
    print(f"  import perpbt {t_import:.2f} s, synthetic market {t_data:.2f} s")

    kernel_times: list[float] = []
    contenders = {
        "perpbt isolated": perpbt_runner(market, targets, "isolated"),
        "perpbt cross": perpbt_runner(market, targets, "cross"),
        "perpbt isolated stats_only": perpbt_runner(market, targets, "isolated", True),
        "minimal loop": minimal_runner(market, exposure),
    }
    has_rust = False
    if not args.skip_vbt:
        contenders["vectorbt from_orders numba"] = vbt_runner(market, exposure, "numba")
        has_rust = rust_available()
        if has_rust:
            contenders["vectorbt from_orders rust"] = vbt_runner(market, exposure, "rust")

    first_call: dict[str, float] = {}
    results: dict[str, object] = {}
    with kernel_timer(kernel_times):
        for name, fn in contenders.items():  # warm-up: compile or load the cache
            first_call[name], results[name] = _time_once(fn)
        kernel_times.clear()
        times: dict[str, list] = {k: [] for k in contenders}
        kern: dict[str, list] = {k: [] for k in contenders if k.startswith("perpbt")}
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                kernel_times.clear()
                dt, _out = _time_once(fn)
                times[name].append(dt)
                if name in kern:
                    kern[name].append(kernel_times[-1])
                del _out

    ns = {k: min(v) / n * 1e9 for k, v in times.items()}
    ns_kernel = {k: min(v) / n * 1e9 for k, v in kern.items()}
    res_iso = results["perpbt isolated"]
    res_cross = results["perpbt cross"]
    counts = {k: int(res_iso.counts[k]) for k in res_iso.counts}
    counts_cross = {k: int(res_cross.counts[k]) for k in res_cross.counts}
    _eq, mini = results["minimal loop"]

    rows = [("perpbt kernel (run_nb), isolated", ns_kernel["perpbt isolated"]),
            ("perpbt kernel (run_nb), cross", ns_kernel["perpbt cross"]),
            ("perpbt kernel (run_nb), isolated stats_only", ns_kernel["perpbt isolated stats_only"]),
            ("perpbt end to end, isolated", ns["perpbt isolated"]),
            ("perpbt end to end, cross", ns["perpbt cross"]),
            ("perpbt end to end, isolated stats_only", ns["perpbt isolated stats_only"])]
    if not args.skip_vbt:
        rows.append(("vectorbt from_orders + total_return (numba)",
                     ns["vectorbt from_orders numba"]))
        if has_rust:
            rows.append(("vectorbt from_orders + total_return (rust)",
                         ns["vectorbt from_orders rust"]))
    rows.append(("minimal numba loop (benchmarks/minimal_loop.py)", ns["minimal loop"]))
    print()
    print(f"  {'contender':<50} {'ns/bar':>9} {'ms/run':>9}")
    for label, value in rows:
        print(f"  {label:<50} {value:9.2f} {value * n / 1e6:9.1f}")
    if not args.skip_vbt and not has_rust:
        print(f"  {'vectorbt from_orders (rust)':<50} {'not installed (pip install vectorbt[rust])':>9}")

    ratios = {
        "perpbt_kernel_over_minimal": ns_kernel["perpbt isolated"] / ns["minimal loop"],
        "perpbt_e2e_over_minimal": ns["perpbt isolated"] / ns["minimal loop"],
        "perpbt_e2e_over_kernel": ns["perpbt isolated"] / ns_kernel["perpbt isolated"],
    }
    if not args.skip_vbt:
        v = ns["vectorbt from_orders numba"]
        ratios["vbt_numba_over_perpbt_e2e"] = v / ns["perpbt isolated"]
        ratios["vbt_numba_over_perpbt_cross_e2e"] = v / ns["perpbt cross"]
        ratios["vbt_numba_over_perpbt_kernel"] = v / ns_kernel["perpbt isolated"]
        if has_rust:
            ratios["vbt_rust_over_perpbt_e2e"] = ns["vectorbt from_orders rust"] / ns["perpbt isolated"]
    print()
    print("  ratios")
    for k, v in ratios.items():
        print(f"  {k:<50} {v:9.2f}x")

    print()
    print(f"  counts, isolated: {counts}   bust={res_iso.bust}  "
          f"final equity {res_iso._buf.equity[-1]:,.0f}")
    print(f"  counts, cross:    {counts_cross}   bust={res_cross.bust}  "
          f"final equity {res_cross._buf.equity[-1]:,.0f}")
    print(f"  minimal loop: liquidations={mini[1]} stops+takes={mini[2]} settlements={mini[3]} "
          f"orders={mini[4]} final wallet {mini[0]:,.0f}")
    t_equity = []
    for _ in range(2):  # the first read also loads engine/outputs.py's kernel from the cache
        fresh = perpbt_runner(market, targets, "isolated")()
        t0 = time.perf_counter()
        _ = fresh.equity  # the per-bar account columns are rebuilt on first read
        t_equity.append(time.perf_counter() - t0)
        del fresh, _
    print(f"  Result.equity, first read of a result (wallet, margin used and ratio rebuilt from "
          f"the state log, per-symbol state forward-filled, the DataFrame built; not in the "
          f"timings above): {t_equity[1] * 1e3:.1f} ms = {t_equity[1] / n * 1e9:.1f} ns/bar "
          f"({t_equity[0] * 1e3:.0f} ms the first time in this process)")
    print("  first call in this process (s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in first_call.items()))

    startup = {}
    if not args.skip_subprocess:
        startup = measure_startup(args.repeat, args.runtime_python)
        print()
        print(f"  first-call compile, empty NUMBA_CACHE_DIR: import {startup['cold_import_s']:.2f} s"
              f" + first backtest {startup['cold_call_s']:.2f} s = {startup['cold_ready_s']:.2f} s "
              f"(process wall {startup['cold_wall_s']:.2f} s)")
        print(f"  fresh process, warm cache (median of {max(args.repeat, 3)}): import "
              f"{startup['warm_import_s']:.2f} s + first backtest {startup['warm_call_s']:.2f} s = "
              f"{startup['warm_ready_s']:.2f} s (min {startup['warm_ready_min_s']:.2f} s; "
              f"process wall {startup['warm_wall_s']:.2f} s)")
        where = (f"in {args.runtime_python}" if args.runtime_python
                 else "this python with scipy hidden")
        print(f"  the same in perpbt's runtime install ({where}; scipy comes with vectorbt): "
              f"import {startup['runtime_import_s']:.2f} s + first backtest "
              f"{startup['runtime_call_s']:.2f} s = {startup['runtime_ready_s']:.2f} s (min "
              f"{startup['runtime_ready_min_s']:.2f} s)")

    checks = {
        "kernel < 10 ns/bar": ns_kernel["perpbt isolated"] < TARGETS["kernel_ns"],
        "counts > 0 (settlements, stops, liquidations, tier changes)":
            all(counts[k] > 0 for k in COUNT_KEYS),
        "not bust": not res_iso.bust,
    }
    if not args.skip_vbt:
        checks["end to end >= 10x faster than vectorbt from_orders"] = (
            ratios["vbt_numba_over_perpbt_e2e"] >= TARGETS["vbt_ratio"])
    if startup:
        where = "a venv with perpbt only" if args.runtime_python else "scipy hidden"
        checks[f"fresh process ready < 1.5 s (warm cache, perpbt's install: {where})"] = (
            startup["runtime_ready_s"] < TARGETS["warm_start_s"])
    print()
    print("  targets")
    for k, ok in checks.items():
        print(f"  [{'met' if ok else 'MISSED'}] {k}")
    if startup:
        # not perpbt's install: the dev extra's vectorbt brings scipy, which numba's first
        # dispatch imports to probe for BLAS in every numba program
        print(f"  [info] the same in this environment, scipy installed: "
              f"{startup['warm_ready_s']:.2f} s (numba's BLAS probe imports scipy)")

    return dict(bars=n, ns_per_bar=ns, ns_per_bar_kernel=ns_kernel, ratios=ratios,
                equity_read_ms=t_equity[1] * 1e3,
                counts=counts, counts_cross=counts_cross, bust=res_iso.bust,
                first_call_s=first_call, startup=startup, targets_met=checks,
                vbt_rust_installed=has_rust)


if __name__ == "__main__":
    main()
