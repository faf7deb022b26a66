"""Wallet, margin used and margin ratio per bar (engine/outputs.py), recomputed here.

The loop writes the equity curve and logs each symbol's state on the bars where it changed;
``Result.equity`` rebuilds the other account columns from that log. Each column is checked
against an independent computation from the per-symbol columns, the market's mark closes and
the public margin functions (perpbt.margin), bar by bar:

- wallet = equity - sum(position * (mark_close - entry));
- margin used = sum of isolated margins (isolated), sum |position| * mark_close / leverage
  (cross);
- margin ratio = max over positions of requirement / (isolated margin + unrealized)
  (isolated), sum of requirements / equity (cross), with the requirement of the venue's
  trigger: Binance maintenance margin at mark, OKX plus the taker fee on the notional, Bybit
  maintenance margin at entry value.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perpbt as pb
from perpbt.margin import maintenance_margin
from tests.engine.test_properties import random_market, random_targets
from tests.helpers import TEST_TIERS


def maint(notional: float) -> float:
    """Maintenance margin of TEST_TIERS; beyond the last cap the engine keeps the last tier
    (perpbt.margin.tier_index_nb), where maintenance_margin raises."""
    last = TEST_TIERS[-1]
    if notional < last["maxNotional"]:
        return maintenance_margin(notional, TEST_TIERS)
    return notional * last["maintenanceMarginRate"] - last["maintAmt"]


def requirement(venue: str, qty_abs: float, mark: float, entry: float, taker: float) -> float:
    if venue == "bybit":
        return maint(qty_abs * entry)
    mm = maint(qty_abs * mark)
    return mm + taker * qty_abs * mark if venue == "okx" else mm


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), margin=st.sampled_from(["isolated", "cross"]),
       venue=st.sampled_from(["binance", "bybit", "okx"]),
       leverage=st.sampled_from([2.0, 10.0, 50.0]), taker=st.sampled_from([0.0, 0.0005]),
       stop=st.sampled_from([None, 0.02]))
def test_account_columns_match_an_independent_recomputation(seed, margin, venue, leverage,
                                                            taker, stop):
    market = random_market(seed, 0.02, taker, 0.005)
    targets = random_targets(seed, market, leverage)
    res = pb.backtest(market, targets, venue=venue, margin=margin, leverage=leverage, stop=stop)
    eq = res.equity
    mark_close = market.arrays["mark_close"]
    for t in range(market.n_bars):
        upnl = used = ratio = req_sum = 0.0
        for n, sym in enumerate(market.symbols):
            q = eq[f"{sym}:position"].iloc[t]
            if q == 0.0:
                continue
            entry = eq[f"{sym}:entry_price"].iloc[t]
            mark = mark_close[t, n]
            u = q * (mark - entry)
            upnl += u
            req = requirement(venue, abs(q), mark, entry, taker)
            req_sum += req
            if margin == "cross":
                used += abs(q) * mark / leverage
            else:
                iso = eq[f"{sym}:isolated_margin"].iloc[t]
                used += iso
                ratio = max(ratio, req / (iso + u) if iso + u > 0 else np.inf)
        if margin == "cross":
            equity = eq["equity"].iloc[t]
            ratio = req_sum / equity if equity > 0 else (np.inf if req_sum > 0 else 0.0)
        assert eq["wallet"].iloc[t] == pytest.approx(eq["equity"].iloc[t] - upnl, rel=1e-9,
                                                     abs=1e-6)
        assert eq["margin_used"].iloc[t] == pytest.approx(used, rel=1e-12, abs=1e-9)
        assert eq["margin_ratio"].iloc[t] == pytest.approx(ratio, rel=1e-9, abs=1e-12)
