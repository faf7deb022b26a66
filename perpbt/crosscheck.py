"""Cross-check registry: shared scenarios run through perpbt and through vectorbt.

Each :class:`Scenario` is a small synthetic market (50-80 one-hour bars, prices in quote), a
frame of target exposures (fractions of equity, DESIGN 1.1) and the keyword arguments of both
engines. ``run_perpbt`` and ``run_vectorbt`` return the same shape: a fills frame (``bar``,
``symbol``, signed ``size`` in base units, ``price`` in quote, ``fee`` in quote) and the final
value (quote). ``tests/test_crosscheck_vectorbt.py`` asserts they agree to 1e-9 relative, or,
for a scenario with a ``difference``, that the documented difference holds.

perpbt runs here with no funding (markets built without funding data, ``funding="zero"``),
leverage 1, mark = last price, frictionless fills (the default) and exposures whose prices stay
far from any liquidation (a 1x short is liquidated only near twice its entry; the builders
refuse a market whose high reaches 1.9 times its low). How the two engines are aligned:

- **Timing.** perpbt fills a target decided at bar t's close at t+1's open, and only when it
  differs from the last non-NaN target. vectorbt gets that order at row t+1
  (:func:`order_targets`: the changes, shifted by one bar, NaN elsewhere) with
  ``price=open``. NaN keeps the position in both (vectorbt ignores a NaN size).
- **Sizing.** perpbt: qty = target * E / open, E = wallet + unrealized at the open, one E
  for all symbols, before any fee of that open. vectorbt ``size_type="targetpercent"``:
  target * value / val_price - position, with ``val_price`` = the order price (its default
  ``np.inf``) and one group value per row (``update_value=False``, the default): the same
  number. A flip is one vectorbt order and two perpbt fills (close, then open); the vectorbt
  side is split at zero (fee pro rata of size) so fills compare one to one.
- **Order of legs.** perpbt runs every reducing leg, then the increases in symbol order;
  vectorbt ``call_seq="auto"`` sorts by order value (sells first). Sizes do not depend on
  the order (one E / one value per row); fills are compared sorted by (bar, symbol), stable.
- **Limits.** Neither engine may cut an order: vectorbt buys only with cash (fee included),
  perpbt caps an increase by the free balance (isolated) or by E minus initial margins
  (cross). Scenarios keep |exposure| <= 0.9 with fees (1.0 without), and the sum over
  symbols <= 0.6, so no cap binds in either engine.
- **Fees.** perpbt: |qty| * price * taker_fee of the symbol's Instrument (``lot_size=0``:
  no rounding). vectorbt: ``fees`` = the same rate on the order value.
- **Stops** (``method="from_signals"``). perpbt's stop is ``pct`` from the average entry,
  fills at the level, or at the open when the bar gaps through. vectorbt ``sl_stop`` with
  ``stop_entry_price="fillprice"`` and the default ``stop_exit_price="stoplimit"`` fills at
  the level, or at the open on a gap (``get_stop_price_nb``). Two differences are avoided by
  the data: vectorbt checks a stop only from the bar after the entry (perpbt also on the
  entry bar, after the fill), and on a bar where its stop fires vectorbt ignores that bar's
  signals (perpbt would still execute an order at that open). Entries use ``size_type=
  "percent"`` with size = |target| = 1 from flat: cash / open = E / open.
- **Final value.** perpbt's equity at the last close (mark = last) = vectorbt's
  ``final_value()`` (cash + position * last close).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from perpbt.backtest import backtest
from perpbt.instruments import Instrument, load_tiers
from perpbt.market import Market
from perpbt.result import Result
from perpbt.risk import StopLoss

HOUR_MS = 3_600_000
T0_MS = 1_600_000_000_000 - (1_600_000_000_000 % HOUR_MS)  # 2020-09-13 12:00 UTC
CAPITAL = 10_000.0  # quote
FILL_COLUMNS = ("bar", "symbol", "size", "price", "fee")
# fills with a notional below DUST * initial capital are float residues, dropped from both sides:
# perpbt's reducing leg can leave |position| one ulp short of the target, and the increasing
# leg then fills that ulp (a fill of ~1e-15 units; see tests/test_crosscheck_vectorbt.py)
DUST = 1e-9

# one wide tier (0.5 % maintenance to 1e12 quote, up to 100x): no tier edge is ever reached
_TIERS = [{"floor": 0.0, "cap": 1e12, "mmr": 0.005, "maint_amount": 0.0, "max_leverage": 100}]

Run = tuple  # (fills DataFrame, final value in quote)


@dataclass(frozen=True)
class Scenario:
    """One shared scenario.

    ``build_market()`` returns the Market (mark = last, no funding); ``targets(market)`` the
    (bars x symbols) frame of target exposures (fractions of equity, NaN = keep);
    ``perpbt_kwargs`` go to :func:`perpbt.backtest`; ``vbt_kwargs`` go to vectorbt's
    ``Portfolio.from_orders`` (or ``from_signals`` when ``method="from_signals"``, popped
    before the call). ``difference``, when set, is a function of (perpbt run, vectorbt run)
    asserting the semantic difference the ``note`` documents; None means the fills and the
    final value must match to 1e-9 relative.
    """

    name: str
    description: str
    build_market: Callable[[], Market]
    targets: Callable[[Market], pd.DataFrame]
    perpbt_kwargs: Mapping[str, Any]
    vbt_kwargs: Mapping[str, Any]
    note: str = ""
    difference: Callable[[Run, Run], None] | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------- markets
def instrument(symbol: str, taker_fee: float = 0.0) -> Instrument:
    """A linear perpetual with one wide tier, no lot rounding and ``taker_fee`` (fraction)."""
    return Instrument(symbol=symbol, tiers=(load_tiers(_TIERS, illustrative=True,
                                                       source="crosscheck: one wide tier"),),
                      lot_size=0.0, min_notional=0.0, maker_fee=0.0,
                      taker_fee=float(taker_fee), clearance_fee=0.0)


def market_from_bars(bars: Mapping[str, np.ndarray]) -> Market:
    """Market from per-symbol (T, 4) open/high/low/close arrays (quote) on 1 h bars from
    ``T0_MS``; mark = last, no funding data (backtest with ``funding="zero"``)."""
    ohlcv = {}
    for sym, rows in bars.items():
        arr = np.asarray(rows, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"{sym}: bars must be (T, 4) open/high/low/close, got {arr.shape}")
        if not (np.all(arr[:, 1] >= arr[:, [0, 3]].max(axis=1))
                and np.all(arr[:, 2] <= arr[:, [0, 3]].min(axis=1))):
            raise ValueError(f"{sym}: a bar's high/low does not contain its open and close")
        if arr[:, 1].max() >= 1.9 * arr[:, 2].min():
            raise ValueError(f"{sym}: prices span too wide a range; a 1x short could approach "
                             f"liquidation")
        ohlcv[sym] = pd.DataFrame({"timestamp_ms": T0_MS + HOUR_MS * np.arange(len(arr)),
                                   "open": arr[:, 0], "high": arr[:, 1], "low": arr[:, 2],
                                   "close": arr[:, 3], "volume": 1000.0})
    return Market.from_frames(ohlcv, timeframe="1h", mark_fallback="last", strict=True)


def random_walk(seed: int, n_bars: int, symbols: tuple[str, ...], vol: float = 0.01,
                start: float = 100.0) -> dict[str, np.ndarray]:
    """Per symbol (T, 4) bars: closes a geometric walk of per-bar ``vol`` (fraction), opens
    gapping up to 0.2 % off the previous close, wicks up to 0.5 % beyond the body."""
    rng = np.random.default_rng(seed)
    out = {}
    for sym in symbols:
        close = start * np.exp(np.cumsum(rng.normal(0.0, vol, n_bars)))
        prev = np.concatenate(([start], close[:-1]))
        open_ = prev * (1.0 + rng.uniform(-0.002, 0.002, n_bars))
        high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.005, n_bars))
        low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.005, n_bars))
        out[sym] = np.column_stack([open_, high, low, close])
    return out


def path_bars(segments: list[tuple]) -> np.ndarray:
    """(T, 4) bars from explicit (open, high, low, close) rows, for hand-made stop paths."""
    return np.asarray(segments, dtype=np.float64)


def target_rows(market: Market, rows: Mapping[str, Mapping[int, float]]) -> pd.DataFrame:
    """Target exposures {symbol: {bar: exposure}} (decided at that bar's close), NaN elsewhere."""
    frame = pd.DataFrame(np.nan, index=market.index, columns=list(market.symbols))
    for sym, by_bar in rows.items():
        col = frame.columns.get_loc(sym)
        for bar, value in by_bar.items():
            frame.iloc[bar, col] = float(value)
    return frame


def order_targets(targets: pd.DataFrame) -> pd.DataFrame:
    """The target each bar's open executes under perpbt's rule (row t-1 non-NaN and different
    from the last non-NaN target), NaN where no order is sent: vectorbt's ``size`` input."""
    vals = targets.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full(vals.shape, np.nan)
    last = np.full(vals.shape[1], np.nan)
    for t in range(1, len(vals)):
        row = vals[t - 1]
        change = ~np.isnan(row) & (row != last)
        out[t, change] = row[change]
        last[change] = row[change]
    return pd.DataFrame(out, index=targets.index, columns=targets.columns)


def _price_frame(market: Market, key: str) -> pd.DataFrame:
    return pd.DataFrame(market.arrays[key].copy(), index=market.index,
                        columns=list(market.symbols))


# ---------------------------------------------------------------------------- runners
def perpbt_result(scenario: Scenario) -> Result:
    """The full perpbt Result of ``scenario`` (fills with reasons, orders cut or rejected)."""
    market = scenario.build_market()
    return backtest(market, scenario.targets(market), **dict(scenario.perpbt_kwargs))


def run_perpbt(scenario: Scenario) -> Run:
    """(fills, final value): fills sorted by (bar, symbol), stable (legs of one open keep
    their order); ``size`` signed in base units, ``price`` and ``fee`` in quote; the final
    value is the equity at the last bar's close (quote)."""
    res = perpbt_result(scenario)
    f = res.fills
    fills = pd.DataFrame({"bar": f["bar"].to_numpy(dtype=np.int64),
                          "symbol": f["symbol"].astype(str).to_numpy(),
                          "size": f["qty"].to_numpy(dtype=np.float64),
                          "price": f["price"].to_numpy(dtype=np.float64),
                          "fee": f["fee"].to_numpy(dtype=np.float64)})
    capital = float(scenario.perpbt_kwargs.get("initial_capital", CAPITAL))
    return _sorted(fills, capital), float(res.equity["equity"].iloc[-1])


def _sorted(fills: pd.DataFrame, capital: float) -> pd.DataFrame:
    """Fills sorted by (bar, symbol), stable, without dust (see ``DUST``)."""
    dust = np.abs(fills["size"].to_numpy() * fills["price"].to_numpy()) < DUST * capital
    fills = fills[~dust]
    return fills.sort_values(["bar", "symbol"], kind="mergesort").reset_index(drop=True)


def dust_fills(fills: pd.DataFrame, capital: float = CAPITAL) -> pd.DataFrame:
    """The fills whose notional is below ``DUST * capital`` (float residues, not trades)."""
    return fills[np.abs(fills["size"] * fills["price"]) < DUST * capital]


def _split_flips(records: np.ndarray, columns: list[str], capital: float) -> pd.DataFrame:
    """vectorbt order records -> fills; an order crossing zero becomes close + open legs,
    the fee shared in proportion to size (fees are linear in size)."""
    rows = []
    position = np.zeros(len(columns))
    for rec in records:  # execution order; chronological within a column
        col = int(rec["col"])
        size = float(rec["size"]) * (1.0 if int(rec["side"]) == 0 else -1.0)  # 0 = Buy
        price, fee = float(rec["price"]), float(rec["fees"])
        before = position[col]
        after = before + size
        position[col] = after
        if before != 0.0 and after != 0.0 and np.sign(after) != np.sign(before):
            close_leg, open_leg = -before, size + before
            rows.append((int(rec["idx"]), columns[col], close_leg, price,
                         fee * abs(close_leg) / abs(size)))
            rows.append((int(rec["idx"]), columns[col], open_leg, price,
                         fee * abs(open_leg) / abs(size)))
        else:
            rows.append((int(rec["idx"]), columns[col], size, price, fee))
    fills = pd.DataFrame(rows, columns=list(FILL_COLUMNS))
    fills["bar"] = fills["bar"].astype(np.int64)
    fills["symbol"] = fills["symbol"].astype(str)
    return _sorted(fills, capital)


def run_vectorbt(scenario: Scenario) -> Run:
    """The scenario through vectorbt: (fills, final value) shaped as :func:`run_perpbt`.

    Orders at bar t are perpbt's target changes of row t-1, at ``price=open[t]``; several
    symbols share cash in one group with ``call_seq="auto"``. vectorbt is imported here (a
    dev dependency only)."""
    import vectorbt as vbt

    market = scenario.build_market()
    orders = order_targets(scenario.targets(market))
    kw = dict(scenario.vbt_kwargs)
    method = kw.pop("method", "from_orders")
    capital = float(scenario.perpbt_kwargs.get("initial_capital", CAPITAL))
    common = dict(close=_price_frame(market, "close"), price=_price_frame(market, "open"),
                  init_cash=capital, freq="1h",
                  # one group even for one symbol: one compiled signature for every scenario
                  cash_sharing=True, group_by=True, call_seq="auto")
    if method == "from_orders":
        pf = vbt.Portfolio.from_orders(size=orders, size_type="targetpercent",
                                       direction="both", **common, **kw)
    elif method == "from_signals":
        exit_ = orders == 0.0
        pf = vbt.Portfolio.from_signals(
            entries=orders > 0.0, exits=exit_, short_entries=orders < 0.0, short_exits=exit_,
            size=orders.abs().fillna(0.0), size_type="percent",
            open=_price_frame(market, "open"), high=_price_frame(market, "high"),
            low=_price_frame(market, "low"), stop_entry_price="fillprice", **common, **kw)
    else:
        raise ValueError(f"{scenario.name}: vbt method must be 'from_orders' or "
                         f"'from_signals', got {method!r}")
    fills = _split_flips(pf.orders.values, list(market.symbols), capital)
    return fills, float(np.asarray(pf.final_value()).reshape(-1)[0])


# ---------------------------------------------------------------------------- scenarios
def _kw(symbols: tuple[str, ...], margin: str = "isolated", fee: float = 0.0,
        **extra) -> dict[str, Any]:
    """perpbt kwargs of every scenario: leverage 1, no funding, an explicit instrument per
    symbol with taker fee ``fee`` (fraction)."""
    kw = dict(venue="binance", margin=margin, leverage=1.0, initial_capital=CAPITAL,
              funding="zero", instruments={s: instrument(s, fee) for s in symbols})
    kw.update(extra)
    return kw


def _random_targets(seed: int, market: Market, levels: tuple[float, ...], p_change: float,
                    scale: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Each bar, with probability ``p_change``, a target drawn from ``levels`` (times the
    symbol's ``scale``); NaN otherwise (keep). The last bar's row is never executed."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(np.nan, index=market.index, columns=list(market.symbols))
    for sym in market.symbols:
        draw = rng.choice(np.asarray(levels), market.n_bars)
        keep = rng.uniform(size=market.n_bars) >= p_change
        draw[keep] = np.nan
        frame[sym] = draw * (scale or {}).get(sym, 1.0)
    return frame


ONE = ("A",)
THREE = ("A", "B", "C")
FEE = 0.0005  # taker, fraction of notional (Binance VIP 0 level)
STOP = 0.03  # stop distance, fraction of the average entry


def _stop_path() -> dict[str, np.ndarray]:
    """64 hand-made bars: a long stopped inside a bar, a long gapped through its stop, a short
    stopped inside a bar, a short closed by its target, a short gapped through its stop, a long
    held to the end. Entry bars never reach the stop level; no target change executes on a
    stop bar (see module doc)."""
    flat = (100.0, 100.4, 99.6, 100.0)
    rows = [flat] * 5                                           # 0-4
    rows += [(100.0, 101.0, 99.5, 100.5), (100.5, 100.8, 98.6, 98.9),   # 5 entry long @100
             (98.9, 99.2, 97.8, 98.0), (98.0, 98.3, 96.5, 96.8)]        # 8: stop 97 intrabar
    rows += [(96.8, 97.2, 96.4, 97.0)] * 7                      # 9-15
    rows += [(97.0, 98.0, 96.8, 97.6), (97.6, 97.9, 95.9, 96.2),        # 16 entry long @97
             (96.2, 96.5, 94.8, 95.0), (92.0, 93.0, 91.0, 92.5)]        # 19: gap 92 < 94.09
    rows += [(92.5, 92.9, 92.1, 92.6)] * 7                      # 20-26 (26: short entry @92.5)
    rows += [(92.6, 93.4, 92.2, 93.1), (93.1, 94.6, 92.9, 94.3),        # 27-28
             (94.3, 95.6, 94.0, 95.2)]                                  # 29: stop 95.275 hit
    rows += [(95.2, 96.0, 94.9, 95.8)]                                  # 30 (flat)
    rows += [(95.8, 96.1, 95.5, 95.9)] * 8                      # 31-38 (39: short entry)
    rows += [(95.9, 96.2, 94.0, 94.2), (94.2, 94.5, 93.0, 93.3),        # 39 entry short @95.9
             (93.3, 93.6, 92.5, 92.8)]                                  # 40-41, 42: exit @open
    rows += [(92.8, 93.0, 92.4, 92.6)] * 4                      # 42-45 (46: short entry)
    rows += [(92.6, 93.5, 92.3, 93.2), (93.2, 94.8, 93.0, 94.6),        # 46 entry short @92.6
             (99.0, 99.5, 98.0, 98.5)]                                  # 48: gap 99 > 95.378
    rows += [(98.5, 98.9, 98.1, 98.6)] * 4                      # 49-52 (53: long entry)
    rows += [(98.6, 99.8, 98.4, 99.5), (99.5, 101.0, 99.2, 100.6),      # 53 entry long @98.6
             (100.6, 102.0, 100.1, 101.7)]                              # 54-55
    rows += [(101.7, 102.2, 101.3, 101.9)] * 8                  # 56-63
    return {"A": path_bars(rows)}


def _stop_targets(market: Market) -> pd.DataFrame:
    # decided at the close of bar k -> filled at k+1's open
    return target_rows(market, {"A": {4: 1.0, 12: 0.0, 15: 1.0, 22: 0.0, 25: -1.0, 34: 0.0,
                                      38: -1.0, 41: 0.0, 45: -1.0, 50: 0.0, 52: 1.0}})


def _entry_bar_path() -> dict[str, np.ndarray]:
    """A long entered at 100 whose entry bar trades down to 96 (3 % stop at 97), then flat."""
    rows = [(100.0, 100.3, 99.7, 100.0)] * 3
    rows += [(100.0, 100.5, 96.0, 99.0)]                      # 3: entry bar reaches 96
    rows += [(99.0, 99.5, 98.5, 99.2)] * 3 + [(99.2, 99.4, 96.5, 97.5)]  # 4-6, 7: low 96.5
    rows += [(97.5, 97.8, 97.2, 97.6)] * 4                    # 8-11
    return {"A": path_bars(rows)}


def _entry_bar_difference(p: Run, v: Run) -> None:
    """perpbt stops on the entry bar (bar 3, at 97); vectorbt first checks at bar 4 and
    stops at bar 7 (low 96.5 <= 97), at the same level."""
    pf, vf = p[0], v[0]
    assert list(pf["bar"]) == [3, 3] and list(vf["bar"]) == [3, 7], (pf, vf)
    assert pf["price"].tolist() == [100.0, 97.0] and vf["price"].tolist() == [100.0, 97.0]
    np.testing.assert_allclose(pf["size"], vf["size"], rtol=1e-12)
    # both lose 3 % on the same qty, so the final values agree: the difference is timing only
    np.testing.assert_allclose(p[1], v[1], rtol=1e-12)


def _cut_difference(p: Run, v: Run) -> None:
    """Fills equal until the first difference, which is a short increase perpbt cut."""
    pf, vf = p[0], v[0]
    n = min(len(pf), len(vf))
    same = ((pf["bar"].to_numpy()[:n] == vf["bar"].to_numpy()[:n])
            & np.isclose(pf["size"].to_numpy()[:n], vf["size"].to_numpy()[:n], rtol=1e-9,
                         atol=0.0))
    first = int(np.argmin(same)) if not same.all() else n
    assert 0 < first < n, "expected the runs to agree at first and then differ"
    ps, vs = pf["size"].iloc[first], vf["size"].iloc[first]
    assert pf["bar"].iloc[first] == vf["bar"].iloc[first]
    assert vs < ps < 0.0, (ps, vs)  # a short increase, smaller in perpbt


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "long_only", "one symbol, targets in {0, 0.5, 1}: entries, partial reductions and "
        "increases, exits; no fees, isolated margin",
        lambda: market_from_bars(random_walk(11, 120, ONE)),
        lambda m: _random_targets(12, m, (0.0, 0.5, 1.0, 1.0), 0.15),
        _kw(ONE), {}),
    Scenario(
        "long_short", "one symbol, targets in {-1, -0.5, 0, 0.5, 1}: direct flips (two perpbt "
        "fills, one vectorbt order split at zero); no fees, cross margin",
        lambda: market_from_bars(random_walk(21, 120, ONE)),
        lambda m: _random_targets(22, m, (-1.0, -0.5, 0.0, 0.5, 1.0), 0.15),
        _kw(ONE, "cross"), {}),
    Scenario(
        "fees", "one symbol long/short with flips, taker fee 0.05 % in both engines, "
        "|exposure| <= 0.9 so vectorbt's cash-with-fees limit never binds; cross margin",
        lambda: market_from_bars(random_walk(31, 120, ONE)),
        lambda m: _random_targets(32, m, (-0.9, -0.4, 0.0, 0.3, 0.9), 0.15),
        _kw(ONE, "cross", FEE), {"fees": FEE}),
    Scenario(
        "percent_stop", "3 % stop-loss from the entry: long and short stops inside a bar (fill "
        "at the level) and gapping through (fill at the open), a short closed by its target, "
        "a long held to the end; vectorbt from_signals(sl_stop=0.03)",
        lambda: market_from_bars(_stop_path()), _stop_targets,
        _kw(ONE, stop=StopLoss(STOP)), {"method": "from_signals", "sl_stop": STOP}),
    Scenario(
        "several_symbols", "three symbols sharing one account: reductions of one symbol and "
        "increases of another at the same open, shorts against longs, taker fee 0.04 %; "
        "cross margin vs vectorbt cash_sharing, group_by, call_seq='auto'",
        lambda: market_from_bars(random_walk(41, 100, THREE, vol=0.008)),
        lambda m: _random_targets(42, m, (-1.0, -0.5, 0.0, 0.5, 1.0), 0.2,
                                  {"A": 0.3, "B": 0.2, "C": 0.1}),
        _kw(THREE, "cross", 0.0004), {"fees": 0.0004}),
    Scenario(
        "target_percent", "one symbol rebalanced almost every bar to a target in "
        "[-0.9, 0.9] (repeats and NaN keep the position), taker fee 0.05 %, cross margin: "
        "vectorbt size_type='targetpercent' valued at the open",
        lambda: market_from_bars(random_walk(51, 80, ONE)),
        lambda m: pd.DataFrame({"A": np.where(
            np.random.default_rng(52).uniform(size=m.n_bars) < 0.1, np.nan,
            np.round(np.random.default_rng(53).uniform(-0.9, 0.9, m.n_bars), 1))},
            index=m.index),
        _kw(ONE, "cross", FEE), {"fees": FEE}),
    Scenario(
        "isolated_short_fees", "one symbol, shorts and longs in isolated margin with a taker "
        "fee of 0.1 %: a flip's close fee comes out of the wallet before the new margin, "
        "exposures <= 0.8 keep perpbt's free-balance cap slack",
        lambda: market_from_bars(random_walk(61, 100, ONE)),
        lambda m: _random_targets(62, m, (-0.8, -0.3, 0.0, 0.4, 0.8), 0.15),
        _kw(ONE, "isolated", 0.001), {"fees": 0.001}),
    Scenario(
        "long_short_isolated", "long_short's market and targets in isolated margin",
        lambda: market_from_bars(random_walk(21, 120, ONE)),
        lambda m: _random_targets(22, m, (-1.0, -0.5, 0.0, 0.5, 1.0), 0.15),
        _kw(ONE, "isolated"), {},
        note="Documented difference: in isolated margin the free balance is wallet minus "
             "isolated margins, unrealized PnL excluded (DESIGN 1.1), and a 1x short's margin "
             "is its entry notional. Growing a short from -0.5 to -1 after the price fell "
             "needs more margin than is free, so perpbt cuts the increase (an order record "
             "cut_margin); vectorbt's short sale needs no cash. Fills agree up to that bar, "
             "where perpbt's short increase is smaller.",
        difference=_cut_difference),
    Scenario(
        "stop_on_entry_bar", "a long entered at 100 whose entry bar trades to 96 with a 3 % "
        "stop", lambda: market_from_bars(_entry_bar_path()),
        lambda m: target_rows(m, {"A": {2: 1.0}}),
        _kw(ONE, stop=StopLoss(STOP)), {"method": "from_signals", "sl_stop": STOP},
        note="Documented difference: perpbt checks a stop on the entry bar too, after the "
             "fill at the open (DESIGN 4 step 4: the walk starts at the open), so it exits at "
             "97 on bar 3; vectorbt sets the stop after the order and checks it from the next "
             "bar, so it exits at 97 on bar 7. Sizes and exit level agree.",
        difference=_entry_bar_difference),
)}
