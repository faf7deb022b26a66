"""Margin formulas for linear (USDT-settled) perpetuals: tiers, maintenance, liquidation, funding.

One implementation of each formula, as a numba kernel (``*_nb``: plain float64 / int64 arguments
and 1-D float64 tier arrays, usable inside the engine); the public Python functions validate
their arguments and call the kernels.

Units: ``qty`` in base units (BTC for BTCUSDT; never contracts), prices and margins in quote
(USDT), notional = |qty| * price in quote, rates as fractions (0.004 = 0.4 %). ``side`` is +1
(long) or -1 (short). Venue ints come from :data:`perpbt.enums.Venue`.

The liquidation condition solved for the price P (DESIGN section 5), with
A = margin + other_upnl - other_maint_margin (``margin`` = isolated margin, or the wallet
balance in cross with the other positions held at their marks)::

    A + side * qty * (P - entry) = requirement(P)

    binance: requirement = qty*P*mmr - maint_amount                 + close_fee_rate*qty*P
    okx:     requirement = qty*P*(mmr + taker_fee) - maint_amount   + close_fee_rate*qty*P
    bybit:   requirement = qty*entry*mmr - maint_amount             + close_fee_rate*qty*P

Writing requirement = k*qty*P + r0 gives the closed form
``P = (qty*entry + side*(r0 - A)) / (qty*(1 - side*k))``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np
from perpbt._jit import jit_nb

from perpbt.enums import Side, Venue, parse_enum
from perpbt.instruments import TierTable, load_tiers

__all__ = [
    "MaintenanceTier", "maintenance_tier", "maintenance_margin", "liquidation_price",
    "liquidation_price_tiered", "bankruptcy_price", "funding_payment",
    "tier_index_nb", "maint_margin_nb", "liq_price_one_tier_nb", "liq_price_nb",
    "bankruptcy_price_nb", "funding_payment_nb",
]

TiersLike = Union[Sequence[Mapping[str, Any]], TierTable]


# ----------------------------------------------------------------------------- numba kernels

@jit_nb(inline="always")
def tier_index_nb(floor, n_tiers, notional):
    """Index of the tier of ``notional`` (quote): the largest i < n_tiers with floor[i] <= it.

    A notional exactly on a floor belongs to the upper tier. Below every floor: 0. Above the
    last cap: n_tiers - 1 (the engine never raises; :func:`maintenance_tier` does). ``floor``
    is ascending; entries at and after ``n_tiers`` (padding) are ignored.
    """
    i = 0
    for j in range(1, n_tiers):
        if floor[j] <= notional:
            i = j
        else:
            break
    return i


@jit_nb(inline="always")
def maint_margin_nb(notional, floor, mmr, maint_amount, n_tiers):
    """Maintenance margin (quote) = notional * mmr[i] - maint_amount[i], i the tier of notional.

    Source: Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", section
    "Maintenance Margin" (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93).
    """
    i = tier_index_nb(floor, n_tiers, notional)
    return notional * mmr[i] - maint_amount[i]


@jit_nb
def _price_coef_nb(venue, mmr, taker_fee, close_fee_rate):
    """k: the part of the requirement proportional to the notional at the price P."""
    if venue == Venue.bybit:
        return close_fee_rate
    if venue == Venue.okx:
        return mmr + taker_fee + close_fee_rate
    return mmr + close_fee_rate


@jit_nb
def liq_price_one_tier_nb(side, qty, entry, margin, mmr, maint_amount, venue, other_mm,
                          other_upnl, taker_fee, close_fee_rate):
    """Liquidation price (quote) for one fixed tier (mmr, maint_amount); qty > 0 base units.

    Solves the module's condition for P. Sources: Binance "How to Calculate Liquidation Price of
    USDⓈ-M Futures Contracts" (LP = (WB - TMM1 + UPNL1 + cumB - Side*Pos*EP) /
    (Pos*MMR - Side*Pos)); Bybit "Liquidation Price (USDT Contract)" (isolated:
    LP = entry -/+ (IM - MM)/size, MM at entry value); OKX "Tiered maintenance margin ratio
    rules" (liquidation when equity <= maintenance margin + liquidation fee, the fee being the
    taker fee on the position value). A non-positive solution gives 0.0: a long that cannot be
    liquidated, or a short liquidated at every price. Degenerate denominator (k >= 1 for a
    long): 0.0 for a long, inf for a short.
    """
    a = margin + other_upnl - other_mm
    k = _price_coef_nb(venue, mmr, taker_fee, close_fee_rate)
    r0 = -maint_amount
    if venue == Venue.bybit:
        r0 += qty * entry * mmr
    den = qty * (1.0 - side * k)
    if not den > 0.0:
        return 0.0 if side > 0 else np.inf
    p = (qty * entry + side * (r0 - a)) / den
    if p <= 0.0:
        return 0.0
    return p


@jit_nb
def _side_gap_at_floor_nb(side, qty, entry, a, floor_i, mmr_i, amt_i, venue, taker_fee,
                          close_fee_rate):
    """side * (equity - requirement) at the price where qty * P = floor_i (binance / okx).

    Increasing in P for both sides (side flips the sign of a short's decreasing gap), so it is
    <= 0 exactly at the floors at or below the liquidation price's notional.
    """
    k = _price_coef_nb(venue, mmr_i, taker_fee, close_fee_rate)
    gap = a + side * (floor_i - qty * entry) - (floor_i * k - amt_i)
    return side * gap


@jit_nb
def liq_price_nb(side, qty, entry, margin, floor, cap, mmr, maint_amount, n_tiers, venue,
                 other_mm, other_upnl, taker_fee, close_fee_rate):
    """Tier-self-consistent liquidation price (quote); qty > 0 base units.

    binance / okx: the tier is the one of qty * LP. Maintenance margin is continuous in the
    notional, so side * (equity - requirement) is continuous and increasing in P; the tier of
    the root is the last tier whose floor price floor[i] / qty has that gap <= 0, and the root is
    that tier's closed form clamped into [floor[i], floor[i+1]] / qty (floating-point ties at a
    floor resolve to the floor itself). Beyond the last cap the last tier applies. bybit: the
    tier of the entry notional (maintenance margin at entry value). Source: Binance "How to
    Calculate Liquidation Price of USDⓈ-M Futures Contracts", note on recalculating with the
    tier of the notional at the liquidation price. No allocation.
    """
    if venue == Venue.bybit:
        i = tier_index_nb(floor, n_tiers, qty * entry)
        return liq_price_one_tier_nb(side, qty, entry, margin, mmr[i], maint_amount[i], venue,
                                     other_mm, other_upnl, taker_fee, close_fee_rate)
    a = margin + other_upnl - other_mm
    best = -1
    for i in range(n_tiers):
        if _side_gap_at_floor_nb(side, qty, entry, a, floor[i], mmr[i], maint_amount[i], venue,
                                 taker_fee, close_fee_rate) <= 0.0:
            best = i
        else:
            break
    if best < 0:  # solvent at every price (long) / insolvent at every price (short)
        return 0.0
    p = liq_price_one_tier_nb(side, qty, entry, margin, mmr[best], maint_amount[best], venue,
                              other_mm, other_upnl, taker_fee, close_fee_rate)
    if p > 0.0 and p < np.inf:
        lo = floor[best] / qty
        if p < lo:
            p = lo
        if best + 1 < n_tiers:
            hi = floor[best + 1] / qty
            if p > hi:
                p = hi
    return p


@jit_nb
def bankruptcy_price_nb(side, qty, entry, margin, other_upnl):
    """Price (quote) where margin + other_upnl is exhausted: entry - side*(margin+other_upnl)/qty.

    Floored at 0.0. Source: Bybit "Bankruptcy Price" (long: entry price x (1 - initial margin
    rate) for isolated); Binance "Liquidation Protocols" (liquidation orders at the
    bankruptcy price).
    """
    p = entry - side * (margin + other_upnl) / qty
    if p < 0.0:
        return 0.0
    return p


@jit_nb
def funding_payment_nb(side, qty, mark, rate):
    """Funding received (quote, negative = paid): -side * qty * mark * rate.

    rate > 0: longs pay, shorts receive. Source: Binance "Introduction to Binance Futures
    Funding Rates" (funding amount = nominal value of positions x funding rate, nominal value
    at the mark price).
    """
    return -side * qty * mark * rate


# ----------------------------------------------------------------------------- Python API

@dataclass(frozen=True)
class MaintenanceTier:
    """One maintenance tier: ``floor <= notional < cap`` (quote); rates as fractions."""

    index: int
    floor: float
    cap: float
    mmr: float
    maint_amount: float
    max_leverage: float


def _parse_side(side: Any) -> int:
    if isinstance(side, str):
        return parse_enum(Side, side, "side")
    if isinstance(side, numbers.Real) and not isinstance(side, bool) and side in (1, -1):
        return int(side)
    raise ValueError(f"side={side!r} is not one of 'long', 'short', 1, -1")


def _parse_venue(venue: Any) -> int:
    if isinstance(venue, numbers.Integral) and not isinstance(venue, bool):
        venue = int(venue)
    return parse_enum(Venue, venue, "venue")


def _finite(value: Any, name: str) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name}={value!r} must be finite")
    return x


def _qty_abs(side: int, qty: Any) -> float:
    """|qty|; a negative qty is accepted only for a short."""
    q = _finite(qty, "qty")
    if q == 0.0:
        raise ValueError("qty must be non-zero")
    if q < 0.0 and side == Side.long:
        raise ValueError(f"qty={q} is negative but side is long")
    return abs(q)


def _positive(value: Any, name: str) -> float:
    x = _finite(value, name)
    if x <= 0.0:
        raise ValueError(f"{name}={value!r} must be > 0")
    return x


def _non_negative(value: Any, name: str) -> float:
    x = _finite(value, name)
    if x < 0.0:
        raise ValueError(f"{name}={value!r} must be >= 0")
    return x


def _checked_notional(table: TierTable, notional: Any) -> float:
    n = _non_negative(notional, "notional")
    if n > table.cap[-1]:
        raise ValueError(f"notional {n:g} is above the last tier cap {table.cap[-1]:g}")
    return n


def maintenance_tier(tiers: TiersLike, notional: float) -> MaintenanceTier:
    """The tier of ``notional`` (quote, = |qty| * price) in ``tiers``.

    ``tiers``: ccxt-shaped or Binance-bracket dicts, or a TierTable (parsed by
    :func:`perpbt.instruments.load_tiers`). A notional exactly on a floor belongs to the upper
    tier; one equal to the last cap to the last tier. Raises ValueError for a negative or
    non-finite notional or one above the last cap.
    """
    table = load_tiers(tiers)
    n = _checked_notional(table, notional)
    i = int(tier_index_nb(table.floor, len(table), n))
    return MaintenanceTier(i, float(table.floor[i]), float(table.cap[i]), float(table.mmr[i]),
                           float(table.maint_amount[i]), float(table.max_leverage[i]))


def maintenance_margin(notional: float, tiers: TiersLike) -> float:
    """Maintenance margin (quote) = notional * mmr - maint_amount of the notional's tier.

    Source: Binance "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
    "Maintenance Margin". Raises like :func:`maintenance_tier`.
    """
    table = load_tiers(tiers)
    n = _checked_notional(table, notional)
    return float(maint_margin_nb(n, table.floor, table.mmr, table.maint_amount, len(table)))


def _liq_args(side, qty, entry_price, margin, venue, other_maint_margin, other_upnl, taker_fee,
              close_fee_rate) -> tuple:
    s = _parse_side(side)
    return (s, _qty_abs(s, qty), _positive(entry_price, "entry_price"),
            _finite(margin, "margin"), _parse_venue(venue),
            _finite(other_maint_margin, "other_maint_margin"), _finite(other_upnl, "other_upnl"),
            _non_negative(taker_fee, "taker_fee"), _non_negative(close_fee_rate, "close_fee_rate"))


def liquidation_price(side: "str | int", qty: float, entry_price: float, margin: float,
                      mmr: float, maint_amount: float = 0.0, *, venue: "str | int" = "binance",
                      other_maint_margin: float = 0.0, other_upnl: float = 0.0,
                      taker_fee: float = 0.0, close_fee_rate: float = 0.0) -> float:
    """Liquidation price (quote) of one position for a given tier (``mmr``, ``maint_amount``).

    ``qty`` base units (> 0, or < 0 for a short); ``margin`` the isolated margin, or the cross
    wallet balance with ``other_maint_margin`` / ``other_upnl`` of the other positions (quote).
    Binance: "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
    (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93); Bybit:
    "Liquidation Price (USDT Contract)"
    (https://www.bybit.com/en/help-center/article/Liquidation-Price-USDT-Contract); OKX:
    "Tiered maintenance margin ratio rules"
    (https://www.okx.com/help/v-tiered-maintenance-margin-ratio-rules). ``close_fee_rate``
    adds the cost of closing at the liquidation price: with the margin net of the open fee and
    close_fee_rate = clearance + taker (OKX: clearance) this is the price "with fees"
    (DESIGN section 5). Returns 0.0 where a long cannot be liquidated.
    """
    s, q, e, m, v, omm, oup, tf, cfr = _liq_args(side, qty, entry_price, margin, venue,
                                                 other_maint_margin, other_upnl, taker_fee,
                                                 close_fee_rate)
    rate = _finite(mmr, "mmr")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"mmr={mmr!r} must be in [0, 1)")
    return float(liq_price_one_tier_nb(s, q, e, m, rate, _finite(maint_amount, "maint_amount"),
                                       v, omm, oup, tf, cfr))


def liquidation_price_tiered(side: "str | int", qty: float, entry_price: float, margin: float,
                             tiers: TiersLike, *, venue: "str | int" = "binance",
                             other_maint_margin: float = 0.0, other_upnl: float = 0.0,
                             taker_fee: float = 0.0, close_fee_rate: float = 0.0) -> float:
    """:func:`liquidation_price` with the tier chosen self-consistently (see ``liq_price_nb``).

    binance / okx: the tier of qty * LP (beyond the last cap, the last tier); bybit: the tier
    of the entry notional. Units and sources as :func:`liquidation_price`.
    """
    s, q, e, m, v, omm, oup, tf, cfr = _liq_args(side, qty, entry_price, margin, venue,
                                                 other_maint_margin, other_upnl, taker_fee,
                                                 close_fee_rate)
    t = load_tiers(tiers)
    return float(liq_price_nb(s, q, e, m, t.floor, t.cap, t.mmr, t.maint_amount, len(t), v,
                              omm, oup, tf, cfr))


def bankruptcy_price(side: "str | int", qty: float, entry_price: float, margin: float, *,
                     other_upnl: float = 0.0) -> float:
    """Price (quote) where ``margin`` (+ ``other_upnl`` in cross) is exhausted, floored at 0.

    entry - side * (margin + other_upnl) / qty; qty base units. Source: Bybit "Bankruptcy
    Price"; Binance "Liquidation Protocols"
    (https://www.binance.com/en/support/faq/360033525271).
    """
    s = _parse_side(side)
    return float(bankruptcy_price_nb(s, _qty_abs(s, qty), _positive(entry_price, "entry_price"),
                                     _finite(margin, "margin"), _finite(other_upnl, "other_upnl")))


def funding_payment(side: "str | int", qty: float, mark_price: float, rate: float) -> float:
    """Funding received (quote; negative = paid) = -side * qty * mark_price * rate.

    ``qty`` base units, ``rate`` per settlement as a fraction; rate > 0: longs pay, shorts
    receive. Source: Binance "Introduction to Binance Futures Funding Rates"
    (https://www.binance.com/en/support/faq/360033525031).
    """
    s = _parse_side(side)
    return float(funding_payment_nb(s, _qty_abs(s, qty), _positive(mark_price, "mark_price"),
                                    _finite(rate, "rate")))
