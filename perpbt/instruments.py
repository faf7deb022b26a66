"""Instruments: contract specs, fees and dated maintenance tier tables; venue presets.

Units: notionals and maintenance amounts in quote currency (USDT), rates as fractions
(0.004 = 0.4 %), quantities in base units (contracts appear only in rounding: a contract is
``contract_size`` base units).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

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


def _tier_row(entry: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    """(floor, cap, mmr, maint_amount, max_leverage) from a ccxt- or Binance-shaped tier dict."""
    if "notionalFloor" in entry:  # Binance /fapi/v1/leverageBracket
        return (float(entry["notionalFloor"]), float(entry["notionalCap"]),
                float(entry["maintMarginRatio"]), float(entry.get("cum", 0.0)),
                float(entry.get("initialLeverage", np.inf)))
    if "minNotional" in entry:  # ccxt fetch_leverage_tiers
        amount = entry.get("maintAmt")
        if amount is None:
            amount = (entry.get("info") or {}).get("cum", 0.0)
        max_lev = entry.get("maxLeverage")
        return (float(entry["minNotional"]), float(entry["maxNotional"]),
                float(entry["maintenanceMarginRate"]), float(amount or 0.0),
                float(max_lev) if max_lev is not None else np.inf)
    raise ValueError(f"tier entry has neither ccxt keys (minNotional...) nor Binance keys "
                     f"(notionalFloor...): {sorted(entry)}")


def load_tiers(entries: Sequence[Mapping[str, Any]] | TierTable, *, effective_from_ms: int = 0,
               source: str = "", as_of: str = "", illustrative: bool = False,
               symbol: str = "?") -> TierTable:
    """Build a validated TierTable from ccxt-shaped or Binance-shaped tier dicts.

    Rejects tables whose floors do not meet the previous caps or whose maintenance amounts do
    not make maintenance margin continuous at every floor (|jump| > 1e-6 quote + 1e-9 rel).
    """
    if isinstance(entries, TierTable):
        return entries
    if len(entries) == 0:
        raise ValueError(f"{symbol}: empty tier table")
    rows = sorted((_tier_row(e) for e in entries), key=lambda r: r[0])
    arr = np.array(rows, dtype=np.float64)
    floor, cap, mmr, amt, max_lev = (np.ascontiguousarray(arr[:, i]) for i in range(5))
    if floor[0] != 0.0:
        raise ValueError(f"{symbol}: first tier floor is {floor[0]}, expected 0")
    for i in range(len(floor)):
        if not (cap[i] > floor[i]):
            raise ValueError(f"{symbol}: tier {i + 1} cap {cap[i]} is not above its floor {floor[i]}")
        if not (0.0 <= mmr[i] < 1.0):
            raise ValueError(f"{symbol}: tier {i + 1} maintenance margin rate {mmr[i]} outside [0, 1)")
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
