"""The ``perpbt`` command line: a thin layer over :func:`perpbt.backtest`.

``perpbt run STRATEGY`` loads a market (the embedded synthetic one, or ``--csv DIR``), builds
the strategy with ``--param key=value`` overrides, runs one backtest and prints ``Result.stats()``
as a table plus a one-line summary. Every rate and distance is a fraction (0.02 = 2 %).

STRATEGY is a path to a ``.py`` file holding one ``pb.Strategy`` subclass (``file.py:Class``
picks one of several), or a name looked up as ``./strategies/NAME.py`` and then in the
``strategies/`` folder of the checkout perpbt is installed from (editable installs).

This module builds the typer ``app`` from the commands of its submodules (``run_cmd``,
``research``, ``bench``, ``data``) and re-exports the names other code imports from
``perpbt.cli``; the shared helpers live in ``strategies``, ``market``, ``options`` and
``output``.
"""

from __future__ import annotations

import typer

import perpbt
from perpbt.cli.bench import bench_cmd, bench_script
from perpbt.cli.data import cache_table, data_list, fetch_cmd
from perpbt.cli.market import DATA_HELP, load_data, load_market, split_symbols
from perpbt.cli.options import MARGINS, VENUES, FundingMode, Intrabar, split_list
from perpbt.cli.output import (MONEY, OUT_FORMATS, SUMMARY_COLUMNS, UNITS, check_out,
                               format_value, stats_table, write_frame)
from perpbt.cli.research import compare_cmd, moved_table, suite_cmd, suite_table, sweep_cmd
from perpbt.cli.run_cmd import run
from perpbt.cli.strategies import (available_strategies, build_strategy, load_strategy_class,
                                   parse_grid, parse_params, parse_value,
                                   resolve_strategy_path, strategy_dirs)

__all__ = [
    "app", "data_app", "main",
    "run", "suite_cmd", "sweep_cmd", "compare_cmd", "bench_cmd", "fetch_cmd", "data_list",
    "bench_script", "cache_table", "suite_table", "moved_table",
    "strategy_dirs", "available_strategies", "resolve_strategy_path", "load_strategy_class",
    "parse_value", "parse_params", "parse_grid", "build_strategy",
    "split_symbols", "load_market", "load_data", "DATA_HELP",
    "MARGINS", "VENUES", "Intrabar", "FundingMode", "split_list",
    "UNITS", "MONEY", "SUMMARY_COLUMNS", "OUT_FORMATS", "format_value", "stats_table",
    "check_out", "write_frame",
]

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Backtest leveraged perpetual futures: isolated/cross margin, tiered maintenance "
         "margin, mark-price liquidation, funding and fees. Rates and distances are fractions "
         "(0.02 = 2 %), money is in the quote currency (USDT).")
data_app = typer.Typer(no_args_is_help=True, help="The download cache.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"perpbt {perpbt.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_print_version, is_eager=True)) -> None:
    """perpbt: backtesting for leveraged perpetual futures."""


# registration order is the order ``perpbt --help`` lists the commands in
app.command()(run)
app.command("suite")(suite_cmd)
app.command("sweep")(sweep_cmd)
app.command("compare")(compare_cmd)
app.command("bench")(bench_cmd)
app.command("fetch")(fetch_cmd)
app.add_typer(data_app, name="data")
data_app.command("list")(data_list)


def main() -> None:
    """Console-script entry point (``perpbt``)."""
    app(prog_name="perpbt")
