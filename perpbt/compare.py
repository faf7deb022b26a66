"""The same decisions under several engine settings, side by side.

``pb.compare(market, MaCross(fast=12), margin=["isolated", "cross"], venue=["binance",
"bybit"], leverage=10)`` computes the strategy's targets once and backtests them under every
margin x venue x liquidation-policy setting. Each setting is labelled
``"margin|venue|policy"`` (``"isolated|binance|ioc"``; the policy is the one the run used,
the venue's own when ``liquidation`` is None).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import perpbt
from perpbt.backtest import target_frame
from perpbt.sweep import axis_values, check_options


@dataclass
class Comparison:
    """Runs of one set of targets under several settings, keyed by setting label."""
    settings: pd.DataFrame  # one row per label: margin, venue, liquidation (as run)
    results: dict = field(default_factory=dict)  # label -> pb.Result

    @property
    def labels(self) -> list[str]:
        return list(self.results)

    @property
    def stats(self) -> pd.DataFrame:
        """``Result.stats()`` side by side: one row per stat, one column per setting."""
        return pd.DataFrame({label: res.stats() for label, res in self.results.items()})

    def to_frame(self) -> pd.DataFrame:
        """One row per setting (setting, margin, venue, liquidation, then every stat), typed
        for Parquet/CSV/JSON."""
        rows = [{"setting": label, **self.settings.loc[label].to_dict(),
                 **{str(k): v for k, v in res.stats().items()}}
                for label, res in self.results.items()]
        frame = pd.DataFrame(rows)
        for col in frame.columns:
            if frame[col].dtype == object and col not in ("setting", "margin", "venue",
                                                          "liquidation", "bust"):
                try:
                    frame[col] = pd.to_numeric(frame[col])
                except (TypeError, ValueError):
                    pass
        return frame

    @property
    def equity(self) -> pd.DataFrame:
        """Equity curves (quote, per bar), one column per setting."""
        return pd.DataFrame({label: res.equity["equity"]
                             for label, res in self.results.items()})

    @property
    def liquidations(self) -> pd.DataFrame:
        """Every liquidation record of every run, with a leading ``setting`` column."""
        frames = []
        for label, res in self.results.items():
            liq = res.liquidations
            frames.append(liq.assign(setting=label)[["setting", *liq.columns]])
        return pd.concat(frames, ignore_index=True)

    def plot(self, path: "str | Path | None" = None):
        """A plotly Figure: one equity line per setting and, per setting with liquidations,
        a marker trace at each liquidation (on that run's equity at the bar). With ``path``,
        also written as a self-contained HTML file (opens offline)."""
        import plotly.colors
        import plotly.graph_objects as go

        palette = plotly.colors.qualitative.Plotly
        fig = go.Figure()
        equity = self.equity
        for i, (label, res) in enumerate(self.results.items()):
            color = palette[i % len(palette)]
            fig.add_trace(go.Scatter(x=equity.index, y=equity[label], mode="lines", name=label,
                                     legendgroup=label, line=dict(color=color, width=1.5)))
            liq = res.liquidations
            if len(liq):
                bars = liq["bar"].to_numpy(dtype=np.int64)
                text = [f"{label}<br>{s} liquidated, average fill {p:,.2f}" for s, p in
                        zip(liq["symbol"], liq["avg_fill"])]
                fig.add_trace(go.Scatter(
                    x=equity.index[bars], y=equity[label].to_numpy()[bars], mode="markers",
                    name=f"{label} liquidations", legendgroup=label, hovertext=text,
                    hoverinfo="text+x",
                    marker=dict(symbol="x", size=10, color=color,
                                line=dict(width=1, color="black"))))
        fig.update_layout(title="Equity by setting (x = liquidation)",
                          xaxis_title="time (UTC)", yaxis_title="equity (quote)",
                          hovermode="x unified", template="plotly_white")
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.write_html(path, include_plotlyjs=True, full_html=True)
        return fig

    def __repr__(self) -> str:
        return f"Comparison({self.labels})"


def compare(market, strategy, *, margin: Any = ("isolated", "cross"), venue: Any = ("binance",),
            liquidation: Any = (None,), **backtest_kw) -> Comparison:
    """Backtest the same targets (one ``signals`` call) under every margin x venue x
    liquidation setting; each takes a scalar or a list. ``strategy`` is a ``pb.Strategy``,
    ``pb.Targets`` or an exposure DataFrame; other keywords (``leverage``, ``stop``,
    ``execution`` ...) go to every ``pb.backtest``."""
    options = check_options(backtest_kw, ("market", "strategy_or_targets"), "compare")
    margins = axis_values("margin", margin)
    venues = axis_values("venue", venue)
    policies = axis_values("liquidation", liquidation)
    frame, _ = target_frame(market, strategy)
    results: dict[str, Any] = {}
    rows = {}
    for mar, ven, pol in itertools.product(margins, venues, policies):
        res = perpbt.backtest(market, frame, margin=mar, venue=ven, liquidation=pol, **options)
        label = f"{mar}|{ven}|{res.settings['liquidation']}"
        base, n = label, 2
        while label in results:  # e.g. None and the venue's own policy named explicitly
            label, n = f"{base}#{n}", n + 1
        results[label] = res
        rows[label] = {"margin": str(mar), "venue": str(ven),
                       "liquidation": str(res.settings["liquidation"])}
    return Comparison(pd.DataFrame.from_dict(rows, orient="index"), results)
