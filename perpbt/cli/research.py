"""``perpbt suite``, ``perpbt sweep`` and ``perpbt compare``: many backtests, one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.table import Table

import perpbt
from perpbt.cli.market import DATA_HELP, load_data_or_exit
from perpbt.cli.options import (CAPITAL_OPT, FUNDING_OPT, MARGINS, PARAM_OPT, SINCE_OPT,
                                STRATEGY_ARG, SYMBOLS_OPT, TIMEFRAME_OPT, UNTIL_OPT, VENUES,
                                FundingMode, check_choices, check_fraction, parse_stop,
                                split_list)
from perpbt.cli.output import SUMMARY_COLUMNS, check_out, format_value, write_frame
from perpbt.cli.strategies import (build_strategy, load_strategy_class, parse_grid,
                                   resolve_strategy_path)


def _suite_label(result, row) -> str:
    """``strategy(key=value, ...)`` of one suite row."""
    params = ", ".join(f"{c.removeprefix('param_')}={format_value(c, row[c])}"
                       for c in result.param_columns
                       if c in row.index and not _missing(row[c]))
    return f"{row['strategy']}({params})"


def _missing(value: Any) -> bool:
    """None or a NaN-like scalar (a parameter this strategy lacks)."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def suite_table(result) -> Table:
    """One summary row per suite run."""
    table = Table(title=f"suite {result.name}: {len(result.rows)} runs")
    for col in ("dataset", "strategy", "margin", "venue", "lev") + SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("dataset", "strategy", "margin",
                                                        "venue") else "right")
    for _, row in result.rows.iterrows():
        table.add_row(str(row["dataset"]), _suite_label(result, row), str(row["margin"]),
                      str(row["venue"]), f"{float(row['leverage']):g}x",
                      *(format_value(c, row[c]) for c in SUMMARY_COLUMNS))
    return table


def moved_table(moved) -> Table:
    """The metrics that moved against the baseline: old, new, change."""
    table = Table(title=f"{len(moved)} metric change(s) against the baseline")
    for col in ("run", "metric", "old", "new", "change", "relative"):
        table.add_column(col, justify="left" if col in ("run", "metric") else "right")
    for _, row in moved.iterrows():
        rel = row["rel_change"]
        table.add_row(str(row["run_id"]), str(row["metric"]),
                      format_value(row["metric"], row["old"]),
                      format_value(row["metric"], row["new"]),
                      format_value(row["metric"], row["abs_change"]),
                      "n/a" if _missing(rel) else f"{float(rel):+.2%}")
    return table


def suite_cmd(
    suite: Path = typer.Argument(
        ..., metavar="SUITE.toml",
        help="Suite file: \\[suite] (margins, venues, leverage, capital ...), "
             "\\[datasets.NAME] (an embedded scenario or a CSV directory) and "
             "\\[strategies.NAME] (a strategy "
             "name and its parameters; lists expand to a grid). Every combination runs once. "
             "See perpbt/suite.py and benchmarks/suites/*.toml."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE.parquet",
        help="Write one row per run (run_id, dataset, strategy, parameters, margin, venue, "
             "leverage and every stat) to this Parquet file; it can serve as a later "
             "--baseline."),
    report: Optional[Path] = typer.Option(
        None, "--report", "-r", metavar="FILE.html",
        help="Write a self-contained HTML report (stats table, equity and drawdown with "
             "liquidation markers, funding vs realized volatility, parameter heatmaps and "
             "the baseline comparison); opens offline, no network."),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", "-b", metavar="FILE.parquet",
        help="A Parquet file from an earlier --out: print (and put in the report) every "
             "metric of every run that moved beyond the tolerance, with old and new value, "
             "absolute and relative change, and runs added or missing."),
    rtol: float = typer.Option(
        1e-6, "--rtol",
        help="Relative tolerance of the baseline comparison: a metric moved when "
             "|new - old| > atol + rtol * |old|."),
    atol: float = typer.Option(1e-9, "--atol",
                               help="Absolute tolerance of the baseline comparison."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No per-run progress lines on stderr."),
) -> None:
    """Run a benchmark suite (datasets x strategy grids x margin modes x venues x leverage)
    and print a summary table; optionally save results, an HTML report and compare with a
    baseline."""
    from perpbt import suite as suite_module

    err = Console(stderr=True)
    old = None
    try:
        if baseline is not None:
            if not baseline.is_file():
                raise typer.BadParameter(f"no baseline file {baseline}",
                                         param_hint="--baseline")
            import pandas as pd

            old = pd.read_parquet(baseline)
        result = suite_module.run_suite(suite, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    out_console = Console(soft_wrap=False, width=max(Console().width, 160))
    out_console.print(suite_table(result))
    out_console.print(f"{len(result.rows)} runs in {result.seconds:.1f} s", highlight=False)
    if old is not None:
        moved = suite_module.compare_to_baseline(result, old, rtol=rtol, atol=atol)
        if moved.empty:
            out_console.print(f"no metric moved against the baseline {baseline}",
                              highlight=False)
        else:
            out_console.print(moved_table(moved))
    if out is not None:
        result.to_parquet(out)
        out_console.print(f"results: {out}", highlight=False)
    if report is not None:
        from perpbt.report import write_report

        write_report(result, report, baseline=old)
        out_console.print(f"report: {report}", highlight=False)


def sweep_cmd(
    strategy: str = STRATEGY_ARG,
    data: str = typer.Option("default", "--data", "-d", help=DATA_HELP),
    grid: Optional[List[str]] = typer.Option(
        None, "--grid", "-g", metavar="KEY=V1,V2",
        help="A strategy parameter and its values; repeat for more keys (--grid fast=6,12 "
             "--grid slow=48,96). Every combination runs. No --grid: the defaults only."),
    leverage: Optional[List[str]] = typer.Option(
        None, "--leverage", "-l", metavar="L1,L2",
        help="Exchange leverage settings (>= 1), comma-separated: an axis. Default 10."),
    margin: Optional[List[str]] = typer.Option(
        None, "--margin", metavar="M1,M2",
        help="Margin modes (isolated, cross), comma-separated: an axis. Default isolated."),
    venue: Optional[List[str]] = typer.Option(
        None, "--venue", metavar="V1,V2",
        help="Venues (binance, bybit, okx), comma-separated: an axis. Default binance."),
    stop: Optional[List[str]] = typer.Option(
        None, "--stop", metavar="S1,S2",
        help="Stop-loss distances from the average entry, fractions (0.02 = 2 %), "
             "comma-separated: an axis; 'none' for no stop. Default: no stop."),
    executor: str = typer.Option(
        "local", "--executor", "-e",
        help="local (threads in this process sharing the market; the engine releases the "
             "GIL), processes (a process pool) or a Dask scheduler address "
             "(tcp://host:8786, needs perpbt[dask])."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w",
        help="Threads (local; 1 = serial) or processes (processes); default: the CPU count."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="Write one row per combination; the suffix picks the format: .parquet, .csv or "
             ".json (records). Without it a summary table is printed."),
    symbols: Optional[List[str]] = SYMBOLS_OPT,
    timeframe: str = TIMEFRAME_OPT,
    since: Optional[str] = SINCE_OPT,
    until: Optional[str] = UNTIL_OPT,
    capital: float = CAPITAL_OPT,
    take: Optional[float] = typer.Option(
        None, "--take", help="Take-profit distance from the average entry, a fraction."),
    funding: FundingMode = FUNDING_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Backtest every combination of a strategy's parameter grid x leverage x margin x venue
    x stop; one stats row per combination (signals computed once per parameter set)."""
    check_out(out)
    cls = load_strategy_class(*resolve_strategy_path(strategy))
    grid_values = parse_grid(grid or [])
    levs = split_list(leverage, "--leverage", float) or [10.0]
    margins = check_choices(split_list(margin, "--margin") or ["isolated"], MARGINS, "--margin")
    venues = check_choices(split_list(venue, "--venue") or ["binance"], VENUES, "--venue")
    stops = [None if s == "none" else check_fraction(s, "--stop", 1.0)
             for s in split_list(stop, "--stop", parse_stop)] or [None]
    take = check_fraction(take, "--take", None)
    if executor in ("local", "processes"):
        runner: Any = (perpbt.ProcessExecutor(workers) if executor == "processes"
                       else perpbt.LocalExecutor(workers))
    elif "://" in executor:
        runner = perpbt.DaskExecutor(executor)
    else:
        raise typer.BadParameter(f"{executor!r}: use local, processes or a Dask scheduler "
                                 f"address (tcp://host:8786)", param_hint="--executor")
    market = load_data_or_exit(data, symbols, timeframe, since, until)
    err = Console(stderr=True)
    try:
        frame = perpbt.sweep(market, cls, grid_values, stop=stops, leverage=levs,
                             margin=margins, venue=venues, executor=runner,
                             progress=not quiet, initial_capital=capital, take=take,
                             funding=funding.value)
    except (ValueError, TypeError, NotImplementedError) as exc:
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    console = Console(soft_wrap=False, width=max(Console().width, 160))
    if out is not None:
        write_frame(frame, out)
        console.print(f"{len(frame)} combinations -> {out}", highlight=False)
        return
    params = frame.attrs.get("perpbt_params", [])
    table = Table(title=f"sweep {cls.__name__}: {len(frame)} combinations")
    shown = [*params, "stop", "leverage", "margin", "venue", *SUMMARY_COLUMNS]
    for col in shown:
        table.add_column(col, justify="right")
    for _, row in frame.iterrows():
        table.add_row(*(format_value(c, row[c]) if c in SUMMARY_COLUMNS else str(row[c])
                        for c in shown))
    console.print(table)


def compare_cmd(
    strategy: str = STRATEGY_ARG,
    data: str = typer.Option("default", "--data", "-d", help=DATA_HELP),
    margin: Optional[List[str]] = typer.Option(
        None, "--margin", metavar="M1,M2",
        help="Margin modes to compare, comma-separated. Default: isolated,cross."),
    venue: Optional[List[str]] = typer.Option(
        None, "--venue", metavar="V1,V2",
        help="Venues to compare (binance, bybit, okx), comma-separated. Default: binance."),
    liquidation: Optional[List[str]] = typer.Option(
        None, "--liquidation", metavar="P1,P2",
        help="Liquidation policies to compare (takeover, ioc, tiered, multibar; 'venue' = the "
             "venue's own), comma-separated. Default: the venue's own."),
    param: Optional[List[str]] = PARAM_OPT,
    leverage: float = typer.Option(10.0, "--leverage", "-l",
                                   help="Exchange leverage setting, >= 1."),
    stop: Optional[float] = typer.Option(
        None, "--stop", help="Stop-loss distance from the average entry, a fraction."),
    capital: float = CAPITAL_OPT,
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="Write one row per setting (setting, margin, venue, liquidation, every stat); "
             "the suffix picks the format: .parquet, .csv or .json (records)."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", metavar="FILE.html",
        help="Write the equity curves of every setting, with liquidation markers, as a "
             "self-contained HTML file."),
    symbols: Optional[List[str]] = SYMBOLS_OPT,
    timeframe: str = TIMEFRAME_OPT,
    since: Optional[str] = SINCE_OPT,
    until: Optional[str] = UNTIL_OPT,
    funding: FundingMode = FUNDING_OPT,
) -> None:
    """Run one strategy's decisions (one signals call) under several margin modes, venues and
    liquidation policies and print the stats side by side."""
    check_out(out)
    if plot is not None and plot.suffix.lower() not in (".html", ".htm"):
        raise typer.BadParameter(f"{plot}: the plot is written as HTML (.html)",
                                 param_hint="--plot")
    strat = build_strategy(strategy, param or [])
    margins = check_choices(split_list(margin, "--margin") or list(MARGINS), MARGINS, "--margin")
    venues = check_choices(split_list(venue, "--venue") or ["binance"], VENUES, "--venue")
    policies = [None if p.lower() in ("venue", "none") else p.lower()
                for p in split_list(liquidation, "--liquidation")] or [None]
    if not leverage >= 1:
        raise typer.BadParameter(f"leverage must be >= 1, got {leverage:g}",
                                 param_hint="--leverage")
    stop = check_fraction(stop, "--stop", 1.0)
    market = load_data_or_exit(data, symbols, timeframe, since, until)
    err = Console(stderr=True)
    try:
        with err.status("backtesting (the first run compiles the engine, about a minute)"):
            comp = perpbt.compare(market, strat, margin=margins, venue=venues,
                                  liquidation=policies, leverage=leverage, stop=stop,
                                  initial_capital=capital, funding=funding.value)
    except (ValueError, NotImplementedError) as exc:
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    stats = comp.stats
    table = Table(title=f"{strat!r}, leverage {leverage:g}x")
    table.add_column("stat")
    for label in stats.columns:
        table.add_column(label, justify="right")
    for key, row in stats.iterrows():
        table.add_row(str(key), *(format_value(str(key), v) for v in row))
    console = Console(soft_wrap=False, width=max(Console().width, 160))
    console.print(table)
    if out is not None:
        write_frame(comp.to_frame(), out)
        console.print(f"results: {out}", highlight=False)
    if plot is not None:
        comp.plot(plot)
        console.print(f"plot: {plot}", highlight=False)
