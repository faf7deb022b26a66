"""Option values shared by several commands: margin modes, venues, enums and checks."""

from __future__ import annotations

import difflib
from enum import Enum
from typing import List, Optional

import typer

MARGINS = ("isolated", "cross")
VENUES = ("binance", "bybit", "okx")


class Intrabar(str, Enum):
    """--intrabar: the path assumed inside a bar."""

    pessimistic = "pessimistic"
    ohlc = "ohlc"


class FundingMode(str, Enum):
    """--funding: what missing funding data means."""

    strict = "strict"
    zero = "zero"


def check_fraction(value: Optional[float], name: str,
                   upper: Optional[float]) -> Optional[float]:
    """``value`` if it is a fraction in (0, upper) (> 0 without ``upper``), else a usage error."""
    if value is None:
        return None
    if not value > 0 or (upper is not None and not value < upper):
        span = f"in (0, {upper:g})" if upper is not None else "> 0"
        raise typer.BadParameter(f"{value:g} is not a fraction {span}; write 0.02 for 2 %",
                                 param_hint=name)
    return value


def split_list(items: Optional[List[str]], name: str, cast=str) -> list:
    """Values from repeated and/or comma-separated options ("5,10" -> [5, 10])."""
    out = []
    for item in items or []:
        for text in item.split(","):
            text = text.strip()
            if not text:
                continue
            try:
                out.append(cast(text))
            except ValueError:
                raise typer.BadParameter(f"{text!r} is not a valid value", param_hint=name)
    return out


def parse_stop(text: str) -> "float | str":
    """One --stop value of sweep: a fraction, or 'none' for no stop."""
    return "none" if text.lower() == "none" else float(text)


def check_choices(values: list[str], allowed, name: str) -> list[str]:
    """``values`` lower-cased, each one of ``allowed``, else a usage error with a hint."""
    out = []
    for v in values:
        key = v.lower()
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise typer.BadParameter(f"unknown value {v!r}{hint}; choose from {list(allowed)}",
                                     param_hint=name)
        out.append(key)
    return out


# Options that several commands declare the same way (typer reads these defaults; they are
# never changed, so one object serves every command).
STRATEGY_ARG = typer.Argument(
    ..., help="A .py file with one pb.Strategy subclass (file.py:Class), or a name from "
              "./strategies or the checkout's strategies/ (e.g. ma_cross).")
SYMBOLS_OPT = typer.Option(
    None, "--symbols", "-s", metavar="S",
    help="Symbols to trade (repeat or comma-separate). Default: all of the market.")
TIMEFRAME_OPT = typer.Option("1h", "--timeframe", "-t",
                             help="Bar length of a CSV directory (1m, 1h ...).")
SINCE_OPT = typer.Option(None, "--since", help="First bar to keep, ISO date/time UTC.")
UNTIL_OPT = typer.Option(None, "--until", help="Keep bars opening before this ISO date/time UTC.")
CAPITAL_OPT = typer.Option(10_000.0, "--capital", help="Initial capital, quote (USDT).")
FUNDING_OPT = typer.Option(
    FundingMode.strict, "--funding",
    help="strict: an open position where funding data is missing is an error; zero: "
         "such bars pay no funding.")
PARAM_OPT = typer.Option(
    None, "--param", "-p", metavar="KEY=VALUE",
    help="Override a strategy parameter; repeat for several (--param fast=12).")
