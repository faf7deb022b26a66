"""Result: the engine's records as pandas, and stats.

All money in quote currency; stats are fractions, not percent. Returns for Sharpe/Sortino are
per-bar equity returns, annualised with the bar frequency (365.25 days a year, crypto trades
every day).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perpbt.engine.state import (A_BUST, A_CLEARANCE, A_INSURANCE, A_MAX_DD, A_WALLET,
                                 C_BUST_BAR, C_FILLS, C_FUNDING, C_LIQS, C_ORDERS, C_QUIET_BARS,
                                 C_SETTLEMENTS, C_STATES, C_STOPS, C_TIER_CHANGES, C_TRADES)
from perpbt.engine.outputs import bar_outputs_nb
from perpbt.engine.stats import equity_stats_nb, record_stats_nb
from perpbt.enums import FillReason, LiqPolicy, MarginMode, OrderStatus

YEAR_MS = 365.25 * 86_400_000
STATS_KEYS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "trades",
              "win_rate", "fees_paid", "funding_paid", "liquidations", "min_liq_distance",
              "stops_beyond_liq", "final_equity")


def _names(enum) -> dict[int, str]:
    return {int(v): k for k, v in zip(enum._fields, enum)}


def stats_row(n_bars: int, timeframe_ms: float, start: float, final: float, mean: float,
              sd: float, downside: float, max_dd: float, wins: int, closed: int, fees: float,
              received: float, min_dist: float, beyond: int, trades: int, liquidations: int,
              insurance: float, clearance: float, bust: bool) -> dict:
    """Result.stats() from its parts: the equity curve's length, its final value (quote)
    and return stats (engine/stats.py: equity_stats_nb), the kernel's maximum drawdown, the
    record sums (record_stats_nb) and the account's counts. Returns and drawdowns as
    fractions, money in quote. pb.sweep's batched runs (engine/batch.py) get the same parts
    from the kernel."""
    bars_per_year = YEAR_MS / timeframe_ms
    years = n_bars / bars_per_year
    total = final / start - 1.0
    cagr = (max(final, 0.0) / start) ** (1.0 / years) - 1.0 if years > 0 else np.nan
    sharpe = mean / sd * np.sqrt(bars_per_year) if sd > 0 else np.nan
    sortino = mean / downside * np.sqrt(bars_per_year) if downside > 0 else np.nan
    return {
        "total_return": total,
        "cagr": cagr,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_dd,
        "calmar": cagr / max_dd if max_dd > 0 else np.nan,
        "trades": trades,
        "win_rate": wins / closed if closed else np.nan,
        "fees_paid": float(fees),
        "funding_paid": float(-received),
        "liquidations": liquidations,
        "min_liq_distance": float(min_dist),
        "stops_beyond_liq": int(beyond),
        "final_equity": final,
        "insurance_fund_change": insurance,
        "clearance_fees": clearance,
        "bust": bust,
    }


class Result:
    """Outputs of one backtest. DataFrames are built lazily from the record arrays."""

    def __init__(self, market, targets, settings, buf, acct, cnt, instruments, stats_only,
                 engine=None):
        self.market = market
        self.targets = targets
        self.settings = settings
        self.instruments = instruments
        self.stats_only = stats_only
        self._buf = buf
        self._cnt = cnt
        self.insurance_fund = float(acct[A_INSURANCE])
        self.clearance_fees = float(acct[A_CLEARANCE])
        self.final_wallet = float(acct[A_WALLET])
        self.bust = bool(acct[A_BUST])
        self.max_drawdown = float(acct[A_MAX_DD])  # the kernel's running maximum (fraction)
        self.bust_bar = int(cnt[C_BUST_BAR]) if self.bust else None
        self.counts = {"settlements": int(cnt[C_SETTLEMENTS]), "stops": int(cnt[C_STOPS]),
                       "liquidations": int(cnt[C_LIQS]), "tier_changes": int(cnt[C_TIER_CHANGES]),
                       "fills": int(cnt[C_FILLS]), "trades": int(cnt[C_TRADES]),
                       "quiet_bars": int(cnt[C_QUIET_BARS])}
        self._cache: dict[str, object] = {}
        self._engine = engine  # (InstrumentArrays, EngineConfig) for the per-bar outputs
        self._sizing_caps = None

    @property
    def sizing_caps(self) -> pd.DataFrame:
        """Entries a sizing rule wanted above the leverage, and the size they got (time,
        symbol, wanted, size; perpbt.sizing); empty without a sizing rule."""
        if self._sizing_caps is None:
            self._sizing_caps = pd.DataFrame(columns=["time", "symbol", "wanted", "size"])
        return self._sizing_caps

    @sizing_caps.setter
    def sizing_caps(self, frame: pd.DataFrame) -> None:
        self._sizing_caps = frame

    # ---- raw records (trimmed numpy structured arrays) -------------------------------------
    @property
    def fill_records(self) -> np.ndarray:
        return self._buf.fills[: self._cnt[C_FILLS]]

    @property
    def trade_records(self) -> np.ndarray:
        return self._buf.trades[: self._cnt[C_TRADES]]

    @property
    def liq_records(self) -> np.ndarray:
        return self._buf.liqs[: self._cnt[C_LIQS]]

    @property
    def funding_records(self) -> np.ndarray:
        return self._buf.funding[: self._cnt[C_FUNDING]]

    @property
    def order_records(self) -> np.ndarray:
        return self._buf.orders[: self._cnt[C_ORDERS]]

    # ---- pandas -----------------------------------------------------------------------------
    def _frame(self, records: np.ndarray, time_cols=("bar",)) -> pd.DataFrame:
        df = pd.DataFrame.from_records(records) if len(records) else pd.DataFrame(
            {name: pd.Series(dtype=records.dtype[name]) for name in records.dtype.names})
        syms = np.array(self.market.symbols, dtype=object)
        if "symbol" in df:
            df["symbol"] = syms[df["symbol"].to_numpy(dtype=np.int64)] if len(df) else df["symbol"]
        for col in time_cols:
            if col in df:
                bars = df[col].to_numpy(dtype=np.int64)
                valid = bars >= 0
                times = np.full(len(df), np.datetime64("NaT"), dtype="datetime64[ms]")
                times[valid] = self.market.time_ms[bars[valid]].astype("datetime64[ms]")
                df[col.replace("bar", "time")] = pd.to_datetime(times).tz_localize("UTC")
        return df

    @property
    def equity(self) -> pd.DataFrame:
        """Per bar: wallet, equity, margin_used, margin_ratio, and per symbol position,
        entry, both liquidation prices and isolated margin (quote); equity alone in a
        stats-only run."""
        if "equity" not in self._cache:
            b = self._buf
            cols = {"equity": b.equity}
            if not self.stats_only:
                wallet, used, ratio = self._account_columns()
                cols = {"wallet": wallet, "equity": b.equity, "margin_used": used,
                        "margin_ratio": ratio}
                cols.update(self._state_columns())
            self._cache["equity"] = pd.DataFrame(cols, index=self.market.index)
        return self._cache["equity"]

    def _account_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bar: wallet, margin used and margin ratio, rebuilt from the state log."""
        ins, cfg = self._engine
        n_bars = len(self._buf.equity)
        wallet, used, ratio = np.empty(n_bars), np.empty(n_bars), np.empty(n_bars)
        bar_outputs_nb(self._buf.states[: self._cnt[C_STATES]],
                       np.require(self.market.arrays["mark_close"], np.float64, ["C", "W"]),
                       np.require(self.market.time_ms, np.int64, ["C", "W"]),
                       ins.table_since, ins.tier_floor, ins.tier_mmr, ins.tier_amt,
                       ins.tier_count, ins.taker_fee, cfg.leverage, cfg.venue,
                       cfg.margin_mode == MarginMode.cross, wallet, used, ratio)
        return wallet, used, ratio

    def _state_columns(self) -> dict[str, np.ndarray]:
        """Per-symbol state per bar, forward-filled from the log of bars where it changed."""
        states = self._buf.states[: self._cnt[C_STATES]]
        n_bars = len(self._buf.equity)
        bars = np.arange(n_bars)
        cols: dict[str, np.ndarray] = {}
        fields = (("position", "qty", 0.0), ("entry_price", "entry", np.nan),
                  ("liq_price", "liq_price", np.nan), ("liq_price_fees", "liq_price_fees", np.nan),
                  ("isolated_margin", "margin", 0.0))
        for n, sym in enumerate(self.market.symbols):
            rows = states[states["symbol"] == n]
            idx = np.searchsorted(rows["bar"], bars, side="right") - 1
            for name, field, empty in fields:
                values = np.append(rows[field], empty)  # idx -1 picks the empty value
                cols[f"{sym}:{name}"] = values[idx]
        return cols

    @property
    def fills(self) -> pd.DataFrame:
        df = self._frame(self.fill_records)
        df["reason"] = df["reason"].map(_names(FillReason))
        return df

    @property
    def orders(self) -> pd.DataFrame:
        """Orders that were cut or rejected (plain fills are in ``fills``)."""
        df = self._frame(self.order_records)
        df["status"] = df["status"].map(_names(OrderStatus))
        return df

    @property
    def trades(self) -> pd.DataFrame:
        df = self._frame(self.trade_records, ("entry_bar", "exit_bar"))
        df["exit_reason"] = df["exit_reason"].map({**_names(FillReason), -1: "open"})
        df["net_pnl"] = df["pnl"] - df["fees"] + df["funding"]
        df["liq_gap"] = (df["liq_price_fees"] - df["liq_price"]).abs()
        df["liq_gap_pct"] = df["liq_gap"] / df["entry_price"]
        for col in ("stop_beyond_liq", "beyond_bankruptcy", "liquidated"):
            df[col] = df[col].astype(bool)
        return df

    @property
    def liquidations(self) -> pd.DataFrame:
        df = self._frame(self.liq_records)
        df["policy"] = df["policy"].map(_names(LiqPolicy))
        return df

    @property
    def funding(self) -> pd.DataFrame:
        return self._frame(self.funding_records)

    def liquidation_report(self) -> pd.DataFrame:
        """Per symbol: how close positions came to liquidation, with and without fees.

        Distance per bar = how far the bar's adverse mark extreme (mark low for a long, mark
        high for a short) stayed from the liquidation price, as a fraction of that mark; the
        report gives its minimum over every bar a position was open, under the trigger price
        (without fees) and under the price with fees, the bars where the fee-inclusive price
        was touched, the mean gap between the two prices (fraction of entry) and the
        liquidations. Needs per-bar outputs (not ``stats_only``).
        """
        if self.stats_only:
            raise ValueError("liquidation_report needs per-bar outputs: run without stats_only")
        eq = self.equity
        rows = []
        for n, sym in enumerate(self.market.symbols):
            qty = eq[f"{sym}:position"].to_numpy()
            held = qty != 0.0
            adverse = np.where(qty > 0, self.market.arrays["mark_low"][:, n],
                               self.market.arrays["mark_high"][:, n])
            side = np.sign(qty)
            dist = {}
            for key in ("liq_price", "liq_price_fees"):
                lp = eq[f"{sym}:{key}"].to_numpy()
                dist[key] = side * (adverse - lp) / adverse
            gap = np.abs(eq[f"{sym}:liq_price_fees"] - eq[f"{sym}:liq_price"]).to_numpy()
            entry = eq[f"{sym}:entry_price"].to_numpy()
            lev = self.settings["leverage"]
            rows.append({
                "symbol": sym,
                "leverage": lev[sym] if isinstance(lev, dict) else lev,
                "bars_held": int(held.sum()),
                "min_distance": float(np.nanmin(dist["liq_price"][held])) if held.any() else np.nan,
                "min_distance_with_fees": (float(np.nanmin(dist["liq_price_fees"][held]))
                                           if held.any() else np.nan),
                "bars_past_liq_price_with_fees": int((dist["liq_price_fees"][held] <= 0).sum()),
                "mean_gap_pct_of_entry": (float(np.nanmean(gap[held] / entry[held]))
                                          if held.any() else np.nan),
                "liquidations": int((self.liq_records["symbol"] == n).sum()),
            })
        return pd.DataFrame(rows).set_index("symbol")

    # ---- stats ------------------------------------------------------------------------------
    def stats(self) -> pd.Series:
        """Summary statistics; returns and drawdowns are fractions."""
        return pd.Series(self.stats_dict(), name="stats", dtype=object)

    def stats_dict(self) -> dict:
        """``stats()`` as a plain dict (what sweeps collect: no pandas object per run)."""
        eq = self._buf.equity
        start = float(self.settings["initial_capital"])
        if len(eq):
            mean, sd, downside = equity_stats_nb(eq, start)
        else:
            mean = sd = downside = 0.0
        wins, closed, fees, received, min_dist, beyond = record_stats_nb(
            self.fill_records, self.trade_records, self.funding_records)
        return stats_row(len(eq), self.market.timeframe_ms, start,
                         float(eq[-1]) if len(eq) else start, mean, sd, downside,
                         self.max_drawdown, wins, closed, fees, received, min_dist, beyond,
                         int(self._cnt[C_TRADES]), int(self._cnt[C_LIQS]), self.insurance_fund,
                         self.clearance_fees, self.bust)

    def __repr__(self) -> str:
        s = self.settings
        return (f"<Result {s['venue']} {s['margin']} lev={s['leverage']} bars={len(self._buf.equity)} "
                f"trades={self.counts['trades']} liquidations={self.counts['liquidations']} "
                f"final_equity={self._buf.equity[-1]:.2f}>")
