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
