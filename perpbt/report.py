"""A suite's results as ONE self-contained HTML file (plotly.js inlined, no network).

``write_report(suite_result, path, baseline=None)`` writes:

- a stats table (one row per run: the run's axes and ``Result.stats()``);
- per dataset, equity (quote, log scale) and drawdown (fraction below the running peak) of
  every run (dotted: cross margin), with a red x at each liquidation;
- per dataset, the funding rate of each settlement against the realized volatility of the
  day before it (annualised, from last-price closes), one panel per symbol;
- per strategy whose grid has exactly two list parameters, a heatmap of the mean Sharpe ratio
  over the grid (one panel per dataset, averaged over margin modes, venues and leverage);
- with ``baseline`` (a DataFrame read from an earlier ``SuiteResult.to_parquet``), the
  metrics that moved (:func:`perpbt.suite.compare_to_baseline`).

Each figure sits in ``<div class="pb-plot" id="pb-...">``; ids are stable (derived from the
dataset and strategy names), so tests and later tooling can find them.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perpbt.suite import SuiteResult, compare_to_baseline

MAX_POINTS = 800  # per curve; longer curves keep every k-th bar (and the last)
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table.pb-table { border-collapse: collapse; font-size: 12px; }
table.pb-table th, table.pb-table td { border: 1px solid #ddd; padding: 2px 6px; }
table.pb-table td { text-align: right; white-space: nowrap; }
table.pb-table th { background: #f3f3f3; position: sticky; top: 0; }
.pb-scroll { max-height: 480px; overflow: auto; }
.pb-plot { margin: 12px 0; }
.pb-note { color: #666; font-size: 0.9em; }
"""

# Script errors are collected in <html data-pb-errors>; after load every .pb-plot records its
# page rectangle (CSS px: left,top,width,height) in data-pb-rect. Both are read by the tests
# (headless browser --dump-dom) and change nothing on screen.
PAGE_HOOKS = """<script>
window.pbErrors = [];
window.addEventListener('error', function (e) {
  window.pbErrors.push(String(e.message));
  document.documentElement.setAttribute('data-pb-errors', window.pbErrors.join(' | '));
});
window.addEventListener('load', function () {
  document.querySelectorAll('.pb-plot').forEach(function (el) {
    var r = el.getBoundingClientRect();
    el.setAttribute('data-pb-rect', [Math.round(r.left + window.scrollX),
      Math.round(r.top + window.scrollY), Math.round(r.width), Math.round(r.height)].join(','));
  });
  document.documentElement.setAttribute('data-pb-height',
    String(document.documentElement.scrollHeight));
});
</script>"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
        from plotly.subplots import make_subplots
    except ImportError as exc:  # pragma: no cover - plotly is a dependency
        raise ImportError("write_report needs plotly (pip install plotly)") from exc
    return go, make_subplots, get_plotlyjs


def _thin(series: pd.Series) -> pd.Series:
    n = len(series)
    if n <= MAX_POINTS:
        return series
    step = math.ceil(n / MAX_POINTS)
    idx = np.unique(np.append(np.arange(0, n, step), n - 1))
    return series.iloc[idx]


def _ms(index) -> np.ndarray:
    """Bar times as float64 ms since the epoch: plotly reads them on a date axis and ships
    them base64-encoded (ISO strings would be 20+ bytes a point)."""
    return pd.DatetimeIndex(index).as_unit("ms").asi8.astype(np.float64)


def _div(fig, div_id: str, title: str) -> str:
    inner = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"{div_id}-graph",
                        config={"displaylogo": False, "responsive": True})
    return (f'<div class="pb-plot" id="{div_id}" data-title="{html.escape(title)}">'
            f"{inner}</div>")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.4g}"
    if value is pd.NA:
        return ""
    return str(value)


def _table(frame: pd.DataFrame, table_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="pb-scroll"><table class="pb-table" id="{table_id}"><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _label(result: SuiteResult, row: pd.Series) -> str:
    params = ",".join(f"{c}={_fmt(row[c])}" for c in result.param_columns
                      if c in row.index and _fmt(row[c]) != "")
    return (f"{row['strategy']}({params}) {row['margin']} {row['venue']} "
            f"{float(row['leverage']):g}x")


# ---------------------------------------------------------------------------- figures
def equity_figure(result: SuiteResult, dataset: str):
    """Equity (quote) and drawdown (fraction) of every run on ``dataset``; x = liquidation."""
    go, make_subplots, _ = _plotly()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                        vertical_spacing=0.04,
                        subplot_titles=("equity (quote)", "drawdown (fraction below peak)"))
    rows = result.rows[result.rows["dataset"] == dataset]
    colors = _palette(len(rows))
    shown_liq = False
    for color, (_, row) in zip(colors, rows.iterrows()):
        curves = result.curves.get(row["run_id"])
        if curves is None:
            continue
        name = _label(result, row)
        eq = _thin(curves.equity)
        dd = _thin(curves.drawdown)
        dash = "solid" if row["margin"] == "isolated" else "dot"
        fig.add_trace(go.Scatter(x=_ms(eq.index), y=eq.to_numpy(np.float32), name=name, legendgroup=name,
                                 mode="lines", line=dict(width=1, color=color, dash=dash)),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=_ms(dd.index), y=dd.to_numpy(np.float32), name=name, legendgroup=name,
                                 showlegend=False, mode="lines",
                                 line=dict(width=1, color=color, dash=dash)), row=2, col=1)
        liq = curves.liquidations
        if len(liq) and "time" in liq:
            times = pd.DatetimeIndex(liq["time"])
            pos = curves.equity.index.get_indexer(times, method="nearest")
            fig.add_trace(go.Scatter(
                x=_ms(times), y=curves.equity.to_numpy()[pos], mode="markers", legendgroup=name,
                name="liquidation", showlegend=not shown_liq,
                text=[f"{name}: {s} liquidated at {p:g}"
                      for s, p in zip(liq.get("symbol", [""] * len(liq)),
                                      liq.get("price", [np.nan] * len(liq)))],
                hoverinfo="text+x",
                marker=dict(symbol="x", size=9, color="red", line=dict(width=1))),
                row=1, col=1)
            shown_liq = True
    fig.update_xaxes(type="date")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(height=620, margin=dict(l=60, r=20, t=40, b=30), template="plotly_white",
                      legend=dict(font=dict(size=10)))
    return fig


def _palette(n: int) -> list[str]:
    base = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]
    return [base[i % len(base)] for i in range(n)]


def funding_vol_frame(market) -> pd.DataFrame:
    """Per settlement: symbol, time, funding rate (fraction per settlement) and the realized
    volatility of the day before it (annualised fraction, log returns of last closes)."""
    close = market.frame("close")
    rate = market.frame("funding_rate")
    bars_day = max(int(round(DAY_MS / market.timeframe_ms)), 2)
    per_year = YEAR_MS / market.timeframe_ms
    vol = np.log(close).diff().rolling(bars_day).std() * math.sqrt(per_year)
    out = []
    for sym in market.symbols:
        mask = rate[sym].notna() & vol[sym].notna()
        out.append(pd.DataFrame({"symbol": sym, "time": rate.index[mask],
                                 "funding_rate": rate[sym][mask].to_numpy(),
                                 "realized_vol": vol[sym][mask].to_numpy()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def funding_figure(market, dataset: str):
    go, make_subplots, _ = _plotly()
    frame = funding_vol_frame(market)
    symbols = list(market.symbols)
    fig = make_subplots(rows=1, cols=len(symbols), subplot_titles=symbols,
                        horizontal_spacing=0.08)
    for k, sym in enumerate(symbols, start=1):
        part = frame[frame["symbol"] == sym]
        fig.add_trace(go.Scatter(
            x=part["realized_vol"], y=part["funding_rate"], mode="markers", name=sym,
            marker=dict(size=4, opacity=0.5, color=_ms(part["time"]),
                        colorscale="Viridis")), row=1, col=k)
        fig.update_xaxes(title_text="realized vol, 1 day (annualised)", row=1, col=k)
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(tickformat=".3%")
    fig.update_yaxes(title_text="funding rate per settlement", row=1, col=1)
    fig.update_layout(height=400, showlegend=False, template="plotly_white",
                      margin=dict(l=70, r=20, t=70, b=50),
                      title=dict(text=f"{dataset}: funding vs realized volatility",
                                 font=dict(size=13)))
    return fig


def heatmap_figure(result: SuiteResult, strategy: str, metric: str = "sharpe"):
    """Mean ``metric`` over the two grid parameters of ``strategy``, one panel per dataset."""
    go, make_subplots, _ = _plotly()
    px_, py_ = result.grids[strategy]
    cols = {c.removeprefix("param_"): c for c in result.param_columns}
    cx, cy = cols[px_], cols[py_]
    rows = result.rows[result.rows["strategy"] == strategy]
    datasets = list(dict.fromkeys(rows["dataset"]))
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets,
                        horizontal_spacing=0.06)
    for k, ds in enumerate(datasets, start=1):
        part = rows[rows["dataset"] == ds]
        pivot = part.pivot_table(index=cy, columns=cx, values=metric, aggfunc="mean")
        z = pivot.to_numpy(dtype=float)
        fig.add_trace(go.Heatmap(
            z=z, x=[str(v) for v in pivot.columns], y=[str(v) for v in pivot.index],
            colorscale="RdYlGn", zmid=0.0, showscale=(k == 1),
            text=[[f"{v:.2f}" for v in r] for r in z], texttemplate="%{text}",
            colorbar=dict(title=metric)), row=1, col=k)
        fig.update_xaxes(title_text=px_, type="category", row=1, col=k)
        fig.update_yaxes(title_text=py_ if k == 1 else None, type="category", row=1, col=k)
    fig.update_layout(height=360, template="plotly_white", margin=dict(l=60, r=20, t=70, b=50),
                      title=dict(text=f"{strategy}: mean {metric} over margin, venue and "
                                      f"leverage", font=dict(size=13)))
    return fig


# ---------------------------------------------------------------------------- page
def build_html(result: SuiteResult, baseline: pd.DataFrame | None = None) -> str:
    """The report page as one string (see :func:`write_report`)."""
    _, _, get_plotlyjs = _plotly()
    rows = result.rows
    parts = [f"<h1>perpbt suite {html.escape(result.name)}</h1>",
             f'<p class="pb-note">{len(rows)} runs on {len(result.markets)} datasets in '
             f"{result.seconds:.1f} s. Returns and drawdowns are fractions, money is in the "
             f"quote currency, funding_paid &gt; 0 means paid.</p>"]
    if baseline is not None:
        moved = compare_to_baseline(result, baseline)
        parts.append("<h2>Change against the baseline</h2>")
        if moved.empty:
            parts.append('<p class="pb-note" id="pb-baseline-none">No metric moved.</p>')
        else:
            parts.append(_table(moved, "pb-baseline-table"))
    parts.append("<h2>Stats</h2>")
    parts.append(_table(rows.drop(columns=["run_id"]), "pb-stats-table"))
    parts.append("<h2>Equity and drawdown</h2>")
    for ds in result.markets:
        parts.append(f"<h3>{html.escape(ds)}</h3>")
        parts.append(_div(equity_figure(result, ds), f"pb-equity-{_slug(ds)}",
                          f"equity {ds}"))
    heat = [s for s, grid in result.grids.items() if len(grid) == 2]
    if heat:
        parts.append("<h2>Parameter grids</h2>")
        for s in heat:
            parts.append(_div(heatmap_figure(result, s), f"pb-heatmap-{_slug(s)}",
                              f"heatmap {s}"))
    parts.append("<h2>Funding rate against realized volatility</h2>")
    for ds, market in result.markets.items():
        parts.append(_div(funding_figure(market, ds), f"pb-funding-{_slug(ds)}",
                          f"funding {ds}"))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>perpbt suite {html.escape(result.name)}</title>"
            f"<style>{CSS}</style>{PAGE_HOOKS}"
            f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
            f"<body>{''.join(parts)}</body></html>\n")


def write_report(suite_result: SuiteResult, path: "str | Path",
                 baseline: "pd.DataFrame | str | Path | None" = None) -> Path:
    """Write the suite's report to ``path``: one HTML file, plotly.js inlined, no network.

    ``baseline``: a DataFrame or Parquet path from an earlier ``SuiteResult.to_parquet``;
    adds the table of metrics that moved."""
    if baseline is not None and not isinstance(baseline, pd.DataFrame):
        baseline = pd.read_parquet(baseline)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_html(suite_result, baseline), encoding="utf-8")
    return path
