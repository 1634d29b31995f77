"""Switching executors: outputs are cached per executor, so a run on another executor than the
graph's last one recomputes them, and says so (a RunNote, ``stats["reason"]``, the Run's repr)."""

from __future__ import annotations

import vortex_jupyter as vx
from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.spec import PortSpec

from .helpers import math_specs, no_problems


class Pool(InProcessExecutor):
    """Stands in for the worker pool: another executor, with its own name and cache."""

    name = "workers"


def _chain(n: int) -> GraphModel:
    m = GraphModel()
    prev = None
    for i in range(n):
        node = m.add_node("add", {"b": i}, id=f"n{i}")
        if prev is not None:
            m.connect(prev, 0, node, "a")
        prev = node
    return m


def test_a_run_on_another_executor_says_why_it_reruns_what_the_last_one_holds():
    m = _chain(3)
    eng = Engine(m, math_specs().lookup, no_problems)
    pool, inline = Pool(), InProcessExecutor()
    caches = {pool: OutputCache(pool), inline: OutputCache(inline)}
    first = eng.run(pool, cache=caches[pool])
    assert first.note is None and "reason" not in first.stats
    seen: list = []
    switched = eng.run(inline, cache=caches[inline], listeners=[seen.append])
    why = "re-running 3 nodes: cached outputs belong to the workers executor"
    assert switched.stats == {"ran": 3, "cached": 0, "failed": 0, "reason": why}
    assert [e.kind for e in seen[:2]] == ["run_started", "run_note"]
    note = seen[1]
    assert (note.message, note.reason) == (why, "executor") and "executor='workers'" in note.hint
    assert seen[-1].stats["reason"] == why  # RunFinished carries it too
    assert eng.run(inline, cache=caches[inline]).note is None  # same executor: all cached, nothing to say
    m.set_param("n2", "b", 50)
    back = eng.run(pool, cache=caches[pool])  # back on the pool: n0 and n1 still cached there
    assert back.stats == {"ran": 1, "cached": 2, "failed": 0}  # n2 changed: it runs, for its own reason


def test_nodes_that_always_run_are_not_counted_as_rerun_for_the_switch():
    specs = math_specs()
    specs.define("noise", lambda a=0: (a,), [PortSpec("a", "INT", default=0)], always_run=True)
    m = GraphModel()
    m.add_node("noise", id="x")
    m.add_node("add", {"b": 1}, id="y")
    eng = Engine(m, specs.lookup, no_problems)
    pool, inline = Pool(), InProcessExecutor()
    eng.run(pool, cache=OutputCache(pool))
    run = eng.run(inline, cache=OutputCache(inline))
    assert run.stats["reason"] == "re-running 1 node: cached outputs belong to the workers executor"


def test_the_notebook_repr_of_a_switched_run_says_why():
    g = vx.Graph()
    x = g.add("IntAdd", a=1, b=2)
    g.add("IntAdd", a=x.out(0), b=5)
    g.run(executor=Pool())
    run = g.run(executor="inline")
    assert run.note is not None and run.stats["ran"] == 2
    assert "note: re-running 2 nodes: cached outputs belong to the workers executor" in repr(run)
    assert g.run(executor="inline").note is None
