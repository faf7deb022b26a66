"""Market data: CSV files, synthetic scenarios, the ccxt fetcher and its Parquet cache.

Only ``perpbt.data.fetch`` may import ccxt; it is imported on first use of ``fetch`` (the
module is callable: ``perpbt.data.fetch(...)`` is ``perpbt.data.fetch.fetch(...)``).
"""

from perpbt.data.csv import read_csv
from perpbt.data.load import load
from perpbt.data.scenarios import default_market, scenario
from perpbt.data.store import CacheError, list_cache
from perpbt.market import CoverageWarning

__all__ = ["read_csv", "scenario", "default_market", "CoverageWarning", "fetch", "load",
           "CacheError", "list_cache"]


def __getattr__(name):
    if name == "fetch":  # lazy: ccxt is imported only when something is fetched
        import importlib

        return importlib.import_module("perpbt.data.fetch")
    raise AttributeError(f"module 'perpbt.data' has no attribute {name!r}")
