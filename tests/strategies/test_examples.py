"""Example strategies (strategies/*.py) and the Strategy/Targets error paths.

Each example runs on the embedded synthetic market (or the scenario where its rule fires) and
on a year of real BTCUSDT 1h data; at its entries the indicator is recomputed here from raw
closes with plain loops, the rule is checked at the decision bar t and the fill at t+1's open.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import perpbt as pb
from perpbt.enums import FillReason
from perpbt.strategy import validate_targets
from strategies.funding_carry import FundingCarry
from strategies.ma_cross import MaCross
from strategies.rsi_reversion import RsiReversion, wilder_rsi
from strategies.vol_target import VolTarget
from tests.helpers import make_market

FLAT = (100.0, 100.0, 100.0, 100.0)


@pytest.fixture(scope="module")
def synthetic():
    return pb.data.default_market()


@pytest.fixture(scope="module")
def btc_2022(shared_data):
    return pb.data.read_csv(shared_data / "binance_usdm", ["BTCUSDT"], "1h",
                            since="2022-01-01", until="2023-01-01")


def entries(res) -> pd.DataFrame:
    """Order fills that open a position from flat (the opening leg of a flip included)."""
    f = res.fills
    opening = (f["reason"] == "order") & np.isclose(f["position_after"] - f["qty"], 0.0) \
        & (f["position_after"] != 0)
    return f[opening]


def check_fill_at_next_open(market, fill) -> tuple[int, int]:
    """(decision bar t, symbol column) of an entry fill; asserts it filled at t+1's open."""
    n = market.symbols.index(fill["symbol"])
    b = int(fill["bar"])
    assert b >= 1 and fill["s"] == 0.0
    assert fill["price"] == pytest.approx(market.arrays["open"][b, n], rel=1e-3)
    return b - 1, n


# ------------------------------------------------------------------------------ RSI reversion
def rsi_by_hand(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI with an explicit loop: running averages avg += (x - avg) / period,
    seeded with the first change (as pandas ewm(alpha=1/period, adjust=False))."""
    out = np.full(len(close), np.nan)
    avg_gain = avg_loss = 0.0
    for t in range(1, len(close)):
        change = close[t] - close[t - 1]
        gain, loss = max(change, 0.0), max(-change, 0.0)
        if t == 1:
            avg_gain, avg_loss = gain, loss
        else:
            avg_gain += (gain - avg_gain) / period
            avg_loss += (loss - avg_loss) / period
        if t >= period:
            out[t] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return out


def check_rsi_entries(market, strat, res) -> int:
    found = entries(res)
    assert len(found) > 0
    rsi = {n: rsi_by_hand(market.arrays["close"][:, n], strat.period)
           for n in range(market.n_symbols)}
    for _, fill in found.iterrows():
        t, n = check_fill_at_next_open(market, fill)
        if fill["qty"] > 0:
            assert rsi[n][t] < strat.lower, (fill, rsi[n][t])
        else:
            assert rsi[n][t] > strat.upper, (fill, rsi[n][t])
    return len(found)


def test_wilder_rsi_matches_the_loop(synthetic):
    close = synthetic.close.iloc[:3000]
    rsi = wilder_rsi(close, 14)
    by_hand = rsi_by_hand(close.iloc[:, 0].to_numpy(), 14)
    np.testing.assert_allclose(rsi.iloc[:, 0].to_numpy(), by_hand, rtol=1e-9, equal_nan=True)


def test_rsi_reversion_synthetic(synthetic):
    strat = RsiReversion(lower=25, upper=75)
    res = pb.backtest(synthetic, strat, leverage=5)
    n = check_rsi_entries(synthetic, strat, res)
    assert {1, -1} <= set(res.trades["side"]) and n == len(res.trades)


def test_rsi_reversion_real(btc_2022):
    strat = RsiReversion()
    check_rsi_entries(btc_2022, strat, pb.backtest(btc_2022, strat, leverage=5))


# ------------------------------------------------------------------------------ funding carry
def last_settled_rate(rates: np.ndarray, t: int) -> float:
    while t >= 0 and math.isnan(rates[t]):
        t -= 1
    return rates[t] if t >= 0 else math.nan


def check_carry_entries(market, strat, res) -> pd.DataFrame:
    found = entries(res)
    assert len(found) > 0
    for _, fill in found.iterrows():
        t, n = check_fill_at_next_open(market, fill)
        rate = last_settled_rate(market.arrays["funding_rate"][:, n], t)
        assert (rate > strat.threshold) if fill["qty"] < 0 else (rate < -strat.threshold)
    return found


def test_funding_carry_fades_the_funding_regime():
    # regime 1: longs pay ~0.3 % per settlement -> short; after the switch -0.1 % -> long
    market = pb.data.scenario("funding_regime")
    strat = FundingCarry(threshold=0.0005)
    res = pb.backtest(market, strat, leverage=2)
    found = check_carry_entries(market, strat, res)
    assert (found["qty"] < 0).any() and (found["qty"] > 0).any()
    assert res.funding["payment"].sum() > 0  # the carry is received


def test_funding_carry_synthetic_and_real(synthetic, btc_2022):
    check_carry_entries(synthetic, FundingCarry(), pb.backtest(synthetic, FundingCarry()))
    strat = FundingCarry(threshold=0.0001)
    check_carry_entries(btc_2022, strat, pb.backtest(btc_2022, strat, leverage=2))


# -------------------------------------------------------------------------- volatility target
def vol_target_by_hand(close: np.ndarray, t: int, s: VolTarget, bar_hours: float) -> float:
    direction = np.sign(close[t] / close[t - s.lookback] - 1.0)
    rets = [close[k] / close[k - 1] - 1.0 for k in range(t - s.vol_window + 1, t + 1)]
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    vol = math.sqrt(var) * math.sqrt(365 * 24 / bar_hours)
    size = round(s.target_vol / vol / s.step) * s.step
    return direction * min(size, s.max_exposure)


def check_vol_entries(market, strat, res, lot: float) -> None:
    """Entries (single symbol): the side is the target's; from flat at t's close (no flip),
    qty = target * E / open[t+1] within a lot, with E = the equity at t's close."""
    found = entries(res)
    flips = set(res.fills.loc[res.fills["position_after"] == 0, "bar"])
    equity = res.equity["equity"].to_numpy()
    close = market.arrays["close"][:, 0]
    sized = 0
    for _, fill in found.iterrows():
        t, _ = check_fill_at_next_open(market, fill)
        target = vol_target_by_hand(close, t, strat, market.timeframe_ms / 3_600_000)
        assert target != 0 and np.sign(target) == np.sign(fill["qty"])
        if fill["bar"] not in flips:
            expected = target * equity[t] / fill["price"]
            assert abs(fill["qty"] - expected) <= lot + 1e-9 * abs(expected)
            sized += 1
    assert sized > 0


def test_vol_target_synthetic(synthetic):
    market = synthetic.sel("SYNBTC/USDT:USDT")
    strat = VolTarget(lookback=72, vol_window=96, target_vol=0.6)
    check_vol_entries(market, strat, pb.backtest(market, strat, leverage=5), lot=0.001)


def test_vol_target_real(btc_2022):
    strat = VolTarget()
    res = pb.backtest(btc_2022, strat, leverage=5)
    check_vol_entries(btc_2022, strat, res, lot=btc_2022.instruments["BTC/USDT:USDT"].lot_size)


# ------------------------------------------------------------------- Strategy / Targets errors
class NanSignal(pb.Strategy):
    bar: int = 2

    def signals(self, m):
        long = pd.DataFrame(False, index=m.index, columns=list(m.symbols), dtype=object)
        long.iloc[self.bar, 1] = np.nan
        return pb.Targets(long=long)


def test_nan_signal_names_strategy_symbol_and_bar():
    m = make_market({"A": [FLAT] * 6, "B": [FLAT] * 6})
    with pytest.raises(ValueError, match=r"NanSignal\(bar=2\): the long signal is NaN for B at "
                                         r"2020-09-13T14:00:00Z"):
        pb.backtest(m, NanSignal())
    # a signal frame missing bars is NaN on those bars too
    short = pd.DataFrame(False, index=m.index[:4], columns=list(m.symbols))
    with pytest.raises(ValueError, match=r"Targets: the short signal is NaN for A at "
                                         r"2020-09-13T16:00:00Z"):
        pb.backtest(m, pb.Targets(short=short))


def test_targets_to_frame_by_hand():
    """Targets -> exposure frame: +exposure where long, -exposure where short, 0 elsewhere;
    a scalar exposure (numpy masks) and the same exposure as a DataFrame (pandas alignment)
    give the same frame; long and short both true is an error naming symbol and bar."""
    m = make_market({"A": [FLAT] * 4, "B": [FLAT] * 4})
    cols = list(m.symbols)
    long = pd.DataFrame([[True, False], [False, False], [False, True], [True, False]],
                        index=m.index, columns=cols)
    short = pd.DataFrame([[False, True], [True, False], [False, False], [False, False]],
                         index=m.index, columns=cols)
    want = np.array([[2.5, -2.5], [-2.5, 0.0], [0.0, 2.5], [2.5, 0.0]])
    got = pb.Targets(long=long, short=short, exposure=2.5).to_frame(m.index, pd.Index(cols))
    np.testing.assert_array_equal(got.to_numpy(), want)
    assert got.dtypes.eq(np.float64).all()
    as_frame = pd.DataFrame(2.5, index=m.index, columns=cols)
    got_df = pb.Targets(long=long, short=short, exposure=as_frame).to_frame(m.index,
                                                                            pd.Index(cols))
    np.testing.assert_array_equal(got_df.to_numpy(), want)
    # a long-only Series signal is broadcast to every symbol
    only = pb.Targets(long=long["A"], exposure=1).to_frame(m.index, pd.Index(cols))
    np.testing.assert_array_equal(only.to_numpy(), [[1, 1], [0, 0], [0, 0], [1, 1]])
    both = short.copy()
    both.iloc[2, 1] = True
    with pytest.raises(ValueError, match=r"long and short both true for B at "
                                         r"2020-09-13T14:00:00Z"):
        pb.Targets(long=long, short=both).to_frame(m.index, pd.Index(cols))


def test_warm_up_comparisons_are_false_not_nan(synthetic):
    # SMA(slow) is NaN for the first slow-1 bars; fast > slow is False there, no error
    res = pb.backtest(synthetic.slice(None, "2021-02-01"), MaCross(fast=6, slow=24), leverage=5)
    assert res.fills["bar"].min() >= 24


def test_mistyped_parameter_suggests_the_name():
    with pytest.raises(TypeError, match=r"RsiReversion has no parameter 'perod'; did you mean "
                                        r"'period'\?"):
        RsiReversion(perod=10)
    with pytest.raises(TypeError, match=r"VolTarget has no parameter 'zzz'; known: \["):
        VolTarget(zzz=1)


def test_default_stop_and_take_are_class_settings_not_parameters():
    class WithStop(RsiReversion):
        default_stop = 0.03

    assert pb.Strategy.default_stop is None and pb.Strategy.default_take is None
    assert WithStop.default_stop == 0.03 and "default_stop" not in WithStop.param_names()
    assert "default_take" not in repr(WithStop())
    with pytest.raises(TypeError, match="has no parameter 'default_stop'"):
        RsiReversion(default_stop=0.02)


def test_validate_targets_leverage_cap_and_nan_exposure():
    m = make_market({"A": [FLAT] * 4, "B": [FLAT] * 4})
    frame = pd.DataFrame(np.nan, index=m.index, columns=list(m.symbols))
    frame.iloc[1, 0], frame.iloc[3, 1] = 1.5, -4.0
    assert validate_targets("S", frame, m).equals(frame)  # NaN = keep is fine
    with pytest.raises(ValueError, match=r"VolTarget\(.*\): \|exposure\| 4 for B at "
                                         r"2020-09-13T15:00:00Z exceeds leverage_cap 3"):
        validate_targets(VolTarget(), frame, m, leverage_cap=3)
    long = pd.DataFrame(True, index=m.index, columns=list(m.symbols)).astype(object)
    long.iloc[0, 0] = None
    with pytest.raises(ValueError, match=r"S: the long signal is NaN for A at "
                                         r"2020-09-13T12:00:00Z"):
        validate_targets("S", pb.Targets(long=long), m)


def test_targets_size_overrides_exposure_and_stop_is_stored():
    m = make_market({"A": [FLAT] * 4})
    long = pd.DataFrame(True, index=m.index, columns=["A"])
    size = pd.DataFrame([1.0, 2.0, np.nan, 0.5], index=m.index, columns=["A"])
    tg = pb.Targets(long=long, exposure=3.0, size=size, stop=0.02)
    out = validate_targets("S", tg, m)
    assert out["A"].tolist()[:2] == [1.0, 2.0] and np.isnan(out["A"].iloc[2])
    assert (tg.stop_frame(m.index, pd.Index(["A"])) == 0.02).all().all()
    bad = pb.Targets(long=long, stop=pd.DataFrame(-0.01, index=m.index, columns=["A"]))
    with pytest.raises(ValueError, match=r"S: stop distance -0.01 for A at 2020-09-13T12:00:00Z"):
        validate_targets("S", bad, m)
