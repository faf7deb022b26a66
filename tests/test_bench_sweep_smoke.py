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
    out = bench_sweep.main(["--combos", "8", "--bars", "2000", "--repeat", "1"])
    printed = capsys.readouterr().out
    for line in ("sweep benchmark: 8 combinations", "perpbt pb.sweep (1 core)",
                 "vectorbt from_signals sl_stop", "throughput ratio perpbt / vectorbt:",
                 "throughput ratio on perpbt's median 1-core time",
                 "1 core (local): median", "speed-up 1 -> 2 workers:", "machine check:"):
        assert line in printed, line
    assert out["combos"] == 8
    for key in ("perpbt_runs_per_s", "vbt_runs_per_s", "ratio", "ratio_median", "speedup", "speedup_min",
                "speedup_max", "machine_speedup"):
        assert math.isfinite(out[key]) and out[key] > 0, key
