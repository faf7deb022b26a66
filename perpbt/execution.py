"""The execution model's parameters (DESIGN section 6); the kernels are in engine/execution.py.

``pb.Execution()`` switches the model on with the shipped defaults; ``execution=None`` (the
default of ``pb.backtest``) is the frictionless engine: every order at the open, every stop at
its level, no cap.

Where the numbers come from:
- ``base_half_spread``: per symbol from ``perpbt.calibrated`` (Corwin-Schultz on the real 1m
  candles, ``benchmarks/calibrate_execution.py``), else its ``"default"``.
- ``stress`` (forced orders' spread multiplier): ``perpbt.calibrated.STRESS_RATIO``, the mean
  high-low spread on the widest 1 % of 1m bars over the mean on all bars: an assumption backed
  by that measurement (liquidations cluster in exactly those bars), not a fitted value.
- ``impact_k`` = 1.0: the square-root law's constant Y is of order one across markets
  (Bouchaud, Bonart, Donier, Gould, "Trades, Quotes and Prices", CUP 2018, ch. 12; Toth et
  al. 2011, "Anomalous price impact and the critical nature of liquidity", PRX 1, 021006);
  Donier and Bonart (2015, "A million metaorder analysis of market impact on the Bitcoin",
  Market Microstructure and Liquidity 1(2)) find the square-root law on Bitcoin.
- ``participation`` = 0.1: at most 10 % of a bar's volume per order per bar, the usual
  upper range of participation-of-volume execution (an assumption; set it per study).
- ``range_exponent``, ``thin_exponent``, ``span``, ``max_widening``: shape assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from perpbt import calibrated
from perpbt.engine.execution import quote_table_nb

REMAINDERS = ("cancel", "carry")


def calibration_key(symbol: str) -> str:
    """'BTC/USDT:USDT' or 'BTCUSDT' -> 'BTCUSDT' (the key of perpbt.calibrated)."""
    return symbol.split(":")[0].replace("/", "").upper()


@dataclass(frozen=True)
class Execution:
    """Spread, impact and participation of every fill (fractions of price unless stated).

    ``base_half_spread``, ``stress``, ``impact_k`` and ``participation`` take one number for
    every instrument or a mapping symbol -> number (a symbol missing from a mapping of
    ``base_half_spread`` takes the calibrated value; of the others, it is an error).
    ``remainder``: what happens to the unfilled part of a normal order, "cancel" or "carry"
    (to the next opens until filled or replaced by a new target). Stop, take-profit and
    multibar forced remainders always carry.
    """

    base_half_spread: "float | Mapping[str, float] | None" = None
    stress: "float | Mapping[str, float]" = calibrated.STRESS_RATIO
    impact_k: "float | Mapping[str, float]" = 1.0
    participation: "float | Mapping[str, float]" = 0.1
    span: int = 20              # bars of the EWMs of range and volume
    window: int = 80            # bars they look back (4 spans: older weights < 0.1 %)
    range_exponent: float = 1.0
    thin_exponent: float = 0.5
    max_widening: float = 20.0
    remainder: str = "cancel"

    def __post_init__(self) -> None:
        for name in ("stress", "participation", "span", "window", "max_widening"):
            for value in _values(getattr(self, name)):
                if not (np.isfinite(value) and value > 0):
                    raise ValueError(f"Execution.{name} must be positive, got {value!r}")
        for name in ("impact_k", "range_exponent", "thin_exponent"):
            for value in _values(getattr(self, name)):
                if not (np.isfinite(value) and value >= 0):
                    raise ValueError(f"Execution.{name} must be >= 0, got {value!r}")
        for value in _values(self.stress):
            if value < 1.0:
                raise ValueError(f"Execution.stress must be >= 1, got {value}")
        if self.remainder not in REMAINDERS:
            raise ValueError(f"Execution.remainder={self.remainder!r} is not one of "
                             f"{list(REMAINDERS)}")

    def half_spreads(self, symbols) -> np.ndarray:
        """Base half spread per symbol (fraction of price)."""
        out = []
        for sym in symbols:
            hs = self.base_half_spread
            if isinstance(hs, Mapping):
                hs = hs.get(sym, hs.get(calibration_key(sym)))
            if hs is None:
                hs = calibrated.BASE_HALF_SPREAD.get(calibration_key(sym),
                                                     calibrated.BASE_HALF_SPREAD["default"])
            if not (np.isfinite(hs) and hs >= 0):
                raise ValueError(f"Execution.base_half_spread for {sym} must be >= 0, got {hs}")
            out.append(float(hs))
        return np.array(out)

    def per_symbol(self, name: str, symbols) -> np.ndarray:
        """``stress``, ``impact_k`` or ``participation`` as one value per symbol."""
        value = getattr(self, name)
        if not isinstance(value, Mapping):
            return np.full(len(symbols), float(value))
        out = []
        for sym in symbols:
            v = value.get(sym, value.get(calibration_key(sym)))
            if v is None:
                raise ValueError(f"Execution.{name} has no value for {sym}")
            out.append(float(v))
        return np.array(out)

    def state_arrays(self, high: np.ndarray, low: np.ndarray, volume: np.ndarray, symbols):
        """Every bar's (hs_open, hs_in, sigma, typ_volume), each (T, N): what a fill at the
        open / inside the bar would be quoted (engine/execution.py). For inspection and tests:
        a run computes them only at its fills."""
        shape = high.shape
        arrays = [np.zeros(shape) for _ in range(4)]
        c = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        quote_table_nb(c(high), c(low), c(volume), self.half_spreads(symbols),
                       float(self.span), int(self.window), float(self.range_exponent),
                       float(self.thin_exponent), float(self.max_widening), *arrays)
        return arrays


def _values(value) -> list:
    return list(value.values()) if isinstance(value, Mapping) else [value]


def resolve_execution(execution) -> "Execution | None":
    """None/False -> off; True -> Execution(); an Execution as is."""
    if execution is None or execution is False:
        return None
    if execution is True:
        return Execution()
    if isinstance(execution, Execution):
        return execution
    raise TypeError(f"execution must be None, True or a pb.Execution, got {execution!r}")
