"""The market a command runs on: --csv / --scenario (run) and --data (sweep, compare)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

import perpbt

DATA_HELP = ("An embedded scenario name (default, quiet_thin, flash_crash, squeeze, "
             "mark_divergence, funding_regime) or a CSV directory "
             "(<DIR>/<SYMBOL>/klines_<tf>.csv, mark_<tf>.csv, funding.csv).")


def split_symbols(symbols: Optional[list[str]]) -> Optional[list[str]]:
    """Repeated and/or comma-separated --symbols as one list; None for all symbols."""
    if not symbols:
        return None
    return [s.strip() for item in symbols for s in item.split(",") if s.strip()]


def load_market(csv: Optional[Path], symbols: Optional[list[str]], timeframe: str,
                since: Optional[str], until: Optional[str], scenario: str = "default"):
    """A CSV directory, or the embedded scenario (1h bars only), cut to symbols and dates."""
    if csv is not None:
        return perpbt.data.read_csv(csv, symbols, timeframe, since=since, until=until)
    if timeframe != "1h":
        raise typer.BadParameter("the embedded market has 1h bars only; use --csv for "
                                 "other timeframes", param_hint="--timeframe")
    try:
        market = perpbt.data.scenario(scenario)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    if symbols:
        market = market.sel(symbols)
    if since is not None or until is not None:
        market = market.slice(since, until)
    return market


def load_data(data: str, symbols, timeframe: str, since, until):
    """``--data``: an existing CSV directory, else an embedded scenario name."""
    path = Path(data).expanduser()
    if path.is_dir():
        return load_market(path, symbols, timeframe, since, until)
    if "/" in data or "\\" in data:
        raise typer.BadParameter(f"no directory {data!r}", param_hint="--data")
    try:
        return load_market(None, symbols, timeframe, since, until, scenario=data)
    except typer.BadParameter as exc:
        raise typer.BadParameter(f"{exc.message} (or give a CSV directory)",
                                 param_hint="--data") from None


def load_data_or_exit(data, symbols, timeframe, since, until):
    """:func:`load_data` with coverage warnings and data errors printed (errors exit 1)."""
    err = Console(stderr=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", perpbt.data.CoverageWarning)
            market = load_data(data, split_symbols(symbols), timeframe, since, until)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
        raise typer.Exit(1) from exc
    for w in caught:
        err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
    return market
