"""pb.sweep, pb.DaskExecutor, pb.compare and the sweep/compare/bench commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import perpbt as pb
from perpbt import cli
from perpbt.result import STATS_KEYS

STRATEGIES = Path(__file__).resolve().parents[1] / "strategies"
sys.path.insert(0, str(STRATEGIES))
from ma_cross import MaCross  # noqa: E402

sys.path.remove(str(STRATEGIES))

GRID = {"fast": [6, 12], "slow": [48, 96]}
AXES = dict(stop=[None, 0.01], leverage=[5, 10], margin=["isolated", "cross"])


@pytest.fixture(scope="module")
def market():
    return pb.data.default_market().slice(None, "2021-02-01")


@pytest.fixture(scope="module")
def local(market):
    return pb.sweep(market, MaCross, GRID, progress=False, **AXES)


class CountingCross(MaCross):
    calls = 0

    def signals(self, m):
        type(self).calls += 1
        return super().signals(m)


class AlwaysLong(pb.Strategy):
    exposure: float = 8.0

    def signals(self, m):
        return pd.DataFrame(self.exposure, index=m.index, columns=list(m.symbols))


def test_sweep_rows_are_the_grid_product_in_order(market, local):
    assert len(local) == 2 * 2 * 2 * 2 * 2
    assert list(local.columns[:7]) == ["fast", "slow", "stop", "sizing", "leverage", "margin",
                                       "venue"]
    assert list(local.columns[7:7 + len(STATS_KEYS)]) == list(STATS_KEYS)
    assert len(local.columns) == 7 + len(pb.backtest(market, MaCross()).stats())
    first = local.iloc[:8]  # the engine axes vary fastest, margin last
    assert first["fast"].tolist() == [6] * 8 and first["slow"].tolist() == [48] * 8
    assert first["margin"].tolist() == ["isolated", "cross"] * 4
    assert first["leverage"].tolist() == [5, 5, 10, 10] * 2
    assert local["sizing"].isna().all() and (local["venue"] == "binance").all()
    assert local["trades"].dtype.kind == "i" and local["bust"].dtype == bool
    assert local.loc[local["stop"].isna(), "total_return"].tolist() != \
        local.loc[local["stop"] == 0.01, "total_return"].tolist()  # the stop axis matters


def test_sweep_row_equals_a_direct_backtest(market, local):
    for i in (0, 13, 30):
        row = local.iloc[i]
        stop = None if pd.isna(row["stop"]) else float(row["stop"])
        for stats_only in (True, False):
            direct = pb.backtest(market, MaCross(fast=int(row["fast"]), slow=int(row["slow"])),
                                 stop=stop, leverage=int(row["leverage"]), margin=row["margin"],
                                 venue=row["venue"], stats_only=stats_only).stats()
            for key, value in direct.items():
                got = row[key]
                assert got == value or (pd.isna(got) and pd.isna(value)), (i, key, got, value)


def test_sweep_wrong_grid_key_raises_before_running(market):
    CountingCross.calls = 0
    with pytest.raises(ValueError, match=r"no parameter 'fsat'; did you mean 'fast'\?"):
        pb.sweep(market, CountingCross, {"fsat": [6, 12]}, progress=False)
    assert CountingCross.calls == 0
    with pytest.raises(TypeError, match="did you mean 'initial_capital'"):
        pb.sweep(market, CountingCross, {"fast": [6]}, initial_capital_=5, progress=False)
    with pytest.raises(TypeError, match="sizing: expected one of"):
        pb.sweep(market, CountingCross, {"fast": [6]}, sizing=["kelly"], progress=False)
    with pytest.raises(ValueError, match="margin"):
        pb.sweep(market, CountingCross, {"fast": [6]}, margin=["isolated", "crss"],
                 progress=False)
    assert CountingCross.calls == 0


def test_sweep_signals_once_per_parameter_set(market):
    CountingCross.calls = 0
    out = pb.sweep(market, CountingCross, {"fast": [6, 12, 12.0], "slow": [48]},
                   leverage=[5, 10], margin=["isolated", "cross"], progress=False)
    assert len(out) == 3 * 4
    assert CountingCross.calls == 2  # 12 and 12.0 are the same parameter set
    CountingCross.calls = 0
    pb.sweep(market, CountingCross, {"fast": [6, 12]}, leverage=[5, 10], executor="processes",
             progress=False)
    assert CountingCross.calls == 2  # workers get target frames, never call signals


def test_sweep_threads_identical_to_serial_with_execution_model(market):
    """The default executor runs threads that share the market; the execution model's memo,
    which the kernel fills as it runs, is one per thread. Serial, 2 and 3 threads (several
    chunks per thread, so threads reuse their memo) give the same frame bit for bit."""
    axes = dict(stop=[None, 0.01, 0.03], leverage=[5, 10], margin=["isolated", "cross"])
    serial = pb.sweep(market, MaCross, GRID, executor=pb.LocalExecutor(1), progress=False,
                      execution=True, **axes)
    assert len(serial) == 4 * 3 * 2 * 2 and serial["trades"].gt(0).all()
    for workers in (2, 3):
        threaded = pb.sweep(market, MaCross, GRID, executor=pb.LocalExecutor(workers),
                            progress=False, execution=True, **axes)
        pd.testing.assert_frame_equal(threaded, serial, check_exact=True)


def test_sweep_checks_every_leverage_against_the_exposure(market):
    """A sweep scans each target frame once; the isolated-margin check (exposure above the
    leverage is an error, DESIGN 1.1) still runs for every leverage of the axis: 8x exposure
    passes at leverage 10 and fails at 5, naming the symbol and the first bar; in cross
    margin the same exposure runs."""
    ok = pb.sweep(market, AlwaysLong, {"exposure": [8.0]}, leverage=[10], progress=False,
                  executor=pb.LocalExecutor(1))
    assert len(ok) == 1
    first = market.index[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ValueError, match=rf"leverage=5.*exposure 8 for {market.symbols[0]} at "
                                         rf"{first} exceeds leverage 5 \(isolated margin\)"):
        pb.sweep(market, AlwaysLong, {"exposure": [8.0]}, leverage=[10, 5], progress=False,
                 executor=pb.LocalExecutor(1))
    cross = pb.sweep(market, AlwaysLong, {"exposure": [8.0]}, leverage=[10, 5],
                     margin="cross", progress=False, executor=pb.LocalExecutor(1))
    assert len(cross) == 2


def test_local_executor_rejects_zero_workers():
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        pb.LocalExecutor(0)


def test_sweep_local_processes_dask_identical(market, local):
    procs = pb.sweep(market, MaCross, GRID, executor=pb.ProcessExecutor(2), progress=False,
                     **AXES)
    pd.testing.assert_frame_equal(procs, local, check_exact=True)
    try:
        import distributed
    except ImportError:
        pytest.skip("dask.distributed is not installed (pip install perpbt[dask])")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = pb.sweep(market, MaCross, GRID, executor=pb.DaskExecutor(client),
                        progress=True, **AXES)
        assert client.status == "running"  # a client passed in stays open
    pd.testing.assert_frame_equal(dask, local, check_exact=True)


def test_dask_executor_missing_dask_says_how_to_install(monkeypatch):
    import builtins

    from perpbt import dask_executor

    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in ("distributed", "dask"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install perpbt\[dask\]"):
        dask_executor.DaskExecutor("tcp://127.0.0.1:8786")


@pytest.fixture(scope="module")
def crash():
    return pb.data.scenario("flash_crash")


def test_compare_side_by_side_and_plot(crash, tmp_path):
    CountingCross.calls = 0
    comp = pb.compare(crash, AlwaysLong(), margin=["isolated", "cross"],
                      venue=["binance", "bybit"], leverage=10)
    labels = ["isolated|binance|ioc", "isolated|bybit|tiered", "cross|binance|ioc",
              "cross|bybit|tiered"]
    assert comp.labels == labels
    assert list(comp.stats.columns) == labels
    assert list(comp.stats.index) == list(pb.backtest(crash, AlwaysLong(), leverage=10)
                                          .stats().index)
    direct = pb.backtest(crash, AlwaysLong(), margin="cross", venue="bybit", leverage=10)
    assert comp.stats["cross|bybit|tiered"].equals(direct.stats().rename("cross|bybit|tiered"))
    assert list(comp.equity.columns) == labels and comp.equity.index.equals(crash.index)
    liq = comp.liquidations
    assert len(liq) > 0 and liq.columns[0] == "setting"
    assert set(liq["setting"]) <= set(labels)
    fig = comp.plot(tmp_path / "compare.html")
    lines = [t for t in fig.data if t.mode == "lines"]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in lines] == labels
    assert sum(len(t.x) for t in markers) == len(liq)
    assert (tmp_path / "compare.html").stat().st_size > 100_000  # plotly.js embedded
    frame = comp.to_frame()
    assert frame["setting"].tolist() == labels and frame["liquidations"].dtype.kind == "i"


def test_compare_calls_signals_once(market):
    CountingCross.calls = 0
    comp = pb.compare(market, CountingCross(fast=12, slow=48), venue=["binance", "okx"],
                      liquidation=[None, "takeover"], leverage=5)
    assert CountingCross.calls == 1 and len(comp.labels) == 8


runner = CliRunner()


@pytest.mark.parametrize("suffix,workers", [(".parquet", []), (".csv", ["--workers", "1"]),
                                            (".json", ["-w", "2"])])
def test_cli_sweep_writes_by_suffix(tmp_path, suffix, workers, local):
    out = tmp_path / f"results{suffix}"
    res = runner.invoke(cli.app, ["sweep", "ma_cross", "--data", "default", "--until",
                                  "2021-02-01", "--grid", "fast=6,12", "--grid", "slow=48,96",
                                  "--stop", "none,0.01", "--leverage", "5,10",
                                  "--margin", "isolated,cross", "--quiet", "--out", str(out),
                                  *workers])
    assert res.exit_code == 0, res.output
    if suffix == ".parquet":
        got = pd.read_parquet(out)
    elif suffix == ".csv":
        got = pd.read_csv(out)
    else:
        got = pd.DataFrame(json.loads(out.read_text()))
    assert list(got.columns) == list(local.columns) and len(got) == len(local)
    np.testing.assert_allclose(got["final_equity"].astype(float),
                               local["final_equity"].astype(float), rtol=1e-12)
    assert got["margin"].tolist() == local["margin"].tolist()


def test_cli_sweep_bad_grid_key(tmp_path):
    res = runner.invoke(cli.app, ["sweep", "ma_cross", "--until", "2021-01-10", "--grid",
                                  "fsat=6", "-q"])
    assert res.exit_code == 1 and "did you mean 'fast'" in res.output


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_cli_compare_writes_by_suffix(tmp_path, suffix):
    out, plot = tmp_path / f"compare{suffix}", tmp_path / "compare.html"
    res = runner.invoke(cli.app, ["compare", "ma_cross", "--data", "default", "--until",
                                  "2021-02-01", "--margin", "isolated,cross",
                                  "--venue", "binance,bybit", "-p", "fast=12", "-p", "slow=48",
                                  "--leverage", "5", "--out", str(out), "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    if suffix == ".parquet":
        got = pd.read_parquet(out)
    elif suffix == ".csv":
        got = pd.read_csv(out)
    else:
        got = pd.DataFrame(json.loads(out.read_text()))
    assert got["setting"].tolist() == ["isolated|binance|ioc", "isolated|bybit|tiered",
                                       "cross|binance|ioc", "cross|bybit|tiered"]
    assert plot.is_file() and "isolated|bybit|tiered" in res.output


def test_cli_out_suffix_checked_first(tmp_path):
    res = runner.invoke(cli.app, ["sweep", "ma_cross", "--out", str(tmp_path / "r.xlsx")])
    assert res.exit_code == 2 and "suffix" in res.output


def test_cli_bench_missing_script(monkeypatch):
    monkeypatch.setattr(cli, "bench_script", lambda: None)
    res = runner.invoke(cli.app, ["bench"])
    assert res.exit_code == 1 and "bench_engine.py not found" in res.output


def test_cli_help_texts():
    for cmd in ("sweep", "compare", "bench"):
        res = runner.invoke(cli.app, [cmd, "--help"])
        assert res.exit_code == 0
    command = {c.name: c for c in cli.app.registered_commands}
    for name in ("sweep_cmd", "compare_cmd", "bench_cmd"):
        func = getattr(cli, name)
        import inspect

        for param in inspect.signature(func).parameters.values():
            assert getattr(param.default, "help", None), (name, param.name)
    assert {"sweep", "compare", "bench"} <= set(command)


def test_thread_tasks_compute_each_frame_once_before_its_chunks():
    """The local executor's queue: a chunk comes after every frame it needs; the next frame
    comes right after the first chunk of the frame before it (at the start only frame 0
    is computed, not two frames competing for the GIL); frames already there are skipped."""
    from types import SimpleNamespace

    sweep_module = sys.modules["perpbt.sweep"]
    job = SimpleNamespace(frames=[None, None, "done", None])
    chunks = [[SimpleNamespace(frame=k) for k in ks] for ks in ([0, 0], [0, 1], [1], [2, 3])]
    tasks = list(sweep_module.thread_tasks(job, chunks))
    labels = [("frame", t[2]) if t[0] is sweep_module._frame_task else ("chunk", t[1])
              for t in tasks]
    assert labels == [("frame", 0), ("chunk", chunks[0]), ("frame", 1), ("chunk", chunks[1]),
                      ("chunk", chunks[2]), ("frame", 3), ("chunk", chunks[3])]


def _combos(call_sizes):
    """Combinations in run order, ``call_sizes[i]`` of them sharing engine call i (one
    leverage object per call)."""
    sweep_module = sys.modules["perpbt.sweep"]
    combos = []
    for call, size in enumerate(call_sizes):
        leverage = float(call + 1)
        for _ in range(size):
            combos.append(sweep_module.Combo(len(combos), 0, 0.01, leverage, "isolated",
                                             "binance"))
    return combos


def test_chunks_end_where_an_engine_call_ends():
    """chunked: near-equal chunks whose bounds move to the nearest start of a call (within
    half a chunk), so no call is split in two; a call longer than a chunk is cut."""
    sweep_module = sys.modules["perpbt.sweep"]
    combos = _combos([10] * 10)  # 100 combinations, calls start every 10
    chunks = sweep_module.chunked(combos, 3)  # targets 33.3 and 66.7 -> 30 and 70
    assert [len(c) for c in chunks] == [30, 40, 30]
    assert [c.index for chunk in chunks for c in chunk] == list(range(100))
    long_call = _combos([100])  # no start within half a chunk: cut at the targets
    assert [len(c) for c in sweep_module.chunked(long_call, 4)] == [25, 25, 25, 25]
    assert sweep_module.call_starts(_combos([3, 1, 2])) == [0, 3, 4, 6]


def test_tapered_splits_the_last_chunks_per_call():
    """tapered: the last n chunks become one task per engine call, so the threads finish
    within one call of each other."""
    sweep_module = sys.modules["perpbt.sweep"]
    combos = _combos([10] * 10)
    chunks = sweep_module.tapered(sweep_module.chunked(combos, 5), 2)  # 5 chunks of 20
    assert [len(c) for c in chunks] == [20, 20, 20, 10, 10, 10, 10]
    assert [c.index for chunk in chunks for c in chunk] == list(range(100))
    assert sweep_module.tapered(chunks[:1], 3) == [chunks[0][:10], chunks[0][10:]]
