"""Integer constants usable inside numba kernels (NamedTuple singletons, vectorbt style).

Every enum is a NamedTuple instance: ``Venue.binance == 0``. numba treats the attributes as
compile-time integer constants, so kernels take plain ``int64`` flags and one kernel serves every
option (no compiled specialization per option).
"""

from __future__ import annotations

from typing import NamedTuple


class _Side(NamedTuple):
    long: int = 1
    short: int = -1


Side = _Side()


class _MarginMode(NamedTuple):
    isolated: int = 0
    cross: int = 1


MarginMode = _MarginMode()


class _Venue(NamedTuple):
    """Which exchange's liquidation formula and trigger apply (DESIGN section 5)."""

    binance: int = 0  # margin balance <= maintenance margin at mark, no fees
    bybit: int = 1  # maintenance margin taken at entry value
    okx: int = 2  # taker fee added to the maintenance requirement


Venue = _Venue()


class _LiqPolicy(NamedTuple):
    takeover: int = 0
    ioc: int = 1
    tiered: int = 2
    multibar: int = 3


LiqPolicy = _LiqPolicy()


class _FillReason(NamedTuple):
    order: int = 0  # a target change executed at the open
    stop_loss: int = 1
    take_profit: int = 2
    liquidation: int = 3
    time_stop: int = 4  # a time stop's exit at the open


FillReason = _FillReason()


class _PriceTrigger(NamedTuple):
    last: int = 0
    mark: int = 1


PriceTrigger = _PriceTrigger()


class _Intrabar(NamedTuple):
    pessimistic: int = 0  # first extreme is the one adverse to the position held
    ohlc: int = 1  # low first if close >= open, else high first


Intrabar = _Intrabar()


class _FundingMode(NamedTuple):
    strict: int = 0  # an open position outside funding coverage is an error
    zero: int = 1  # treat uncovered bars as paying no funding


FundingMode = _FundingMode()


class _OrderStatus(NamedTuple):
    """Outcome of an order at an open, recorded in ``order_dt`` when not a plain fill."""

    filled: int = 0
    cut_tier: int = 1  # increase cut to the notional the leverage's tiers allow
    cut_margin: int = 2  # increase cut to the available balance (isolated) / equity (cross)
    rejected_min_notional: int = 3
    rejected_bust: int = 4
    rejected_zero: int = 5  # nothing left after the cuts and lot rounding
    partial: int = 6  # the participation cap filled part; the rest cancelled or carried
    rejected_liquidating: int = 7  # the symbol is inside a multibar forced close


OrderStatus = _OrderStatus()


class _ErrorCode(NamedTuple):
    """Errors the kernel reports back (numba cannot format messages with names)."""

    none: int = 0
    funding_uncovered: int = 1  # a position open on a bar without funding coverage
    capacity: int = 2  # a record buffer was too small (a bug in the capacity estimate)


ErrorCode = _ErrorCode()


def parse_enum(enum: NamedTuple, value: "int | str", field: str) -> int:
    """Turn ``"cross"`` or ``1`` into the enum's int; raise naming ``field`` and the choices."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in enum._fields:
            return int(getattr(enum, key))
    elif isinstance(value, (int,)) and value in tuple(enum):
        return int(value)
    raise ValueError(f"{field}={value!r} is not one of {list(enum._fields)}")
