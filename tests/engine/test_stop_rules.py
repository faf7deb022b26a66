"""Stop rules on the intrabar path (issue 5 item 2, DESIGN section 4), hand-derived.

Long 100 units at 100 (exposure 1 at 10x on 10,000, isolated margin 1,000: the liquidation
price is near 90.5, far below every stop here), no fees. Bars are (open, high, low, close);
pessimistic intrabar for a long: open -> low -> high -> close. Mark = last.
"""

from __future__ import annotations

import numpy as np
import pytest

import perpbt as pb
from tests.helpers import make_market, targets_frame

FLAT = (100.0, 100.0, 100.0, 100.0)


def run(bars, stop, entry_bar=0, **kw):
    m = make_market({"A": bars})
    return pb.backtest(m, targets_frame(m, {"A": {entry_bar: 1.0}}), margin="isolated",
                       leverage=10, stop=stop, **kw)


def exits(res):
    f = res.fills
    return f[f["reason"] != "order"][["bar", "s", "qty", "price", "reason"]]


def test_trailing_stop_rises_at_a_segment_end_and_fires_later_in_the_same_bar():
    # bar 2: 100 -> 99 (low) -> 110 (high) -> 104. The trailing level starts at
    # 100 * (1 - 5 %) = 95; at the end of segment 2 (s = 2, price 110) the best price is 110
    # and the level 110 - 5 = 105 (the distance is 5 % of the entry: 5.0); on segment 3
    # (110 -> 104) it is crossed at s = 2 + (110 - 105) / (110 - 104) = 2.833333, fill 105.
    bars = [FLAT, FLAT, (100.0, 110.0, 99.0, 104.0), FLAT]
    res = run(bars, pb.StopLoss(0.05, trailing=True))
    e = exits(res)
    assert list(e["bar"]) == [2] and list(e["reason"]) == ["stop_loss"]
    assert e["s"].iloc[0] == pytest.approx(2 + 5 / 6, rel=1e-12)
    assert e["price"].iloc[0] == pytest.approx(105.0, rel=1e-12)
    # the same bar with a fixed 5 % stop does nothing (95 is never reached)
    assert len(exits(run(bars, pb.StopLoss(0.05)))) == 0


def test_trailing_stop_carries_its_level_across_bars():
    # bar 2 closes at its high path end: best 108 after bar 2 (segment ends 100, 108, 107),
    # level 103; bar 3: 107 -> 102 crosses 103 at s = (107 - 103) / (107 - 102) = 0.8
    bars = [FLAT, FLAT, (100.0, 108.0, 100.0, 107.0), (107.0, 107.0, 102.0, 104.0), FLAT]
    e = exits(run(bars, pb.StopLoss(0.05, trailing=True)))
    assert list(e["bar"]) == [3]
    assert e["s"].iloc[0] == pytest.approx(0.8, rel=1e-12)
    assert e["price"].iloc[0] == pytest.approx(103.0, rel=1e-12)


def test_break_even_moves_the_stop_to_the_entry():
    # BreakEven(2 %): bar 2 reaches 103 (>= 102) at s = 2 -> stop at the entry, 100.
    # Bar 3: 102 -> 99 crosses 100 at s = (102 - 100) / (102 - 99) = 2/3, fill at 100.
    bars = [FLAT, FLAT, (100.0, 103.0, 100.0, 102.5), (102.0, 102.5, 99.0, 100.0), FLAT]
    e = exits(run(bars, pb.BreakEven(0.02)))
    assert list(e["bar"]) == [3]
    assert e["s"].iloc[0] == pytest.approx(2 / 3, rel=1e-12)
    assert e["price"].iloc[0] == pytest.approx(100.0, rel=1e-12)
    # with a 5 % stop as well, the tighter level (the entry) wins once the move happened
    e2 = exits(run(bars, [pb.StopLoss(0.05), pb.BreakEven(0.02)]))
    assert list(e2["price"]) == [pytest.approx(100.0)]


def test_time_stop_exits_at_the_open():
    # entry at bar 1's open; TimeStop(3) exits at the open of bar 1 + 3 = 4, at its open 101
    bars = [FLAT, FLAT, FLAT, FLAT, (101.0, 102.0, 100.5, 101.5), FLAT]
    e = exits(run(bars, pb.TimeStop(3)))
    assert list(e["bar"]) == [4] and list(e["reason"]) == ["time_stop"]
    assert e["s"].iloc[0] == 0.0 and e["price"].iloc[0] == 101.0
    # combined with a stop that fires first (bar 2 falls through 95), the stop wins
    bars2 = [FLAT, FLAT, (100.0, 100.0, 94.0, 96.0), FLAT, FLAT, FLAT]
    e2 = exits(run(bars2, [pb.StopLoss(0.05), pb.TimeStop(3)]))
    assert list(e2["reason"]) == ["stop_loss"] and list(e2["bar"]) == [2]


def test_atr_stop_distance_is_fixed_at_the_fill():
    # Every bar spans 2 (high - low) around closes inside it, so the true range is 2 and
    # Wilder's ATR(2) is 2 from the second bar on. The target decided at bar 2's close fills
    # at bar 3's open (100); the ATR known then (through bar 2) is 2, so StopLoss(atr=1.5)
    # sits at 100 - 1.5 * 2 = 97. Bar 4: 100 -> 96.5 crosses 97 at s = 3 / 3.5.
    bar = (100.0, 101.0, 99.0, 100.0)
    bars = [bar, bar, bar, bar, (100.0, 100.5, 96.5, 98.0), bar]
    res = run(bars, pb.StopLoss(atr=1.5, atr_period=2), entry_bar=2)
    e = exits(res)
    assert list(e["bar"]) == [4]
    assert e["price"].iloc[0] == pytest.approx(97.0, rel=1e-12)
    assert e["s"].iloc[0] == pytest.approx(3 / 3.5, rel=1e-12)
    assert res.trades["stop_price"].iloc[0] == pytest.approx(97.0, rel=1e-12)


def test_bad_stop_rules_are_errors():
    with pytest.raises(ValueError, match="exactly one of pct"):
        pb.StopLoss()
    with pytest.raises(ValueError, match="more than one StopLoss"):
        run([FLAT] * 3, [pb.StopLoss(0.01), pb.StopLoss(0.02)])
    with pytest.raises(TypeError, match="stop: expected"):
        run([FLAT] * 3, "tight")


def test_targets_carry_their_own_stop_distance():
    # the row decided at bar 0 says 3 %: the fill at bar 1's open (100) gets its stop at 97,
    # not the backtest's 5 % (95); bar 2 falls 100 -> 96: the stop fills at 97 at s = 0.75
    import pandas as pd

    class WithStop(pb.Strategy):
        def signals(self, m):
            long = pd.DataFrame(True, index=m.index, columns=list(m.symbols))
            return pb.Targets(long=long, stop=0.03)

    m = make_market({"A": [FLAT, FLAT, (100.0, 100.0, 96.0, 97.0), FLAT]})
    res = pb.backtest(m, WithStop(), margin="isolated", leverage=10, stop=0.05)
    e = exits(res)
    assert list(e["bar"]) == [2]
    assert e["price"].iloc[0] == pytest.approx(97.0, rel=1e-12)
    assert e["s"].iloc[0] == pytest.approx(0.75, rel=1e-12)
    assert res.trades["stop_price"].iloc[0] == pytest.approx(97.0, rel=1e-12)
