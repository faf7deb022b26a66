"""Base half spread from candles: the Corwin & Schultz (2012) high-low spread estimator.

Corwin, S. A. and Schultz, P. (2012), "A Simple Way to Estimate Bid-Ask Spreads from Daily High
and Low Prices", Journal of Finance 67(2), 719-760. A bar's high is usually a trade at the ask
and its low a trade at the bid, so ln(H/L) holds the spread plus volatility. The variance part
grows with the length of the interval and the spread part does not, so comparing one two-bar
range with the sum of the two one-bar ranges separates them. For bars t-1 and t:

    beta  = ln(H[t-1]/L[t-1])^2 + ln(H[t]/L[t])^2
    gamma = ln(max(H[t-1], H[t]) / min(L[t-1], L[t]))^2
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))
    S     = 2 (e^alpha - 1) / (1 + e^alpha)          (full spread, fraction of price)

Negative two-bar estimates are set to 0 before averaging (the paper's convention); the half
spread is mean(S) / 2.

**No overnight adjustment.** The paper shifts day t's high and low by the close-to-open gap when
the market was closed in between. Perpetuals trade 24/7 and consecutive klines are contiguous
(the next bar opens one trade after the previous close), so there is no non-trading interval
to remove. On the 1m files the close of a bar lies outside the next bar's range in 3-4 % of
bars, and the close-to-next-open gap is typically one tick: that is the bid-ask bounce the
estimator is meant to measure, not an overnight return, so the adjustment is not applied.

**Known bias.** The clipped mean is biased upward (clipping removes only the negative half of
the noise) and the estimator confounds volatility with spread when bars are long relative to
the time between trades. On the 1m Binance data 42-45 % of the raw two-bar estimates are
negative and their unclipped mean is slightly negative: a book quoted a tick or so wide
(BTCUSDT's tick, 0.1 USDT, is ~0.01 bp) is below what 1m candles can resolve. The clipped
estimate is therefore an upper, conservative figure for a backtest, not a measurement of the
quoted spread.

All functions are pure; spreads are fractions of price (0.0001 = 1 bp) unless a column name
says ``_bps``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

_K = 3.0 - 2.0 * np.sqrt(2.0)   # 3 - 2 sqrt 2 = (sqrt 2 - 1)^2
_KLINES = re.compile(r"klines_(?P<tf>\d+[mhd])(?:_\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2})?\.csv")

TABLE_COLUMNS = ["symbol", "timeframe", "file", "first_ms", "last_ms", "n_bars", "n_windows",
                 "mean_bps", "median_bps", "raw_mean_bps", "negative_frac", "half_spread",
                 "stress_ratio"]


def _ohlc_arrays(high, low) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    if h.ndim != 1 or h.shape != lo.shape:
        raise ValueError(f"high and low must be 1-D of one length, got {h.shape} and {lo.shape}")
    ok = np.isfinite(h) & np.isfinite(lo)
    if np.any(ok & ((h <= 0) | (lo <= 0))):
        raise ValueError("high and low must be positive prices")
    if np.any(ok & (h < lo)):
        bad = int(np.flatnonzero(ok & (h < lo))[0])
        raise ValueError(f"high < low at bar {bad}: {h[bad]} < {lo[bad]}")
    return h, lo


def corwin_schultz(high, low, clip: bool = False) -> np.ndarray:
    """Corwin-Schultz full bid-ask spread per two-bar window, as a fraction of price.

    ``high``, ``low``: 1-D prices in quote units, one per contiguous bar (no gaps). Returns a
    float64 array of the same length where ``out[t]`` is the estimate S from bars ``t-1`` and
    ``t`` (so it uses nothing after bar t); ``out[0]`` is NaN, and so is every window touching
    a bar with a NaN high or low (use NaN to mask bars such as exchange maintenance). Raw
    estimates can be negative; ``clip=True`` sets them to 0 (the paper's convention). Raises
    on non-positive prices or high < low.
    """
    h, lo = _ohlc_arrays(high, low)
    out = np.full(h.shape, np.nan)
    if h.size < 2:
        return out
    r2 = np.log(h / lo) ** 2
    beta = r2[1:] + r2[:-1]
    gamma = np.log(np.maximum(h[1:], h[:-1]) / np.minimum(lo[1:], lo[:-1])) ** 2
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _K - np.sqrt(gamma / _K)
    e = np.exp(alpha)
    s = 2.0 * (e - 1.0) / (1.0 + e)
    if clip:
        s = np.where(s < 0.0, 0.0, s)   # keeps NaN
    out[1:] = s
    return out


def estimate_half_spread(high, low) -> float:
    """Half spread as a fraction of price: mean of the clipped two-bar estimates / 2.

    NaN windows are ignored; NaN when no window is defined.
    """
    s = corwin_schultz(high, low, clip=True)
    s = s[np.isfinite(s)]
    return float(s.mean() / 2.0) if s.size else float("nan")


def stress_ratio(high, low, quantile: float = 0.99) -> float:
    """Mean clipped CS spread on wide bars over the mean on all bars (dimensionless).

    A bar is wide when its range ln(H/L) is above the ``quantile`` of all bar ranges; its
    spread is the estimate of the window ending at that bar (bars t-1, t), the one a fill
    inside bar t could know. Evidence for the engine's stress multiplier on forced orders: how
    much wider the effective spread is when the market moves most. It inherits the
    estimator's volatility bias, which is largest on exactly these bars.
    NaN when no bar is above the quantile.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    h, lo = _ohlc_arrays(high, low)
    s = corwin_schultz(h, lo, clip=True)
    r = np.log(h / lo)
    valid = np.isfinite(s) & np.isfinite(r)
    if not valid.any():
        return float("nan")
    wide = valid & (r > np.quantile(r[np.isfinite(r)], quantile))
    base = s[valid].mean()
    if not wide.any() or base <= 0.0:
        return float("nan")
    return float(s[wide].mean() / base)


def _root(data_dir: str | Path) -> Path:
    root = Path(data_dir).expanduser()
    if (root / "binance_usdm").is_dir():
        root = root / "binance_usdm"
    if not root.is_dir():
        raise FileNotFoundError(f"no data directory at {root}")
    return root


def _row(symbol: str, tf: str, path: Path) -> dict:
    frame = pd.read_csv(path, usecols=["timestamp_ms", "high", "low", "volume"])
    high = frame["high"].to_numpy(np.float64, copy=True)
    low = frame["low"].to_numpy(np.float64, copy=True)
    # zero-volume bars are exchange maintenance (flat, no trades): masked, not zero spread
    idle = frame["volume"].to_numpy() == 0
    high[idle] = np.nan
    low[idle] = np.nan
    raw = corwin_schultz(high, low)
    raw = raw[np.isfinite(raw)]
    clipped = np.maximum(raw, 0.0)
    ts = frame["timestamp_ms"].to_numpy(np.int64)
    return {
        "symbol": symbol, "timeframe": tf, "file": path.name,
        "first_ms": int(ts[0]), "last_ms": int(ts[-1]),
        "n_bars": len(frame), "n_windows": raw.size,
        "mean_bps": clipped.mean() * 1e4, "median_bps": float(np.median(clipped)) * 1e4,
        "raw_mean_bps": raw.mean() * 1e4, "negative_frac": float((raw < 0).mean()),
        "half_spread": clipped.mean() / 2.0,
        "stress_ratio": stress_ratio(high, low),
    }


def calibrate(data_dir: str | Path, timeframes: tuple[str, ...] = ("1m", "5m")) -> pd.DataFrame:
    """Corwin-Schultz spreads for every ``<SYMBOL>/klines_<tf>*.csv`` under ``data_dir``.

    ``data_dir`` is the shared data directory (or its ``binance_usdm`` folder). One row per
    (symbol, timeframe, file), sorted: ``first_ms``/``last_ms`` (bar opens, int ms UTC),
    ``n_bars``, ``n_windows`` (defined two-bar windows), ``mean_bps``/``median_bps`` (clipped
    full spread, basis points), ``raw_mean_bps`` (unclipped), ``negative_frac`` (share of raw
    estimates below 0), ``half_spread`` (clipped mean / 2, fraction of price) and
    ``stress_ratio`` (:func:`stress_ratio` at the 0.99 quantile). Zero-volume bars are masked.
    Mark-price klines are not used (they are an index, not traded prices).
    """
    root = _root(data_dir)
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("klines_*.csv")):
            match = _KLINES.fullmatch(path.name)
            if match and match["tf"] in timeframes:
                rows.append(_row(folder.name, match["tf"], path))
    if not rows:
        raise FileNotFoundError(f"no klines_{{{','.join(timeframes)}}}*.csv files under {root}")
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values(["symbol", "timeframe", "file"], ignore_index=True)


def finest_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per symbol, the rows of its finest timeframe (1m if present, else 5m, ...)."""
    minutes = table["timeframe"].map(_tf_minutes)
    return table[minutes == minutes.groupby(table["symbol"]).transform("min")]


def _tf_minutes(tf: str) -> int:
    return int(tf[:-1]) * {"m": 1, "h": 60, "d": 1440}[tf[-1]]


def recommended_defaults(table: pd.DataFrame) -> dict[str, float]:
    """Base half spread per symbol (fraction of price) plus ``"default"``, from :func:`calibrate`.

    Each symbol uses its **1m** file when it has one, else its 5m files (pooled: the mean
    over all their windows, i.e. the window-weighted mean of the file means). The finest
    resolution is the closest to a quoted spread: CS attributes to the spread whatever part of
    the range the two-bar volatility correction misses, so it is biased upward at coarse bars
    (on these files the 5m means are 2-4x the 1m means, over different periods).
    ``"default"``, for symbols without their own value, is the median over symbols. Values
    are unrounded; ``perpbt.calibrated`` ships them at 3 significant digits.
    """
    out: dict[str, float] = {}
    for symbol, rows in finest_rows(table).groupby("symbol", sort=True):
        w = rows["n_windows"].to_numpy(np.float64)
        out[str(symbol)] = float((rows["half_spread"].to_numpy() * w).sum() / w.sum())
    if not out:
        raise ValueError("empty calibration table")
    out["default"] = float(np.median(list(out.values())))
    return out


def recommended_stress_ratio(table: pd.DataFrame) -> float:
    """Median over symbols of :func:`stress_ratio` on their 1m files (dimensionless).

    1m only: the month of 1m data is calm, and at 5m the wide bars' estimates are dominated by
    volatility rather than spread.
    """
    rows = table[table["timeframe"] == "1m"]
    if rows.empty:
        raise ValueError("no 1m files in the calibration table")
    return float(rows.groupby("symbol")["stress_ratio"].mean().median())


def round_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f"{x:.{digits - 1}e}")
