"""How results leave the command line: stat formatting, tables and files by suffix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

# the unit printed next to each stat; keys not listed print without a unit
UNITS = {"total_return": "fraction", "cagr": "fraction / year", "sharpe": "annualised",
         "sortino": "annualised", "max_drawdown": "fraction", "calmar": "ratio",
         "trades": "count", "win_rate": "fraction", "fees_paid": "quote",
         "funding_paid": "quote (+ = paid)", "liquidations": "count",
         "min_liq_distance": "fraction of mark", "stops_beyond_liq": "count",
         "final_equity": "quote", "insurance_fund_change": "quote", "clearance_fees": "quote",
         "bust": "yes/no"}
MONEY = {"fees_paid", "funding_paid", "final_equity", "insurance_fund_change", "clearance_fees"}
# the stats a suite or sweep table shows per run
SUMMARY_COLUMNS = ("total_return", "sharpe", "max_drawdown", "trades", "liquidations",
                   "final_equity")
# --out suffixes write_frame understands
OUT_FORMATS = (".parquet", ".pq", ".csv", ".json")


def format_value(key: str, value: Any) -> str:
    """A stat as printed: yes/no, integers with separators, money 2 decimals, else 4."""
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
    """``Result.stats()`` as a stat / value / unit table."""
    table = Table()
    table.add_column("stat")
    table.add_column("value", justify="right")
    table.add_column("unit", style="dim")
    for key, value in stats.items():
        table.add_row(str(key), format_value(str(key), value), UNITS.get(str(key), ""))
    return table


def check_out(out: Optional[Path], name: str = "--out") -> None:
    """A usage error unless ``out``'s suffix is one of OUT_FORMATS (checked before any work)."""
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
