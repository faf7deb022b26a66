"""What perpbt memoizes on a Market changes no result and never travels with it.

pb.backtest keeps, per Market, the settlement bars, the 64-bar block ranges of the quiet
stretch and the execution model's recent state of each (bar, symbol) a fill needed. A second
run on the same market (memo warm) must equal the first (memo cold) and a run on an unpickled
copy (memo dropped) bit for bit.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import perpbt as pb
from tests.engine.test_quiet_stretch import calm_market, sparse_targets


def records(res):
    return [res.equity.to_numpy(), res.fill_records, res.trade_records, res.liq_records,
            res.order_records]


@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_memo_changes_nothing(margin):
    market = calm_market(11, 2, 0.02, 0.0005, 0.005, 8)
    targets = sparse_targets(11, market, 20.0)
    kwargs = dict(margin=margin, leverage=20.0, stop=0.02, execution=pb.Execution(
        participation=0.1))
    cold = pb.backtest(market, targets, **kwargs)
    assert hasattr(market, "_exec_memo") and hasattr(market, "_engine_derived")
    memo = next(iter(market._exec_memo[1].values()))
    assert memo["exec_done"].any()  # fills used (and stored) recent states
    warm = pb.backtest(market, targets, **kwargs)
    copy = pickle.loads(pickle.dumps(market))
    assert not hasattr(copy, "_exec_memo") and not hasattr(copy, "_engine_derived")
    fresh = pb.backtest(copy, targets, **kwargs)
    assert cold.counts["fills"] > 0
    for a, b, c in zip(records(cold), records(warm), records(fresh)):
        for other in (b, c):
            if a.dtype.names is None:
                np.testing.assert_array_equal(a, other)
                continue
            for field in a.dtype.names:  # per field: NaN equals NaN
                np.testing.assert_array_equal(a[field], other[field], err_msg=field)


def test_memo_follows_the_arrays():
    """Replacing a market array (not editing it in place) drops the memo built on it."""
    market = calm_market(5, 1, 0.02, 0.0, 0.0, 8)
    targets = sparse_targets(5, market, 5.0)
    pb.backtest(market, targets, leverage=5.0, execution=True)
    before = market._engine_derived
    market.arrays["high"] = market.arrays["high"] * 1.0  # a new object, same values
    res = pb.backtest(market, targets, leverage=5.0, execution=True)
    assert market._engine_derived is not before
    assert market._exec_memo[0][0] is market.arrays["high"]
    assert res.counts["fills"] > 0
