"""``perpbt fetch`` and ``perpbt data list``: the Parquet download cache."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from perpbt.cli.market import split_symbols


def cache_table(rows) -> Table:
    """Cache rows (fetch results or list_cache entries): series, rows, range, gaps."""
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
    Console().print(cache_table(rows))


def data_list(data_dir: Path = typer.Option(Path("data"), "--data-dir",
                                            help="The cache folder.")) -> None:
    """What the cache holds: series, ranges and gaps."""
    from perpbt.data.store import list_cache

    rows = list(list_cache(data_dir))
    if not rows:
        Console().print(f"no cached data under {data_dir}")
        return
    Console(width=200).print(cache_table(rows))
