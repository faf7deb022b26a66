"""Record dtypes written by the engine (structured numpy arrays, one row per event).

Units: prices in quote per base unit, quantities in base units (signed where stated),
money in quote currency, ``s`` is bar-time in [0, 3] (DESIGN section 4: O -> X1 -> X2 -> C).
"""

from __future__ import annotations

import numpy as np

fill_dt = np.dtype([
    ("bar", np.int64),
    ("symbol", np.int64),
    ("s", np.float64),            # bar-time of the fill (0 = the open)
    ("qty", np.float64),          # signed change of the position, base units
    ("price", np.float64),
    ("fee", np.float64),          # trading fee paid (quote); clearance fees are not here
    ("realized", np.float64),     # realized PnL of the reducing part, before fees (quote)
    ("reason", np.int64),         # enums.FillReason
    ("beyond_bankruptcy", np.int64),  # 1 when a non-liquidation fill lost more than the margin
    ("trade_id", np.int64),
    ("position_after", np.float64),
], align=True)

order_dt = np.dtype([
    ("bar", np.int64),
    ("symbol", np.int64),
    ("requested_qty", np.float64),  # signed increase asked for, base units
    ("filled_qty", np.float64),     # signed increase executed after cuts and rounding
    ("status", np.int64),           # enums.OrderStatus
], align=True)

funding_dt = np.dtype([
    ("bar", np.int64),
    ("symbol", np.int64),
    ("qty", np.float64),          # signed position held at the settlement, base units
    ("mark", np.float64),         # mark_open of the settlement bar
    ("rate", np.float64),         # summed rate of the settlements on this bar (fraction)
    ("payment", np.float64),      # quote, positive = received
], align=True)

liq_dt = np.dtype([
    ("event_id", np.int64),       # a cross event closing N positions gives N rows sharing it
    ("bar", np.int64),
    ("symbol", np.int64),
    ("s", np.float64),            # bar-time of the trigger
    ("trigger_mark", np.float64),
    ("liq_price", np.float64),    # without fees, as tracked before the trigger
    ("liq_price_fees", np.float64),
    ("bankruptcy_price", np.float64),
    ("qty", np.float64),          # signed position closed, base units
    ("avg_fill", np.float64),
    ("clearance_fee", np.float64),
    ("user_loss", np.float64),    # quote: isolated margin, or the cross equity share
    ("insurance_change", np.float64),
    ("upnl_at_trigger", np.float64),
    ("bars", np.int64),           # bars the forced close took (1 under takeover)
    ("policy", np.int64),         # enums.LiqPolicy
    ("full", np.int64),           # 1: the whole position went (user keeps zero of its margin
                                  # or of the cross equity); 0: ioc/tiered stopped once the
                                  # account was compliant again and the user keeps the rest
    ("taken_over", np.float64),   # base units (absolute) the venue took at the bankruptcy price
    ("trade_id", np.int64),
], align=True)

trade_dt = np.dtype([
    ("trade_id", np.int64),
    ("symbol", np.int64),
    ("side", np.int64),           # +1 long, -1 short
    ("entry_bar", np.int64),
    ("exit_bar", np.int64),       # -1 while open
    ("entry_price", np.float64),  # average entry
    ("exit_price", np.float64),   # average exit (NaN while open)
    ("qty", np.float64),          # largest absolute size held, base units
    ("entry_value", np.float64),  # sum of qty * price of increases
    ("closed_qty", np.float64),
    ("exit_value", np.float64),
    ("pnl", np.float64),          # realized PnL before fees and funding
    ("fees", np.float64),
    ("funding", np.float64),      # received (+) / paid (-)
    ("liq_price", np.float64),    # at entry, without fees
    ("liq_price_fees", np.float64),
    ("stop_price", np.float64),   # NaN without a stop
    ("stop_beyond_liq", np.int64),
    ("beyond_bankruptcy", np.int64),
    ("exit_reason", np.int64),    # enums.FillReason of the closing fill, -1 while open
    ("liquidated", np.int64),
    ("min_liq_distance", np.float64),  # min over bars of the adverse mark's distance to LP
], align=True)

state_dt = np.dtype([
    ("bar", np.int64),            # the per-symbol state at this bar's close, written only on
    ("symbol", np.int64),         # bars where it changed (Result forward-fills it)
    ("qty", np.float64),          # signed position, base units
    ("entry", np.float64),        # average entry price (NaN when flat)
    ("liq_price", np.float64),
    ("liq_price_fees", np.float64),
    ("margin", np.float64),       # isolated margin, quote (0 in cross)
    ("wallet", np.float64),       # the account's wallet balance, quote
], align=True)
