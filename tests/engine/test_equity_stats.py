"""engine/stats.py against the textbook formulas written with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpbt.engine.stats import equity_stats_nb


def numpy_stats(equity: np.ndarray, start: float):
    prev = np.concatenate(([start], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(prev > 0, equity / prev - 1.0, 0.0)
    curve = np.concatenate(([start], equity))
    drawdown = 1.0 - curve / np.maximum.accumulate(curve)
    return (rets.mean(), rets.std(), np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)),
            drawdown.max())


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3_000),
       vol=st.sampled_from([0.0, 0.001, 0.05, 0.5]), bust=st.booleans())
def test_equity_stats_match_numpy(seed, n, vol, bust):
    rng = np.random.default_rng(seed)
    equity = 1_000.0 * np.exp(np.cumsum(rng.standard_normal(n) * vol))
    if bust:  # a wiped-out account: zero equity, then returns of 0
        equity[n // 2:] = 0.0
    got = equity_stats_nb(equity, 1_000.0)
    for value, want in zip(got, numpy_stats(equity, 1_000.0)):
        assert value == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_equity_stats_by_hand():
    # 100 -> 110 -> 99 -> 121: returns 0.1, -0.1, 0.2222...; peak 110 then 121;
    # drawdown at 99: 1 - 99/110 = 0.1
    mean, sd, down, dd = equity_stats_nb(np.array([110.0, 99.0, 121.0]), 100.0)
    rets = np.array([0.1, -0.1, 121.0 / 99.0 - 1.0])
    assert mean == pytest.approx(rets.sum() / 3)
    assert sd == pytest.approx(np.sqrt(((rets - rets.mean()) ** 2).sum() / 3))
    assert down == pytest.approx(np.sqrt(0.01 / 3))
    assert dd == pytest.approx(0.1)
