"""The Python face of the engine: Market + strategy or targets + rules -> arrays -> run_nb -> Result.

Everything checkable before the run is checked here, with errors naming the field, the symbol
and the bar: the targets' shape and labels, leverage above the instrument's maximum, and (in
isolated mode) an exposure beyond the leverage.
"""

from __future__ import annotations

import threading
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd

from perpbt import dtypes
from perpbt.engine.loop import run_nb
from perpbt.engine.scan import SCAN_INF, SCAN_OVER_LEVERAGE, scan_targets_nb
from perpbt.engine.state import (C_ERROR, C_ERROR_BAR, C_ERROR_SYMBOL, N_ACCT, N_CNT,
                                 QUIET_BLOCK, QUIET_SUBBLOCK, Buffers, EngineConfig,
                                 InstrumentArrays, MarketArrays, PositionState, Scratch,
                                 new_position_state, new_scratch, reset_position_state,
                                 reset_scratch)
from perpbt.enums import (ErrorCode, FundingMode, Intrabar, LiqPolicy, MarginMode,
                          parse_enum)
from perpbt.execution import Execution, resolve_execution
from perpbt.instruments import Instrument
from perpbt.result import Result
from perpbt.risk import TakeProfit, exit_rule_arrays, stop_rules
from perpbt.sizing import apply_sizing
from perpbt.strategy import Strategy, Targets
from perpbt.venues import get_venue, instrument_for



QUIET_STRETCH = True  # tests switch it off to check the fast path changes no result


def _iso(market, t: int) -> str:
    return pd.Timestamp(int(market.time_ms[t]), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def target_frame(market, strategy_or_targets) -> tuple[pd.DataFrame, str]:
    """The (T x N) exposure frame of a Strategy, Targets or DataFrame, checked against the
    market's shape and labels, and the name of its source for error messages."""
    source = "targets"
    obj = strategy_or_targets
    if isinstance(obj, Strategy):
        source = repr(obj)
        obj = obj.signals(market)
        strategy_or_targets._last_targets = obj if isinstance(obj, Targets) else None
    if isinstance(obj, Targets):
        obj = obj.to_frame(market.index, pd.Index(market.symbols))
    if isinstance(obj, pd.Series) and market.n_symbols == 1:
        obj = obj.to_frame(market.symbols[0])
    if not isinstance(obj, pd.DataFrame):
        raise TypeError(f"{source}: expected a pb.Strategy, pb.Targets or DataFrame of target "
                        f"exposures, got {type(obj).__name__}")
    if obj.shape != (market.n_bars, market.n_symbols):
        raise ValueError(f"{source}: targets have shape {obj.shape}, the market is "
                         f"({market.n_bars} bars x {market.n_symbols} symbols {list(market.symbols)})")
    if set(map(str, obj.columns)) != set(market.symbols):
        raise ValueError(f"{source}: target columns {list(obj.columns)} are not the market's "
                         f"symbols {list(market.symbols)}")
    if list(obj.columns) != list(market.symbols):
        obj = obj[list(market.symbols)]
    if obj.index is not market.index:
        index = obj.index if isinstance(obj.index, pd.DatetimeIndex) else pd.DatetimeIndex(
            obj.index)
        if not index.equals(market.index):
            bad = int(np.argmax(index != market.index))
            raise ValueError(f"{source}: targets index differs from the market's bar times first "
                             f"at row {bad} ({index[bad]} vs {market.index[bad]})")
    return obj, source


def target_stops(strategy_or_targets, market, source: str) -> np.ndarray:
    """(T, N) Targets.stop per fill bar: the row decided at t's close applies to the fill at
    t+1 (fraction of the average entry; NaN: the stop rule's distance), or (0, N)."""
    obj = strategy_or_targets
    if isinstance(obj, Strategy):
        obj = obj._last_targets if getattr(obj, "_last_targets", None) is not None else None
    if not isinstance(obj, Targets) or obj.stop is None:
        return np.zeros((0, market.n_symbols))
    frame = obj.stop_frame(market.index, pd.Index(market.symbols), source=source)
    out = np.full((market.n_bars, market.n_symbols), np.nan)
    out[1:] = frame.to_numpy(dtype=np.float64, na_value=np.nan)[:-1]
    return out


def _target_stops(memo: dict | None, strategy_or_targets, market, source: str) -> np.ndarray:
    """target_stops, memoized for targets (not for a Strategy: it reads the strategy's last
    targets), so the runs of one frame share the array (pb.sweep batches them by identity)."""
    if isinstance(strategy_or_targets, Strategy):
        return target_stops(strategy_or_targets, market, source)
    return memoized(memo, ("target stops", id(strategy_or_targets), source), strategy_or_targets,
                    lambda: target_stops(strategy_or_targets, market, source))


def _leverage_array(leverage, market) -> np.ndarray:
    if isinstance(leverage, Mapping):
        missing = set(market.symbols) - set(leverage)
        if missing:
            raise ValueError(f"leverage: no value for {sorted(missing)}")
        lev = np.array([float(leverage[s]) for s in market.symbols])
    else:
        lev = np.full(market.n_symbols, float(leverage))
    for n, value in enumerate(lev):
        if not value >= 1.0:
            raise ValueError(f"leverage for {market.symbols[n]} must be >= 1, got {value}")
    return lev


def resolve_instruments(market, venue: str, instruments=None) -> list[Instrument]:
    """Per symbol: the explicit instrument, the market's, or the venue's bundled one."""
    out = []
    for sym in market.symbols:
        inst = (instruments or {}).get(sym) or getattr(market, "instruments", {}).get(sym)
        out.append(inst if inst is not None else instrument_for(venue, sym))
    return out


def _max_notional(table, leverage: float) -> float:
    """Largest notional whose tiers all allow ``leverage`` (the cap of the last such tier)."""
    allowed = table.max_leverage >= leverage - 1e-12
    if not allowed[0]:
        return 0.0
    last = int(np.argmin(allowed)) - 1 if not allowed.all() else len(allowed) - 1
    return float(table.cap[last])


def pack_instruments(insts: list[Instrument], market, venue_preset, lev: np.ndarray
                     ) -> InstrumentArrays:
    n_sym = len(insts)
    n_tab = max(len(i.tiers) for i in insts)
    n_tier = max(len(t) for i in insts for t in i.tiers)
    since = np.full((n_sym, n_tab), np.iinfo(np.int64).max, dtype=np.int64)
    count = np.zeros((n_sym, n_tab), dtype=np.int64)
    arrs = {k: np.zeros((n_sym, n_tab, n_tier)) for k in ("floor", "cap", "mmr", "amt")}
    max_notional = np.zeros((n_sym, n_tab))
    start_ms = int(market.time_ms[0])
    for n, inst in enumerate(insts):
        for d, table in enumerate(inst.tiers):
            since[n, d] = table.effective_from_ms if d > 0 else np.iinfo(np.int64).min
            k = len(table)
            count[n, d] = k
            for key, src in (("floor", table.floor), ("cap", table.cap), ("mmr", table.mmr),
                             ("amt", table.maint_amount)):
                arrs[key][n, d, :k] = src
            max_notional[n, d] = _max_notional(table, lev[n])
        in_force = [t for t in inst.tiers[1:] if t.effective_from_ms <= int(market.time_ms[-1])]
        for table in [inst.tier_table_at(start_ms)] + in_force:
            if lev[n] > table.max_leverage[0] + 1e-12:
                raise ValueError(
                    f"leverage {lev[n]:g} for {inst.symbol} is above the instrument's maximum "
                    f"{table.max_leverage[0]:g} (tier table as of {table.as_of or 'undated'}, "
                    f"in force from bar {_iso(market, 0)})")

    def fee(inst_value, preset_value):
        return float(preset_value if inst_value is None else inst_value)

    return InstrumentArrays(
        lot_size=np.array([float(i.lot_size) for i in insts]),
        min_notional=np.array([float(i.min_notional) for i in insts]),
        taker_fee=np.array([fee(i.taker_fee, venue_preset.taker_fee) for i in insts]),
        clearance_fee=np.array([fee(i.clearance_fee, venue_preset.clearance_fee) for i in insts]),
        table_since=since, tier_count=count, tier_floor=arrs["floor"], tier_cap=arrs["cap"],
        tier_mmr=arrs["mmr"], tier_amt=arrs["amt"], max_notional=max_notional)


def settlement_bars(rate: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Bars where any symbol settles funding or lacks coverage, then len(rate) (sentinel)."""
    bars = np.flatnonzero(~np.isnan(rate).all(axis=1) | ~covered.all(axis=1))
    return np.append(bars, len(rate)).astype(np.int64)


def block_ranges(low, high, mark_low, mark_high, size: int) -> np.ndarray:
    """(T // size, N, 4): min low, max high, min mark_low, max mark_high of each whole block
    of ``size`` bars (the quiet stretch tests a block at once; a block's four values share
    one cache line)."""
    n_bars, n_sym = low.shape
    n_full = n_bars // size * size
    shape = (n_full // size, size, n_sym)
    return np.ascontiguousarray(np.stack([
        low[:n_full].reshape(shape).min(axis=1), high[:n_full].reshape(shape).max(axis=1),
        mark_low[:n_full].reshape(shape).min(axis=1),
        mark_high[:n_full].reshape(shape).max(axis=1)], axis=-1))


def exec_memo(market, exe) -> dict[str, np.ndarray]:
    """The execution model's per-Market memo of recent states for (span, window), kept while
    the market's high, low and volume arrays are the same objects (engine/execution.py)."""
    n_bars, n_sym = market.n_bars, market.n_symbols
    if exe is None:
        return dict(exec_state=np.zeros((0, n_sym, 2)),
                    exec_done=np.zeros((0, n_sym), dtype=np.bool_))
    sources = (market.arrays["high"], market.arrays["low"], market.arrays["volume"])
    memos = getattr(market, "_exec_memo", None)
    if memos is None or any(x is not y for x, y in zip(memos[0], sources)):
        memos = (sources, {})
        market._exec_memo = memos
    # the kernel fills this memo as it runs: one per thread, so the threads of a sweep never
    # read a (bar, symbol) entry another thread is writing
    key = (float(exe.span), int(exe.window), threading.get_ident())
    if key not in memos[1]:  # np.empty / np.zeros: pages are touched only where used
        memos[1][key] = dict(exec_state=np.empty((n_bars, n_sym, 2)),
                             exec_done=np.zeros((n_bars, n_sym), dtype=np.bool_))
    return memos[1][key]


def market_arrays(market) -> MarketArrays:
    """The market as engine arrays. The settlement bars and block ranges are computed once
    per Market and kept while its arrays are the same objects (a Market's arrays are not to
    be changed in place)."""
    a = market.arrays
    # C-contiguous and writable: a read-only array (pandas 3 copy-on-write hands those out)
    # is another numba type and would compile the kernel a second time
    c = lambda k: np.require(a[k], np.float64, ["C", "W"])  # noqa: E731
    rate = c("funding_rate")
    covered = np.require(a["funding_covered"], np.bool_, ["C", "W"])
    low, high, mark_low, mark_high = c("low"), c("high"), c("mark_low"), c("mark_high")
    sources = (rate, covered, low, high, mark_low, mark_high)
    # (sources, settle bars, block ranges, sub-block ranges)
    cached = getattr(market, "_engine_derived", None)
    if cached is None or any(x is not y for x, y in zip(cached[0], sources)):
        cached = (sources, settlement_bars(rate, covered),
                  block_ranges(low, high, mark_low, mark_high, QUIET_BLOCK),
                  block_ranges(low, high, mark_low, mark_high, QUIET_SUBBLOCK))
        market._engine_derived = cached
    return MarketArrays(np.require(market.time_ms, np.int64, ["C", "W"]), c("open"),
                        high, low, c("close"), c("volume"), c("mark_open"), mark_high,
                        mark_low, c("mark_close"), rate, covered, cached[1], cached[2],
                        cached[3])


def target_values(frame: pd.DataFrame, source: str, lev: np.ndarray, market,
                  margin_mode: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(values as a read-only C array, number of target changes, bars whose open sends
    orders + the sentinel T); raises on an infinite exposure or, in isolated mode, an
    exposure above the leverage (DESIGN 1.1)."""
    try:  # plain float columns: a view, no NA pass
        raw = frame.to_numpy(dtype=np.float64, copy=False)
    except (TypeError, ValueError):  # nullable columns holding pd.NA
        raw = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.require(raw, np.float64, ["C"])
    values = values.view()
    values.flags.writeable = False  # always read-only: one kernel signature, no copy needed
    order_bars = np.empty(len(values) + 1, dtype=np.int64)  # pages touched only where written
    changes, kind, t, n = scan_targets_nb(values, lev, margin_mode == MarginMode.isolated,
                                          order_bars)
    if kind == SCAN_INF:
        raise ValueError(f"{source}: target exposure is infinite for {market.symbols[n]} at "
                         f"{_iso(market, t)}")
    if kind == SCAN_OVER_LEVERAGE:
        raise ValueError(f"{source}: target exposure {values[t, n]:g} for {market.symbols[n]} "
                         f"at {_iso(market, t)} exceeds leverage {lev[n]:g} (isolated margin)")
    return values, changes, order_bars


def _scanned_once(frame: pd.DataFrame, source: str, market):
    """target_values without the leverage check, and each symbol's largest |exposure|
    (NaN where it has none), which decides the check for any leverage."""
    n_sym = market.n_symbols
    values, changes, order_bars = target_values(frame, source, np.full(n_sym, np.inf), market,
                                                MarginMode.cross)
    return values, changes, order_bars, np.fmax.reduce(np.abs(values), axis=0)


def buffer_sizes(changes: int, mkt: MarketArrays, record_bars: bool, insts: list,
                 cross: bool, scale: int = 1) -> Buffers:
    """The length of each record array: sized from the targets, each target change one order
    (<= 2 fills).

    Partial fills (execution model) and partial liquidations can need more: the run is
    repeated with ``scale`` times the room when a buffer overflows."""
    n_bars, n_sym = mkt.open.shape
    n_settle = n_sym * (len(mkt.settle_bars) - 1)  # at most one per symbol per such bar
    changes = changes * scale + (scale - 1) * 16
    fill_cap = 3 * changes + 4 * n_sym + 16
    # per-symbol states are logged on bars where they changed: fills, settlements, table
    # switches and the first bar; cross with several symbols changes every bar
    n_tables = max(len(i.tiers) for i in insts)
    state_rows = n_bars if (cross and n_sym > 1) else min(
        n_bars, fill_cap + n_settle + n_sym * n_tables + 2)
    return Buffers(fills=fill_cap, orders=changes + n_sym + 16, funding=n_settle + 16,
                   liqs=changes + n_sym + 16, trades=fill_cap, equity=n_bars,
                   states=state_rows * n_sym if record_bars else 0)


_BUFFER_DTYPES = Buffers(dtypes.fill_dt, dtypes.order_dt, dtypes.funding_dt, dtypes.liq_dt,
                         dtypes.trade_dt, np.dtype(np.float64), dtypes.state_dt)


def allocate_buffers(sizes: Buffers) -> Buffers:
    """Record arrays of ``sizes``: np.empty where the writer sets every field of a record
    (no memset of the room, and no cache lines evicted for it: records.open_trade_nb sets
    all of a trade's); liquidation records get some fields after write_liq_nb: zeroed."""
    return Buffers(*(np.zeros(n, dtype=dt) if name == "liqs" else np.empty(n, dtype=dt)
                     for name, n, dt in zip(Buffers._fields, sizes, _BUFFER_DTYPES)))


def reused_buffers(pool: dict | None, sizes: Buffers, zeroed_liqs: bool = False) -> Buffers:
    """New buffers of ``sizes``, or this thread's from ``pool`` where they are at least as
    large (the equity curve exactly as long): a caller that is done with each Result before
    the next run in the same thread (pb.sweep keeps only the stats) saves allocating and
    page-faulting the record room and the equity curve on every run. Liquidation records
    must be zero on entry: they are new (zeroed) unless ``zeroed_liqs``, for a caller that
    zeroes the records each run wrote before the next one (engine/batch.py does): then the
    thread's own, which only such callers get."""
    if pool is None:
        return allocate_buffers(sizes)
    key = threading.get_ident()
    held = pool.get(key)
    if held is None or not _holds(held[1], sizes):
        held = pool[key] = (allocate_buffers(sizes), sizes)
    if zeroed_liqs and held[0].liqs.shape[0] >= sizes.liqs:
        return held[0]
    return held[0]._replace(liqs=np.zeros(sizes.liqs, dtype=dtypes.liq_dt))


def _holds(have: Buffers, sizes: Buffers) -> bool:
    return (have.equity == sizes.equity and have.fills >= sizes.fills
            and have.orders >= sizes.orders and have.funding >= sizes.funding
            and have.trades >= sizes.trades and have.states >= sizes.states)


def reused_work(pool: dict | None, n_symbols: int, n_tiers: int, reset: bool = True
                ) -> tuple[PositionState, Scratch]:
    """A fresh position state and scratch, or this thread's from ``pool`` reset in place
    (neither is kept by a Result); ``reset=False``: as the last run left them, for a caller
    that resets them itself (engine/batch.py does, before each run)."""
    if pool is None:
        return new_position_state(n_symbols), new_scratch(n_symbols, n_tiers)
    key = ("work", threading.get_ident(), n_symbols, n_tiers)
    held = pool.get(key)
    if held is None:
        held = (new_position_state(n_symbols), new_scratch(n_symbols, n_tiers))
        pool[key] = held
        return held
    if not reset:
        return held
    return reset_position_state(held[0]), reset_scratch(held[1])


def memoized(memo: dict | None, key: tuple, owner, build):
    """``build()``, or its value stored in ``memo`` under ``key``; the entry keeps ``owner``
    (the object whose id is in the key), so a freed object's id cannot hit it."""
    if memo is None:
        return build()
    hit = memo.get(key)
    if hit is not None and hit[0] is owner:
        return hit[1]
    value = build()
    memo[key] = (owner, value)
    return value


def _packed_instruments(market, venue: str, instruments, preset, lev: np.ndarray):
    insts = resolve_instruments(market, venue, instruments)
    return insts, pack_instruments(insts, market, preset, lev)


def _stop_fields(stop, market) -> dict:
    """perpbt.risk.stop_rules, and whether a stop level moves during a trade (trailing or
    break-even: the loop then tracks it bar by bar)."""
    rules = stop_rules(stop, market)
    return {**rules,
            "dyn_stops": bool(rules["trail"] or np.isfinite(rules["breakeven"]).any())}


# the EngineConfig fields that come from the stop rules (``_stop_fields``), and only from them
STOP_CONFIG_FIELDS = ("stop_pct", "stop_trigger", "stop_dist_t", "trail", "breakeven",
                      "time_stop", "dyn_stops")


def _stop_key(stop) -> tuple:
    return ("stop", id(stop))


def stop_fields(stop, market, _memo: dict | None = None) -> dict:
    """The EngineConfig fields of ``stop`` on ``market`` (STOP_CONFIG_FIELDS: what
    ``prepare_run`` puts in the config for it), memoized in ``_memo`` as prepare_run does."""
    return memoized(_memo, _stop_key(stop), stop, lambda: _stop_fields(stop, market))


def remember_stop_fields(memo: dict, stop, fields: dict) -> None:
    """Make ``fields`` what ``stop_fields(stop, ..., memo)`` returns from now on (pb.sweep
    points a stop's ATR distances at its stop table: the same values, held once)."""
    memo[_stop_key(stop)] = (stop, fields)


def _execution_fields(exe: Execution | None, symbols: list[str]) -> dict:
    """The EngineConfig fields of an execution model (per-symbol arrays where it has them)."""
    ones = np.ones(len(symbols))
    return dict(exec_on=exe is not None,
                participation=exe.per_symbol("participation", symbols) if exe else ones,
                impact_k=exe.per_symbol("impact_k", symbols) if exe else ones * 0,
                stress=exe.per_symbol("stress", symbols) if exe else ones,
                carry_orders=bool(exe and exe.remainder == "carry"),
                base_half_spread=(exe.half_spreads(symbols) if exe
                                  else np.zeros(len(symbols))),
                exec_span=float(exe.span if exe else 1.0),
                exec_window=int(exe.window if exe else 1),
                range_exponent=float(exe.range_exponent if exe else 0.0),
                thin_exponent=float(exe.thin_exponent if exe else 0.0),
                max_widening=float(exe.max_widening if exe else 1.0))


class Prepared(NamedTuple):
    """A run ready for the engine (``prepare_run``): its inputs, and what its Result keeps."""
    mkt: MarketArrays
    ins: InstrumentArrays
    cfg: EngineConfig
    values: np.ndarray         # (T, N) target exposures (or quote notionals) per bar
    changes: int               # target changes (they size the record buffers)
    order_bars: np.ndarray     # engine/scan.py
    insts: list                # list[Instrument]
    targets: pd.DataFrame      # Result.targets
    settings: dict             # Result.settings
    caps: object               # the sizing rule's caps (perpbt.sizing) or None
    stats_only: bool


def prepare_run(market, strategy_or_targets, *, venue: str = "binance", margin: str = "isolated",
                leverage: "float | Mapping[str, float]" = 10, initial_capital: float = 10_000.0,
                stop: "StopLoss | BreakEven | TimeStop | float | list | None" = None, take: "TakeProfit | float | None" = None,
                intrabar: str = "pessimistic", stats_only: bool = False, funding: str = "strict",
                liquidation: str | None = None, execution: "Execution | bool | None" = None,
                sizing=None,
                instruments: Mapping[str, Instrument] | None = None,
                _memo: dict | None = None) -> Prepared:
    """Everything ``backtest`` does before the run, with the same arguments checked the same
    way: the engine's inputs and the Result's settings (``_memo``: pb.sweep's, shared by
    the runs of one sweep)."""
    preset = get_venue(venue)
    margin_mode = parse_enum(MarginMode, margin, "margin")
    if liquidation is None:  # the venue's own process where the engine has it, else takeover
        policy = preset.engine_policy()
        policy_name = LiqPolicy._fields[list(LiqPolicy).index(policy)]
    else:
        policy_name = liquidation
        policy = parse_enum(LiqPolicy, policy_name, "liquidation")
    if not initial_capital > 0:
        raise ValueError(f"initial_capital must be positive, got {initial_capital}")
    targets, source = memoized(_memo, ("frame", id(strategy_or_targets)), strategy_or_targets,
                               lambda: target_frame(market, strategy_or_targets))
    lev = memoized(_memo, ("leverage", id(leverage)), leverage,
                   lambda: _leverage_array(leverage, market))
    # pb.sweep runs its own (never mutated) target frames with the same few settings many
    # times: it passes a memo so each frame is converted and scanned once, and the
    # instruments packed once per venue and leverage
    if _memo is None:
        values, changes, order_bars = target_values(targets, source, lev, market, margin_mode)
    else:
        values, changes, order_bars, max_abs = memoized(
            _memo, ("targets", id(targets)), targets,
            lambda: _scanned_once(targets, source, market))
        over = margin_mode == MarginMode.isolated and memoized(
            _memo, ("over leverage", id(targets), lev.tobytes()), targets,
            lambda: bool(np.any(max_abs > lev * (1.0 + 1e-12))))
        if over:
            target_values(targets, source, lev, market, margin_mode)  # raises: bar, symbol
    insts, ins = memoized(
        _memo, ("instruments", venue, lev.tobytes(), id(instruments)), instruments,
        lambda: _packed_instruments(market, venue, instruments, preset, lev))
    if isinstance(strategy_or_targets, Strategy):  # the strategy's own rules, unless given
        stop = type(strategy_or_targets).default_stop if stop is None else stop
        take = type(strategy_or_targets).default_take if take is None else take
        if sizing is None:
            sizing = getattr(type(strategy_or_targets), "default_sizing", None)
    stops = stop_fields(stop, market, _memo)
    take_pct, take_trig = memoized(_memo, ("take", id(take)), take,
                                   lambda: exit_rule_arrays(take, TakeProfit, market.n_symbols))
    exe = memoized(_memo, ("execution", id(execution)), execution,
                   lambda: resolve_execution(execution))
    n_sym = market.n_symbols
    notional_targets = False
    caps = None  # Result builds the empty table on first access
    if sizing is not None:
        targets, notional_targets, caps = apply_sizing(
            sizing, targets, market, lev, stop_rules=stops, insts=insts, taker=ins.taker_fee,
            clearance=ins.clearance_fee, venue=preset.name,
            cross=margin_mode == MarginMode.cross)
        values, changes, order_bars = target_values(
            targets, source, lev, market, MarginMode.cross if notional_targets else margin_mode)
    cfg = EngineConfig(margin_mode=margin_mode, venue=int(preset.venue_code),
                       liq_policy=policy, intrabar=parse_enum(Intrabar, intrabar, "intrabar"),
                       funding_mode=parse_enum(FundingMode, funding, "funding"),
                       initial_capital=float(initial_capital), leverage=lev,
                       **{name: stops[name] for name in STOP_CONFIG_FIELDS},
                       take_pct=take_pct,
                       take_trigger=take_trig, record_bars=not stats_only,
                       **memoized(_memo, ("exec_fields", id(exe)), exe,
                                  lambda: _execution_fields(exe, market.symbols)),
                       notional_targets=notional_targets,
                       stop_frac_t=_target_stops(_memo, strategy_or_targets, market, source),
                       **memoized(_memo, ("exec_memo", id(exe), threading.get_ident()), exe,
                                  lambda: exec_memo(market, exe)),
                       quiet_stretch=QUIET_STRETCH)
    mkt = memoized(_memo, ("market", id(market)), market, lambda: market_arrays(market))
    settings = dict(venue=venue, margin=margin, leverage=leverage, liquidation=policy_name,
                    initial_capital=float(initial_capital), intrabar=intrabar,
                    stop=stop, take=take, execution=exe, sizing=sizing)
    return Prepared(mkt, ins, cfg, values, changes, order_bars, insts, targets, settings, caps,
                    stats_only)


def run_error(market, cnt: np.ndarray) -> Exception | None:
    """The error a run stopped on (``cnt[C_ERROR]``), naming the symbol and the bar; None
    when it ran to the end."""
    if cnt[C_ERROR] == ErrorCode.funding_uncovered:
        t, n = int(cnt[C_ERROR_BAR]), int(cnt[C_ERROR_SYMBOL])
        return ValueError(f"{market.symbols[n]}: a position is open at {_iso(market, t)} "
                          f"(bar {t}) outside the funding_rate coverage; pass funding='zero' "
                          f"to treat uncovered bars as paying no funding")
    if cnt[C_ERROR] == ErrorCode.capacity:
        return RuntimeError("perpbt bug: a record buffer was too small; please report this run")
    return None


def execute_run(market, prep: Prepared, _buffers: dict | None = None
                ) -> tuple[Buffers, np.ndarray, np.ndarray]:
    """Run the engine on ``prep``: (buffers, acct, cnt). A record buffer that overflows
    (partial fills and liquidations can outgrow the room sized from the targets) is
    retried with more room; a run that stops on an error raises it (``run_error``).
    ``_buffers``: pb.sweep's per-thread pool of buffers, state and scratch."""
    mkt, ins, cfg = prep.mkt, prep.ins, prep.cfg
    cross = cfg.margin_mode == MarginMode.cross
    for scale in (1, 8, 64, 1024):
        buf = reused_buffers(_buffers, buffer_sizes(
            prep.changes, mkt, not prep.stats_only, prep.insts, cross, scale))
        ps, scratch = reused_work(_buffers, mkt.open.shape[1], ins.tier_floor.shape[2])
        acct = np.zeros(N_ACCT)
        cnt = np.zeros(N_CNT, dtype=np.int64)
        run_nb(mkt, ins, cfg, prep.values, prep.order_bars, ps, acct, cnt, buf, scratch)
        if cnt[C_ERROR] != ErrorCode.capacity:
            break
    error = run_error(market, cnt)
    if error is not None:
        raise error
    return buf, acct, cnt


def backtest(market, strategy_or_targets, *, venue: str = "binance", margin: str = "isolated",
             leverage: "float | Mapping[str, float]" = 10, initial_capital: float = 10_000.0,
             stop: "StopLoss | BreakEven | TimeStop | float | list | None" = None, take: "TakeProfit | float | None" = None,
             intrabar: str = "pessimistic", stats_only: bool = False, funding: str = "strict",
             liquidation: str | None = None, execution: "Execution | bool | None" = None,
             sizing=None,
             instruments: Mapping[str, Instrument] | None = None,
             _memo: dict | None = None, _buffers: dict | None = None) -> Result:
    """Backtest target exposures on ``market``.

    ``leverage`` is the exchange setting (initial margin = notional / leverage), not the
    position size; ``initial_capital`` in quote; ``stop``/``take`` as fractions of the average
    entry or StopLoss/TakeProfit rules; ``funding="zero"`` lets positions sit on bars without
    funding data; ``stats_only`` keeps the equity curve and the records, and skips every
    other per-bar output (for sweeps). ``liquidation``: "takeover", "ioc", "tiered" or
    "multibar" (default: the venue's own process). ``execution``: None (frictionless fills),
    True (the shipped model) or a ``pb.Execution`` (spread, impact, participation cap).
    ``sizing``: a perpbt.sizing rule (EquityFraction, FixedNotional, RiskPerTrade,
    VolTarget, Kelly) sizing each entry of the targets' direction; a Strategy's
    ``default_stop``, ``default_take`` and ``default_sizing`` apply unless given here.
    """
    prep = prepare_run(market, strategy_or_targets, venue=venue, margin=margin,
                       leverage=leverage, initial_capital=initial_capital, stop=stop, take=take,
                       intrabar=intrabar, stats_only=stats_only, funding=funding,
                       liquidation=liquidation, execution=execution, sizing=sizing,
                       instruments=instruments, _memo=_memo)
    buf, acct, cnt = execute_run(market, prep, _buffers)
    res = Result(market, prep.targets, prep.settings, buf, acct, cnt, prep.insts, stats_only,
                 engine=(prep.ins, prep.cfg))
    res._sizing_caps = prep.caps  # sizes above the leverage, capped there (perpbt.sizing)
    return res
