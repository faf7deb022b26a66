"""Strategies as small classes and the Targets they return (DESIGN section 1.1).

A strategy's parameters are typed class attributes; ``signals(market)`` runs vectorised over
the whole history and returns ``Targets``. A target row at bar t is decided at t's close and
filled at t+1's open; exposure = signed notional / equity; NaN keeps the position.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

import numpy as np
import pandas as pd


class Targets:
    """Target exposures per bar and symbol.

    Either ``exposure`` as a (T x N) DataFrame (NaN = keep), or boolean ``long`` / ``short``
    state frames: the target is +exposure while long, -exposure while short, 0 otherwise
    (long and short both true on a bar is an error). ``exposure`` may then be a scalar.
    """

    def __init__(self, long: pd.DataFrame | None = None, short: pd.DataFrame | None = None,
                 exposure: "float | pd.DataFrame" = 1.0) -> None:
        self.long = long
        self.short = short
        self.exposure = exposure

    def to_frame(self, index: pd.Index, columns: pd.Index) -> pd.DataFrame:
        """The exposure frame on the market's grid (T x N, float64)."""
        if self.long is None and self.short is None:
            if not isinstance(self.exposure, pd.DataFrame):
                raise ValueError("Targets needs long/short signals or an exposure DataFrame")
            return self.exposure.astype(np.float64)
        size = self.exposure
        frame = pd.DataFrame(0.0, index=index, columns=columns)
        if self.long is not None:
            frame = frame.where(~_as_bool(self.long, index, columns, "long"), size)
        if self.short is not None:
            short = _as_bool(self.short, index, columns, "short")
            if self.long is not None:
                both = _as_bool(self.long, index, columns, "long") & short
                if both.to_numpy().any():
                    t, n = np.argwhere(both.to_numpy())[0]
                    raise ValueError(f"Targets: long and short both true for {columns[n]} at "
                                     f"{index[t]}")
            frame = frame.where(~short, -size if np.isscalar(size) else -size)
        return frame


def _as_bool(frame: "pd.DataFrame | pd.Series", index, columns, name: str) -> pd.DataFrame:
    if isinstance(frame, pd.Series):
        frame = pd.concat({c: frame for c in columns}, axis=1)
    frame = frame.reindex(index=index, columns=columns)
    return frame.fillna(False).astype(bool)


class Strategy:
    """Base class: declare parameters as annotated class attributes, implement ``signals``."""

    name: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        known = self.param_names()
        for key, value in params.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; known: {sorted(known)}"
                raise TypeError(f"{type(self).__name__} has no parameter {key!r}{extra}")
            setattr(self, key, _coerce(type(self), key, value))

    @classmethod
    def param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for key in getattr(klass, "__annotations__", {}):
                if not key.startswith("_") and key != "name" and key not in names:
                    names.append(key)
        return names

    @property
    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    def signals(self, market) -> "Targets | pd.DataFrame":  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _coerce(cls: type, key: str, value: Any) -> Any:
    default = getattr(cls, key, None)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise TypeError(f"{cls.__name__}.{key} expects a bool, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, (int, np.integer)):
            raise TypeError(f"{cls.__name__}.{key} expects an int, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if not isinstance(value, (int, float, np.number)):
            raise TypeError(f"{cls.__name__}.{key} expects a float, got {value!r}")
        return float(value)
    return value
