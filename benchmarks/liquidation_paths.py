"""Worked example: one 25x BTCUSDT long through the 2025-10-10 crash under the four
liquidation policies, at a retail and at a 5,000,000 USDT notional; then the speed cost of the
execution model against the frictionless engine on 1,000,000 bars.

    NUMBA_CACHE_DIR=/tmp/nbc python benchmarks/liquidation_paths.py [--data ../shared/data]
        [--bars 1000000] [--repeat 5]

The long is opened at the first bar of 2025-10-10 (decided at the close of the bar before)
with the execution model on (calibrated spread, stress, square-root impact, 10 %
participation). Position size = exposure 25 x capital, so the whole capital is the isolated
margin. The Binance tier table in force in October 2025 (dated 2023-01-13) caps a 25x
position at 1,000,000 USDT, so both runs use the current brackets (2026-09, 25x up to
70,000,000) for the whole window: a stated substitution. Printed per policy: bars the forced
close took, average fill, trading fees + clearance fee, the user's loss, the insurance-fund
change, and the venue's bankruptcy price.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import perpbt as pb  # noqa: E402

POLICIES = ("takeover", "ioc", "tiered", "multibar")
SYMBOL = "BTC/USDT:USDT"


def crash_market(data: Path, timeframe: str) -> "pb.Market":
    kw = {} if timeframe == "1h" else {"mark_fallback": "last"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pb.data.read_csv(data / "binance_usdm", ["BTCUSDT"], timeframe,
                             since="2025-10-09 23:00", until="2025-10-12", **kw)
    inst = m.instruments[SYMBOL]
    current = dataclasses.replace(inst, tiers=(inst.tiers[-1],))  # the 2026-09 brackets
    return m, current


def policy_table(m, inst, notional: float, execution=True) -> pd.DataFrame:
    tgt = pd.DataFrame(np.nan, index=m.index, columns=[SYMBOL])
    tgt.iloc[0] = 25.0
    rows = {}
    for policy in POLICIES:
        res = pb.backtest(m, tgt, leverage=25, initial_capital=notional / 25,
                          margin="isolated", liquidation=policy, execution=execution,
                          instruments={SYMBOL: inst})
        liq = res.liquidations
        fills = res.fills
        forced = fills[fills["reason"] == "liquidation"]
        first = liq.iloc[0] if len(liq) else None
        rows[policy] = {
            "entry notional": float((res.trades["qty"] * res.trades["entry_price"]).iloc[0]),
            "events": len(liq),
            "partial events": int((liq["full"] == 0).sum()) if len(liq) else 0,
            "trigger": str(first["time"]) if first is not None else "-",
            "bars to close": int(liq["bars"].max()) if len(liq) else 0,
            "avg fill": float((forced["qty"].abs() * forced["price"]).sum()
                              / forced["qty"].abs().sum()) if len(forced) else np.nan,
            "bankruptcy price": float(liq["bankruptcy_price"].max()) if len(liq) else np.nan,
            "trading fees": float(fills["fee"].sum()),
            "clearance fee": float(liq["clearance_fee"].sum()),
            "user loss": float(liq["user_loss"].sum()),
            "insurance change": float(liq["insurance_change"].sum()),
            "kept at end (BTC)": float(res.equity[f"{SYMBOL}:position"].iloc[-1]),
        }
    return pd.DataFrame(rows)


def speed_cost(n_bars: int, repeat: int) -> dict:
    """Median end-to-end time of pb.backtest with the model on over off, interleaved."""
    import bench_engine as be

    market, exposure = be.make_market(n_bars)
    targets = be.targets_frame(market, exposure)
    kw = dict(venue="binance", margin="isolated", leverage=be.LEVERAGE,
              initial_capital=be.CAPITAL, stop=be.STOP, take=be.TAKE, liquidation="ioc")
    off = lambda: pb.backtest(market, targets, **kw)  # noqa: E731
    on = lambda: pb.backtest(market, targets, execution=True, **kw)  # noqa: E731
    off(), on()  # compile / load
    t_off, t_on = [], []
    for _ in range(repeat):
        for fn, sink in ((off, t_off), (on, t_on)):
            t0 = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(t_off, t_on)]
    return dict(bars=n_bars, off_s=statistics.median(t_off), on_s=statistics.median(t_on),
                ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args(argv)
    pd.set_option("display.width", 200)
    pd.set_option("display.float_format", lambda v: f"{v:,.2f}")
    for timeframe in ("1h", "5m"):
        m, inst = crash_market(args.data, timeframe)
        for notional in (10_000.0, 5_000_000.0):
            print(f"\n25x long BTCUSDT, {timeframe} bars"
                  f"{' (mark = last)' if timeframe == '5m' else ' (mark klines)'}, "
                  f"notional {notional:,.0f} USDT (isolated margin {notional / 25:,.0f})")
            print(policy_table(m, inst, notional).to_string())
        thin = pb.Execution(participation=0.01, remainder="carry")
        print(f"\nthe same 5,000,000 USDT long on {timeframe} bars in a thin book (1 % "
              f"participation; the entry order carries until filled; forced orders take "
              f"longer, the IOC and tier steps fill less)")
        print(policy_table(m, inst, 5_000_000.0, thin).to_string())
    if not args.skip_speed:
        s = speed_cost(args.bars, args.repeat)
        print(f"\nexecution model speed cost on {s['bars']:,} bars (median of {args.repeat} "
              f"interleaved runs): off {s['off_s']:.3f} s, on {s['on_s']:.3f} s, "
              f"ratio {s['ratio']:.2f}x (min {s['ratio_min']:.2f}, max {s['ratio_max']:.2f}; "
              f"target < 1.5x)")


if __name__ == "__main__":
    main()
