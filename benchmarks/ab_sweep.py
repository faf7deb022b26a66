"""A/B of two perpbt checkouts on bench_sweep's 1,000-combination sweep, interleaved.

    python benchmarks/ab_sweep.py TREE_A TREE_B [--rounds 20] [--cache-a DIR] [--cache-b DIR]

Each checkout runs in its own warm worker process (its tree first on ``PYTHONPATH``, its own
numba cache); the rounds alternate A and B, 1 thread then 2 threads, so a slow phase of this
shared machine hits both alike. Prints each side's medians and the per-round ratio B / A of
the times (below 1: B is faster), and checks that both sweeps give the same frame. Two
copies of the package in one process do not work for this: the second one loaded ran about
4x slower here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = """
import os, sys, time
tree = os.path.dirname(sys.argv[1])
# "python -c" puts the current directory first on sys.path: started from another
# checkout, the worker would import that one's perpbt (PYTHONPATH comes after it)
sys.path[:0] = [sys.argv[1], tree]
import bench_sweep as bs, bench_engine as be
import perpbt as pb
if not os.path.realpath(pb.__file__).startswith(os.path.realpath(tree) + os.sep):
    sys.exit(f"ab_sweep: perpbt came from {pb.__file__}, not from {tree}")
market, _ = be.make_market(100_000)
strategy_cls = bs.ma_cross_class()
fasts, stops, levs = bs.axes_for(1000)
runs = {"1": bs.sweep_runner(market, strategy_cls, fasts, stops, levs, pb.LocalExecutor(1)),
        "2": bs.sweep_runner(market, strategy_cls, fasts, stops, levs, "local")}
runs["1"]().to_pickle(sys.argv[2])
runs["2"]()
print(pb.__file__, flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    runs[line.strip()]()
    print(time.perf_counter() - t0, flush=True)
"""


def start_worker(tree: Path, cache: str, frame_path: str) -> subprocess.Popen:
    """A warm worker for ``tree``: it has run each sweep once and reports its perpbt path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_CACHE_DIR": cache}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tree / "benchmarks"), frame_path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    print(f"{tree}: perpbt from {proc.stdout.readline().strip()}", flush=True)
    return proc


def timed(proc: subprocess.Popen, threads: str) -> float:
    proc.stdin.write(threads + "\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree_a", type=Path)
    ap.add_argument("tree_b", type=Path)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cache-a", default=None, help="numba cache of A (default: a new one)")
    ap.add_argument("--cache-b", default=None, help="numba cache of B (default: a new one)")
    args = ap.parse_args(argv)

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        caches = {"A": args.cache_a or f"{tmp}/nc_a", "B": args.cache_b or f"{tmp}/nc_b"}
        trees = {"A": args.tree_a.resolve(), "B": args.tree_b.resolve()}
        workers = {k: start_worker(trees[k], caches[k], f"{tmp}/{k}.pkl") for k in "AB"}
        same = pd.read_pickle(f"{tmp}/A.pkl").equals(pd.read_pickle(f"{tmp}/B.pkl"))
        print(f"the same sweep frame from A and B: {same}")
        times = {(k, n): [] for k in "AB" for n in "12"}
        try:
            for r in range(args.rounds):
                for threads in "12":
                    for k in ("AB" if r % 2 == 0 else "BA"):
                        times[(k, threads)].append(timed(workers[k], threads))
        finally:
            for proc in workers.values():
                proc.stdin.close()
                proc.wait()
    med = statistics.median
    out: dict = {"same_frame": same}
    for k in "AB":
        one, two = times[(k, "1")], times[(k, "2")]
        print(f"{k}: 1 thread {med(one) * 1e3:.0f} ms (min {min(one) * 1e3:.0f}), 2 threads "
              f"{med(two) * 1e3:.0f} ms (min {min(two) * 1e3:.0f}), speed-up "
              f"{med(one) / med(two):.2f}")
    for threads in "12":
        ratios = [b / a for a, b in zip(times[("A", threads)], times[("B", threads)])]
        out[f"ratio_{threads}"] = med(ratios)
        print(f"B / A time on {threads} thread(s), per round: median {med(ratios):.3f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} rounds)")
    return out


if __name__ == "__main__":
    main()
