"""perpbt: backtesting for leveraged perpetual futures.

Isolated and cross margin, maker/taker fees, funding on the mark price, tiered maintenance
margin and liquidation on the mark price, in one numba bar loop.
"""

import importlib

from perpbt import margin
from perpbt.backtest import backtest
from perpbt.compare import Comparison, compare
from perpbt.dask_executor import DaskExecutor
from perpbt.execution import Execution
from perpbt.instruments import Instrument, TierTable, load_tiers
from perpbt.market import Market
from perpbt.result import Result
from perpbt.risk import BreakEven, StopLoss, TakeProfit, TimeStop
from perpbt.sizing import EquityFraction, FixedNotional, Kelly, RiskPerTrade, VolTarget
from perpbt.strategy import Strategy, Targets
from perpbt.sweep import LocalExecutor, ProcessExecutor, sweep

__all__ = ["backtest", "data", "margin", "Execution", "Instrument", "TierTable", "load_tiers",
           "Market", "Result", "StopLoss", "TakeProfit", "BreakEven", "TimeStop", "Strategy",
           "Targets", "EquityFraction", "FixedNotional", "Kelly", "RiskPerTrade", "VolTarget",
           "sweep", "LocalExecutor", "ProcessExecutor", "compare", "Comparison", "DaskExecutor"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "data":  # CSV, scenarios, ccxt and the Parquet cache load on first use
        return importlib.import_module("perpbt.data")
    raise AttributeError(f"module 'perpbt' has no attribute {name!r}")
