"""Hand-made markets for engine tests: a few bars with prices chosen so results derive by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

import perpbt as pb

from perpbt.instruments import Instrument, load_tiers
from perpbt.market import Market

HOUR_MS = 3_600_000
T0_MS = 1_600_000_000_000 - (1_600_000_000_000 % HOUR_MS)  # 2020-09-13 12:00 UTC

# two tiers: 0.5 % to 1,000,000 (100x), then 1 % (50x); maint amount at the floor:
# 1,000,000 * (0.01 - 0.005) = 5,000 keeps maintenance margin continuous
TEST_TIERS = [
    {"minNotional": 0.0, "maxNotional": 1_000_000.0, "maintenanceMarginRate": 0.005,
     "maxLeverage": 100, "maintAmt": 0.0},
    {"minNotional": 1_000_000.0, "maxNotional": 5_000_000.0, "maintenanceMarginRate": 0.01,
     "maxLeverage": 50, "maintAmt": 5_000.0},
]


def test_instrument(symbol: str = "TEST/USDT:USDT", *, taker_fee: float = 0.0,
                    clearance_fee: float = 0.0, tiers=None, lot_size: float = 0.0,
                    min_notional: float = 0.0) -> Instrument:
    return Instrument(symbol=symbol, tiers=(load_tiers(tiers or TEST_TIERS, illustrative=True,
                                                       source="hand-made test table"),),
                      lot_size=lot_size, min_notional=min_notional, maker_fee=0.0,
                      taker_fee=taker_fee, clearance_fee=clearance_fee)


test_instrument.__test__ = False  # not a pytest test


def bars_frame(rows, start_ms: int = T0_MS, volume=1000.0) -> pd.DataFrame:
    """rows of (open, high, low, close) -> frame with timestamp_ms and volume (default 1000)."""
    arr = np.asarray(rows, dtype=float)
    return pd.DataFrame({"timestamp_ms": start_ms + HOUR_MS * np.arange(len(arr)),
                         "open": arr[:, 0], "high": arr[:, 1], "low": arr[:, 2],
                         "close": arr[:, 3], "volume": volume})


def make_market(last: dict, mark: dict | None = None, funding: dict | None = None, *,
                instruments: dict | None = None, volume: dict | None = None) -> Market:
    """Market from per-symbol OHLC rows; mark defaults to last; funding rows (bar, rate);
    volume per symbol (a list per bar, default 1000 every bar)."""
    symbols = list(last)
    ohlcv = {s: bars_frame(last[s], volume=np.asarray((volume or {}).get(s, 1000.0), float))
             for s in symbols}
    marks = {s: bars_frame((mark or {}).get(s, last[s]))[["timestamp_ms", "open", "high", "low",
                                                          "close"]] for s in symbols}
    n_bars = len(next(iter(last.values())))
    fund = {}
    for s in symbols:
        rows = (funding or {}).get(s, [])
        # settlements every 8 bars cover the whole span; given rows override
        times = list(range(0, n_bars, 8))
        rates = {b: 0.0 for b in times}
        rates.update(dict(rows))
        keys = sorted(rates)
        fund[s] = pd.DataFrame({"timestamp_ms": [T0_MS + HOUR_MS * b for b in keys],
                                "funding_rate": [rates[b] for b in keys]})
    insts = instruments or {s: test_instrument(s) for s in symbols}
    return Market.from_frames(ohlcv, marks, fund, timeframe="1h", instruments=insts)


def targets_frame(market: Market, rows: dict) -> pd.DataFrame:
    """Target exposures: {symbol: {bar: exposure}}, NaN elsewhere (keep)."""
    frame = pd.DataFrame(np.nan, index=market.index, columns=list(market.symbols))
    for sym, by_bar in rows.items():
        for bar, value in by_bar.items():
            frame.iloc[bar, frame.columns.get_loc(sym)] = value
    return frame


def liq_fill_records(res):
    """Each liquidation fill with the liquidation record it belongs to: the record of the
    same trade at the same bar and bar-time, else (a multibar close carried into later
    bars) the trade's latest full record before the fill."""
    fills = res.fill_records
    liqs = res.liq_records
    out = []
    for f in fills[fills["reason"] == pb.enums.FillReason.liquidation]:
        same = liqs[(liqs["trade_id"] == f["trade_id"]) & (liqs["bar"] == f["bar"])
                    & (liqs["s"] == f["s"])]
        if len(same) == 0:
            same = liqs[(liqs["trade_id"] == f["trade_id"]) & (liqs["bar"] < f["bar"])
                        & (liqs["full"] == 1)][-1:]
        assert len(same) == 1, f
        out.append((f, same[0]))
    return out


def liquidation_transfer(market, res) -> np.ndarray:
    """Per bar: what liquidations moved from the user to the venue beyond the fills' own PnL.
    Full liquidation: side * q * (fill - bankruptcy price) per fill (0 for the part taken over
    at the bankruptcy price); partial: the clearance fee."""
    transfer = np.zeros(market.n_bars)
    for f, rec in liq_fill_records(res):
        if rec["full"] == 1:
            transfer[f["bar"]] += -f["qty"] * (f["price"] - rec["bankruptcy_price"])
    liqs = res.liq_records
    for rec in liqs[liqs["full"] == 0]:
        transfer[rec["bar"]] += rec["clearance_fee"]
    return transfer
