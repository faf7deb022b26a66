"""Run a sweep on a Dask cluster: ``pb.sweep(..., executor=pb.DaskExecutor(client))``.

The market and the target frames go to every worker once (``client.scatter(...,
broadcast=True)``); the combinations are cut into about ``chunks_per_worker`` chunks per
worker thread, mapped with ``client.map`` and streamed back with
``distributed.as_completed``; :func:`perpbt.sweep.sweep` puts the rows back in combination
order. Workers need perpbt installed (and ideally a warm ``NUMBA_CACHE_DIR``: a cold worker
compiles the engine on its first chunk).

dask is optional: ``pip install perpbt[dask]``.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from perpbt.sweep import Combo, Part, SweepJob, chunked, run_chunk

INSTALL_HINT = ("pb.DaskExecutor needs dask.distributed, which is not installed; install it "
                "with `pip install perpbt[dask]` (or `pip install \"dask[distributed]\"`)")


def import_distributed():
    """The ``distributed`` module, or an ImportError saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return distributed


class DaskExecutor:
    """Sweep executor on a ``distributed.Client``, a scheduler address
    ("tcp://host:8786") or a cluster object (``distributed.LocalCluster``).

    A client passed in stays open; one made here from an address or cluster is closed after
    each sweep."""

    def __init__(self, client_or_address: Any, chunks_per_worker: int = 4) -> None:
        self._distributed = import_distributed()
        if client_or_address is None:
            raise ValueError("DaskExecutor needs a distributed.Client, a scheduler address or "
                             "a cluster, got None")
        self.target = client_or_address
        self.chunks_per_worker = max(1, int(chunks_per_worker))

    def _client(self):
        """(client, made_here)."""
        if isinstance(self.target, self._distributed.Client):
            return self.target, False
        return self._distributed.Client(self.target), True

    def submit(self, job: SweepJob, combos: Sequence[Combo]) -> Iterator[Part]:
        client, own = self._client()
        try:
            slots = max(1, sum(client.nthreads().values()))
            chunks = chunked(combos, slots * self.chunks_per_worker)
            job.materialize()  # the frames go to the workers, never the strategies
            shared = client.scatter(job, broadcast=True, hash=False)
            futures = client.map(run_chunk, chunks, job=shared, pure=False)
        except BaseException:
            if own:
                client.close()
            raise
        return self._collect(client, own, shared, futures)

    def _collect(self, client, own: bool, shared, futures) -> Iterator[Part]:
        try:
            for _, part in self._distributed.as_completed(futures, with_results=True):
                yield part
        finally:
            client.cancel(futures + [shared])
            if own:
                client.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.target!r})"
