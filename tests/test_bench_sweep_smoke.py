"""Smoke test of benchmarks/bench_sweep.py: a tiny run prints every figure it reports."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_sweep_smoke(capsys):
    pytest.importorskip("vectorbt")
    sys.path.insert(0, str(BENCH))
    try:
        import bench_sweep
    finally:
        sys.path.remove(str(BENCH))
    out = bench_sweep.main(["--combos", "8", "--bars", "2000", "--repeat", "2",
                            "--vbt-repeat", "1"])
    printed = capsys.readouterr().out
    for line in ("sweep benchmark: 8 combinations", "perpbt pb.sweep, 1 thread",
                 "perpbt pb.sweep, default (", "perpbt pb.sweep, 2 processes",
                 "vectorbt from_signals sl_stop", "throughput ratio perpbt / vectorbt (median",
                 "speed-up 1 -> 2 threads (median", "the same with 2 processes",
                 "machine check (median", "engine only (median", "arithmetic check (median",
                 "per round, 1 -> 2 threads (engine only; arithmetic; busy loops): "):
        assert line in printed, line
    assert out["combos"] == 8
    for key in ("perpbt_runs_per_s", "perpbt_one_runs_per_s", "vbt_runs_per_s", "ratio",
                "ratio_one_thread", "ratio_best", "ratio_median", "ratio_one_thread_median",
                "speedup", "speedup_min", "speedup_max", "process_speedup", "machine_speedup",
                "machine_speedup_min", "machine_speedup_max", "engine_speedup",
                "arithmetic_speedup"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    # one of each per round
    assert (len(out["speedups"]) == len(out["ceilings"]) == len(out["engine_speedups"])
            == len(out["arithmetic_speedups"]) == 2)
