"""Parameter sweeps: one strategy's parameter grid x engine settings, one stats row each.

``pb.sweep(market, MaCross, {"fast": [12, 24], "slow": [48, 96]}, leverage=[5, 10],
margin=["isolated", "cross"])`` runs every combination (here 4 x 2 x 2 = 16) and returns a
DataFrame with one row per combination: a column per grid key, then ``stop``, ``sizing``,
``leverage``, ``margin``, ``venue``, then every key of ``Result.stats()`` -- the same numbers
``pb.backtest`` of that combination gives.

How it runs:

- everything is checked before anything runs: grid keys (with a did-you-mean hint), every
  parameter set (the strategy is built once per set), margin modes, venues, leverage, stops
  and the remaining ``pb.backtest`` keywords;
- signals are computed once per distinct parameter set, on first use (with the local
  executor's threads, in parallel with the engine runs of the previous set; for process and
  Dask workers, in the calling process before shipping); every engine combination of that
  set reuses its target frame;
- the combinations of a chunk that share their target frame, sizing, leverage and venue
  run in one jitted call (engine/batch.py: the stop and the margin mode vary inside it),
  which computes their stats too. Such a call gets one prepared config, each run's margin
  mode and a row of the job's stop table (every stop of the sweep, stacked once per
  process); each run's config is built in the kernel, so no Python runs per run but its
  stats row;
- the engine runs are spread by an executor: ``"local"`` (in-process threads, one per
  core by default: the kernels release the GIL; ``LocalExecutor(max_workers=1)`` is serial),
  ``"processes"`` (``ProcessExecutor``: a process pool, the market and the target frames
  handed to each worker once by its initializer) or ``pb.DaskExecutor(client_or_address)``
  (scattered to every worker once). Rows come back in combination order whatever the
  executor, so results are identical across executors.

Memory: with ``stats_only=True`` (the default) each run skips its per-bar outputs and only
the stats row is kept. The target frames (one float64 T x N frame per parameter set) are
held for the whole sweep.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import itertools
import operator
import os
import sys
import threading
from concurrent.futures import (FIRST_EXCEPTION, ProcessPoolExecutor, ThreadPoolExecutor,
                                wait)
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

import perpbt
from perpbt.backtest import (STOP_CONFIG_FIELDS, Prepared, buffer_sizes, execute_run,
                             prepare_run, remember_stop_fields, reused_buffers, reused_work,
                             stop_fields, target_frame)
from perpbt.engine.batch import (B_BEYOND, B_CLOSED, B_DOWNSIDE, B_FEES, B_FINAL, B_MEAN,
                                 B_MIN_DIST, B_RECEIVED, B_SD, B_WINS, N_BATCH_OUT, StopRows,
                                 run_batch_nb, stack_stop_fields)
from perpbt.engine.state import (A_BUST, A_CLEARANCE, A_INSURANCE, A_MAX_DD, C_ERROR, C_LIQS,
                                 C_TRADES, N_ACCT, N_CNT, Buffers, position_template)
from perpbt.result import Result, stats_row
from perpbt.enums import MarginMode, parse_enum
from perpbt.risk import stop_rules
from perpbt.strategy import Strategy
from perpbt.venues import get_venue

AXES = ("stop", "sizing", "leverage", "margin", "venue")
# pb.backtest keywords sweep sets itself (its own arguments) or never forwards
_OWN_KEYWORDS = ("market", "strategy_or_targets", "stop", "sizing", "leverage", "margin",
                 "venue", "stats_only")

Part = list  # list[tuple[int, dict[str, Any]]]: (combination index, stats) pairs


# ---------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Combo:
    """One engine run of a sweep: its row index, its target frame and its settings."""
    index: int
    frame: int  # index into SweepJob.frames
    stop: Any
    leverage: Any
    margin: str
    venue: str
    sizing: Any = None

    def describe(self, job: "SweepJob") -> str:
        return (f"{job.labels[self.frame]}, stop={self.stop!r}, sizing={self.sizing!r}, "
                f"leverage={self.leverage!r}, "
                f"margin={self.margin!r}, venue={self.venue!r}")


@dataclass
class SweepJob:
    """What every worker needs, shipped once per worker: the market, one target frame per
    distinct strategy parameter set, and the fixed ``pb.backtest`` keywords.

    A frame is computed on first use (:meth:`frame`), once, in whichever thread needs it
    first: the local executor's threads compute the signals in parallel with each other's
    engine runs. Pickling (process and Dask workers) computes the missing frames first and
    ships the frames, not the strategies."""
    market: Any
    frames: list  # list[pd.DataFrame | None], T x N target exposures (None: not computed yet)
    labels: list  # list[str], the strategy repr of each frame (for error messages)
    options: dict  # fixed pb.backtest keywords: stats_only, take, funding ...
    # the Strategy of each frame still to compute (None once computed or shipped)
    strategies: list = field(default_factory=list)
    # pb.backtest's memo (frames converted and scanned, instruments packed): filled in each
    # process as it runs, never shipped (see __getstate__)
    memo: dict = field(default_factory=dict)
    # each thread's record buffers, reused run after run (run_combo keeps only the stats)
    buffers: dict = field(default_factory=dict)
    # the sweep's distinct stops (by identity): the rows of the stop table (stop_rows)
    stops: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._locks = [threading.Lock() for _ in self.frames]
        self._stop_lock = threading.Lock()
        # (row of each stop by id, StopRows, the stops): built in each process on first use
        self._stop_table: tuple | None = None

    def frame(self, k: int) -> pd.DataFrame:
        """Target frame ``k``; computed here (under its own lock) the first time."""
        frame = self.frames[k]
        if frame is None:
            with self._locks[k]:
                frame = self.frames[k]
                if frame is None:
                    frame = target_frame(self.market, self.strategies[k])[0]
                    self.frames[k] = frame
                    self.strategies[k] = None
        return frame

    def materialize(self) -> None:
        """Compute every frame not computed yet (in this thread, in order)."""
        for k in range(len(self.frames)):
            self.frame(k)

    def stop_rows(self, stops: Sequence) -> tuple[StopRows, list[int]]:
        """The stop table (engine/batch.py StopRows: the engine fields of the job's stops
        and of any other seen, a row each) and the rows of ``stops``. Built on first use,
        again (with the old rows kept) for a stop not seen yet."""
        table = self._stop_table
        if table is not None:
            try:
                return table[1], [table[0][id(s)] for s in stops]
            except KeyError:
                pass
        with self._stop_lock:
            kept = [] if self._stop_table is None else list(self._stop_table[2])
            seen = {id(s) for s in kept}
            for s in itertools.chain(self.stops, stops):
                if id(s) not in seen:
                    seen.add(id(s))
                    kept.append(s)
            if self._stop_table is None or len(kept) > len(self._stop_table[2]):
                fields = [stop_fields(s, self.market, self.memo) for s in kept]
                rows = stack_stop_fields(fields)
                self._stop_table = ({id(s): r for r, s in enumerate(kept)}, rows, kept)
                self._share_distances(kept, fields, rows)
            table = self._stop_table
        return table[1], [table[0][id(s)] for s in stops]

    def _share_distances(self, stops: list, fields: list[dict], rows: StopRows) -> None:
        """Point the memo's ATR distances ((T, N) per stop) at the stop table's rows, so a
        sweep of ATR stops over a long history holds them once, not twice."""
        for row, (stop, found) in enumerate(zip(stops, fields)):
            n_bars = found["stop_dist_t"].shape[0]
            if n_bars:
                remember_stop_fields(self.memo, stop, {
                    **found, "stop_dist_t": rows.stop_dist_t[row, :n_bars]})

    def __getstate__(self) -> dict:
        self.materialize()
        state = {**self.__dict__, "memo": {}, "buffers": {}, "strategies": []}
        for local in ("_locks", "_stop_lock", "_stop_table"):
            del state[local]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._locks = [threading.Lock() for _ in self.frames]
        self._stop_lock = threading.Lock()
        self._stop_table = None


@contextlib.contextmanager
def _naming(job: SweepJob, combo: Combo) -> Iterator[None]:
    """pb.backtest's errors, raised again naming the sweep combination."""
    try:
        yield
    except (ValueError, NotImplementedError) as exc:
        raise ValueError(f"sweep combination {combo.index} ({combo.describe(job)}): "
                         f"{exc}") from exc


def _prepare(job: SweepJob, combo: Combo) -> Prepared:
    """pb.backtest's preparation of one combination."""
    with _naming(job, combo):
        return prepare_run(job.market, job.frame(combo.frame), stop=combo.stop,
                           sizing=combo.sizing, leverage=combo.leverage, margin=combo.margin,
                           venue=combo.venue, _memo=job.memo, **job.options)


def _prepare_shared(job: SweepJob, combo: Combo, shared: dict) -> tuple[Prepared, Any]:
    """The preparation a combination's engine run starts from, and its ``group_key``.
    Without a sizing rule: one per target frame, leverage, margin and venue in ``shared``
    (``_prepare`` of the first such combination), as a batched run takes its stop from the
    job's stop table, not from its preparation. With one: its own (sizes depend on the
    stop)."""
    if combo.sizing is not None:
        prep = _prepare(job, combo)
        return prep, group_key(prep)
    key = (call_key(combo), id(combo.margin))
    held = shared.get(key)
    if held is None:
        prep = _prepare(job, combo)
        held = shared[key] = (prep, group_key(prep))
    return held


def run_combo(job: SweepJob, combo: Combo) -> dict[str, Any]:
    """The stats of one combination run alone (``Result.stats()`` as a plain dict)."""
    prep = _prepare(job, combo)
    with _naming(job, combo):
        buf, acct, cnt = execute_run(job.market, prep, job.buffers)
    res = Result(job.market, prep.targets, prep.settings, buf, acct, cnt, prep.insts,
                 prep.stats_only, engine=(prep.ins, prep.cfg))
    return res.stats_dict()


def batch_key(prep: Prepared) -> tuple | None:
    """Combinations with equal keys run in one engine call (engine/batch.py): the same
    market, instruments and targets (the same arrays: the job's memo hands them out) and
    record buffers of the same sizes. None: the combination runs alone (per-bar outputs
    wanted, or no bars)."""
    if not prep.stats_only or prep.mkt.open.shape[0] == 0:
        return None
    cross = prep.cfg.margin_mode == MarginMode.cross
    sizes = buffer_sizes(prep.changes, prep.mkt, False, prep.insts, cross)
    return (id(prep.mkt), id(prep.ins), id(prep.values), id(prep.order_bars), sizes)


# the config fields a batched run sets itself (engine/batch.py config_with_nb)
_RUN_FIELDS = frozenset(STOP_CONFIG_FIELDS) | {"margin_mode"}


def group_key(prep: Prepared) -> tuple | None:
    """``batch_key``, and every config field but the stop's and the margin mode (arrays
    by identity): combinations with equal keys run in one engine call. None: alone."""
    key = batch_key(prep)
    if key is None:
        return None
    shared = tuple(id(v) if isinstance(v, np.ndarray) else v
                   for name, v in zip(prep.cfg._fields, prep.cfg) if name not in _RUN_FIELDS)
    return key, shared


def run_batch(job: SweepJob, group: Sequence[tuple[Combo, Prepared]], sizes: Buffers) -> Part:
    """The stats of combinations sharing a ``group_key`` (its record buffer ``sizes``), from
    one run_batch_nb call: the first one's config with each combination's margin mode and
    stop (its row of the job's stop table). A run that stopped on an error (a record buffer
    too small, a position on a bar without funding data) runs again alone (``run_combo``:
    more room, or the error naming the combination), as does the whole group if a stop's
    fields fail to build."""
    first = group[0][1]
    mkt, ins = first.mkt, first.ins
    try:
        stops, rows = job.stop_rows([combo.stop for combo, _ in group])
    except (ValueError, NotImplementedError):  # raised again by run_combo, named
        return [(combo.index, run_combo(job, combo)) for combo, _ in group]
    n_sym = mkt.open.shape[1]
    buf = reused_buffers(job.buffers, sizes, zeroed_liqs=True)  # run_batch_nb zeroes them
    ps, scratch = reused_work(job.buffers, n_sym, ins.tier_floor.shape[2], reset=False)
    float_init, int_init = position_template(n_sym)
    n_runs = len(group)
    margin_modes = np.array([prep.cfg.margin_mode for _, prep in group], dtype=np.int64)
    accts = np.zeros((n_runs, N_ACCT))
    cnts = np.zeros((n_runs, N_CNT), dtype=np.int64)
    out = np.empty((n_runs, N_BATCH_OUT))
    run_batch_nb(mkt, ins, first.cfg, margin_modes, np.array(rows, dtype=np.int64), stops,
                 first.values, first.order_bars, ps, ps.qty.base, ps.trade_id.base,
                 float_init, int_init, scratch, buf, buf.liqs.view(np.uint8), accts, cnts, out)
    n_bars = mkt.open.shape[0]
    # Python floats and ints, as Result.stats_dict passes them (numpy scalars: ~2x the time)
    outs, acct_rows, cnt_rows = out.tolist(), accts.tolist(), cnts.tolist()
    part: Part = []
    for (combo, prep), o, acct, cnt in zip(group, outs, acct_rows, cnt_rows):
        if cnt[C_ERROR] != 0:
            part.append((combo.index, run_combo(job, combo)))
            continue
        part.append((combo.index, stats_row(
            n_bars, job.market.timeframe_ms, prep.cfg.initial_capital, o[B_FINAL],
            o[B_MEAN], o[B_SD], o[B_DOWNSIDE], acct[A_MAX_DD], int(o[B_WINS]),
            int(o[B_CLOSED]), o[B_FEES], o[B_RECEIVED], o[B_MIN_DIST], int(o[B_BEYOND]),
            cnt[C_TRADES], cnt[C_LIQS], acct[A_INSURANCE], acct[A_CLEARANCE],
            bool(acct[A_BUST]))))
    return part


def run_chunk(chunk: Sequence[Combo], job: SweepJob) -> Part:
    """Run a chunk of combinations: [(combination index, stats dict), ...]; those sharing a
    ``group_key`` in one engine call each."""
    groups: dict[tuple, list] = {}
    part: Part = []
    shared: dict[tuple, tuple] = {}
    for combo in chunk:
        prep, key = _prepare_shared(job, combo, shared)
        if key is None:
            part.append((combo.index, run_combo(job, combo)))
        else:
            groups.setdefault(key, []).append((combo, prep))
    for key, group in groups.items():
        part.extend(run_batch(job, group, sizes=key[0][-1]))
    return part


def call_key(combo: Combo) -> tuple:
    """Combinations next to each other (pb.sweep's run order) with equal keys can share an
    engine call (run_chunk): the same target frame, sizing, leverage and venue."""
    return (combo.frame, id(combo.sizing), id(combo.leverage), id(combo.venue))


def call_starts(combos: Sequence[Combo]) -> list[int]:
    """The indices where ``call_key`` changes, with 0 and ``len(combos)``."""
    keys = [call_key(c) for c in combos]
    return [0] + [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]] + [len(keys)]


def chunked(combos: Sequence[Combo], n_chunks: int) -> list[list[Combo]]:
    """Split into at most ``n_chunks`` contiguous chunks of near-equal size, each bound
    moved to the nearest ``call_starts`` within half a chunk: a chunk splitting a call's
    combinations made two engine calls of them."""
    n_chunks = max(1, min(int(n_chunks), len(combos)))
    targets = np.linspace(0, len(combos), n_chunks + 1)
    starts = np.asarray(call_starts(combos))
    nearest = starts[np.abs(starts[None, :] - targets[:, None]).argmin(axis=1)]
    half = len(combos) / n_chunks / 2
    bounds = np.where(np.abs(nearest - targets) <= half, nearest, targets.round()).astype(int)
    bounds = sorted(set(bounds.tolist()))
    return [list(combos[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def tapered(chunks: list[list[Combo]], n_tail: int) -> list[list[Combo]]:
    """``chunks`` with the last ``n_tail`` split at every ``call_starts``: the threads end
    together within one engine call instead of one chunk."""
    cut = max(len(chunks) - n_tail, 0)
    head, tail = chunks[:cut], chunks[cut:]
    for chunk in tail:
        starts = call_starts(chunk)
        head.extend(chunk[a:b] for a, b in zip(starts[:-1], starts[1:]))
    return head


# ---------------------------------------------------------------------------- executors
def _check_workers(max_workers: int | None) -> int | None:
    """``max_workers`` as an int (None: the CPU count); below 1 is a ValueError."""
    if max_workers is not None and not int(max_workers) >= 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers!r}")
    return None if max_workers is None else int(max_workers)


def _pool_size(max_workers: int | None, combos: Sequence[Combo]) -> int:
    return min(max_workers or os.cpu_count() or 1, max(len(combos), 1))


def _run_on_pool(pool, tasks: Iterable[tuple]) -> Iterator[Part]:
    """Submit each ``(fn, *args)`` task; the parts as they complete, the pool shut down at
    the end (or at once if submitting fails)."""
    try:
        futures = [pool.submit(*task) for task in tasks]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    return _collect(pool, futures)


def _collect(pool, futures, poll: float = 0.25) -> Iterator[Part]:
    """The parts done, every ``poll`` seconds (at once on an error, and at the end). The
    calling thread sleeps in between: woken on every completed task (as_completed), it
    took the GIL and a core from the workers about 40 times in a half-second sweep."""
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=poll, return_when=FIRST_EXCEPTION)
            for fut in done:
                yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _frame_task(job: SweepJob, k: int) -> Part:
    job.frame(k)
    return []  # no rows: the frame stays in the job


def thread_tasks(job: SweepJob, chunks: list[list[Combo]]) -> Iterator[tuple]:
    """The pool tasks in queue order: each chunk, after the target frames it needs
    (``job.frame``), and the next frame queued right after the first chunk of the one
    before it, so one thread computes the next signals while the others run the engine on
    the current ones. At the start only the first frame is computed: a second one beside it
    would compete for the GIL (the signals are Python and pandas) and delay the first
    engine run."""
    queued = {k for k, frame in enumerate(job.frames) if frame is not None}
    order = list(dict.fromkeys(c.frame for chunk in chunks for c in chunk))
    ahead = {k: order[i + 1] for i, k in enumerate(order[:-1])}
    def frame_tasks(frames) -> Iterator[tuple]:
        for k in frames:
            if k is not None and k not in queued:
                queued.add(k)
                yield (_frame_task, job, k)

    for chunk in chunks:
        needs = list(dict.fromkeys(c.frame for c in chunk))
        yield from frame_tasks(needs)
        yield (run_chunk, chunk, job)
        yield from frame_tasks(ahead.get(k) for k in needs)


class LocalExecutor:
    """In the calling process, on ``max_workers`` threads (default: the CPU count; 1 runs
    serially, without a pool). The engine's kernels release the GIL, so the threads share
    the market and the target frames with no copy; only the Python around each run (a
    small part of it) takes turns. ``chunks_per_worker`` trades scheduling overhead against
    load balance and how often the progress bar moves."""

    in_process = True  # pb.sweep sends it every combination (no check run before)

    def __init__(self, max_workers: int | None = None, chunks_per_worker: int = 16) -> None:
        self.max_workers = _check_workers(max_workers)
        self.chunks_per_worker = max(1, int(chunks_per_worker))

    def submit(self, job: SweepJob, combos: Sequence[Combo]) -> Iterator[Part]:
        n = _pool_size(self.max_workers, combos)
        if n == 1:
            return (run_chunk(chunk, job) for chunk in chunked(combos, self.chunks_per_worker))
        chunks = tapered(chunked(combos, n * self.chunks_per_worker), n)
        return _run_on_pool(ThreadPoolExecutor(n, thread_name_prefix="perpbt-sweep"),
                            thread_tasks(job, chunks))

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self.max_workers})"


_WORKER_JOB: SweepJob | None = None


def _init_worker(job: SweepJob) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _run_in_worker(chunk: Sequence[Combo]) -> Part:
    assert _WORKER_JOB is not None, "sweep worker used before its initializer ran"
    return run_chunk(chunk, _WORKER_JOB)


class ProcessExecutor:
    """A ``concurrent.futures.ProcessPoolExecutor``; each worker gets the market and the
    target frames once, through the pool's initializer.

    ``max_workers`` defaults to the CPU count; ``mp_context`` is a multiprocessing context
    or start method name (default: the platform's; with "spawn" or "forkserver" the calling
    script needs the usual ``if __name__ == "__main__":`` guard); ``chunks_per_worker``
    trades scheduling overhead against load balance."""

    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 chunks_per_worker: int = 4) -> None:
        self.max_workers = _check_workers(max_workers)
        self.mp_context = mp_context
        self.chunks_per_worker = max(1, int(chunks_per_worker))

    def submit(self, job: SweepJob, combos: Sequence[Combo]) -> Iterator[Part]:
        import multiprocessing

        n = _pool_size(self.max_workers, combos)
        job.materialize()  # the workers get the frames (forked or pickled), never the signals
        ctx = (multiprocessing.get_context(self.mp_context)
               if isinstance(self.mp_context, str) else self.mp_context)
        pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(job,))
        return _run_on_pool(pool, [(_run_in_worker, chunk)
                                   for chunk in chunked(combos, n * self.chunks_per_worker)])

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers})"


EXECUTORS: dict[str, Callable[[], Any]] = {"local": LocalExecutor, "processes": ProcessExecutor}


def resolve_executor(executor: Any) -> Any:
    """"local", "processes" or an object with ``submit(job, combos)`` (``ProcessExecutor``,
    ``pb.DaskExecutor``)."""
    if isinstance(executor, str):
        key = executor.strip().lower()
        if key not in EXECUTORS:
            close = difflib.get_close_matches(key, list(EXECUTORS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"executor={executor!r}: unknown executor{hint}; use "
                             f"{sorted(EXECUTORS)} or pb.DaskExecutor(client_or_address)")
        return EXECUTORS[key]()
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be 'local', 'processes' or an executor object such as "
                        f"pb.DaskExecutor(client), got {executor!r}")
    return executor


# ---------------------------------------------------------------------------- progress
@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, label: str = "sweep"
                 ) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` for a bar of ``total`` combinations on stderr (rich, else tqdm, else
    nothing); a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    try:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
    except ImportError:  # pragma: no cover - rich is a dependency
        try:
            from tqdm import tqdm
        except ImportError:
            yield lambda n: None
            return
        with tqdm(total=total, desc=label, unit="run", file=sys.stderr) as bar:
            yield bar.update
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.update(task, advance=n)


# ---------------------------------------------------------------------------- checks
def _hint(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def axis_values(name: str, value: Any) -> list:
    """A list, tuple, range, array or Index is an axis; anything else one fixed value."""
    if isinstance(value, (list, tuple, range, np.ndarray, pd.Index, pd.Series)):
        values = list(value)
        if not values:
            raise ValueError(f"sweep: {name} is an empty list; give at least one value")
        return values
    return [value]


def check_grid(strategy_cls: type, grid: Mapping[str, Any]) -> dict[str, list]:
    """The grid as {parameter: [values]}; a key the strategy lacks is a ValueError."""
    if not (isinstance(strategy_cls, type) and issubclass(strategy_cls, Strategy)):
        raise TypeError(f"sweep: strategy_cls must be a pb.Strategy subclass (the class, not an "
                        f"instance), got {strategy_cls!r}")
    if not isinstance(grid, Mapping):
        raise TypeError(f"sweep: grid must map parameter names to lists of values, got "
                        f"{type(grid).__name__}")
    known = strategy_cls.param_names()
    for key in grid:
        if key not in known:
            raise ValueError(f"sweep grid: {strategy_cls.__name__} has no parameter {key!r}"
                             f"{_hint(str(key), known)} (parameters: {known})")
    return {key: axis_values(f"grid[{key!r}]", value) for key, value in grid.items()}


def check_options(backtest_kw: Mapping[str, Any], own: Sequence[str] = _OWN_KEYWORDS,
                  caller: str = "sweep") -> dict[str, Any]:
    """The extra ``pb.backtest`` keywords; an unknown one is a TypeError with a hint."""
    params = inspect.signature(perpbt.backtest).parameters
    allowed = [p for p in params if p not in own]
    for key in backtest_kw:
        if key not in allowed:
            raise TypeError(f"{caller} got an unexpected keyword {key!r}{_hint(key, allowed)} "
                            f"(pb.backtest keywords: {allowed})")
    return dict(backtest_kw)


def check_sizing(sizing: Any) -> list:
    """The sizing axis: None (the strategy's own exposures) or perpbt.sizing rules."""
    from perpbt.sizing import _check

    values = axis_values("sizing", sizing)
    for v in values:
        if v is not None:
            _check(v)
    return values


def check_axes(market, stops: list, leverages: list, margins: list, venues: list) -> None:
    for m in margins:
        parse_enum(MarginMode, m, "margin")
    for v in venues:
        get_venue(v)
    for lev in leverages:
        values = lev.values() if isinstance(lev, Mapping) else [lev]
        for x in values:
            if isinstance(x, bool) or not isinstance(x, (int, float, np.number)) or not x >= 1:
                raise ValueError(f"sweep: leverage {lev!r} is not a number >= 1")
    for s in stops:
        stop_rules(s, market)  # every stop rule pb.backtest takes (pct, ATR, trailing ...)
        if isinstance(s, (int, float)) and not 0 < s < 1:
            raise ValueError(f"sweep: stop {s!r} is not a fraction in (0, 1); 0.02 = 2 %")


# ---------------------------------------------------------------------------- sweep
def sweep(market, strategy_cls: type, grid: Mapping[str, Any], *, stop: Any = None,
          sizing: Any = None, leverage: Any = 10, margin: Any = "isolated",
          venue: Any = "binance", executor: Any = "local", stats_only: bool = True,
          progress: bool = True, **backtest_kw) -> pd.DataFrame:
    """Backtest every combination of ``grid`` x stop x sizing x leverage x margin x venue.

    ``grid`` maps ``strategy_cls`` parameter names to lists of values (a scalar is fixed);
    ``stop`` (a fraction of the entry or ``pb.StopLoss``), ``leverage``, ``margin`` and
    ``venue`` take a scalar or a list (each list is an axis); ``sizing`` takes perpbt.sizing
    rules or None (None and a None stop: the strategy's ``default_sizing``/``default_stop``).
    ``executor``: "local" (threads in this process, one per core), "processes", a
    ``LocalExecutor(max_workers=...)``, a ``ProcessExecutor`` or ``pb.DaskExecutor``. Other
    keywords (``take``, ``initial_capital``, ``funding``, ``liquidation``, ``execution`` ...)
    go to every ``pb.backtest``.

    Returns one row per combination, in product order (grid keys in the given order, then
    stop, sizing, leverage, margin, venue; the last varies fastest): a column per grid key
    (``param_<key>`` where a key collides with another column), ``stop``, ``sizing``,
    ``leverage``, ``margin``, ``venue``, then the keys of ``Result.stats()``.
    """
    axes = check_grid(strategy_cls, grid)
    sizings = check_sizing(sizing)
    stops, leverages = axis_values("stop", stop), axis_values("leverage", leverage)
    margins, venues = axis_values("margin", margin), axis_values("venue", venue)
    options = check_options(backtest_kw)
    check_axes(market, stops, leverages, margins, venues)
    runner = resolve_executor(executor)

    keys = list(axes)
    param_sets = [dict(zip(keys, values)) for values in itertools.product(*axes.values())]
    strategies = [strategy_cls(**params) for params in param_sets]  # bad values raise here

    # signals once per distinct parameter set (computed by the job on first use)
    frame_of: dict[str, int] = {}
    distinct, labels, set_frame = [], [], []
    for strat in strategies:
        label = repr(strat)
        if label not in frame_of:
            frame_of[label] = len(distinct)
            distinct.append(strat)
            labels.append(label)
        set_frame.append(frame_of[label])

    combos, rows, run_keys = [], [], []
    engine_axes = list(itertools.product(*(enumerate(axis) for axis in
                                           (stops, sizings, leverages, margins, venues))))
    for p, params in enumerate(param_sets):
        for (si, s), (zi, z), (li, lev), (mi, mar), (vi, ven) in engine_axes:
            # the strategy's own stop and sizing where the axis says None, as pb.backtest
            s_run = strategy_cls.default_stop if s is None else s
            z_run = getattr(strategy_cls, "default_sizing", None) if z is None else z
            combos.append(Combo(len(combos), set_frame[p], s_run, lev, mar, ven, z_run))
            rows.append({**params, "stop": s, "sizing": z, "leverage": lev, "margin": mar,
                         "venue": ven})
            # the run order puts the combinations that can share an engine call (the same
            # targets, sizing, leverage and venue: engine/batch.py) next to each other
            run_keys.append((set_frame[p], zi, li, vi, si, mi))
    if options.get("take") is None and strategy_cls.default_take is not None:
        options = {**options, "take": strategy_cls.default_take}
    job = SweepJob(market, [None] * len(distinct), labels,
                   {**options, "stats_only": bool(stats_only)}, strategies=distinct,
                   stops=list({id(c.stop): c.stop for c in combos}.values()))

    stats: dict[int, dict] = {}
    todo: Sequence[Combo] = [combos[i] for i in sorted(range(len(combos)),
                                                       key=run_keys.__getitem__)]
    if combos and not getattr(runner, "in_process", False):
        # compile (or load) the kernel and check one combination here, before shipping
        # anything to workers (the local executor's threads share this process: they
        # start at once, and the first to need the kernel loads it)
        stats[todo[0].index] = run_combo(job, todo[0])
        todo = todo[1:]
    parts = runner.submit(job, todo) if todo else iter(())
    try:
        with progress_bar(len(combos), progress, f"sweep {strategy_cls.__name__}") as advance:
            advance(len(stats))
            for part in parts:
                for index, row in part:
                    stats[index] = row
                advance(len(part))
    finally:
        close = getattr(parts, "close", None)
        if close is not None:
            close()
    return _frame(keys, rows, stats)


def _columns(rows: Sequence[Mapping], names: Sequence[str]) -> list[tuple]:
    """Each of ``names`` as a tuple of its values in ``rows``, in order (itemgetter and zip:
    C loops; one list comprehension per column took three times as long)."""
    if len(names) < 2:
        return [tuple(row[name] for row in rows) for name in names]
    return list(zip(*map(operator.itemgetter(*names), rows)))


def _frame(keys: list[str], rows: list[dict], stats: Mapping[int, dict]) -> pd.DataFrame:
    metrics = list(stats[0])  # every axis has a value: at least one combination
    # one column at a time (DataFrame.from_records of row dicts took twice as long)
    taken = set(AXES) | set(metrics)
    names = {k: (f"param_{k}" if k in taken else k) for k in keys}
    ordered = [stats[i] for i in range(len(rows))]
    data: dict[str, Any] = {name: list(values) for name, values in
                            zip([names[k] for k in keys] + list(AXES),
                                _columns(rows, [*keys, *AXES]))}
    mixed = []  # metric columns that are not all numbers (None somewhere ...)
    for m, values in zip(metrics, _columns(ordered, metrics)):
        array = np.array(values)  # pandas infers a list's dtype about 10x slower
        if array.dtype.kind in "fiub":
            data[m] = array
        else:
            data[m] = list(values)
            mixed.append(m)
    columns = [names[k] for k in keys] + list(AXES) + metrics
    frame = pd.DataFrame(data, columns=columns)
    for m in mixed:  # one dtype per metric column: counts int, flags bool, others float
        if frame[m].dtype == object and m != "bust":
            with contextlib.suppress(TypeError, ValueError):
                frame[m] = pd.to_numeric(frame[m])
    frame.attrs = {"perpbt_params": [names[k] for k in keys], "perpbt_metrics": metrics}
    return frame
