"""Smoke test of benchmarks/bench_engine.py: a 5,000-bar run prints and returns its figures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_engine_smoke(capsys):
    pytest.importorskip("vectorbt")
    sys.path.insert(0, str(BENCH))
    try:
        import bench_engine
    finally:
        sys.path.remove(str(BENCH))
    out = bench_engine.main(["--bars", "5000", "--repeat", "1", "--skip-subprocess"])
    printed = capsys.readouterr().out
    assert "ns/bar" in printed and "targets" in printed
    for key in ("perpbt isolated", "perpbt cross", "perpbt isolated stats_only", "minimal loop",
                "vectorbt from_orders numba"):
        assert math.isfinite(out["ns_per_bar"][key]) and out["ns_per_bar"][key] > 0, key
    assert out["ns_per_bar_kernel"]["perpbt isolated"] > 0
    assert out["counts"]["settlements"] > 0
    assert out["counts"]["stops"] > 0
    assert not out["bust"]
    assert out["startup"] == {}
