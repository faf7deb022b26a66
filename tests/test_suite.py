"""Benchmark suites (perpbt.suite): TOML validation, the grid, stats, baseline, CLI."""

from __future__ import annotations

import math
import re
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import perpbt as pb
from perpbt import suite as S
from perpbt.cli import app, load_strategy_class, resolve_strategy_path

# 2 datasets x (2 ma_cross + 1 breakout) x 2 margins x 2 venues x 2 leverages = 48 runs
SMALL = {
    "suite": {"name": "small", "margins": ["isolated", "cross"], "venues": ["binance", "bybit"],
              "leverage": [3, 5], "initial_capital": 5_000.0},
    "datasets": {"crash": {"scenario": "flash_crash", "seed": 3},
                 "regime": {"scenario": "funding_regime", "seed": 7, "until": "2021-02-15"}},
    "strategies": {"ma": {"strategy": "ma_cross", "fast": [12, 24], "slow": 48},
                   "breakout": {"lookback": 24}},
}

SMALL_TOML = """
[suite]
name = "cli"
margins = ["isolated", "cross"]

[datasets.crash]
scenario = "flash_crash"
until = "2021-02-01"

[strategies.ma_cross]
fast = [12, 24]
slow = [48, 96]
"""


@pytest.fixture(scope="module")
def small():
    return S.run_suite(SMALL, progress=False)


def _with(path: tuple, value) -> dict:
    """A deep copy of SMALL with one key set (value None deletes it)."""
    import copy

    doc = copy.deepcopy(SMALL)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return doc


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("path, value, words", [
    (("suite", "margin"), ["cross"], ["[suite]", "'margin'", "did you mean 'margins'"]),
    (("suite", "venues"), ["binanse"], ["[suite]", "venues", "'binanse'"]),
    (("suite", "leverage"), [0.5], ["[suite]", "leverage"]),
    (("datasets", "crash", "scenaro"), "x", ["[datasets.crash]", "'scenaro'"]),
    (("datasets", "crash", "scenario"), "flash_crsh", ["[datasets.crash]", "scenario",
                                                       "'flash_crsh'", "'flash_crash'"]),
    (("datasets", "crash", "params"), {"crash_att": 5}, ["[datasets.crash.params]",
                                                         "'crash_att'"]),
    (("strategies", "ma", "strategy"), "ma_crosss", ["[strategies.ma]", "strategy",
                                                     "'ma_crosss'"]),
    (("strategies", "ma", "fastt"), [1, 2], ["[strategies.ma]", "'fastt'", "'fast'"]),
    (("strategies", "bogus"), {}, ["[strategies.bogus]", "'bogus'"]),
    (("unknown_table",), {}, ["top level", "'unknown_table'"]),
    (("datasets",), None, ["[datasets]", "missing"]),
])
def test_suite_errors_name_table_and_key_before_anything_runs(monkeypatch, path, value, words):
    def boom(*args, **kwargs):
        raise AssertionError("ran although the suite is invalid")

    monkeypatch.setattr(S, "run_one", boom)
    monkeypatch.setattr(S.DatasetSpec, "load", boom)
    with pytest.raises(ValueError) as info:
        S.run_suite(_with(path, value), progress=False)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_toml_file_errors_name_the_table(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL_TOML + "\n[datasets.real]\ncsv = 'x'\nsymbol = ['BTCUSDT']\n")
    with pytest.raises(ValueError, match=r"\[datasets.real\] unknown key 'symbol'.*'symbols'"):
        S.parse_suite(path)
    path.write_text("[suite\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        S.parse_suite(path)


def test_bad_parameter_value_is_caught_before_running():
    doc = _with(("strategies", "ma", "slow"), 6)  # fast 12 > slow 6 is only found in signals
    doc["strategies"]["ma"]["fast"] = ["x"]
    with pytest.raises(ValueError, match=r"\[strategies.ma\]"):
        S.parse_suite(doc)


# ---------------------------------------------------------------------------- the grid
def test_row_count_is_the_product_of_the_axes(small):
    spec = S.parse_suite(SMALL)
    assert spec.n_runs == 2 * (2 + 1) * 2 * 2 * 2 == 48
    rows = small.rows
    assert len(rows) == 48 and rows["run_id"].is_unique
    assert len(small.curves) == 48
    assert rows.groupby(["dataset", "strategy"]).size().to_dict() == {
        ("crash", "breakout"): 8, ("crash", "ma"): 16, ("regime", "breakout"): 8,
        ("regime", "ma"): 16}
    assert sorted(rows["fast"].dropna().unique()) == [12, 24]
    assert list(rows.columns[:9]) == ["run_id", "dataset", "strategy", "fast", "slow",
                                      "lookback", "margin", "venue", "leverage"]
    assert list(rows.columns[9:]) == small.metrics == list(
        pb.backtest(pb.data.scenario("flash_crash"),
                    load_strategy_class(*resolve_strategy_path("breakout"))(),
                    leverage=3).stats().index)
    assert small.grids == {"ma": ["fast"], "breakout": []}


def test_a_run_equals_a_direct_backtest(small):
    row = small.rows.set_index("run_id").loc[
        "crash|ma(fast=24,slow=48)|cross|bybit|3x"]
    market = pb.data.scenario("flash_crash", seed=3)
    strat = load_strategy_class(*resolve_strategy_path("ma_cross"))(fast=24, slow=48)
    direct = pb.backtest(market, strat, venue="bybit", margin="cross", leverage=3,
                         initial_capital=5_000.0)
    for key, value in direct.stats().items():
        got = row[key]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got), key
        else:
            assert got == value, (key, got, value)
    curves = small.curves["crash|ma(fast=24,slow=48)|cross|bybit|3x"]
    np.testing.assert_array_equal(curves.equity.to_numpy(), direct.equity["equity"].to_numpy())
    assert len(curves.liquidations) == int(direct.stats()["liquidations"])
    assert (curves.drawdown >= 0).all()


# ---------------------------------------------------------------------------- baseline
def test_baseline_finds_a_metric_changed_by_hand(small, tmp_path):
    path = small.to_parquet(tmp_path / "base.parquet")
    base = pd.read_parquet(path)
    assert len(S.compare_to_baseline(small, base)) == 0
    rid = "regime|breakout(lookback=24)|isolated|binance|5x"
    old = float(base.loc[base["run_id"] == rid, "sharpe"].iloc[0])
    base.loc[base["run_id"] == rid, "sharpe"] = old - 0.25
    base.loc[base["run_id"] == rid, "trades"] += 3
    base = base[base["run_id"] != "crash|ma(fast=12,slow=48)|cross|bybit|5x"]
    moved = S.compare_to_baseline(small, base).set_index(["run_id", "metric"])
    assert set(moved.index) == {(rid, "sharpe"), (rid, "trades"),
                                ("crash|ma(fast=12,slow=48)|cross|bybit|5x", "(new run)")}
    sharpe = moved.loc[(rid, "sharpe")]
    assert sharpe["old"] == pytest.approx(old - 0.25) and sharpe["new"] == pytest.approx(old)
    assert sharpe["abs_change"] == pytest.approx(0.25)
    assert sharpe["rel_change"] == pytest.approx(0.25 / abs(old - 0.25))
    assert moved.loc[(rid, "trades"), "abs_change"] == -3
    # a change inside the tolerance is not reported
    base2 = pd.read_parquet(path)
    base2.loc[0, "final_equity"] *= 1 + 1e-9
    assert len(S.compare_to_baseline(small, base2)) == 0


# ---------------------------------------------------------------------------- CLI
def test_cli_suite_writes_parquet_and_html_and_reports_moves(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(textwrap.dedent(SMALL_TOML))
    out, html_path = tmp_path / "r.parquet", tmp_path / "r.html"
    runner = CliRunner()
    res = runner.invoke(app, ["suite", str(toml), "--out", str(out), "--report",
                              str(html_path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "8 runs" in res.output and "ma_cross(fast=12, slow=48)" in res.output
    frame = pd.read_parquet(out)
    assert len(frame) == 8 and {"sharpe", "liquidations", "margin"} <= set(frame.columns)
    page = html_path.read_text()
    assert page.count('class="pb-plot"') == 3  # equity, heatmap (fast x slow), funding
    assert 'id="pb-heatmap-ma_cross"' in page
    assert not re.search(r"<script[^>]*\bsrc=", page)  # plotly.js inlined: works offline
    # a hand-edited baseline: the CLI names the run, metric and change
    frame.loc[frame["run_id"] == frame["run_id"].iloc[0], "max_drawdown"] += 0.1
    frame.to_parquet(tmp_path / "old.parquet")
    res = runner.invoke(app, ["suite", str(toml), "--baseline", str(tmp_path / "old.parquet"),
                              "--report", str(html_path), "-q"])
    assert res.exit_code == 0, res.output
    assert "1 metric change(s)" in res.output and "max_drawdown" in res.output
    assert 'id="pb-baseline-table"' in html_path.read_text()


def test_cli_suite_errors_exit_1(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(SMALL_TOML.replace('scenario = "flash_crash"', 'scenario = "nope"'))
    res = CliRunner().invoke(app, ["suite", str(toml)])
    assert res.exit_code == 1
    assert "[datasets.crash] scenario" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["suite", "--help"])
    for option in ("--out", "--report", "--baseline", "--rtol", "--atol", "--quiet"):
        assert option in res.output
