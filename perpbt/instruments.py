"""Instruments: contract specs, fees and dated maintenance tier tables (venue presets: venues.py).

Units: notionals and maintenance amounts in quote currency (USDT), rates as fractions
(0.004 = 0.4 %), quantities in base units (contracts appear only in rounding: a contract is
``contract_size`` base units).

Tier tables load from three shapes of tier dicts (``load_tiers``):

- ccxt ``fetch_leverage_tiers``: ``minNotional, maxNotional, maintenanceMarginRate,
  maxLeverage``; the maintenance amount from ``maintAmt``, else ``info['cum']`` (Binance), else
  ``info['mmDeduction']`` (Bybit v5). ccxt's OKX tiers are sized in *contracts* (``minSz``,
  ``maxSz``), not notional: they load only with ``size_scale`` (quote notional per contract at
  a chosen price) and, since OKX publishes no maintenance amount, ``derive_maint_amounts=True``.
- Binance ``/fapi/v1/leverageBracket``: ``notionalFloor, notionalCap, maintMarginRatio, cum,
  initialLeverage``.
- perpbt's own rows (the bundled presets): ``floor, cap, mmr, maint_amount, max_leverage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True, eq=False)
class TierTable:
    """One maintenance tier table, valid from ``effective_from_ms`` (int ms UTC) on.

    Arrays are float64 and ascending by ``floor``: a notional N belongs to tier i when
    ``floor[i] <= N < cap[i]`` (a notional exactly on a floor belongs to the upper tier).
    Maintenance margin of tier i = N * mmr[i] - maint_amount[i].
    """

    floor: np.ndarray
    cap: np.ndarray
    mmr: np.ndarray
    maint_amount: np.ndarray
    max_leverage: np.ndarray
    effective_from_ms: int = 0
    source: str = ""
    as_of: str = ""
    illustrative: bool = False

    def __len__(self) -> int:
        return len(self.floor)

    def rows(self) -> list[dict[str, float]]:
        """The tiers as perpbt-shaped dicts (``floor, cap, mmr, maint_amount, max_leverage``)."""
        return [dict(floor=float(f), cap=float(c), mmr=float(m), maint_amount=float(a),
                     max_leverage=float(x))
                for f, c, m, a, x in zip(self.floor, self.cap, self.mmr, self.maint_amount,
                                         self.max_leverage)]

    def equals(self, other: "TierTable", *, rtol: float = 1e-12,
               metadata: bool = False) -> bool:
        """Same tiers (arrays equal within ``rtol``); with ``metadata`` also the same date and
        labels. (``==`` stays identity: tables are hashable.)"""
        if len(self) != len(other):
            return False
        for a, b in ((self.floor, other.floor), (self.cap, other.cap), (self.mmr, other.mmr),
                     (self.maint_amount, other.maint_amount),
                     (self.max_leverage, other.max_leverage)):
            if not np.allclose(a, b, rtol=rtol, atol=0.0):
                return False
        if metadata:
            return ((self.effective_from_ms, self.source, self.as_of, self.illustrative)
                    == (other.effective_from_ms, other.source, other.as_of, other.illustrative))
        return True


def _num(value: Any, default: float = 0.0) -> float:
    """float of a number or numeric string; ``None`` and ``""`` (Bybit's empty deduction)
    give ``default``."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return default
    return float(value)


def _is_contract_sized(entry: Mapping[str, Any]) -> bool:
    """A ccxt OKX tier: its min/maxNotional are copies of ``info['minSz'/'maxSz']`` (contracts)."""
    info = entry.get("info") or {}
    return isinstance(info, Mapping) and "maxSz" in info and "notionalCap" not in info


def _tier_row(entry: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    """(floor, cap, mmr, maint_amount, max_leverage) from a tier dict of any supported shape."""
    if "notionalFloor" in entry:  # Binance /fapi/v1/leverageBracket
        return (float(entry["notionalFloor"]), float(entry["notionalCap"]),
                float(entry["maintMarginRatio"]), _num(entry.get("cum")),
                _num(entry.get("initialLeverage"), np.inf))
    if "minNotional" in entry:  # ccxt fetch_leverage_tiers
        info = entry.get("info") or {}
        amount = entry.get("maintAmt")
        if amount is None:
            amount = info.get("cum")  # Binance
        if amount is None:
            amount = info.get("mmDeduction")  # Bybit v5 (empty string on tier 1)
        return (float(entry["minNotional"]), float(entry["maxNotional"]),
                float(entry["maintenanceMarginRate"]), _num(amount),
                _num(entry.get("maxLeverage"), np.inf))
    if "floor" in entry:  # perpbt rows (bundled presets, TierTable.rows())
        return (float(entry["floor"]), float(entry["cap"]), float(entry["mmr"]),
                _num(entry.get("maint_amount")), _num(entry.get("max_leverage"), np.inf))
    raise ValueError(f"tier entry has neither ccxt keys (minNotional...), Binance keys "
                     f"(notionalFloor...) nor perpbt keys (floor...): {sorted(entry)}")


def continuous_maint_amounts(floor: Iterable[float], mmr: Iterable[float]) -> np.ndarray:
    """Maintenance amounts that make ``N * mmr[i] - amount[i]`` continuous at every floor.

    ``amount[0] = 0`` and ``amount[i] = amount[i-1] + floor[i] * (mmr[i] - mmr[i-1])`` (Binance's
    ``cum`` rule). For venues that publish none (OKX applies the tier rate to the whole
    position, which jumps at each floor) this is the continuous approximation: equal to the
    venue's requirement on tier 1, lower by ``amount[i]`` above it.
    """
    f = np.asarray(list(floor), dtype=np.float64)
    m = np.asarray(list(mmr), dtype=np.float64)
    amt = np.zeros(len(f))
    for i in range(1, len(f)):
        amt[i] = amt[i - 1] + f[i] * (m[i] - m[i - 1])
    return amt


def load_tiers(entries: Sequence[Mapping[str, Any]] | TierTable, *, effective_from_ms: int = 0,
               source: str = "", as_of: str = "", illustrative: bool = False,
               symbol: str = "?", size_scale: float | None = None,
               derive_maint_amounts: bool = False) -> TierTable:
    """Build a validated TierTable from ccxt-, Binance- or perpbt-shaped tier dicts.

    Rejects tables whose floors do not meet the previous caps or whose maintenance amounts do
    not make maintenance margin continuous at every floor (|jump| > 1e-6 quote + 1e-9 rel);
    the message names the symbol and the tier (1-based).

    ``size_scale`` multiplies floors and caps: tables sized in contracts (ccxt's OKX tiers)
    need it (quote notional of one contract at a chosen price) and are refused without it.
    ``derive_maint_amounts`` ignores given amounts and uses ``continuous_maint_amounts``.
    A TierTable passes through unchanged.
    """
    if isinstance(entries, TierTable):
        return entries
    if len(entries) == 0:
        raise ValueError(f"{symbol}: empty tier table")
    if size_scale is None and any(_is_contract_sized(e) for e in entries):
        raise ValueError(
            f"{symbol}: these tiers are sized in contracts (OKX minSz/maxSz), not quote notional; "
            f"pass size_scale=<contract value * price> and derive_maint_amounts=True")
    rows = sorted((_tier_row(e) for e in entries), key=lambda r: r[0])
    arr = np.array(rows, dtype=np.float64)
    floor, cap, mmr, amt, max_lev = (np.ascontiguousarray(arr[:, i]) for i in range(5))
    if size_scale is not None:
        if not (math.isfinite(size_scale) and size_scale > 0):
            raise ValueError(f"{symbol}: size_scale must be a positive number, got {size_scale}")
        floor, cap = floor * float(size_scale), cap * float(size_scale)
    if derive_maint_amounts:
        amt = continuous_maint_amounts(floor, mmr)
    if floor[0] != 0.0:
        raise ValueError(f"{symbol}: first tier floor is {floor[0]}, expected 0")
    for i in range(len(floor)):
        if not (cap[i] > floor[i]):
            raise ValueError(f"{symbol}: tier {i + 1} cap {cap[i]} is not above its floor {floor[i]}")
        if not (0.0 <= mmr[i] < 1.0):
            raise ValueError(f"{symbol}: tier {i + 1} maintenance margin rate {mmr[i]} outside [0, 1)")
        if not (max_lev[i] > 0):
            raise ValueError(f"{symbol}: tier {i + 1} max leverage {max_lev[i]} is not positive")
        if i == 0:
            continue
        if abs(floor[i] - cap[i - 1]) > 1e-9 * max(1.0, cap[i - 1]):
            raise ValueError(f"{symbol}: tier {i + 1} floor {floor[i]} != tier {i} cap {cap[i - 1]}")
        below = floor[i] * mmr[i - 1] - amt[i - 1]
        above = floor[i] * mmr[i] - amt[i]
        if abs(above - below) > 1e-6 + 1e-9 * abs(below):
            raise ValueError(
                f"{symbol}: maintenance margin jumps at tier {i + 1} floor {floor[i]:g}: "
                f"{below:.6f} below vs {above:.6f} above (maintenance amounts inconsistent)")
    return TierTable(floor, cap, mmr, amt, max_lev, int(effective_from_ms), source, as_of,
                     illustrative)


@dataclass(frozen=True, eq=False)
class Instrument:
    """A linear (USDT-settled) perpetual.

    ``lot_size`` and ``min_notional`` are in base units / quote; ``contract_size`` is base units
    per contract (only used for rounding). Fees left as ``None`` take the venue preset's value.
    ``tiers`` holds dated tables in ascending ``effective_from_ms``; the engine switches tables
    at their dates.
    """

    symbol: str
    tiers: tuple[TierTable, ...]
    contract_size: float = 1.0
    tick_size: float = 0.0
    lot_size: float = 0.0
    min_notional: float = 0.0
    maker_fee: float | None = None
    taker_fee: float | None = None
    clearance_fee: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError(f"{self.symbol}: an instrument needs at least one tier table")
        starts = [t.effective_from_ms for t in self.tiers]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError(f"{self.symbol}: tier tables must have distinct ascending dates")

    def tier_table_at(self, time_ms: int) -> TierTable:
        """The table in force at ``time_ms`` (the earliest table before its own date)."""
        chosen = self.tiers[0]
        for table in self.tiers:
            if table.effective_from_ms <= time_ms:
                chosen = table
        return chosen

    @property
    def max_leverage(self) -> float:
        """Largest leverage any table allows (tier 1 of each table)."""
        return float(max(t.max_leverage[0] for t in self.tiers))

    def max_leverage_at(self, time_ms: int) -> float:
        return float(self.tier_table_at(time_ms).max_leverage[0])

    @classmethod
    def from_ccxt_market(cls, market: Mapping[str, Any], tiers: Any, *,
                         precision_mode: int | str = "tick_size",
                         effective_from_ms: int = 0, source: str = "",
                         as_of: str = "") -> "Instrument":
        """An Instrument from a ccxt market dict (``exchange.market(symbol)``) and its tiers.

        - ``contract_size`` = ``market['contractSize']`` (base units per contract, 1 if absent);
        - ``lot_size`` (base units) = amount step in contracts * contract_size, the step being
          ``precision['amount']`` itself under ccxt's TICK_SIZE precision mode (ccxt 4's mode
          for binance, bybit and okx, and the default) or ``10 ** -precision['amount']`` under
          DECIMAL_PLACES (``precision_mode="decimal_places"`` or ccxt's constant 2);
        - ``tick_size`` likewise from ``precision['price']``;
        - ``min_notional`` = ``limits.cost.min`` (0 if absent); maker/taker from the market
          (ccxt's regular-user rates, ``None`` if absent: then the venue preset's apply);
        - ``clearance_fee`` from Binance's ``info['liquidationFee']`` when present, else ``None``.

        ``tiers``: a TierTable, a sequence of dated TierTables, or tier dicts for ``load_tiers``
        (dated ``effective_from_ms``/``source``/``as_of``). Only linear contracts are accepted.
        """
        symbol = str(market.get("symbol") or market.get("id") or "?")
        if market.get("contract") is False or market.get("spot"):
            raise ValueError(f"{symbol}: not a contract market (spot markets have no tiers)")
        if market.get("inverse") or market.get("linear") is False:
            raise ValueError(f"{symbol}: only linear (quote-settled) contracts are supported")
        mode = _parse_precision_mode(precision_mode)
        contract_size = _num(market.get("contractSize"), 1.0)
        precision = market.get("precision") or {}
        amount_step = _precision_step(precision.get("amount"), mode, symbol, "amount")
        tick = _precision_step(precision.get("price"), mode, symbol, "price")
        limits = market.get("limits") or {}
        min_cost = (limits.get("cost") or {}).get("min")
        info = market.get("info") or {}
        clearance = info.get("liquidationFee") if isinstance(info, Mapping) else None
        if isinstance(tiers, TierTable):
            tables: tuple[TierTable, ...] = (tiers,)
        elif (isinstance(tiers, Sequence) and len(tiers) > 0
              and all(isinstance(t, TierTable) for t in tiers)):
            tables = tuple(tiers)
        else:
            tables = (load_tiers(tiers, effective_from_ms=effective_from_ms, source=source,
                                 as_of=as_of, symbol=symbol),)
        maker, taker = market.get("maker"), market.get("taker")
        extra = {"ccxt_id": market.get("id"), "settle": market.get("settle"),
                 "min_qty_contracts": (limits.get("amount") or {}).get("min")}
        return cls(symbol=symbol, tiers=tables, contract_size=contract_size,
                   tick_size=tick, lot_size=amount_step * contract_size,
                   min_notional=_num(min_cost),
                   maker_fee=None if maker is None else float(maker),
                   taker_fee=None if taker is None else float(taker),
                   clearance_fee=None if clearance in (None, "") else float(clearance),
                   extra={k: v for k, v in extra.items() if v is not None})


# ccxt's precision modes (ccxt.base.decimal_to_precision); ccxt itself is imported only by
# data/fetch.py, so the constants are repeated here.
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4
_PRECISION_MODES = {"decimal_places": DECIMAL_PLACES, "significant_digits": SIGNIFICANT_DIGITS,
                    "tick_size": TICK_SIZE}


def _parse_precision_mode(mode: int | str) -> int:
    if isinstance(mode, str):
        key = mode.strip().lower()
        if key in _PRECISION_MODES:
            return _PRECISION_MODES[key]
    elif mode in _PRECISION_MODES.values():
        return int(mode)
    raise ValueError(f"precision_mode={mode!r} is not one of {sorted(_PRECISION_MODES)} "
                     f"(or ccxt's constants {sorted(_PRECISION_MODES.values())})")


def _precision_step(value: Any, mode: int, symbol: str, what: str) -> float:
    """The step a ccxt precision value means: the value (TICK_SIZE) or 10**-value (decimals)."""
    if value is None or value == "":
        return 0.0
    v = float(value)
    if mode == TICK_SIZE:
        if not v > 0:
            raise ValueError(f"{symbol}: precision['{what}'] = {value!r} is not a positive step")
        return v
    if mode == DECIMAL_PLACES:
        if v != int(v):
            raise ValueError(f"{symbol}: precision['{what}'] = {value!r} is not a number of "
                             f"decimals; is the exchange in TICK_SIZE mode?")
        return 10.0 ** -int(v)
    raise ValueError(f"{symbol}: a {what} step cannot be derived under SIGNIFICANT_DIGITS "
                     f"precision; pass the instrument's {what} step explicitly")
