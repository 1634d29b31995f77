"""The worker pool as the engine's executor: ``WorkerExecutor``, ``shared_pool()``, ``owner_executor()``.

The engine gets an executor injected from the front door (``Graph.run(executor=...)``,
``_api``); this is the one for worker processes. ``execute`` hands a batch to the scheduler
(``parallel.run_batch``: one worker slot, or several when the pool has more than one general
worker); outputs stay in the workers as ``WorkerRef``s (``pool.py``) until the engine's cache
releases them.

>>> ex = WorkerExecutor()            # the process-wide pool, started on first use
>>> ex.execute(tasks, callbacks, CancelToken())          # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ..engine.executor import BatchCallbacks, CancelToken, Task
from .parallel import run_batch
from .pool import WorkerPool, WorkerRef
from .supervisor import PoolConfig


class WorkerExecutor:
    """``engine.executor.Executor`` running nodes in worker processes."""

    name = "workers"

    def __init__(self, pool: WorkerPool | None = None, **config: Any) -> None:
        self._owns = pool is None and bool(config)
        self.pool = pool if pool is not None else (WorkerPool(PoolConfig(**config)) if config else shared_pool())
        if self._owns:
            weakref.finalize(self, self.pool.close)

    def execute(self, batch: Sequence[Task], callbacks: BatchCallbacks, cancel: CancelToken) -> None:
        run_batch(self.pool, list(batch), callbacks, cancel)

    def fetch(self, ref: Any) -> Any:
        return self.pool.fetch(ref) if isinstance(ref, WorkerRef) else ref

    def drain_lost(self) -> list[str]:
        """Cache keys whose outputs died with a worker since the last call: the engine drops
        them before planning, so the next run recomputes exactly those."""
        return self.pool.drain_lost()

    def release(self, refs: Sequence[Any]) -> None:
        self.pool.release(refs)

    def size_of(self, ref: Any) -> int:
        if isinstance(ref, WorkerRef):
            return ref.nbytes if not ref.inline else 64
        return 64

    def close(self) -> None:
        if self._owns:
            self.pool.close()


_SHARED: dict[str, WorkerPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(owner: str = "") -> WorkerPool:
    """The process-wide pool of ``owner`` (one worker per GPU, or one CPU worker), closed at exit.

    Owners: every graph of a kernel shares one pool (``owner=""``) -- one user's notebook. Under
    ``VORTEX_SANDBOX=strict`` each owner (``Graph.owner``; by default each ``Graph``) gets a pool
    of its own: its own worker processes, heaps and (unnamed) arena segments, and its own
    output cache, so a node of one graph cannot read another graph's outputs."""
    with _SHARED_LOCK:
        pool = _SHARED.get(owner)
        if pool is None or pool.supervisor._closed.is_set():
            pool = _SHARED[owner] = WorkerPool()
            atexit.register(pool.close)
        return pool


_OWNED: dict[str, WorkerExecutor] = {}


def owner_executor(owner: str) -> WorkerExecutor:
    """The executor (and so the output cache) of ``owner``'s pool; one per owner."""
    with _SHARED_LOCK:
        ex = _OWNED.get(owner)
    if ex is None or ex.pool.supervisor._closed.is_set():
        ex = WorkerExecutor(shared_pool(owner))
        with _SHARED_LOCK:
            ex = _OWNED.setdefault(owner, ex)
    return ex
