"""The worker pool under the engine's real run loop: results, failures, crash recovery, cache."""

from __future__ import annotations

import numpy as np
import pytest

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec

from . import nodes_lib as n


def _spec(name, fn, inputs, out="*"):
    return NodeSpec(name, tuple(PortSpec(i, t, default=d) for i, t, d in inputs), (OutputSpec("out", out),), fn=fn)


SPECS = {
    "Arange": _spec("Arange", n.arange, [("n", "INT", 10)], "IMAGE"),
    "Total": _spec("Total", n.total, [("x", "IMAGE", None)], "FLOAT"),
    "Crash": _spec("Crash", n.segfault, [("a", "INT", 0)], "INT"),
    "Add": _spec("Add", n.add, [("a", "INT", 0), ("b", "INT", 0)], "INT"),
}


@pytest.fixture
def graph():
    m = GraphModel()
    m.add_node("Arange", {"n": 100}, id="arange")
    m.add_node("Total", {}, id="total")
    m.connect("arange", 0, "total", "x")
    m.add_node("Add", {"a": 1, "b": 2}, id="add")
    return m


def test_a_graph_runs_on_workers_and_outputs_come_back_on_access(ex, graph):
    eng = Engine(graph, SPECS.get)
    state = eng.run(ex, cache=OutputCache(ex))
    assert state.stats["ran"] == 3 and not state.errors
    assert state.output("total") == (4950.0,)
    arr = state.output("arange")[0]
    assert isinstance(arr, np.ndarray) and arr[99] == 99.0
    eng.close()


def test_a_crash_fails_one_node_and_the_next_run_recomputes_what_the_worker_held(ex, graph, pool):
    cache = OutputCache(ex)
    eng = Engine(graph, SPECS.get)
    first = eng.run(ex, cache=cache)
    assert first.stats["ran"] == 3
    graph.add_node("Crash", {"a": 1}, id="crash")
    second = eng.run(ex, cache=cache)
    err = second.errors["crash"]
    assert err.code == "VE-502" and "SIGSEGV while running node 'crash'" in str(err)
    assert second.output("add") == (3,)  # inline: survived the crash
    graph.remove_node("crash")
    third = eng.run(ex, cache=cache)
    assert not third.errors
    assert third.stats["ran"] == 1  # only the lost array is recomputed; inline results were kept
    assert third.output("total") == (4950.0,) and third.output("arange")[0][5] == 5.0
    eng.close()
