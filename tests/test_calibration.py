"""perpbt.calibration: a hand-derived Corwin-Schultz example, properties, and the shipped defaults.

Expected numbers are derived in the comments from the paper's formulas (Corwin & Schultz 2012,
eqs. for beta, gamma, alpha, S); none is copied from our output.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpbt import calibrated
from perpbt.calibration import (calibrate, corwin_schultz, estimate_half_spread,
                                recommended_defaults, recommended_stress_ratio, stress_ratio)

# ---------------------------------------------------------------------------------------------
# (a) golden: three bars, two windows
#
#   bar 0: H = 101, L = 100      bar 1: H = 101, L = 100      bar 2: H = 102, L = 101
#   K = 3 - 2 sqrt 2 = 0.171572875254 = (sqrt 2 - 1)^2,  sqrt K = sqrt 2 - 1 = 0.414213562373
#
# Window (0, 1): both bars have r = ln(101/100); the two-bar range is the same 100..101.
#   beta = 2 r^2, gamma = r^2  ->  sqrt(2 beta) = 2r, sqrt(beta) = sqrt2 r, sqrt(gamma) = r
#   alpha = r (2 - sqrt2) / (sqrt2 - 1)^2 - r / (sqrt2 - 1)
#         = r sqrt2 / (sqrt2 - 1) - r (sqrt2 + 1) = r (2 + sqrt2) - r (sqrt2 + 1) = r
#   S = 2 (e^r - 1) / (1 + e^r) = 2 (1.01 - 1) / (1 + 1.01) = 0.02 / 2.01 = 2/201
#     = 0.009950248756218905
#
# Window (1, 2), computed with Python's decimal module at 30 digits (plain math, not perpbt):
#   ln(101/100) = 0.009950330853168083    ln(102/101) = 0.009852296443011630
#   beta  = 0.009950330853168083^2 + 0.009852296443011630^2 = 1.960768292884883e-4
#   gamma = ln(102/100)^2 = 0.019802627296179713^2           = 3.921440478314019e-4
#   sqrt(2 beta) = 0.019802869958088817    sqrt(beta) = 0.014002743634319964
#   (sqrt(2 beta) - sqrt(beta)) / K = 0.005800126323768853 / 0.171572875254 = 0.033805613592408781
#   sqrt(gamma / K) = 0.019802627296179713 / 0.414213562373  = 0.047807771389056716
#   alpha = 0.033805613592408781 - 0.047807771389056716     = -0.014002157796647935
#   e^alpha = 0.986095416467182032
#   S = 2 (0.986095416467182 - 1) / (1 + 0.986095416467182)  = -0.014001929028718168
# Negative (the third bar drifted up a whole range), so clipping sets it to 0.
#
# Half spread = mean of clipped (2/201, 0) / 2 = (2/201) / 4 = 1/402 = 0.0024875621890547264
# ---------------------------------------------------------------------------------------------
HIGH = [101.0, 101.0, 102.0]
LOW = [100.0, 100.0, 101.0]


def test_corwin_schultz_three_bar_golden():
    out = corwin_schultz(HIGH, LOW)
    assert out.shape == (3,)
    assert math.isnan(out[0])                       # no window ends at the first bar
    assert out[1] == pytest.approx(0.009950248756218905, rel=1e-12)
    assert out[2] == pytest.approx(-0.014001929028718168, rel=1e-12)
    clipped = corwin_schultz(HIGH, LOW, clip=True)
    assert math.isnan(clipped[0])
    assert clipped[1] == pytest.approx(0.009950248756218905, rel=1e-12)
    assert clipped[2] == 0.0
    assert estimate_half_spread(HIGH, LOW) == pytest.approx(1 / 402, rel=1e-12)


def test_corwin_schultz_masks_nan_bars_and_rejects_bad_prices():
    # a NaN bar 1 undefines both windows that touch it
    out = corwin_schultz([101.0, np.nan, 101.0, 101.0], [100.0, np.nan, 100.0, 100.0])
    assert np.isnan(out[:3]).all() and out[3] == pytest.approx(2 / 201, rel=1e-12)
    with pytest.raises(ValueError, match="high < low"):
        corwin_schultz([100.0, 99.0], [100.0, 100.0])
    with pytest.raises(ValueError, match="positive"):
        corwin_schultz([100.0, 0.0], [100.0, 0.0])


# (b) properties -------------------------------------------------------------------------------
@given(price=st.floats(1e-4, 1e6), frac=st.floats(0.0, 0.2), n=st.integers(2, 30))
def test_constant_range_without_drift_is_non_negative(price, frac, n):
    # H = P(1 + c), L = P on every bar: the golden derivation gives alpha = r = ln(1 + c), so
    # S = 2c / (2 + c) >= 0 in every window (0 for flat bars)
    high = np.full(n, price * (1.0 + frac))
    low = np.full(n, price)
    out = corwin_schultz(high, low)
    assert np.isnan(out[0])
    r = math.log(high[0] / low[0])
    expected = 2.0 * math.expm1(r) / (2.0 + math.expm1(r))
    assert (out[1:] >= 0.0).all()
    np.testing.assert_allclose(out[1:], expected, rtol=1e-9, atol=1e-15)


@given(st.lists(st.tuples(st.floats(0.5, 2.0), st.floats(0.0, 0.05)), min_size=2, max_size=40),
       st.floats(1e-3, 1e5))
def test_clipped_estimates_are_never_negative(bars, scale):
    low = np.array([b[0] for b in bars]) * scale
    high = low * (1.0 + np.array([b[1] for b in bars]))
    raw = corwin_schultz(high, low)
    clipped = corwin_schultz(high, low, clip=True)
    assert np.isnan(clipped[0]) and (clipped[1:] >= 0.0).all()
    np.testing.assert_array_equal(clipped[1:], np.maximum(raw[1:], 0.0))
    assert estimate_half_spread(high, low) >= 0.0


def test_stress_ratio_picks_the_wide_bars():
    # 98 bars 100..101 then 2 bars 100..110; at quantile 0.95 the threshold lies among the
    # narrow ranges (sorted position 0.95 * 99 = 94.05), so bars 98 and 99 are the wide ones.
    # Windows (clipped, decimal module at 30 digits, formulas as in the golden test):
    #   1..97 narrow/narrow: 2/201 = 0.009950248756 each (golden window (0, 1))
    #   98 narrow/wide: beta = ln1.01^2 + ln1.1^2 = 0.009183039458, gamma = ln1.1^2 = 0.009084030374
    #      alpha = (0.135521507 - 0.095828177) / K - 0.095310180 / sqrt K = 0.001250555241
    #      S = 2 (e^alpha - 1) / (1 + e^alpha) = 0.001250555078
    #   99 wide/wide: 2 (1.1 - 1) / (1 + 1.1) = 2/21 = 0.095238095238
    # mean over wide bars = (0.001250555078 + 0.095238095238) / 2 = 0.048244325158
    # mean over all 99 windows = (97 * 2/201 + 0.001250555078 + 2/21) / 99 = 0.010723866461
    # ratio = 0.048244325158 / 0.010723866461 = 4.498780857845
    high = np.array([101.0] * 98 + [110.0, 110.0])
    low = np.full(100, 100.0)
    assert stress_ratio(high, low, quantile=0.95) == pytest.approx(4.498780857845, rel=1e-10)
    # at 0.99 the threshold (position 98.01) is the wide range itself: no bar is above it
    assert math.isnan(stress_ratio(high, low, quantile=0.99))


def test_recommended_defaults_prefer_the_finest_timeframe():
    table = pd.DataFrame({
        "symbol": ["AAA", "AAA", "BBB", "BBB", "CCC"],
        "timeframe": ["1m", "5m", "5m", "5m", "1m"],
        "n_windows": [10, 10, 30, 10, 5],
        "half_spread": [1e-4, 9e-4, 2e-4, 6e-4, 4e-4],
        "stress_ratio": [2.0, 9.0, 9.0, 9.0, 4.0],
    })
    # AAA: its 1m row; BBB: 5m rows pooled by windows (30*2e-4 + 10*6e-4) / 40 = 3e-4;
    # CCC: 4e-4; default = median(1e-4, 3e-4, 4e-4) = 3e-4; stress: median(2, 4) over 1m = 3
    got = recommended_defaults(table)
    assert got == pytest.approx({"AAA": 1e-4, "BBB": 3e-4, "CCC": 4e-4, "default": 3e-4})
    assert recommended_stress_ratio(table) == pytest.approx(3.0)


# (c) the shipped defaults equal the script's output on the real data --------------------------
def _sig3(x: float) -> str:
    return f"{x:.3g}"


@pytest.mark.shared_data
def test_shipped_defaults_match_calibration(shared_data):
    table = calibrate(shared_data)
    assert set(table["timeframe"]) == {"1m", "5m"}
    got = recommended_defaults(table)
    assert set(got) == set(calibrated.BASE_HALF_SPREAD) >= {"BTCUSDT", "ETHUSDT", "SOLUSDT",
                                                             "XRPUSDT", "default"}
    assert {k: _sig3(v) for k, v in got.items()} == \
        {k: _sig3(v) for k, v in calibrated.BASE_HALF_SPREAD.items()}
    assert _sig3(recommended_stress_ratio(table)) == _sig3(calibrated.STRESS_RATIO)
