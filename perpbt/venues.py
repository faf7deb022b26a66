"""Venue presets (fees, clearance fee, liquidation trigger and policy) and bundled instruments.

A ``VenuePreset`` holds one exchange's regular-user (VIP 0) USDT-margined perpetual fees, its
liquidation clearance fee, its liquidation process and the text of its trigger (DESIGN
section 5). Every number carries a ``Citation`` in ``sources``; a number that could not be
cited is marked ``illustrative=True`` there.

Liquidation policy: ``liquidation_policy`` is the venue's *real* default process: Bybit and OKX
reduce a large position tier by tier (``tiered``); Binance sends one IOC order at the
bankruptcy price (``ioc``), the rest taken over (engine/forced.py). At retail size (tier 1) a
full liquidation costs the user the whole margin under every policy; they differ for large
notionals, where ioc and tiered can stop once the account is compliant again.

``instrument_for(venue, symbol)`` returns the bundled Instrument (dated tier tables from
``perpbt/presets/tiers_<venue>.json``, contract/tick/lot sizes) for BTC/USDT:USDT and
ETH/USDT:USDT, with fees left ``None`` so the engine takes the preset's. Binance's tables are
real (dated 2023-01-13 and 2026-09); Bybit's and OKX's are illustrative (flagged so).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from perpbt.enums import LiqPolicy, Venue
from perpbt.instruments import Instrument, TierTable, load_tiers

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
CHECKED = "2026-11-25"  # the date the sources below were looked up


class Citation(NamedTuple):
    """Where one preset number comes from."""

    field: str  # "taker_fee", ...
    source: str  # title and URL (or repository and path)
    as_of: str  # the source's date, or the date it was checked
    illustrative: bool = False  # True: no citable number, a stated assumption
    note: str = ""


@dataclass(frozen=True)
class VenuePreset:
    """One venue's defaults. Fees and the clearance fee are fractions of notional."""

    name: str
    venue_code: int  # perpbt.enums.Venue: which liquidation formula and trigger apply
    maker_fee: float
    taker_fee: float
    clearance_fee: float  # liquidation clearance fee rate, charged out of the margin
    liquidation_policy: int  # perpbt.enums.LiqPolicy: the venue's real default (see module doc)
    trigger_doc: str
    sources: tuple[Citation, ...] = ()

    def __post_init__(self) -> None:
        for name in ("maker_fee", "taker_fee", "clearance_fee"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.1:
                raise ValueError(f"{self.name}: {name}={value} is not a fraction in [0, 0.1) "
                                 f"(0.0005 means 0.05 %)")
        if self.venue_code not in tuple(Venue):
            raise ValueError(f"{self.name}: venue_code={self.venue_code} not in {Venue}")
        if self.liquidation_policy not in tuple(LiqPolicy):
            raise ValueError(f"{self.name}: liquidation_policy={self.liquidation_policy} "
                             f"not in {LiqPolicy}")

    def source_for(self, field: str) -> Citation:
        for c in self.sources:
            if c.field == field:
                return c
        raise KeyError(f"{self.name}: no source recorded for {field!r}")

    def engine_policy(self, implemented: tuple[int, ...] = tuple(LiqPolicy)) -> int:
        """The policy to run: the venue's own if the engine implements it, else ``takeover``."""
        return self.liquidation_policy if self.liquidation_policy in implemented \
            else LiqPolicy.takeover


BINANCE = VenuePreset(
    name="binance", venue_code=Venue.binance, maker_fee=0.0002, taker_fee=0.0005,
    clearance_fee=0.0125, liquidation_policy=LiqPolicy.ioc,
    trigger_doc=("Liquidated when margin balance <= maintenance margin, both at mark price, no "
                 "fees in the condition: MM = |qty| * mark * mmr(tier) - cum(tier). The real "
                 "process is one IOC order at the bankruptcy price, the rest taken over by the "
                 "insurance fund (preset policy: ioc)."),
    sources=(
        Citation("maker_fee", "Binance FAQ 'Binance Futures Fee Structure & Fee Calculations' "
                 "(https://www.binance.com/en/support/faq/binance-futures-fee-structure-fee-"
                 "calculations-360033544231), USDⓈ-M regular user 0.0200 % maker / 0.0500 % "
                 "taker; the same rates are ccxt 4.5.90's binance linear defaults",
                 CHECKED),
        Citation("taker_fee", "as maker_fee", CHECKED),
        Citation("clearance_fee", "Binance GET /fapi/v1/exchangeInfo, field liquidationFee "
                 "('liquidation fee rate', https://developers.binance.com/docs/derivatives/"
                 "usds-margined-futures/market-data/rest-api/Exchange-Information): BTCUSDT and "
                 "ETHUSDT 0.012500 in a response with serverTime 1711627208783, stored in a "
                 "public GitHub repository", "2024-03-28",
                 note="Per symbol and changes over time (other symbols 0.010-0.015); "
                      "Instrument.from_ccxt_market takes the live value from the market info."),
        Citation("liquidation_policy", "Binance liquidation protocol (IOC order, then "
                 "insurance-fund takeover), e.g. docs.traderwagon.com 'Liquidation Protocol' "
                 "(Binance copy-trading docs)", CHECKED),
    ),
)

BYBIT = VenuePreset(
    name="bybit", venue_code=Venue.bybit, maker_fee=0.0002, taker_fee=0.00055,
    clearance_fee=0.0, liquidation_policy=LiqPolicy.tiered,
    trigger_doc=("Liquidated when the mark price reaches the liquidation price, i.e. position "
                 "margin <= maintenance margin taken at entry value (position value at the "
                 "average entry * mmr - deduction); Bybit adds the estimated fee to close "
                 "(bankruptcy value * taker) to the requirement. Above the lowest risk limit "
                 "the position is reduced level by level (tiered), else taken over at the "
                 "bankruptcy price; the remaining margin goes to the insurance fund."),
    sources=(
        Citation("maker_fee", "Bybit Help Center 'Trading Fee Structure' (bybit.com/en/help-"
                 "center, article 000001634): VIP 0 perpetual & futures taker 0.0550 %, maker "
                 "0.0200 %; also 'Perpetual & Futures Contract: Fees Explained' (2024-10-16)",
                 "2024-10-16"),
        Citation("taker_fee", "as maker_fee", "2024-10-16"),
        Citation("clearance_fee", "Bybit Help Center 'Insurance Fund' (https://www.bybit.com/en/"
                 "help-center/article/Insurance-Fund, 2024-05-04): a liquidated position is "
                 "closed at the bankruptcy price and the remaining margin goes to the insurance "
                 "fund; no separate liquidation-fee rate is published", "2024-05-04",
                 note="0 models that: under takeover the fund receives all of the remaining "
                      "margin, as with Binance at tier 1"),
        Citation("liquidation_policy", "Bybit 'Liquidation process (USDT contract)': "
                 "lowest risk limit -> takeover at bankruptcy price; higher -> FillOrKill "
                 "reductions of the risk limit", CHECKED),
    ),
)

OKX = VenuePreset(
    name="okx", venue_code=Venue.okx, maker_fee=0.0002, taker_fee=0.0005,
    clearance_fee=0.0005, liquidation_policy=LiqPolicy.tiered,
    trigger_doc=("Liquidated when the margin ratio (margin + unrealized PnL) / (maintenance "
                 "margin + liquidation fee) falls to 100 %: the taker fee is part of the "
                 "requirement. From tier 3 up the position is reduced (two tiers at a time), "
                 "tier 1-2 positions are taken over at the bankruptcy price."),
    sources=(
        Citation("maker_fee", "ccxt 4.5.90 okx.describe()['fees']['future'] (maker 0.0002, "
                 "taker 0.0005), ccxt's transcription of https://www.okx.com/fees (regular "
                 "users, USDT-margined contracts: 0.02 % / 0.05 %; the OKX page renders its "
                 "table client-side)", CHECKED),
        Citation("taker_fee", "as maker_fee", CHECKED),
        Citation("clearance_fee", "OKX Help 'Tiered maintenance margin ratio rules' "
                 "(https://www.okx.com/help/v-tiered-maintenance-margin-ratio-rules, published "
                 "2022-06-16, updated 2025-05-16): liquidation when equity <= maintenance "
                 "margin + liquidation fees, the fee charged at the user's taker-fee tier; "
                 "older 'Forced Partial or Full Liquidation' article: requirement = MMR + "
                 "forced-liquidation fee rate", "2025-05-16",
                 note="Read through mirrors/summaries of the OKX page; the rate is set equal "
                      "to the VIP 0 taker fee"),
        Citation("liquidation_policy", "OKX 'Forced Partial or Full Liquidation': partial "
                 "liquidation for tier 3+, reducing two tiers at a time", CHECKED),
    ),
)

VENUES: dict[str, VenuePreset] = {"binance": BINANCE, "bybit": BYBIT, "okx": OKX}
_VENUE_ALIASES = {"binanceusdm": "binance", "binance_usdm": "binance", "okex": "okx",
                  "myokx": "okx"}


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_venue(name: "str | VenuePreset") -> VenuePreset:
    """The preset for ``"binance"``, ``"bybit"`` or ``"okx"`` (ccxt ids such as
    ``"binanceusdm"`` accepted); a VenuePreset passes through."""
    if isinstance(name, VenuePreset):
        return name
    key = str(name).strip().lower()
    key = _VENUE_ALIASES.get(key, key)
    if key not in VENUES:
        raise ValueError(f"unknown venue {name!r}{_did_you_mean(key, VENUES)}; "
                         f"choose one of {sorted(VENUES)}")
    return VENUES[key]


_QUOTES = ("USDT", "USDC", "BUSD", "USD")


def normalize_symbol(symbol: str) -> str:
    """The ccxt linear-perpetual symbol: ``"BTCUSDT"``, ``"BTC/USDT"``, ``"BTC-USDT-SWAP"``,
    ``"BTC_USDT"`` and ``"BTC/USDT:USDT"`` all give ``"BTC/USDT:USDT"``."""
    raw = str(symbol).strip().upper()
    if "/" in raw:
        pair, _, settle = raw.partition(":")
        base, _, quote = pair.partition("/")
        settle = settle or quote
    else:
        s = re.sub(r"[-_](SWAP|PERP|PERPETUAL)$", "", raw)
        if "-" in s or "_" in s:
            base, _, quote = s.replace("_", "-").partition("-")
        else:
            quote = next((q for q in _QUOTES if s.endswith(q) and len(s) > len(q)), "")
            base = s[:-len(quote)] if quote else ""
        settle = quote
    if not (re.fullmatch(r"[A-Z0-9]+", base or "") and re.fullmatch(r"[A-Z0-9]+", quote or "")
            and re.fullmatch(r"[A-Z0-9]+", settle or "")):
        raise ValueError(f"cannot read {symbol!r} as a perpetual symbol; write it as ccxt's "
                         f"'BASE/QUOTE:SETTLE' (e.g. 'BTC/USDT:USDT')")
    return f"{base}/{quote}:{settle}"


def date_to_ms(day: str) -> int:
    """``"2026-09-01"`` -> int ms UTC of that midnight."""
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)


@lru_cache(maxsize=None)
def load_preset_file(venue: str) -> dict[str, Any]:
    """The raw bundled JSON for one venue (``perpbt/presets/tiers_<venue>.json``)."""
    path = PRESETS_DIR / f"tiers_{get_venue(venue).name}.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def bundled_tables(venue: str, symbol: str) -> tuple[TierTable, ...]:
    """The bundled dated tier tables of one symbol, ascending by date (validated on load)."""
    sym = normalize_symbol(symbol)
    spec = load_preset_file(venue)["symbols"].get(sym)
    if spec is None:
        raise KeyError(sym)
    tables = []
    for t in spec["tables"]:
        source = t["source"] + (f" -- {t['note']}" if t.get("note") else "")
        tables.append(load_tiers(t["tiers"], effective_from_ms=date_to_ms(t["effective_from"]),
                                 source=source, as_of=t["as_of"],
                                 illustrative=bool(t["illustrative"]),
                                 symbol=f"{venue}:{sym} ({t['as_of']})"))
    return tuple(sorted(tables, key=lambda x: x.effective_from_ms))


def bundled_symbols(venue: str) -> list[str]:
    return sorted(load_preset_file(venue)["symbols"])


_INSTRUMENT_FIELDS = {f.name for f in fields(Instrument)} - {"symbol"}


def instrument_for(venue: str, symbol: str, *, as_of_ms: int | None = None,
                   **overrides: Any) -> Instrument:
    """The bundled Instrument of ``symbol`` on ``venue``.

    Dated tables switch at their dates; with ``as_of_ms`` only the table in force at that
    time is kept, for the whole run. Fees are ``None`` (the engine takes the venue preset's)
    unless overridden; any Instrument field can be overridden (``taker_fee=0.0004``,
    ``tiers=...`` as TierTables or tier dicts). A symbol without bundled tiers needs
    ``tiers=``; without it a ValueError says where tiers come from.
    """
    preset = get_venue(venue)
    sym = normalize_symbol(symbol)
    unknown = set(overrides) - _INSTRUMENT_FIELDS
    if unknown:
        bad = sorted(unknown)[0]
        raise ValueError(f"instrument_for: unknown field {bad!r}"
                         f"{_did_you_mean(bad, _INSTRUMENT_FIELDS)}; fields: "
                         f"{sorted(_INSTRUMENT_FIELDS)}")
    if "tiers" in overrides:
        overrides["tiers"] = _as_tables(overrides["tiers"], sym)
    spec = load_preset_file(preset.name)["symbols"].get(sym)
    if spec is None:
        if "tiers" not in overrides:
            raise ValueError(
                f"no bundled tier table for {sym} on {preset.name} (bundled: "
                f"{bundled_symbols(preset.name)}); tiers must be given: via the Market's "
                f"instruments, read_csv's leverage_brackets.json, or fetch (ccxt "
                f"fetch_leverage_tiers), or instrument_for(..., tiers=...)")
        inst = Instrument(symbol=sym, **overrides)
    else:
        base = Instrument(symbol=sym, tiers=bundled_tables(preset.name, sym),
                          contract_size=float(spec["contract_size"]),
                          tick_size=float(spec["tick_size"]), lot_size=float(spec["lot_size"]),
                          min_notional=float(spec["min_notional"]),
                          extra={"venue": preset.name, "venue_symbol": spec["venue_symbol"],
                                 "spec_source": spec["spec_source"],
                                 "spec_as_of": spec["spec_as_of"],
                                 "spec_illustrative": bool(spec["spec_illustrative"])})
        inst = replace(base, **overrides)
    if as_of_ms is not None:
        table = inst.tier_table_at(int(as_of_ms))
        inst = replace(inst, tiers=(replace(table, effective_from_ms=0),))
    return inst


def _as_tables(tiers: Any, sym: str) -> tuple[TierTable, ...]:
    if isinstance(tiers, TierTable):
        return (tiers,)
    if isinstance(tiers, (list, tuple)) and tiers and all(isinstance(t, TierTable)
                                                         for t in tiers):
        return tuple(tiers)
    return (load_tiers(tiers, symbol=sym),)
