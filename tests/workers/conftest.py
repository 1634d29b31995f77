"""Fixtures of the worker tests: real pools of real worker processes, tasks built by hand.

Node functions live in ``nodes_lib`` (not importable by the workers' ``sys.path``), so they
are registered for pickling by value, just like notebook (``__main__``) functions are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import pytest

from vortex_jupyter.engine.events import Event, NodeFailed, NodeFinished
from vortex_jupyter.engine.executor import BatchCallbacks, CancelToken, Lit, Ref, Task
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec
from vortex_jupyter.workers.executor import WorkerExecutor
from vortex_jupyter.workers.pool import WorkerPool
from vortex_jupyter.workers.supervisor import PoolConfig

from . import nodes_lib

cloudpickle.register_pickle_by_value(nodes_lib)
FAST = dict(preload=("numpy",), late_preload=(), devices=["cpu"], arena_bytes=64 * 2**20)


def spec(fn: Any, n_out: int = 1, timeout: float | None = None, name: str | None = None) -> NodeSpec:
    outputs = tuple(OutputSpec(f"out{i}", "*") for i in range(n_out))
    return NodeSpec(name or fn.__name__, (), outputs, fn=fn, timeout=timeout)


def task(node: str, fn: Any, n_out: int = 1, timeout: float | None = None, **args: Any) -> Task:
    wired = {k: v if isinstance(v, (Lit, Ref)) else Lit(v) for k, v in args.items()}
    return Task(node, f"key-{node}", spec(fn, n_out), wired, timeout=timeout, run_id="r1")


def ref(node: str, index: int = 0, held: Any = None) -> Ref:
    return Ref(f"key-{node}", index, held)


@dataclass
class Recorder:
    """BatchCallbacks that remember everything."""

    events: list[Event] = field(default_factory=list)
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)

    @property
    def callbacks(self) -> BatchCallbacks:
        return BatchCallbacks(self.events.append, lambda t, refs: self.results.__setitem__(t.node_id, refs),
                              self.lost.extend)

    def failed(self, node: str) -> NodeFailed:
        found = [e for e in self.events if isinstance(e, NodeFailed) and e.node == node]
        assert found, f"node {node} did not fail; events: {self.events}"
        return found[-1]

    def finished(self) -> set[str]:
        return {e.node for e in self.events if isinstance(e, NodeFinished)}


def run(ex: WorkerExecutor, tasks: list[Task], cancel: CancelToken | None = None) -> Recorder:
    rec = Recorder()
    ex.execute(tasks, rec.callbacks, cancel or CancelToken())
    return rec


def shm_names(prefix: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix.lstrip("/"))]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(PoolConfig(**FAST))
    yield p
    p.close()


@pytest.fixture
def ex(pool: WorkerPool) -> WorkerExecutor:
    return WorkerExecutor(pool)


@pytest.fixture
def make_pool() -> Iterator[Any]:
    made: list[WorkerPool] = []

    def make(**config: Any) -> WorkerPool:
        made.append(WorkerPool(PoolConfig(**{**FAST, **config})))
        return made[-1]
    yield make
    for p in made:
        p.close()
