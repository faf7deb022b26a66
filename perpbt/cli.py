"""The ``perpbt`` command line: a thin layer over :func:`perpbt.backtest`.

``perpbt run STRATEGY`` loads a market (the embedded synthetic one, or ``--csv DIR``), builds
the strategy with ``--param key=value`` overrides, runs one backtest and prints ``Result.stats()``
as a table plus a one-line summary. Every rate and distance is a fraction (0.02 = 2 %).

STRATEGY is a path to a ``.py`` file holding one ``pb.Strategy`` subclass (``file.py:Class``
picks one of several), or a name looked up as ``./strategies/NAME.py`` and then in the
``strategies/`` folder of the checkout perpbt is installed from (editable installs).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.table import Table

import perpbt
from perpbt.strategy import Strategy

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Backtest leveraged perpetual futures: isolated/cross margin, tiered maintenance "
         "margin, mark-price liquidation, funding and fees. Rates and distances are fractions "
         "(0.02 = 2 %), money is in the quote currency (USDT).")

MARGINS = ("isolated", "cross")
VENUES = ("binance", "bybit", "okx")
# the unit printed next to each stat; keys not listed print without a unit
UNITS = {"total_return": "fraction", "cagr": "fraction / year", "sharpe": "annualised",
         "sortino": "annualised", "max_drawdown": "fraction", "calmar": "ratio",
         "trades": "count", "win_rate": "fraction", "fees_paid": "quote",
         "funding_paid": "quote (+ = paid)", "liquidations": "count",
         "min_liq_distance": "fraction of mark", "stops_beyond_liq": "count",
         "final_equity": "quote", "insurance_fund_change": "quote", "clearance_fees": "quote",
         "bust": "yes/no"}
MONEY = {"fees_paid", "funding_paid", "final_equity", "insurance_fund_change", "clearance_fees"}


class Intrabar(str, Enum):
    pessimistic = "pessimistic"
    ohlc = "ohlc"


class FundingMode(str, Enum):
    strict = "strict"
    zero = "zero"


# ---------------------------------------------------------------------------- strategies
def strategy_dirs() -> list[Path]:
    """Where a strategy name is looked up: ./strategies, then the checkout's strategies/."""
    dirs = [Path.cwd() / "strategies", Path(perpbt.__file__).resolve().parents[1] / "strategies"]
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_strategies() -> list[str]:
    names = {p.stem for d in strategy_dirs() if d.is_dir() for p in d.glob("*.py")
             if not p.stem.startswith("_")}
    return sorted(names)


def resolve_strategy_path(spec: str) -> tuple[Path, Optional[str]]:
    """(file, class name or None) for a path, ``path.py:Class`` or a strategy name."""
    cls_name = None
    match = re.fullmatch(r"(.+\.py):([A-Za-z_]\w*)", spec)
    if match:
        spec, cls_name = match.groups()
    path = Path(spec).expanduser()
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise typer.BadParameter(f"no strategy file {spec!r}", param_hint="STRATEGY")
        return path, cls_name
    if not re.fullmatch(r"[A-Za-z_]\w*", spec):
        raise typer.BadParameter(f"{spec!r} is neither a .py file nor a strategy name",
                                 param_hint="STRATEGY")
    for folder in strategy_dirs():
        candidate = folder / f"{spec}.py"
        if candidate.is_file():
            return candidate, cls_name
    known = available_strategies()
    close = difflib.get_close_matches(spec, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = ", ".join(str(d) for d in strategy_dirs())
    raise typer.BadParameter(f"unknown strategy {spec!r}{hint}; available: {known or 'none'} "
                             f"(looked in {where})", param_hint="STRATEGY")


def load_strategy_class(path: Path, cls_name: Optional[str] = None) -> type[Strategy]:
    """The one ``pb.Strategy`` subclass defined in ``path`` (or the one named ``cls_name``)."""
    mod_name = "perpbt_user_strategy_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"cannot import {path}", param_hint="STRATEGY")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report what broke, with its type
        sys.modules.pop(mod_name, None)
        raise typer.BadParameter(f"importing {path} failed: {type(exc).__name__}: {exc}",
                                 param_hint="STRATEGY") from exc
    found = {name: obj for name, obj in vars(module).items()
             if isinstance(obj, type) and issubclass(obj, Strategy) and obj is not Strategy
             and obj.__module__ == mod_name}
    if cls_name is not None:
        if cls_name not in found:
            raise typer.BadParameter(f"{path} defines no Strategy subclass {cls_name!r}; it "
                                     f"defines {sorted(found)}", param_hint="STRATEGY")
        return found[cls_name]
    if len(found) != 1:
        what = "no pb.Strategy subclass" if not found else f"several: {sorted(found)}"
        raise typer.BadParameter(f"{path} must define exactly one pb.Strategy subclass, found "
                                 f"{what} (pick one with {path}:ClassName)",
                                 param_hint="STRATEGY")
    return next(iter(found.values()))


def parse_value(text: str) -> Any:
    """'5' -> 5, '0.5' -> 0.5, 'true'/'false' -> bool, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key) or not value.strip():
            raise typer.BadParameter(f"expected key=value (e.g. fast=12), got {item!r}",
                                     param_hint="--param")
        params[key] = parse_value(value.strip())
    return params


def build_strategy(spec: str, items: list[str]) -> Strategy:
    cls = load_strategy_class(*resolve_strategy_path(spec))
    params = parse_params(items)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        defaults = ", ".join(f"{k}={v!r}" for k, v in cls().params.items())
        raise typer.BadParameter(f"{exc} ({cls.__name__} parameters and defaults: {defaults})",
                                 param_hint="--param") from exc


# ---------------------------------------------------------------------------- market
def split_symbols(symbols: Optional[list[str]]) -> Optional[list[str]]:
    if not symbols:
        return None
    return [s.strip() for item in symbols for s in item.split(",") if s.strip()]


def load_market(csv: Optional[Path], symbols: Optional[list[str]], timeframe: str,
                since: Optional[str], until: Optional[str], scenario: str = "default"):
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


# ---------------------------------------------------------------------------- output
def format_value(key: str, value: Any) -> str:
    if isinstance(value, (bool,)) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        return f"{int(value):,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "n/a"
    return f"{number:,.2f}" if key in MONEY else f"{number:.4f}"


def stats_table(stats) -> Table:
    table = Table()
    table.add_column("stat")
    table.add_column("value", justify="right")
    table.add_column("unit", style="dim")
    for key, value in stats.items():
        table.add_row(str(key), format_value(str(key), value), UNITS.get(str(key), ""))
    return table


def _fraction(value: Optional[float], name: str, upper: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if not value > 0 or (upper is not None and not value < upper):
        span = f"in (0, {upper:g})" if upper is not None else "> 0"
        raise typer.BadParameter(f"{value:g} is not a fraction {span}; write 0.02 for 2 %",
                                 param_hint=name)
    return value


# ---------------------------------------------------------------------------- commands
def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"perpbt {perpbt.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_print_version, is_eager=True)) -> None:
    """perpbt: backtesting for leveraged perpetual futures."""


@app.command()
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
    param: Optional[List[str]] = typer.Option(
        None, "--param", "-p", metavar="KEY=VALUE",
        help="Override a strategy parameter; repeat for several (--param fast=12)."),
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
    stop = _fraction(stop, "--stop", 1.0)
    take = _fraction(take, "--take", None)
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
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------- suites
SUMMARY_COLUMNS = ("total_return", "sharpe", "max_drawdown", "trades", "liquidations",
                   "final_equity")


def _suite_label(result, row) -> str:
    params = ", ".join(f"{c.removeprefix('param_')}={format_value(c, row[c])}"
                       for c in result.param_columns
                       if c in row.index and not _missing(row[c]))
    return f"{row['strategy']}({params})"


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def suite_table(result) -> Table:
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


@app.command("suite")
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


# ---------------------------------------------------------------------------- sweep / compare
OUT_FORMATS = (".parquet", ".pq", ".csv", ".json")


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


def _stop_value(text: str) -> "float | str":
    return "none" if text.lower() == "none" else float(text)


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["fast=6,12", "slow=48"]`` -> {"fast": [6, 12], "slow": [48]}."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key) or not parsed:
            raise typer.BadParameter(f"expected key=v1,v2 (e.g. fast=6,12), got {item!r}",
                                     param_hint="--grid")
        grid.setdefault(key, []).extend(parsed)
    return grid


def check_out(out: Optional[Path], name: str = "--out") -> None:
    if out is not None and out.suffix.lower() not in OUT_FORMATS:
        raise typer.BadParameter(f"{out}: the suffix picks the format; use one of "
                                 f"{list(OUT_FORMATS)}", param_hint=name)


def write_frame(frame, out: Path) -> None:
    """Parquet, CSV or JSON (records) by the suffix of ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = frame.copy()
    frame.attrs = {}
    for col in frame.columns:  # StopLoss objects, leverage dicts ...: strings
        if frame[col].dtype == object and frame[col].map(
                lambda v: v is not None and not isinstance(v, (int, float, str, bool))).any():
            frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    elif suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_json(out, orient="records", indent=1)


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


def _load_data_or_exit(data, symbols, timeframe, since, until):
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


def _choices(values: list[str], allowed, name: str) -> list[str]:
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


DATA_HELP = ("An embedded scenario name (default, quiet_thin, flash_crash, squeeze, "
             "mark_divergence, funding_regime) or a CSV directory "
             "(<DIR>/<SYMBOL>/klines_<tf>.csv, mark_<tf>.csv, funding.csv).")


@app.command("sweep")
def sweep_cmd(
    strategy: str = typer.Argument(
        ..., help="A .py file with one pb.Strategy subclass (file.py:Class), or a name from "
                  "./strategies or the checkout's strategies/ (e.g. ma_cross)."),
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
        help="local (serial, in-process), processes (a process pool) or a Dask scheduler "
             "address (tcp://host:8786, needs perpbt[dask])."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w", help="Processes for --executor processes (default: CPUs)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="Write one row per combination; the suffix picks the format: .parquet, .csv or "
             ".json (records). Without it a summary table is printed."),
    symbols: Optional[List[str]] = typer.Option(
        None, "--symbols", "-s", metavar="S",
        help="Symbols to trade (repeat or comma-separate). Default: all of the market."),
    timeframe: str = typer.Option("1h", "--timeframe", "-t",
                                  help="Bar length of a CSV directory (1m, 1h ...)."),
    since: Optional[str] = typer.Option(None, "--since",
                                        help="First bar to keep, ISO date/time UTC."),
    until: Optional[str] = typer.Option(None, "--until",
                                        help="Keep bars opening before this ISO date/time UTC."),
    capital: float = typer.Option(10_000.0, "--capital", help="Initial capital, quote (USDT)."),
    take: Optional[float] = typer.Option(
        None, "--take", help="Take-profit distance from the average entry, a fraction."),
    funding: FundingMode = typer.Option(
        FundingMode.strict, "--funding",
        help="strict: an open position where funding data is missing is an error; zero: "
             "such bars pay no funding."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Backtest every combination of a strategy's parameter grid x leverage x margin x venue
    x stop; one stats row per combination (signals computed once per parameter set)."""
    check_out(out)
    cls = load_strategy_class(*resolve_strategy_path(strategy))
    grid_values = parse_grid(grid or [])
    levs = split_list(leverage, "--leverage", float) or [10.0]
    margins = _choices(split_list(margin, "--margin") or ["isolated"], MARGINS, "--margin")
    venues = _choices(split_list(venue, "--venue") or ["binance"], VENUES, "--venue")
    stops = [None if s == "none" else _fraction(s, "--stop", 1.0)
             for s in split_list(stop, "--stop", _stop_value)] or [None]
    take = _fraction(take, "--take", None)
    if executor in ("local", "processes"):
        runner: Any = (perpbt.ProcessExecutor(workers) if executor == "processes"
                       else "local")
    elif "://" in executor:
        runner = perpbt.DaskExecutor(executor)
    else:
        raise typer.BadParameter(f"{executor!r}: use local, processes or a Dask scheduler "
                                 f"address (tcp://host:8786)", param_hint="--executor")
    market = _load_data_or_exit(data, symbols, timeframe, since, until)
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


@app.command("compare")
def compare_cmd(
    strategy: str = typer.Argument(
        ..., help="A .py file with one pb.Strategy subclass (file.py:Class), or a name from "
                  "./strategies or the checkout's strategies/ (e.g. ma_cross)."),
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
    param: Optional[List[str]] = typer.Option(
        None, "--param", "-p", metavar="KEY=VALUE",
        help="Override a strategy parameter; repeat for several (--param fast=12)."),
    leverage: float = typer.Option(10.0, "--leverage", "-l",
                                   help="Exchange leverage setting, >= 1."),
    stop: Optional[float] = typer.Option(
        None, "--stop", help="Stop-loss distance from the average entry, a fraction."),
    capital: float = typer.Option(10_000.0, "--capital", help="Initial capital, quote (USDT)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="FILE",
        help="Write one row per setting (setting, margin, venue, liquidation, every stat); "
             "the suffix picks the format: .parquet, .csv or .json (records)."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", metavar="FILE.html",
        help="Write the equity curves of every setting, with liquidation markers, as a "
             "self-contained HTML file."),
    symbols: Optional[List[str]] = typer.Option(
        None, "--symbols", "-s", metavar="S",
        help="Symbols to trade (repeat or comma-separate). Default: all of the market."),
    timeframe: str = typer.Option("1h", "--timeframe", "-t",
                                  help="Bar length of a CSV directory (1m, 1h ...)."),
    since: Optional[str] = typer.Option(None, "--since",
                                        help="First bar to keep, ISO date/time UTC."),
    until: Optional[str] = typer.Option(None, "--until",
                                        help="Keep bars opening before this ISO date/time UTC."),
    funding: FundingMode = typer.Option(
        FundingMode.strict, "--funding",
        help="strict: an open position where funding data is missing is an error; zero: "
             "such bars pay no funding."),
) -> None:
    """Run one strategy's decisions (one signals call) under several margin modes, venues and
    liquidation policies and print the stats side by side."""
    check_out(out)
    if plot is not None and plot.suffix.lower() not in (".html", ".htm"):
        raise typer.BadParameter(f"{plot}: the plot is written as HTML (.html)",
                                 param_hint="--plot")
    strat = build_strategy(strategy, param or [])
    margins = _choices(split_list(margin, "--margin") or list(MARGINS), MARGINS, "--margin")
    venues = _choices(split_list(venue, "--venue") or ["binance"], VENUES, "--venue")
    policies = [None if p.lower() in ("venue", "none") else p.lower()
                for p in split_list(liquidation, "--liquidation")] or [None]
    if not leverage >= 1:
        raise typer.BadParameter(f"leverage must be >= 1, got {leverage:g}",
                                 param_hint="--leverage")
    stop = _fraction(stop, "--stop", 1.0)
    market = _load_data_or_exit(data, symbols, timeframe, since, until)
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


def bench_script() -> Optional[Path]:
    """benchmarks/bench_engine.py of the working directory or of the checkout."""
    for root in (Path.cwd(), Path(perpbt.__file__).resolve().parents[1]):
        candidate = root / "benchmarks" / "bench_engine.py"
        if candidate.is_file():
            return candidate
    return None


@app.command("bench")
def bench_cmd(
    bars: int = typer.Option(20_000, "--bars", help="Bars of the synthetic 1-minute series "
                                                    "(the full benchmark uses 1,000,000)."),
    repeat: int = typer.Option(3, "--repeat", help="Timed repeats; the minimum is reported."),
    vbt: bool = typer.Option(True, "--vbt/--no-vbt", help="Include vectorbt (if installed)."),
    startup: bool = typer.Option(
        False, "--startup/--no-startup",
        help="Also measure the compile time with an empty numba cache and a fresh process's "
             "first call (subprocesses; takes minutes)."),
) -> None:
    """Run benchmarks/bench_engine.py (perpbt vs vectorbt vs a minimal numba loop, ns/bar)
    and print its output."""
    import subprocess

    script = bench_script()
    if script is None:
        Console(stderr=True).print(
            "[red]error:[/red] benchmarks/bench_engine.py not found (looked in the working "
            "directory and the perpbt checkout); it ships with the source repository, not the "
            "wheel: run `perpbt bench` from a checkout", highlight=False)
        raise typer.Exit(1)
    cmd = [sys.executable, str(script), "--bars", str(bars), "--repeat", str(repeat)]
    if not startup:
        cmd.append("--skip-subprocess")
    if not vbt:
        cmd.append("--skip-vbt")
    typer.echo(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        typer.echo(line.rstrip("\n"))
    if proc.wait() != 0:
        raise typer.Exit(proc.returncode)


# ---------------------------------------------------------------------------- data
@app.command("fetch")
def fetch_cmd(
    exchange: str = typer.Argument(..., help="ccxt exchange id: binanceusdm, bybit, okx ..."),
    symbols: List[str] = typer.Argument(..., help="ccxt unified symbols (BTC/USDT:USDT)."),
    timeframe: str = typer.Option("1h", "--timeframe", "-t", help="Bar length (1m, 1h ...)."),
    since: str = typer.Option(..., "--since", help="Start: ISO date (2021-01-01) or ms."),
    until: Optional[str] = typer.Option(None, "--until", help="End (exclusive); default now."),
    kinds: str = typer.Option("ohlcv,mark,funding", "--kinds",
                              help="Comma-separated: ohlcv, mark, funding."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="The cache folder."),
) -> None:
    """Download history into the Parquet cache (only what it lacks). Public data: no keys."""
    from perpbt.data import fetch as fetch_module

    def _time(text: Optional[str]):
        return int(text) if text is not None and text.isdigit() else text

    try:
        rows = fetch_module.fetch(exchange, split_symbols(symbols), timeframe, _time(since),
                                  _time(until), data_dir=data_dir,
                                  kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()))
    except (ValueError, ConnectionError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2)
    Console().print(_cache_table(rows))


data_app = typer.Typer(no_args_is_help=True, help="The download cache.")
app.add_typer(data_app, name="data")


def _cache_table(rows) -> Table:
    from perpbt.data.store import iso

    table = Table("exchange", "symbol", "tf", "kind", "rows", "first", "last", "gaps")
    for row in rows:
        if "error" in row:
            table.add_row("?", row.get("path", "?"), "", "", "", "", "", row["error"])
            continue
        gaps = row.get("gaps") or []
        text = ", ".join(f"{iso(a)}..{iso(b)}" for a, b in gaps[:3])
        if len(gaps) > 3:
            text += f" (+{len(gaps) - 3})"
        table.add_row(str(row.get("exchange", "")), str(row.get("symbol", "")),
                      str(row.get("timeframe", "")), str(row.get("kind", "")),
                      f"{row.get('rows', 0):,}", iso(row.get("first_ms")),
                      iso(row.get("last_ms")), text or "none")
    return table


@data_app.command("list")
def data_list(data_dir: Path = typer.Option(Path("data"), "--data-dir",
                                            help="The cache folder.")) -> None:
    """What the cache holds: series, ranges and gaps."""
    from perpbt.data.store import list_cache

    rows = list(list_cache(data_dir))
    if not rows:
        Console().print(f"no cached data under {data_dir}")
        return
    Console(width=200).print(_cache_table(rows))


def main() -> None:
    """Console-script entry point (``perpbt``)."""
    app(prog_name="perpbt")


if __name__ == "__main__":  # pragma: no cover
    main()
