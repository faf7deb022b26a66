"""Market data: CSV files, synthetic scenarios (and, later, the ccxt fetcher and cache).

Only ``perpbt.data.fetch`` may import ccxt.
"""

from perpbt.data.csv import read_csv
from perpbt.data.scenarios import default_market, scenario
from perpbt.market import CoverageWarning

__all__ = ["read_csv", "scenario", "default_market", "CoverageWarning"]
