"""``perpbt run``: one backtest of one strategy, printed as a stats table.

Named ``run_cmd`` rather than ``run``: ``perpbt.cli.run`` is the command function itself.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

import perpbt
from perpbt.cli.market import load_market, split_symbols
from perpbt.cli.options import (MARGINS, PARAM_OPT, VENUES, FundingMode, Intrabar,
                                check_fraction)
from perpbt.cli.output import stats_table
from perpbt.cli.strategies import build_strategy


def run(
    strategy: str = typer.Argument(
        ...,
        help="A .py file with one pb.Strategy subclass (file.py:Class to pick one), or the "
             "name of a file in ./strategies or the checkout's strategies/ (e.g. ma_cross)."),
    csv: Optional[Path] = typer.Option(
        None, "--csv", metavar="DIR",
        help="Read this CSV directory (<DIR>/<SYMBOL>/klines_<tf>.csv, mark_<tf>.csv, "
             "funding.csv). Default: the embedded synthetic market (no files, no network)."),
    scenario: str = typer.Option(
        "default", "--scenario",
        help="Embedded synthetic market when no --csv: default, quiet_thin, flash_crash, "
             "squeeze, mark_divergence or funding_regime (see pb.data.scenario)."),
    symbols: Optional[List[str]] = typer.Option(
        None, "--symbols", "-s", metavar="S",
        help="Symbols to trade: repeat the option or separate with commas "
             "(BTCUSDT or BTC/USDT:USDT). Default: every symbol of the market."),
    timeframe: str = typer.Option("1h", "--timeframe", "-t", help="Bar length (1m, 5m, 1h ...)."),
    margin: str = typer.Option("isolated", "--margin", help="Margin mode: isolated or cross."),
    leverage: float = typer.Option(
        10.0, "--leverage", "-l",
        help="Exchange leverage setting: initial margin = notional / leverage. It does not "
             "size positions (the strategy's exposure does)."),
    venue: str = typer.Option(
        "binance", "--venue",
        help="Fees, clearance fee and liquidation formula: binance, bybit or okx."),
    capital: float = typer.Option(10_000.0, "--capital", help="Initial capital, quote (USDT)."),
    stop: Optional[float] = typer.Option(
        None, "--stop", help="Stop-loss distance from the average entry, a fraction "
                             "(0.02 = 2 %). Default: none."),
    take: Optional[float] = typer.Option(
        None, "--take", help="Take-profit distance from the average entry, a fraction "
                             "(0.05 = 5 %). Default: none."),
    param: Optional[List[str]] = PARAM_OPT,
    since: Optional[str] = typer.Option(
        None, "--since", help="First bar to keep, ISO date/time UTC (2021-01-01)."),
    until: Optional[str] = typer.Option(
        None, "--until", help="Keep bars opening before this ISO date/time UTC."),
    intrabar: Intrabar = typer.Option(
        Intrabar.pessimistic, "--intrabar",
        help="Path inside a bar: pessimistic (adverse extreme first) or ohlc."),
    funding: FundingMode = typer.Option(
        FundingMode.strict, "--funding",
        help="strict: a position open where funding data is missing is an error; zero: "
             "such bars pay no funding."),
    liquidation: Optional[str] = typer.Option(
        None, "--liquidation",
        help="Liquidation policy: takeover (at the bankruptcy price), ioc (one order at the "
             "bankruptcy price, stops once compliant), tiered (tier-by-tier steps), multibar "
             "(sold over bars). Default: the venue's own (binance ioc, bybit/okx tiered)."),
    execution: bool = typer.Option(
        False, "--execution/--frictionless",
        help="Execution model: calibrated half spread widened by range and thinness, stress "
             "on forced orders, square-root impact, 10 % participation cap (pb.Execution()). "
             "Default: frictionless fills at the open / the stop level."),
) -> None:
    """Backtest one strategy and print its stats (fractions, not percent; money in quote)."""
    margin = margin.strip().lower()
    if margin not in MARGINS:
        raise typer.BadParameter(f"{margin!r} is not a margin mode; choose isolated or cross",
                                 param_hint="--margin")
    venue = venue.strip().lower()
    if venue not in VENUES:
        close = difflib.get_close_matches(venue, VENUES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise typer.BadParameter(f"unknown venue {venue!r}{hint}; choose one of {list(VENUES)}",
                                 param_hint="--venue")
    if not leverage >= 1:
        raise typer.BadParameter(f"leverage must be >= 1, got {leverage:g}",
                                 param_hint="--leverage")
    if not capital > 0:
        raise typer.BadParameter(f"capital must be positive, got {capital:g}",
                                 param_hint="--capital")
    stop = check_fraction(stop, "--stop", 1.0)
    take = check_fraction(take, "--take", None)
    strat = build_strategy(strategy, param or [])
    err = Console(stderr=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", perpbt.data.CoverageWarning)
            market = load_market(csv, split_symbols(symbols), timeframe, since, until, scenario)
        for w in caught:
            err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
        with err.status("backtesting (the first run compiles the engine, about a minute)"):
            res = perpbt.backtest(market, strat, venue=venue, margin=margin, leverage=leverage,
                                  initial_capital=capital, stop=stop, take=take,
                                  intrabar=intrabar.value, funding=funding.value,
                                  liquidation=liquidation, execution=execution)
    except (ValueError, KeyError, FileNotFoundError, NotImplementedError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.print(f"[red]error:[/red] {message}", highlight=False)
        raise typer.Exit(1) from exc
    stats = res.stats()
    source = str(csv) if csv is not None else f"embedded synthetic market ({scenario})"
    out = Console(soft_wrap=False)
    out.print(f"{strat!r}", highlight=False)
    out.print(f"{venue}, {margin} margin, leverage {leverage:g}x, capital {capital:,.2f}"
              + (f", stop {stop:g}" if stop else "") + (f", take {take:g}" if take else "")
              + (f", liquidation {liquidation}" if liquidation else "")
              + (", execution model on" if execution else ""),
              highlight=False)
    names = ", ".join(market.symbols[:6]) + (", ..." if market.n_symbols > 6 else "")
    out.print(f"{_plural(market.n_symbols, 'symbol')} ({names}) x {market.n_bars:,} "
              f"{market.timeframe} "
              f"bars, {market.index[0]:%Y-%m-%d %H:%M} .. {market.index[-1]:%Y-%m-%d %H:%M} "
              f"UTC ({source})", highlight=False)
    out.print(stats_table(stats))
    c = res.counts
    out.print(f"{_plural(c['trades'], 'trade')}, {_plural(c['liquidations'], 'liquidation')}, "
              f"{_plural(c['stops'], 'stop/take exit')}, "
              f"{_plural(c['settlements'], 'funding payment')}; final equity "
              f"{float(stats['final_equity']):,.2f} from {capital:,.2f}"
              + (" (account bust)" if res.bust else ""), highlight=False)


def _plural(n: int, word: str) -> str:
    """'1 trade', '3 trades'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
