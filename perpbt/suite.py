"""Benchmark suites: datasets x strategies (parameter grids) x margin modes x venues x leverage.

A suite is a TOML file (or the dict ``tomllib`` makes of one)::

    [suite]                       # every key optional
    name = "core"
    margins = ["isolated", "cross"]
    venues = ["binance"]
    leverage = [5, 10]            # exchange leverage setting(s), >= 1
    initial_capital = 10000.0     # quote (USDT)
    stop = 0.05                   # optional stop / take distance, fraction of the entry
    intrabar = "pessimistic"      # or "ohlc"
    funding = "strict"            # or "zero"

    [datasets.synthetic]          # an embedded scenario (pb.data.scenario) ...
    scenario = "default"
    seed = 7
    until = "2021-07-01"          # optional since / until / symbols, and scenario params:
    params = { }                  # e.g. { crash_at = 1200 }

    [datasets.real]               # ... or a CSV directory (pb.data.read_csv)
    csv = "../../../shared/data/binance_usdm"   # relative to the TOML file
    symbols = ["BTCUSDT", "ETHUSDT"]
    timeframe = "1h"
    since = "2023-01-01"
    until = "2025-01-01"

    [strategies.ma_grid]          # the table name labels the runs
    strategy = "ma_cross"         # a name from strategies/ or a .py path; default: table name
    fast = [12, 24]               # a list expands: cartesian product over all lists
    slow = [48, 96]
    exposure = 1.0                # a scalar is fixed

Every key is checked (unknown tables, keys, strategies, parameters, scenarios, margin modes
and venues raise ``ValueError`` naming the table and key) before anything is loaded or run.
:func:`run_suite` returns a :class:`SuiteResult`: one row per run (``run_id``, dataset,
strategy, each parameter, margin, venue, leverage, then every key of ``Result.stats()``)
plus the equity curve and liquidation times of each run for :mod:`perpbt.report`.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import sys
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

import perpbt

MARGINS = ("isolated", "cross")
VENUES = ("binance", "bybit", "okx")
SUITE_KEYS = ("name", "description", "margins", "venues", "leverage", "initial_capital",
              "stop", "take", "intrabar", "funding")
SCENARIO_KEYS = ("scenario", "seed", "symbols", "since", "until", "params")
CSV_KEYS = ("csv", "symbols", "timeframe", "since", "until", "mark_fallback")
KEY_COLUMNS = ("run_id", "dataset", "strategy")
AXIS_COLUMNS = ("margin", "venue", "leverage")


# ---------------------------------------------------------------------------- spec
@dataclass
class DatasetSpec:
    name: str
    kind: str  # "scenario" or "csv"
    options: dict[str, Any]

    def load(self) -> "perpbt.Market":
        o = self.options
        if self.kind == "scenario":
            market = perpbt.data.scenario(o["scenario"], seed=int(o.get("seed", 7)),
                                          **o.get("params", {}))
            if o.get("symbols"):
                market = market.sel(o["symbols"])
            if o.get("since") is not None or o.get("until") is not None:
                market = market.slice(o.get("since"), o.get("until"))
            return market
        return perpbt.data.read_csv(o["csv"], o.get("symbols"), o.get("timeframe", "1h"),
                                    since=o.get("since"), until=o.get("until"),
                                    mark_fallback=o.get("mark_fallback", "error"))


@dataclass
class StrategySpec:
    name: str  # the table name: labels the runs
    cls: type
    fixed: dict[str, Any]
    grid: dict[str, list]  # parameters given as lists
    order: list[str] = field(default_factory=list)  # every given parameter, in TOML order

    def combinations(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        order = self.order or list(self.fixed) + keys
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            merged = {**self.fixed, **dict(zip(keys, values))}
            out.append({k: merged[k] for k in order})
        return out


@dataclass
class SuiteSpec:
    name: str
    datasets: list[DatasetSpec]
    strategies: list[StrategySpec]
    margins: list[str]
    venues: list[str]
    leverage: list[float]
    options: dict[str, Any]  # initial_capital, stop, take, intrabar, funding

    @property
    def n_runs(self) -> int:
        per_dataset = sum(len(s.combinations()) for s in self.strategies)
        return (len(self.datasets) * per_dataset * len(self.margins) * len(self.venues)
                * len(self.leverage))


def _hint(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known: {sorted(known)}"


def _check_keys(table: str, values: Mapping, known) -> None:
    for key in values:
        if key not in known:
            raise ValueError(f"[{table}] unknown key {key!r}{_hint(key, known)}")


def _as_list(table: str, key: str, value) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError(f"[{table}] {key} is an empty list")
    return values


def _choice(table: str, key: str, value, allowed) -> list[str]:
    out = []
    for v in _as_list(table, key, value):
        v = str(v).strip().lower()
        if v not in allowed:
            raise ValueError(f"[{table}] {key}: unknown value {v!r}{_hint(v, allowed)}")
        out.append(v)
    return out


def _strategy_class(table: str, spec: str, base: Path | None) -> type:
    from perpbt import cli  # the same lookup as ``perpbt run``
    import typer

    if base is not None and spec.endswith(".py") and not Path(spec).is_absolute():
        candidate = base / spec
        spec = str(candidate) if candidate.is_file() else spec
    try:
        return cli.load_strategy_class(*cli.resolve_strategy_path(spec))
    except typer.BadParameter as exc:
        raise ValueError(f"[{table}] strategy: {exc.message}") from None


def _dataset(name: str, body: Mapping, base: Path | None) -> DatasetSpec:
    table = f"datasets.{name}"
    if not isinstance(body, Mapping):
        raise ValueError(f"[{table}] must be a table")
    has_scn, has_csv = "scenario" in body, "csv" in body
    if has_scn == has_csv:
        raise ValueError(f"[{table}] needs exactly one of 'scenario' (embedded market) or "
                         f"'csv' (a CSV directory)")
    opts = dict(body)
    if has_scn:
        _check_keys(table, body, SCENARIO_KEYS)
        from perpbt.data.scenarios import SCENARIOS
        import inspect

        scn = str(body["scenario"])
        if scn not in SCENARIOS:
            raise ValueError(f"[{table}] scenario: unknown scenario {scn!r}"
                             f"{_hint(scn, SCENARIOS)}")
        params = body.get("params", {})
        if not isinstance(params, Mapping):
            raise ValueError(f"[{table}] params must be a table of scenario parameters")
        accepted = [p for p in inspect.signature(SCENARIOS[scn]).parameters if p != "seed"]
        _check_keys(f"{table}.params", params, accepted)
        if "seed" in body and not isinstance(body["seed"], int):
            raise ValueError(f"[{table}] seed must be an integer, got {body['seed']!r}")
        return DatasetSpec(name, "scenario", opts)
    _check_keys(table, body, CSV_KEYS)
    path = Path(os.path.expandvars(str(body["csv"]))).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    opts["csv"] = path
    return DatasetSpec(name, "csv", opts)


def _strategy(name: str, body: Mapping, base: Path | None) -> StrategySpec:
    table = f"strategies.{name}"
    if not isinstance(body, Mapping):
        raise ValueError(f"[{table}] must be a table")
    cls = _strategy_class(table, str(body.get("strategy", name)), base)
    known = cls.param_names()
    fixed, grid = {}, {}
    for key, value in body.items():
        if key == "strategy":
            continue
        if key not in known:
            raise ValueError(f"[{table}] unknown key {key!r}: {cls.__name__} has no such "
                             f"parameter{_hint(key, known)}")
        if isinstance(value, list):
            grid[key] = _as_list(table, key, value)
        else:
            fixed[key] = value
    spec = StrategySpec(name, cls, fixed, grid, [k for k in body if k != "strategy"])
    for params in spec.combinations():  # cheap: catches bad values before any run
        try:
            cls(**params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[{table}] {exc}") from None
    return spec


def parse_suite(source: "str | Path | Mapping[str, Any]") -> SuiteSpec:
    """Validate a suite (TOML path or dict) into a :class:`SuiteSpec`; raises ValueError."""
    base = None
    if isinstance(source, Mapping):
        doc = dict(source)
        default_name = "suite"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no suite file {path}")
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML: {exc}") from None
        base = path.resolve().parent
        default_name = path.stem
    _check_keys("top level", doc, ("suite", "datasets", "strategies"))
    head = doc.get("suite", {})
    _check_keys("suite", head, SUITE_KEYS)
    for table in ("datasets", "strategies"):
        if not isinstance(doc.get(table), Mapping) or not doc[table]:
            raise ValueError(f"[{table}] missing: a suite needs at least one "
                             f"[{table}.NAME] table")
    leverage = [v for v in _as_list("suite", "leverage", head.get("leverage", 10))]
    for v in leverage:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 1:
            raise ValueError(f"[suite] leverage: {v!r} is not a number >= 1")
    options = {"initial_capital": float(head.get("initial_capital", 10_000.0)),
               "stop": head.get("stop"), "take": head.get("take"),
               "intrabar": _choice("suite", "intrabar", head.get("intrabar", "pessimistic"),
                                   ("pessimistic", "ohlc"))[0],
               "funding": _choice("suite", "funding", head.get("funding", "strict"),
                                  ("strict", "zero"))[0]}
    if not options["initial_capital"] > 0:
        raise ValueError(f"[suite] initial_capital must be positive, got "
                         f"{options['initial_capital']}")
    for key in ("stop", "take"):
        v = options[key]
        if v is not None and (not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"[suite] {key}: {v!r} is not a fraction > 0 (0.02 = 2 %)")
    return SuiteSpec(
        name=str(head.get("name", default_name)),
        datasets=[_dataset(k, v, base) for k, v in doc["datasets"].items()],
        strategies=[_strategy(k, v, base) for k, v in doc["strategies"].items()],
        margins=_choice("suite", "margins", head.get("margins", "isolated"), MARGINS),
        venues=_choice("suite", "venues", head.get("venues", "binance"), VENUES),
        leverage=[float(v) for v in leverage], options=options)


# ---------------------------------------------------------------------------- running
def run_one(market, strategy, *, venue: str, margin: str, leverage: float,
            **options) -> "perpbt.Result":
    """One backtest of the suite: the seam a sweep engine can replace (stats-only run)."""
    return perpbt.backtest(market, strategy, venue=venue, margin=margin, leverage=leverage,
                           stats_only=True, **options)


def run_id(dataset: str, strategy: str, params: Mapping[str, Any], margin: str, venue: str,
           leverage: float) -> str:
    """The stable key of a run, e.g. ``flash|ma_cross(fast=12,slow=48)|isolated|binance|5x``."""
    args = ",".join(f"{k}={params[k]!r}" for k in sorted(params))
    return f"{dataset}|{strategy}({args})|{margin}|{venue}|{leverage:g}x"


@dataclass
class RunCurves:
    """What the report draws of one run: equity (quote, per bar) and liquidation times."""
    equity: pd.Series
    liquidations: pd.DataFrame  # columns time, symbol, price (subset of Result.liquidations)

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown from the running peak, a fraction (0.25 = 25 % below the peak)."""
        peak = self.equity.cummax()
        return 1.0 - self.equity / peak


@dataclass
class SuiteResult:
    """One row per run (``rows``) plus curves per ``run_id`` and the loaded markets."""
    name: str
    rows: pd.DataFrame
    curves: dict[str, RunCurves] = field(default_factory=dict)
    markets: dict[str, Any] = field(default_factory=dict)
    grids: dict[str, list[str]] = field(default_factory=dict)  # strategy table -> grid keys
    param_columns: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_parquet(self, path: "str | Path") -> Path:
        """Write ``rows`` (one per run) to Parquet; read it back with pandas.read_parquet."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.rows.copy()
        frame.attrs = {"perpbt_suite": self.name, "perpbt_metrics": list(self.metrics),
                       "perpbt_params": list(self.param_columns)}
        frame.to_parquet(path, index=False)
        return path

    def __repr__(self) -> str:
        return (f"SuiteResult({self.name!r}: {len(self.rows)} runs on "
                f"{len(self.markets)} datasets, {self.seconds:.1f} s)")


def _progress(total: int, enabled: bool) -> Callable[[str], None]:
    if not enabled:
        return lambda label: None
    count = [0]
    start = time.perf_counter()

    def step(label: str) -> None:
        count[0] += 1
        print(f"[{count[0]}/{total} {time.perf_counter() - start:5.1f}s] {label}",
              file=sys.stderr, flush=True)
    return step


def _clean_column(values: pd.Series) -> pd.Series:
    """Parquet needs one type per column: mixed parameter types become strings."""
    kinds = {type(v).__name__ for v in values if v is not None
             and not (isinstance(v, float) and math.isnan(v))}
    if kinds == {"int"}:  # integers with gaps (other strategies' rows): nullable Int64
        return values.astype("Int64")
    if len(kinds) <= 1 or kinds <= {"int", "float"}:
        return values
    return values.map(lambda v: None if v is None else str(v))


def run_suite(source: "str | Path | Mapping[str, Any] | SuiteSpec", *,
              progress: bool = True) -> SuiteResult:
    """Run every combination of the suite; see the module docstring for the TOML format."""
    spec = source if isinstance(source, SuiteSpec) else parse_suite(source)
    t0 = time.perf_counter()
    markets = {}
    for ds in spec.datasets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                markets[ds.name] = ds.load()
            except (ValueError, KeyError, FileNotFoundError) as exc:
                raise ValueError(f"[datasets.{ds.name}] {exc}") from exc
        for w in caught:
            if progress:
                print(f"warning: [datasets.{ds.name}] {w.message}", file=sys.stderr)
    step = _progress(spec.n_runs, progress)
    param_columns: list[str] = []
    for s in spec.strategies:
        for key in s.order or list(s.fixed) + list(s.grid):
            if key not in param_columns:
                param_columns.append(key)
    rows, curves, metrics = [], {}, []
    reserved = set(KEY_COLUMNS) | set(AXIS_COLUMNS)
    for ds in spec.datasets:
        market = markets[ds.name]
        for s in spec.strategies:
            for params in s.combinations():
                for margin, venue, lev in itertools.product(spec.margins, spec.venues,
                                                            spec.leverage):
                    rid = run_id(ds.name, s.name, params, margin, venue, lev)
                    step(rid)
                    try:
                        res = run_one(market, s.cls(**params), venue=venue, margin=margin,
                                      leverage=lev, **spec.options)
                    except (ValueError, NotImplementedError) as exc:
                        raise ValueError(f"run {rid}: {exc}") from exc
                    stats = res.stats()
                    if not metrics:
                        metrics = [str(k) for k in stats.index]
                    row = {"run_id": rid, "dataset": ds.name, "strategy": s.name}
                    for key in param_columns:
                        col = key if key not in reserved and key not in metrics else f"param_{key}"
                        row[col] = params.get(key)
                    row.update(margin=margin, venue=venue, leverage=lev)
                    row.update({str(k): v for k, v in stats.items()})
                    rows.append(row)
                    liq = res.liquidations
                    keep = [c for c in ("time", "symbol", "price") if c in liq.columns]
                    curves[rid] = RunCurves(res.equity["equity"].copy(),
                                            liq[keep].reset_index(drop=True))
    frame = pd.DataFrame(rows, dtype=object)
    for col in frame.columns:
        if col in ("run_id", "dataset", "strategy", "margin", "venue"):
            frame[col] = frame[col].astype(str)
        elif col == "leverage":
            frame[col] = frame[col].astype(float)
        elif frame[col].dtype == object and col not in metrics:
            frame[col] = _clean_column(frame[col])
    for m in metrics:  # one dtype per metric column: counts int, flags bool, others float
        if m in frame and frame[m].dtype == object:
            try:
                frame[m] = pd.to_numeric(frame[m]) if m != "bust" else frame[m].astype(bool)
            except (TypeError, ValueError):
                pass
    pcols = [c if c in frame.columns else f"param_{c}" for c in param_columns]
    return SuiteResult(spec.name, frame, curves, markets,
                       {s.name: list(s.grid) for s in spec.strategies}, pcols, metrics,
                       time.perf_counter() - t0)


# ---------------------------------------------------------------------------- baseline
def _metric_columns(frame: pd.DataFrame) -> list[str]:
    found = frame.attrs.get("perpbt_metrics")
    if found:
        return [c for c in found if c in frame.columns]
    cols = list(frame.columns)  # fallback: everything after the leverage column
    return cols[cols.index("leverage") + 1:] if "leverage" in cols else []


def compare_to_baseline(results: "SuiteResult | pd.DataFrame", baseline_df: pd.DataFrame, *,
                        rtol: float = 1e-6, atol: float = 1e-9) -> pd.DataFrame:
    """Per run (``run_id``) and metric: old and new value, absolute and relative change,
    for metrics that moved by more than ``atol + rtol * |old|`` (NaN equals NaN). Runs in
    only one of the two frames appear once with ``metric`` "(new run)" / "(missing run)".
    Columns: run_id, metric, old, new, abs_change, rel_change (change / |old|)."""
    new = results.rows if isinstance(results, SuiteResult) else results
    metrics = (results.metrics if isinstance(results, SuiteResult) else _metric_columns(new))
    if "run_id" not in new.columns or "run_id" not in baseline_df.columns:
        raise ValueError("both frames need a run_id column (written by SuiteResult.to_parquet)")
    old = baseline_df.set_index("run_id")
    cur = new.set_index("run_id")
    out = []
    for rid in cur.index:
        if rid not in old.index:
            out.append((rid, "(new run)", np.nan, np.nan, np.nan, np.nan))
            continue
        for m in metrics:
            if m not in old.columns:
                continue
            a, b = old.at[rid, m], cur.at[rid, m]
            if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
                if bool(a) != bool(b):
                    out.append((rid, m, a, b, float(b) - float(a), np.nan))
                continue
            try:
                a, b = float(a), float(b)
            except (TypeError, ValueError):
                if a != b:
                    out.append((rid, m, a, b, np.nan, np.nan))
                continue
            if math.isnan(a) and math.isnan(b):
                continue
            if math.isnan(a) or math.isnan(b) or abs(b - a) > atol + rtol * abs(a):
                diff = b - a
                rel = diff / abs(a) if a not in (0.0,) and not math.isnan(a) else np.nan
                out.append((rid, m, a, b, diff, rel))
    for rid in old.index.difference(cur.index):
        out.append((rid, "(missing run)", np.nan, np.nan, np.nan, np.nan))
    return pd.DataFrame(out, columns=["run_id", "metric", "old", "new", "abs_change",
                                      "rel_change"])
