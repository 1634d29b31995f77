"""A worker that dies between runs takes exactly the outputs it held with it: ``drain_lost``
names them, the engine drops them before planning, and the next ``g.run()`` recomputes them.
A worker dying after planning fails the task that needed its output, saying the output will
be recomputed on the next run."""

from __future__ import annotations

import os
import signal
import time

import pytest

import vortex_jupyter as vx
from vortex_jupyter.nodes.registry import REGISTRY
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec
from vortex_jupyter.workers.executor import WorkerExecutor
from vortex_jupyter.workers.pool import WorkerRef

from . import nodes_lib as n
from .conftest import ref, run, task


def _spec(name, fn, inputs, out):
    return NodeSpec(name, tuple(PortSpec(i, t, default=d) for i, t, d in inputs), (OutputSpec("out", out),), fn=fn)


for _s in (_spec("W2Ramp", n.arange, [("n", "INT", 10)], "IMAGE"),
           _spec("W2Scaled", n.scaled_total, [("x", "IMAGE", None), ("k", "FLOAT", 1.0)], "FLOAT"),
           _spec("W2Add", n.add, [("a", "INT", 0), ("b", "INT", 0)], "INT")):
    REGISTRY.register(_s)

def _graph() -> vx.Graph:
    g = vx.Graph()
    g.add("W2Ramp", id="ramp", n=100)
    g.add("W2Scaled", id="scaled", x=g["ramp"].out(0), k=1.0)
    g.add("W2Add", id="add", a=1, b=2)
    return g


def _kill_and_wait(pid: int) -> None:
    """SIGKILL and wait until the fork server has reaped the process, as for a worker that died
    between two runs. (A zombie main thread is not enough: its other threads, and so its
    socket, may still be closing.)"""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {pid} was not reaped")
        time.sleep(0.005)


@pytest.fixture
def wex(make_pool):
    return WorkerExecutor(make_pool())


def test_drain_lost_names_exactly_the_outputs_the_dead_worker_held(wex):
    g = _graph()
    first = g.run(executor=wex)
    assert not first.errors and first.stats["ran"] == 3
    keys = first._state.node_keys
    assert wex.drain_lost() == []  # nobody died yet
    _kill_and_wait(wex.pool.supervisor.workers[0].pid)
    # the held array is lost; the inline float and int live in the kernel and survive
    assert wex.drain_lost() == [keys["ramp"]]
    assert wex.drain_lost() == []  # handed out once


def test_drain_lost_sees_a_death_the_monitor_has_not_noticed_yet(wex):
    first = _graph().run(executor=wex)
    w = wex.pool.supervisor.workers[0]
    w.poll = lambda: None  # type: ignore[method-assign]  # the monitor cannot read the EOF
    wex.pool.supervisor._closed.set()  # ... nor bury: only drain_lost's own check can
    try:
        _kill_and_wait(w.pid)
        w.exited.wait(5)  # the fork server's exit report marks it dead
        assert wex.drain_lost() == [first._state.node_keys["ramp"]]
    finally:
        wex.pool.supervisor._closed.clear()


def test_the_next_run_after_a_worker_died_between_runs_recomputes_exactly_the_lost_outputs(wex):
    calls = []
    drain = wex.drain_lost
    wex.drain_lost = lambda: calls.append(1) or drain()  # type: ignore[method-assign]
    g = _graph()
    first = g.run(executor=wex)
    assert first.stats["ran"] == 3
    assert calls, "the engine's run loop must call executor.drain_lost() before planning"
    _kill_and_wait(wex.pool.supervisor.workers[0].pid)
    g["scaled"].params["k"] = 2.0  # needs the array the dead worker held
    second = g.run(executor=wex)
    assert not second.errors, second.errors
    assert set(second.planned) == {"ramp", "scaled"}  # "add" (inline) stayed cached
    assert second.outputs["scaled"] == (2 * 4950.0,)


def test_a_worker_dying_after_planning_fails_the_node_naming_it_and_reports_the_lost_key(ex, pool):
    first = run(ex, [task("a", n.arange, n=10)])
    held = first.results["a"][0]
    assert isinstance(held, WorkerRef) and not held.inline
    _kill_and_wait(pool.supervisor.workers[0].pid)
    # the task was "planned" with the dead worker's output as its input
    rec = run(ex, [task("t", n.total, x=ref("a", held=held))])
    err = rec.failed("t")
    assert err.code == "VE-502"
    assert "node 't'" in err.message and "'a'" in err.message
    assert "recomputed on the next run" in err.message
    assert "key-a" in rec.lost  # the engine's cache drops it (on_lost), so the next run recomputes
    again = run(ex, [task("a", n.arange, n=10), task("t", n.total, x=ref("a"))])
    assert again.results["t"][0].value == 45.0
