"""Liquidation policies on the real 2025-10-10 crash (Binance USDT-M, ../shared/data).

A 20x long in BTCUSDT and in ETHUSDT, opened at the first bar of 2025-10-09 and held through
the 2025-10-10 crash, on the 1h files with their mark klines and on the 5-minute files (no
mark klines: ``mark_fallback="last"``), under each policy with the execution model on, at a
tier-1 notional (20,000 USDT) and at a tier-3 notional (900,000 USDT; the 2023-01-13 table
in force then puts 250,000-1,000,000 in tier 3 for both symbols). Asserted: the invariants
(a full liquidation leaves zero margin or zero cross equity, the insurance ledger balances,
market fills lie within the bar's range plus the modelled spread and impact), and that the
policies agree on the user's loss at tier 1 and differ at tier 3.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import perpbt as pb

POLICIES = ("takeover", "ioc", "tiered", "multibar")
EXE = pb.Execution()
WINDOW = dict(since="2025-10-09", until="2025-10-12")


@pytest.fixture(scope="module", params=["1h", "5m"])
def crash(request, shared_data):
    kw = {} if request.param == "1h" else {"mark_fallback": "last"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage trimming of the slice
        return pb.data.read_csv(shared_data / "binance_usdm", ["BTCUSDT", "ETHUSDT"],
                                request.param, **WINDOW, **kw)


def run(market, sym, notional, margin, policy, clearance=None):
    m = market.sel([sym])
    inst = m.instruments[sym]
    if clearance is not None:
        inst = dataclasses.replace(inst, clearance_fee=clearance)
    tgt = pd.DataFrame(np.nan, index=m.index, columns=[sym])
    tgt.iloc[0] = 20.0
    res = pb.backtest(m, tgt, leverage=20, initial_capital=notional / 20, margin=margin,
                      liquidation=policy, execution=EXE, instruments={sym: inst})
    return m, res


def check_invariants(m, res, margin):
    liq = res.liq_records
    assert len(liq) >= 1, "the crash must liquidate a 20x long"
    # the ledgers balance: the Result's totals are the records' sums
    assert res.insurance_fund == pytest.approx(liq["insurance_change"].sum(), abs=1e-6)
    assert res.clearance_fees == pytest.approx(liq["clearance_fee"].sum(), abs=1e-6)
    eq = res.equity
    sym = m.symbols[0]
    for rec in liq[liq["full"] == 1]:
        end = rec["bar"] + rec["bars"] - 1
        # the user loses qty * (entry - BP): everything down to the bankruptcy price
        assert rec["user_loss"] == pytest.approx(
            rec["qty"] * (rec["trigger_mark"] - rec["bankruptcy_price"])
            - rec["upnl_at_trigger"], rel=1e-9)
        if margin == "isolated":
            assert eq[f"{sym}:isolated_margin"].iloc[end] == 0.0
        else:
            assert eq["wallet"].iloc[end] == pytest.approx(0.0, abs=1e-6)
    # market fills of forced closes: within the bar's range widened by the largest spread +
    # impact the model can charge in that bar (takeover pieces at BP are not market fills)
    a = m.arrays
    hs_open, hs_in, sigma, typ = EXE.state_arrays(a["high"], a["low"], a["volume"], m.symbols)
    vmin = np.minimum(a["volume"], typ)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = EXE.stress * np.maximum(hs_open, hs_in) + EXE.impact_k * sigma * np.sqrt(
            EXE.participation * a["volume"] / vmin)
    f = res.fill_records
    bps = set(liq["bankruptcy_price"][liq["full"] == 1])
    for r in f[f["reason"] == pb.enums.FillReason.liquidation]:
        if r["price"] in bps:
            continue
        t = r["bar"]
        c = cost[t, 0]
        assert a["low"][t, 0] * (1 - c) - 1e-9 <= r["price"] <= a["high"][t, 0] * (1 + c) + 1e-9


@pytest.mark.parametrize("sym", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
@pytest.mark.parametrize("margin", ["isolated", "cross"])
def test_tier1_policies_agree_on_the_users_loss(crash, sym, margin):
    losses = []
    for policy in POLICIES:
        m, res = run(crash, sym, 20_000.0, margin, policy)
        check_invariants(m, res, margin)
        liq = res.liquidations
        assert (liq["full"] == 1).all()
        losses.append(liq["user_loss"].sum())
    # a retail position loses its whole margin (or cross equity) under every policy
    np.testing.assert_allclose(losses, losses[0], rtol=1e-9)


@pytest.mark.parametrize("sym", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
def test_tier3_policies_differ(crash, sym):
    out = {}
    for policy in POLICIES:
        m, res = run(crash, sym, 900_000.0, "isolated", policy)
        check_invariants(m, res, "isolated")
        t = m.instruments[sym].tier_table_at(int(m.time_ms[0]))
        entry_notional = abs(res.trades["qty"].iloc[0] * res.trades["entry_price"].iloc[0])
        assert np.searchsorted(t.floor, entry_notional, side="right") - 1 >= 2  # tier 3+
        out[policy] = res
    liq = {p: r.liquidations.iloc[0] for p, r in out.items()}
    # takeover closes at the bankruptcy price; the IOC sells into the book above it, so the
    # venue's gain (clearance + insurance) is smaller, and tiered's first steps are too
    assert liq["takeover"]["avg_fill"] == pytest.approx(liq["takeover"]["bankruptcy_price"])
    assert liq["ioc"]["avg_fill"] > liq["takeover"]["avg_fill"]
    gain = {p: r.clearance_fees + r.insurance_fund for p, r in out.items()}
    assert gain["ioc"] < gain["takeover"] and gain["tiered"] < gain["takeover"]
    # with a small clearance fee (OKX's 0.05 %) a tier step or an IOC slice makes the
    # account compliant again: tiered and ioc stop early and the user keeps part of it
    loss = {}
    for policy in POLICIES:
        m, res = run(crash, sym, 900_000.0, "isolated", policy, clearance=0.0005)
        check_invariants(m, res, "isolated")
        loss[policy] = res.liquidations["user_loss"].sum()
        if policy in ("ioc", "tiered"):
            assert (res.liquidations["full"] == 0).any()
    assert loss["tiered"] < loss["takeover"] and loss["ioc"] < loss["takeover"]
    assert loss["multibar"] == pytest.approx(loss["takeover"], rel=1e-9)
