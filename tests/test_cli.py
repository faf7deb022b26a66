"""The ``perpbt`` command line (typer CliRunner): runs, strategy lookup and error messages."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from perpbt.cli import app, parse_value

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def text(result) -> str:
    """The output with rich's error-box borders removed and whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def assert_stats_table(result) -> None:
    assert result.exit_code == 0, result.output
    for key in ("total_return", "liquidations", "max_drawdown", "final_equity"):
        assert key in text(result)
    assert " trades, " in text(result) and " liquidation" in text(result)


def test_run_ma_cross_on_the_embedded_market():
    result = invoke("run", "ma_cross", "--leverage", "5")
    assert_stats_table(result)
    assert "MaCross(fast=24, slow=96, exposure=1.0)" in text(result)
    assert "leverage 5x" in text(result)
    assert "embedded synthetic market" in text(result)


def test_run_csv_on_shared_data(shared_data):
    result = invoke("run", "ma_cross", "--csv", str(shared_data / "binance_usdm"),
                    "--symbols", "BTCUSDT,ETHUSDT", "--since", "2022-01-01",
                    "--until", "2022-07-01", "--leverage", "5", "--stop", "0.05")
    assert_stats_table(result)
    assert "BTC/USDT:USDT" in text(result) and "ETH/USDT:USDT" in text(result)
    assert "2022-01-01 00:00" in text(result)


def test_param_override_reaches_the_strategy():
    result = invoke("run", "ma_cross", "--param", "fast=5", "-p", "slow=20")
    assert_stats_table(result)
    assert "MaCross(fast=5, slow=20, exposure=1.0)" in text(result)


def test_breakout_with_stop_take_and_cross_margin():
    result = invoke("run", "breakout", "--margin", "cross", "--stop", "0.02", "--take", "0.05",
                    "--until", "2021-07-01", "--venue", "okx")
    assert_stats_table(result)
    assert "Breakout(lookback=48, exposure=1.0)" in text(result)
    assert "okx, cross margin" in text(result)


def test_unknown_strategy_name_is_an_error_with_a_hint():
    result = invoke("run", "ma_crss")
    assert result.exit_code != 0
    assert "unknown strategy 'ma_crss'" in text(result)
    assert "did you mean 'ma_cross'" in text(result)


def test_unknown_param_is_an_error_with_a_hint():
    result = invoke("run", "ma_cross", "--param", "fst=5")
    assert result.exit_code != 0
    assert "no parameter 'fst'" in text(result) and "'fast'" in text(result)


@pytest.mark.parametrize("item", ["fast", "=5", "fast=", "2x=1"])
def test_malformed_param_is_an_error(item):
    result = invoke("run", "ma_cross", "--param", item)
    assert result.exit_code != 0
    assert "key=value" in text(result)


def test_param_of_the_wrong_type_is_an_error():
    result = invoke("run", "breakout", "--param", "lookback=abc")
    assert result.exit_code != 0
    assert "expects an int" in text(result)


@pytest.mark.parametrize("args, message", [
    (("--margin", "crosss"), "not a margin mode"),
    (("--venue", "bybt"), "did you mean 'bybit'"),
    (("--stop", "2"), "write 0.02 for 2 %"),
    (("--take", "0"), "not a fraction"),
    (("--leverage", "0.5"), "leverage must be >= 1"),
    (("--capital", "-1"), "capital must be positive"),
    (("--timeframe", "4h"), "1h bars only"),
])
def test_bad_options_are_errors(args, message):
    result = invoke("run", "ma_cross", *args)
    assert result.exit_code == 2
    assert message in text(result)


def test_engine_errors_exit_nonzero_with_the_message():
    result = invoke("run", "ma_cross", "--leverage", "500")
    assert result.exit_code == 1
    assert "above the instrument's maximum" in text(result)


def test_unknown_symbol_is_an_error():
    result = invoke("run", "ma_cross", "--symbols", "NOPE")
    assert result.exit_code == 1
    assert "'NOPE' is not in this market" in text(result)


STRATEGY_FILE = textwrap.dedent("""
    import perpbt as pb

    class AlwaysLong(pb.Strategy):
        exposure: float = 0.5

        def signals(self, m):
            return pb.Targets(long=m.close > 0, exposure=self.exposure)
""")


def test_strategy_from_a_file_path(tmp_path):
    path = tmp_path / "always_long.py"
    path.write_text(STRATEGY_FILE)
    result = invoke("run", str(path), "--param", "exposure=2", "--until", "2021-03-01")
    assert_stats_table(result)
    assert "AlwaysLong(exposure=2.0)" in text(result)


def test_file_with_two_strategies_needs_a_class_name(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(STRATEGY_FILE + "\n\nclass Other(AlwaysLong):\n    pass\n")
    result = invoke("run", str(path))
    assert result.exit_code != 0
    assert "exactly one" in text(result)
    result = invoke("run", f"{path}:Other", "--until", "2021-03-01")
    assert_stats_table(result)
    assert "Other(exposure=0.5)" in text(result)


def test_file_that_fails_to_import_is_reported(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import perpbt as pb\nraise RuntimeError('boom')\n")
    result = invoke("run", str(path))
    assert result.exit_code != 0
    assert "RuntimeError: boom" in text(result)


def test_strategy_names_resolve_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./strategies here: falls back to the checkout's folder
    result = invoke("run", "breakout", "--until", "2021-03-01")
    assert_stats_table(result)


def test_local_strategies_folder_comes_first(tmp_path, monkeypatch):
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "ma_cross.py").write_text(STRATEGY_FILE)
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "ma_cross", "--until", "2021-03-01")
    assert_stats_table(result)
    assert "AlwaysLong(exposure=0.5)" in text(result)


def test_help_explains_every_option_with_units():
    top = invoke("--help")
    assert top.exit_code == 0 and "run" in top.output and "fractions" in text(top)
    result = invoke("run", "--help")
    assert result.exit_code == 0
    help_text = text(result)
    for option in ("--csv", "--symbols", "--timeframe", "--margin", "--leverage", "--venue",
                   "--capital", "--stop", "--take", "--param", "--since", "--until"):
        assert option in help_text
    assert "0.02 = 2 %" in help_text and "USDT" in help_text


@pytest.mark.parametrize("text, value", [("5", 5), ("0.5", 0.5), ("true", True),
                                         ("False", False), ("last", "last")])
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_python_dash_m_perpbt():
    done = subprocess.run([sys.executable, "-m", "perpbt", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("perpbt ")


def test_run_on_a_stress_scenario():
    result = invoke("run", "ma_cross", "--scenario", "flash_crash", "--leverage", "10")
    assert_stats_table(result)
    assert "embedded synthetic market (flash_crash)" in text(result)


def test_unknown_scenario_is_a_clear_error():
    result = invoke("run", "ma_cross", "--scenario", "flash_crsh")
    assert result.exit_code == 2
    assert "flash_crash" in text(result)


def test_liquidation_policy_and_execution_model_options():
    # a 20x MA cross through the flash crash: the policy and the model reach the engine
    # (the multibar run with the model on liquidates at least once and says so)
    res = invoke("run", "ma_cross", "--scenario", "flash_crash", "--leverage", "20",
                 "--liquidation", "multibar", "--execution")
    assert res.exit_code == 0, res.output
    assert "liquidation multibar" in text(res) and "execution model on" in text(res)
    assert re.search(r"\b[1-9]\d* liquidations?\b", text(res))
    bad = invoke("run", "ma_cross", "--liquidation", "iocc")
    assert bad.exit_code == 1
    assert "liquidation='iocc' is not one of" in text(bad)
