"""Shared fixtures: the location of ../shared/data and hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("PERPBT_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; skips with a reason when absent, fails under CI=true."""
    path = _shared_data_dir()
    if not (path / "binance_usdm").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared data directory {path} is missing")
        pytest.skip(f"real data not present at {path} (set PERPBT_SHARED_DATA to run)")
    return path


@pytest.fixture(scope="session", autouse=True)
def warm_kernels():
    """Compile (or load from NUMBA_CACHE_DIR) the engine once per session, both margin modes,
    so no test pays the compile inside its own timing."""
    import numpy as np
    import pandas as pd

    import perpbt as pb

    market = pb.data.default_market().slice(None, "2021-01-03")
    targets = pd.DataFrame(np.nan, index=market.index, columns=list(market.symbols))
    targets.iloc[1] = 1.0
    for margin in ("isolated", "cross"):
        pb.backtest(market, targets, margin=margin, leverage=5, stop=0.02, take=0.05)
