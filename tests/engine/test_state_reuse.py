"""A sweep thread reuses one position state and one scratch run after run
(perpbt.backtest.reused_work): reset in place, they must equal fresh ones field by field."""

from __future__ import annotations

import numpy as np
import pytest

from perpbt.backtest import reused_work
from perpbt.engine.state import (new_position_state, new_scratch, reset_position_state,
                                 reset_scratch)


@pytest.mark.parametrize("n_symbols", [1, 3])
def test_reset_position_state_equals_a_new_one(n_symbols):
    ps = new_position_state(n_symbols)
    for row in ps:  # every field written over, as a run would
        row[...] = 7
    fresh = new_position_state(n_symbols)
    assert reset_position_state(ps) is ps
    for name, got, want in zip(ps._fields, ps, fresh):
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_reset_scratch_equals_a_new_one():
    scratch = new_scratch(2, 4)
    for arr in scratch:
        arr[...] = 5
    fresh = new_scratch(2, 4)
    reset_scratch(scratch)
    for name, got, want in zip(scratch._fields, scratch, fresh):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_reused_work_is_per_pool_and_reset():
    pool: dict = {}
    ps, scratch = reused_work(pool, 2, 4)
    ps.qty[:] = 3.0
    scratch.bands[:] = 1.0
    ps2, scratch2 = reused_work(pool, 2, 4)
    assert ps2 is ps and scratch2 is scratch  # the same arrays, reset
    assert (ps.qty == 0.0).all() and (scratch.bands == 0.0).all()
    assert np.isnan(ps.last_target).all() and (ps.trade_id == -1).all()
    other, _ = reused_work(None, 2, 4)  # no pool: always new
    assert other is not ps
