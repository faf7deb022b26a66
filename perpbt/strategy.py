"""Strategies as small classes and the Targets they return (DESIGN section 1.1).

A strategy's parameters are typed class attributes; ``signals(market)`` runs vectorised over
the whole history and returns ``Targets`` (or a (T x N) exposure DataFrame). A target row at
bar t is decided at t's close and filled at t+1's open; exposure = signed notional / equity;
NaN in an exposure frame keeps the position.

Errors name the strategy (its repr), the symbol and the bar:

- a boolean ``long``/``short`` signal that is NaN (or missing after aligning to the market)
  on some bar is a ``ValueError``, never read as False: on every bar the signal is a decision.
  Warm-up needs no special care, since comparisons of NaN indicators give False
  (``fast > slow`` is False while ``slow`` is NaN);
- :func:`validate_targets` checks a strategy's output against a market before a run, and
  optionally an absolute exposure above ``leverage_cap``.
"""

from __future__ import annotations

import difflib
import functools
import typing
from typing import Any, ClassVar

import numpy as np
import pandas as pd

TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _ts(index: pd.Index, t: int) -> str:
    stamp = pd.Timestamp(index[t])
    return stamp.strftime(TS_FORMAT) if stamp.tzinfo is not None else str(stamp)


class Targets:
    """Target exposures per bar and symbol.

    Either ``exposure`` (or ``size``) as a (T x N) DataFrame (NaN = keep), or boolean
    ``long`` / ``short`` state frames (a Series is broadcast to every symbol): the target is
    +exposure while long, -exposure while short, 0 otherwise. ``exposure`` may then be a
    scalar or a per-bar DataFrame. A signal must be True or False on every bar of the market:
    NaN (or a bar the frame lacks) is a ``ValueError``; long and short both true likewise.

    Optional per-bar fields:

    - ``size``: a (T x N) DataFrame of |exposure| per bar and symbol, an alias of
      ``exposure`` that overrides it when given (``Targets(long=sig, size=vol_scaled)``).
      A size that changes while a signal stays on changes the target, so it trades (DESIGN
      1.1: an order is sent whenever the target changes); NaN keeps the position.
    - ``stop``: stop distance as a fraction of the average entry price (0.02 = 2 %), a
      scalar or a (T x N) DataFrame per bar and symbol; NaN = no stop from the strategy.
      Stored for the engine (read through :meth:`stop_frame`); a ``stop`` passed to
      ``pb.backtest`` overrides it.

    ``source`` names the producer in error messages; ``Strategy.signals`` sets it to the
    strategy's repr.
    """

    def __init__(self, long: pd.DataFrame | pd.Series | None = None,
                 short: pd.DataFrame | pd.Series | None = None,
                 exposure: "float | pd.DataFrame" = 1.0, *,
                 size: "pd.DataFrame | float | None" = None,
                 stop: "pd.DataFrame | float | None" = None,
                 source: str | None = None) -> None:
        self.long = long
        self.short = short
        self.exposure = exposure
        self.size = size
        self.stop = stop
        self.source = source

    @property
    def magnitude(self) -> "float | pd.DataFrame":
        """``size`` when given, else ``exposure``."""
        return self.exposure if self.size is None else self.size

    def to_frame(self, index: pd.Index, columns: pd.Index, *,
                 source: str | None = None) -> pd.DataFrame:
        """The exposure frame on the market's grid (T x N, float64)."""
        name = source or self.source or "Targets"
        size = self.magnitude
        if self.long is None and self.short is None:
            if not isinstance(size, pd.DataFrame):
                raise ValueError(f"{name}: Targets needs long/short signals or an exposure "
                                 f"(or size) DataFrame, got {type(size).__name__}")
            return size.astype(np.float64)
        if isinstance(size, pd.Series):
            raise TypeError(f"{name}: exposure/size must be a scalar or a DataFrame, got a "
                            f"Series (use .to_frame() or broadcast it to the symbols)")
        long = None if self.long is None else _as_bool(self.long, index, columns, "long", name)
        short = None if self.short is None else _as_bool(self.short, index, columns, "short",
                                                          name)
        if long is not None and short is not None:
            both = (long.to_numpy() & short.to_numpy())
            if both.any():
                t, n = np.argwhere(both)[0]
                raise ValueError(f"{name}: Targets: long and short both true for "
                                 f"{columns[n]} at {_ts(index, t)}")
        if np.ndim(size) == 0:  # one number: numpy masks, no alignment
            values = np.zeros((len(index), len(columns)))
            if long is not None:
                values[long.to_numpy()] = size
            if short is not None:
                values[short.to_numpy()] = -size
            return pd.DataFrame(values, index=index, columns=columns)
        frame = pd.DataFrame(0.0, index=index, columns=columns)
        if long is not None:
            frame = frame.where(~long, size)
        if short is not None:
            frame = frame.where(~short, -size)
        return frame.astype(np.float64)

    def stop_frame(self, index: pd.Index, columns: pd.Index, *,
                   source: str | None = None) -> pd.DataFrame | None:
        """``stop`` on the market's grid (T x N float64, NaN = none), or None when unset.
        A distance must be positive and finite where given."""
        if self.stop is None:
            return None
        name = source or self.source or "Targets"
        if isinstance(self.stop, pd.DataFrame):
            frame = self.stop.reindex(index=index, columns=columns).astype(np.float64)
        elif np.isscalar(self.stop):
            frame = pd.DataFrame(float(self.stop), index=index, columns=columns)
        else:
            raise TypeError(f"{name}: stop must be a scalar or a DataFrame, got "
                            f"{type(self.stop).__name__}")
        values = frame.to_numpy()
        bad = ~np.isnan(values) & ~((values > 0) & np.isfinite(values))
        if bad.any():
            t, n = np.argwhere(bad)[0]
            raise ValueError(f"{name}: stop distance {values[t, n]:g} for {columns[n]} at "
                             f"{_ts(index, t)} must be a positive fraction of the entry "
                             f"(NaN = no stop)")
        return frame


def _as_bool(frame: "pd.DataFrame | pd.Series", index, columns, name: str,
             source: str = "Targets") -> pd.DataFrame:
    """A boolean signal aligned to (index, columns); NaN or a missing bar is an error."""
    if isinstance(frame, pd.Series):
        frame = pd.concat({c: frame for c in columns}, axis=1)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{source}: the {name} signal must be a boolean DataFrame or Series, "
                        f"got {type(frame).__name__}")
    if (frame.index.equals(index) and frame.columns.equals(columns)
            and all(dtype == np.bool_ for dtype in frame.dtypes)):
        return frame  # already boolean on the grid: it cannot hold a NaN
    frame = frame.reindex(index=index, columns=columns)
    missing = frame.isna().to_numpy()
    if missing.any():
        t, n = np.argwhere(missing)[0]
        raise ValueError(f"{source}: the {name} signal is NaN for {columns[n]} at "
                         f"{_ts(index, t)}; a boolean signal must be True or False on every "
                         f"bar (fill warm-up bars explicitly, e.g. .fillna(False))")
    return frame.astype(bool)


def validate_targets(strategy_name: "str | Strategy", frame, market, *,
                     leverage_cap: float | None = None) -> pd.DataFrame:
    """Check a strategy's output against ``market`` and return its (T x N) exposure frame.

    ``strategy_name`` is the strategy (or its repr) named in errors; ``frame`` is what its
    ``signals`` returned: ``Targets`` or an exposure DataFrame (a Series for one symbol).
    Raises ``ValueError`` naming the strategy, the symbol and the bar for a NaN in a boolean
    signal, a frame not on the market's bars and symbols, an infinite exposure and, when
    ``leverage_cap`` is given, an absolute exposure above it. NaN exposures (keep) pass.
    """
    name = repr(strategy_name) if isinstance(strategy_name, Strategy) else str(strategy_name)
    index, columns = market.index, pd.Index(market.symbols)
    if isinstance(frame, Targets):
        frame.stop_frame(index, columns, source=name)
        frame = frame.to_frame(index, columns, source=name)
    if isinstance(frame, pd.Series) and len(columns) == 1:
        frame = frame.to_frame(columns[0])
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name}: expected pb.Targets or a DataFrame of target exposures, got "
                        f"{type(frame).__name__}")
    if frame.shape != (len(index), len(columns)) or set(map(str, frame.columns)) != set(columns):
        raise ValueError(f"{name}: targets of shape {frame.shape} with columns "
                         f"{list(frame.columns)} are not on the market's {len(index)} bars x "
                         f"{list(columns)}")
    frame = frame[list(columns)]
    if not pd.DatetimeIndex(frame.index).equals(index):
        raise ValueError(f"{name}: the targets' index is not the market's bar times")
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    checks = [(np.isinf(values), "is infinite")]
    if leverage_cap is not None:
        checks.append((np.abs(values) > leverage_cap, f"exceeds leverage_cap {leverage_cap:g}"))
    for bad, what in checks:
        if bad.any():
            t, n = np.argwhere(bad)[0]
            raise ValueError(f"{name}: |exposure| {abs(values[t, n]):g} for {columns[n]} at "
                             f"{_ts(index, t)} {what}")
    return frame.astype(np.float64)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):  # postponed annotations
        return annotation.replace("typing.", "").startswith("ClassVar")
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


class Strategy:
    """Base class: declare parameters as annotated class attributes, implement ``signals``.

    Class-level settings (``ClassVar``, not parameters): ``name``; ``default_stop`` and
    ``default_take``, the stop-loss and take-profit (a fraction of the average entry, or a
    ``pb.StopLoss``/``pb.TakeProfit``) the strategy suggests when the backtest gives none;
    the ``stop``/``take`` arguments of ``pb.backtest`` override them.
    """

    name: ClassVar[str] = ""
    default_stop: ClassVar[Any] = None
    default_take: ClassVar[Any] = None
    default_sizing: ClassVar[Any] = None  # a perpbt.sizing rule; pb.backtest(sizing=) wins

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        func = cls.__dict__.get("signals")
        if callable(func) and hasattr(func, "__code__") and not getattr(func, "_names_source",
                                                                       False):
            cls.signals = _named_signals(func)

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
        settings = {key for klass in cls.__mro__
                    for key, ann in getattr(klass, "__annotations__", {}).items()
                    if _is_classvar(ann)} | {"name"}
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for key in getattr(klass, "__annotations__", {}):
                if not key.startswith("_") and key not in settings and key not in names:
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


def _named_signals(func):
    """Wrap a subclass's ``signals`` so the Targets it returns name the strategy in errors."""
    @functools.wraps(func)
    def signals(self, market):
        out = func(self, market)
        if isinstance(out, Targets) and out.source is None:
            out.source = repr(self)
        return out

    signals._names_source = True
    return signals


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
