"""Record writers that fill buffers allocated with np.empty must set every field."""

from __future__ import annotations

import numpy as np

from perpbt import dtypes
from perpbt.engine.records import open_trade_nb
from perpbt.engine.state import C_TRADES, N_CNT, Buffers


def garbage(n: int, dtype: np.dtype) -> np.ndarray:
    """Records whose every byte is 0xA5 (what np.empty may hand out)."""
    out = np.empty(n, dtype=dtype)
    out.view(np.uint8)[:] = 0xA5
    return out


def test_open_trade_sets_every_field_of_an_uninitialised_record():
    """pb.backtest allocates the trade records with np.empty: opening a trade must leave no
    byte of the old content in any field (compared with a record built from the dtype's
    expected opening values)."""
    trades = garbage(3, dtypes.trade_dt)
    empty = np.zeros(0, dtype=dtypes.fill_dt)
    buf = Buffers(empty, np.zeros(0, dtypes.order_dt), np.zeros(0, dtypes.funding_dt),
                  np.zeros(0, dtypes.liq_dt), trades, np.zeros(0),
                  np.zeros(0, dtypes.state_dt))
    cnt = np.zeros(N_CNT, dtype=np.int64)
    cnt[C_TRADES] = 1
    tid = open_trade_nb(buf, cnt, 2, -1, 17)
    assert tid == 1 and cnt[C_TRADES] == 2
    rec = trades[1]
    want = {"trade_id": 1, "symbol": 2, "side": -1, "entry_bar": 17, "exit_bar": -1,
            "entry_price": 0.0, "qty": 0.0, "entry_value": 0.0, "closed_qty": 0.0,
            "exit_value": 0.0, "pnl": 0.0, "fees": 0.0, "funding": 0.0,
            "stop_beyond_liq": 0, "beyond_bankruptcy": 0, "exit_reason": -1,
            "liquidated": 0, "min_liq_distance": np.inf}
    nan_fields = {"exit_price", "liq_price", "liq_price_fees", "stop_price"}
    assert set(want) | nan_fields == set(dtypes.trade_dt.names)
    for name, value in want.items():
        assert rec[name] == value, name
    for name in nan_fields:
        assert np.isnan(rec[name]), name
    # the records around it are untouched
    assert trades[0].tobytes() == trades[2].tobytes() == b"\xa5" * dtypes.trade_dt.itemsize
