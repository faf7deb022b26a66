"""Engine inputs, mutable state and buffers as NamedTuples of numpy arrays (numba friendly).

Shapes: T bars, N symbols, D dated tier tables per symbol, K tiers per table.
Quantities in base units (signed: + long, - short), prices and money in quote.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


QUIET_BLOCK = 64  # bars per block of MarketArrays.block_range
QUIET_SUBBLOCK = 8  # bars per block of MarketArrays.subblock_range


class MarketArrays(NamedTuple):
    time_ms: np.ndarray        # (T,) int64 bar opens
    open: np.ndarray           # (T, N) float64, last price
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    mark_open: np.ndarray
    mark_high: np.ndarray
    mark_low: np.ndarray
    mark_close: np.ndarray
    funding_rate: np.ndarray   # NaN = no settlement on this bar
    funding_covered: np.ndarray  # (T, N) bool
    settle_bars: np.ndarray    # (S + 1,) int64 bars with a settlement or a coverage hole in
                               # any symbol, ascending, then T as a sentinel
    block_range: np.ndarray    # (T // QUIET_BLOCK, N, 4) per block of QUIET_BLOCK bars: min
                               # low, max high, min mark_low, max mark_high
    subblock_range: np.ndarray  # (T // QUIET_SUBBLOCK, N, 4) the same per QUIET_SUBBLOCK bars


class InstrumentArrays(NamedTuple):
    lot_size: np.ndarray       # (N,) base units, 0 = no rounding
    min_notional: np.ndarray   # (N,) quote
    taker_fee: np.ndarray      # (N,) fraction of notional
    clearance_fee: np.ndarray  # (N,) fraction of notional
    table_since: np.ndarray    # (N, D) int64 ms; unused slots = int64 max
    tier_count: np.ndarray     # (N, D) int64
    tier_floor: np.ndarray     # (N, D, K)
    tier_cap: np.ndarray
    tier_mmr: np.ndarray
    tier_amt: np.ndarray
    max_notional: np.ndarray   # (N, D) largest notional whose tier allows the run's leverage


class EngineConfig(NamedTuple):
    margin_mode: int           # enums.MarginMode
    venue: int                 # enums.Venue: liquidation formula and trigger
    liq_policy: int            # enums.LiqPolicy (the core engine implements takeover)
    intrabar: int              # enums.Intrabar
    funding_mode: int          # enums.FundingMode
    initial_capital: float     # quote
    leverage: np.ndarray       # (N,) exchange leverage setting per symbol
    stop_pct: np.ndarray       # (N,) stop distance from average entry, fraction; NaN = none
    stop_trigger: int          # enums.PriceTrigger
    take_pct: np.ndarray       # (N,) take-profit distance, fraction; NaN = none
    take_trigger: int
    record_bars: bool          # False = stats-only: skip (T, N) outputs
    exec_on: bool              # the execution model is on (off: frictionless fills)
    participation: np.ndarray  # (N,) max fraction of a bar's volume filled in that bar
    impact_k: np.ndarray       # (N,) square-root impact constant
    stress: np.ndarray         # (N,) half-spread multiplier of forced (liquidation) orders
    carry_orders: bool         # a normal order's unfilled remainder carries to later opens
    base_half_spread: np.ndarray  # (N,) fraction of price (engine/execution.py)
    exec_span: float           # span of the range and volume EWMs, bars
    exec_window: int           # bars the EWMs look back
    range_exponent: float
    thin_exponent: float
    max_widening: float
    stop_dist_t: np.ndarray    # (T, N) stop distance in price per fill bar (ATR rules) or (0, N)
    trail: bool                # the stop trails the best price since entry
    breakeven: np.ndarray      # (N,) favourable move (fraction of entry) that moves the stop
                               # to the entry price; NaN = none
    time_stop: np.ndarray      # (N,) int64 bars after the entry bar to exit at the open; -1 none
    dyn_stops: bool            # trail or break-even: levels move at segment ends
    notional_targets: bool     # targets are quote notionals (FixedNotional), not exposures
    stop_frac_t: np.ndarray    # (T, N) Targets.stop per fill bar (fraction of entry; NaN: the
                               # rule's distance) or (0, N)
    exec_state: np.ndarray     # (T, N, 2) memo of the execution model's (range_ewm,
                               # volume_ewm) per bar, valid where exec_done; (0, N, 2) when off
    exec_done: np.ndarray      # (T, N) bool
    quiet_stretch: bool        # run quiet bars through loop.quiet_stretch_nb (False: every bar
                               # through the full step list; the results are the same)


class PositionState(NamedTuple):
    qty: np.ndarray            # (N,) signed base units
    entry: np.ndarray          # (N,) average entry price
    margin: np.ndarray         # (N,) isolated margin, quote (0 in cross)
    fees_outside: np.ndarray   # (N,) open fees paid from outside the isolated margin
    last_target: np.ndarray    # (N,) last non-NaN target exposure (NaN = none yet)
    liq_price: np.ndarray      # (N,) trigger liquidation price, without fees
    liq_price_fees: np.ndarray  # (N,)
    stop_level: np.ndarray     # (N,) NaN = none
    take_level: np.ndarray
    trade_id: np.ndarray       # (N,) int64 index of the open trade record, -1 = none
    table: np.ndarray          # (N,) int64 dated tier table in force
    tier: np.ndarray           # (N,) int64 tier of the notional at mark at the last close
    min_dist: np.ndarray       # (N,) closest adverse-mark distance to LP of the open trade
    cap_bar: np.ndarray        # (N,) int64 bar of cap_used
    cap_used: np.ndarray       # (N,) base units filled in cap_bar (participation cap)
    pending: np.ndarray        # (N,) target position of a carried order remainder, NaN none
    exit_work: np.ndarray      # (N,) int64 FillReason of a stop/take still working, -1 none
    liq_rec: np.ndarray        # (N,) int64 liquidation record of a multibar close, -1 none
    liq_bp: np.ndarray         # (N,) its bankruptcy price
    partial_bar: np.ndarray    # (N,) int64 bar of the last partial (ioc) liquidation, -1 none
    best: np.ndarray           # (N,) best price since entry on the stop's trigger series
    stop_dist: np.ndarray      # (N,) stop distance in price (NaN = none), set at each fill
    entry_bar: np.ndarray      # (N,) int64 bar the open trade started
    stop_frac: np.ndarray      # (N,) the targets' stop fraction in force (NaN: none)


class Buffers(NamedTuple):
    fills: np.ndarray          # fill_dt
    orders: np.ndarray         # order_dt
    funding: np.ndarray        # funding_dt
    liqs: np.ndarray           # liq_dt
    trades: np.ndarray         # trade_dt
    equity: np.ndarray         # (T,) the one per-bar output of the loop
    states: np.ndarray         # state_dt: per-symbol state and the wallet on bars where they
                               # changed; writing (T, N) arrays every bar costs more than the
                               # loop itself (wallet, margin used and ratio: engine/outputs.py)


class Scratch(NamedTuple):
    """Work arrays of the loop, allocated once in Python (kernels run without NRT)."""

    last_path: np.ndarray      # (N, 4) O, X1, X2, C of last
    mark_path: np.ndarray      # (N, 4) the same of mark
    marks: np.ndarray          # (N,) marks at the current bar-time
    kinks: np.ndarray          # (N * K + 1,) bar-times of tier-floor crossings
    want: np.ndarray           # (N,) target positions of this open's orders
    has_order: np.ndarray      # (N,) bool
    bands: np.ndarray          # (N, 4) quiet band per position: last lo/hi, mark lo/hi
    refs: np.ndarray           # (N,) last price at a liquidation's bar-time
    bps: np.ndarray            # (N,) bankruptcy prices of a liquidation event
    rem: np.ndarray            # (N,) quantities left in a liquidation plan
    plan_n: np.ndarray         # (N * (K + 1),) int64 symbol of each planned forced fill
    plan_q: np.ndarray         # quantity (base units, absolute)
    plan_p: np.ndarray         # average price
    order: np.ndarray          # (N,) int64 symbols of a cross liquidation, largest first
    liq_work: np.ndarray       # (4, N) trigger LP, LP with fees, upnl, user loss at full


def new_scratch(n_symbols: int, n_tiers: int) -> Scratch:
    return Scratch(np.zeros((n_symbols, 4)), np.zeros((n_symbols, 4)), np.zeros(n_symbols),
                   np.zeros(n_symbols * n_tiers + 1), np.zeros(n_symbols),
                   np.zeros(n_symbols, dtype=np.bool_), np.zeros((n_symbols, 4)),
                   np.zeros(n_symbols), np.zeros(n_symbols), np.zeros(n_symbols),
                   np.zeros(n_symbols * (n_tiers + 1), dtype=np.int64),
                   np.zeros(n_symbols * (n_tiers + 1)), np.zeros(n_symbols * (n_tiers + 1)),
                   np.zeros(n_symbols, dtype=np.int64), np.zeros((4, n_symbols)))


# account scalars, indices into the float64 ``acct`` array
A_WALLET = 0
A_INSURANCE = 1       # insurance-fund ledger (quote, + = fund gained)
A_CLEARANCE = 2       # clearance fees collected by the venue
A_BUST = 3            # 1.0 once the account is bust
A_EQUITY_OPEN = 4     # E used for sizing at this open
A_MAX_DD = 5          # maximum drawdown of the equity at each close (fraction), written at
                      # the end of the run: engine/stats.py drawdown_step_nb
N_ACCT = 6

# counters, indices into the int64 ``cnt`` array
C_FILLS = 0
C_ORDERS = 1
C_FUNDING = 2
C_LIQS = 3
C_TRADES = 4
C_EVENTS = 5          # liquidation event ids
C_SETTLEMENTS = 6     # settlements applied to open positions
C_STOPS = 7           # stop-loss and take-profit fills
C_TIER_CHANGES = 8    # changes of an open position's tier at the close
C_ERROR = 9           # enums.ErrorCode
C_ERROR_BAR = 10
C_ERROR_SYMBOL = 11
C_BUST_BAR = 12
C_STATES = 13
C_WORKING = 14        # symbols with a carried order, a working exit or a multibar close
C_LIQ_ACTIVE = 15     # positions inside a multibar forced close
C_QUIET_BARS = 16     # bars run through loop.quiet_stretch_nb
N_CNT = 17


# initial value of each PositionState field (floats and int64 kept apart: the state is two
# blocks of rows, one allocation each)
_POSITION_INIT = dict(
    qty=0.0, entry=0.0, margin=0.0, fees_outside=0.0, last_target=np.nan, liq_price=0.0,
    liq_price_fees=0.0, stop_level=np.nan, take_level=np.nan, trade_id=-1, table=0, tier=-1,
    min_dist=np.inf, cap_bar=-1, cap_used=0.0, pending=np.nan, exit_work=-1, liq_rec=-1,
    liq_bp=0.0, partial_bar=-1, best=np.nan, stop_dist=np.nan, entry_bar=-1, stop_frac=np.nan)
assert tuple(_POSITION_INIT) == PositionState._fields
_INT_NAMES = [k for k, v in _POSITION_INIT.items() if isinstance(v, int)]
_FLOAT_NAMES = [k for k, v in _POSITION_INIT.items() if not isinstance(v, int)]
_FLOAT_INIT = np.array([_POSITION_INIT[k] for k in _FLOAT_NAMES])
_INT_INIT = np.array([_POSITION_INIT[k] for k in _INT_NAMES], dtype=np.int64)
# each field: (in the int block?, its row there)
_POSITION_ROWS = [(k in _INT_NAMES, (_INT_NAMES if k in _INT_NAMES else _FLOAT_NAMES).index(k))
                  for k in PositionState._fields]
_POSITION_TEMPLATES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def position_template(n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """The initial (floats, ints) blocks of a position state of ``n_symbols`` symbols (shared:
    copy before writing)."""
    template = _POSITION_TEMPLATES.get(n_symbols)
    if template is None:
        template = (np.repeat(_FLOAT_INIT[:, None], n_symbols, axis=1),
                    np.repeat(_INT_INIT[:, None], n_symbols, axis=1))
        _POSITION_TEMPLATES[n_symbols] = template
    return template


def new_position_state(n_symbols: int) -> PositionState:
    """Every field an (N,) C-contiguous row of one of two blocks (float64, int64), set to its
    initial value (_POSITION_INIT): two copies of a template kept per N."""
    template = position_template(n_symbols)
    floats, ints = template[0].copy(), template[1].copy()
    return PositionState(*[ints[i] if is_int else floats[i] for is_int, i in _POSITION_ROWS])


def reset_position_state(ps: PositionState) -> PositionState:
    """``ps`` (from new_position_state) set back to the initial values in place: its two
    blocks are overwritten from the template (a sweep thread reuses one state run after
    run instead of building 24 row views each time)."""
    n_symbols = ps.qty.shape[0]
    floats, ints = ps.qty.base, ps.trade_id.base
    template = position_template(n_symbols)
    np.copyto(floats, template[0])
    np.copyto(ints, template[1])
    return ps


def reset_scratch(scratch: Scratch) -> Scratch:
    """Every work array of ``scratch`` zeroed in place, as new_scratch gives them."""
    for arr in scratch:
        arr.fill(0)
    return scratch
