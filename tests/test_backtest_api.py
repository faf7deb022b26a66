"""The Python face of the engine: input checks before the run, Strategy ergonomics, Result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perpbt as pb
from perpbt.result import STATS_KEYS
from tests.helpers import make_market, targets_frame

FLAT = (100.0, 100.0, 100.0, 100.0)


class Hold(pb.Strategy):
    exposure: float = 1.0
    delay: int = 0

    def signals(self, m):
        long = pd.DataFrame(True, index=m.index, columns=list(m.symbols))
        long.iloc[: self.delay] = False
        return pb.Targets(long=long, exposure=self.exposure)


class WrongShape(pb.Strategy):
    def signals(self, m):
        return pd.DataFrame(1.0, index=m.index[:-1], columns=list(m.symbols))


def market():
    return make_market({"A": [FLAT] * 6, "B": [FLAT] * 6})


def test_unknown_parameter_suggests_the_close_name():
    with pytest.raises(TypeError, match=r"Hold has no parameter 'exposre'; did you mean 'exposure'"):
        Hold(exposre=2.0)
    with pytest.raises(TypeError, match=r"Hold.delay expects an int"):
        Hold(delay="3")


def test_strategy_with_wrong_shape_names_the_strategy():
    with pytest.raises(ValueError, match=r"WrongShape\(\): targets have shape \(5, 2\), the market is "
                                         r"\(6 bars x 2 symbols"):
        pb.backtest(market(), WrongShape())


def test_targets_with_wrong_columns_or_index_are_rejected():
    m = market()
    bad_cols = targets_frame(m, {}).rename(columns={"B": "C"})
    with pytest.raises(ValueError, match=r"target columns \['A', 'C'\] are not the market's"):
        pb.backtest(m, bad_cols)
    shifted = targets_frame(m, {}).set_axis(m.index + pd.Timedelta("1h"))
    with pytest.raises(ValueError, match=r"targets index differs from the market's bar times first "
                                         r"at row 0"):
        pb.backtest(m, shifted)
    inf = targets_frame(m, {"B": {2: np.inf}})
    with pytest.raises(ValueError, match=r"target exposure is infinite for B at "
                                         r"2020-09-13T14:00:00Z"):
        pb.backtest(m, inf)


def test_bad_options_name_the_field():
    m = market()
    with pytest.raises(ValueError, match=r"margin='crosss' is not one of"):
        pb.backtest(m, Hold(), margin="crosss")
    with pytest.raises(ValueError, match=r"liquidation='iocc' is not one of"):
        pb.backtest(m, Hold(), liquidation="iocc")
    with pytest.raises(ValueError, match=r"Execution.participation must be positive"):
        pb.backtest(m, Hold(), execution=pb.Execution(participation=0.0))


def test_strategy_targets_and_stats_keys():
    # long from bar 0's close: both symbols buy 10,000 / 100 = 100 units each at bar 1's open
    # (one E for all symbols: exposure 1.0 each, cross margin allows 2x notional at 10x)
    res = pb.backtest(market(), Hold(), margin="cross", leverage=10)
    assert list(res.fills["qty"]) == [100.0, 100.0]
    assert list(res.fills["bar"]) == [1, 1]
    stats = res.stats()
    assert set(STATS_KEYS) <= set(stats.index)
    assert stats["trades"] == 2 and stats["final_equity"] == pytest.approx(10_000.0)
    # a stats-only run gives the same stats
    quick = pb.backtest(market(), Hold(), margin="cross", leverage=10, stats_only=True)
    pd.testing.assert_series_equal(quick.stats(), stats)
