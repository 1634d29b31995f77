"""``run.outputs``: a read-only mapping of exactly the nodes that have outputs; failed nodes are
in ``run.errors``, and reading a node without outputs is a ``KeyError`` that says why."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import pytest

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.executor import CancelToken
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.engine.state import MissingOutputError, Run, RunState
from vortex_jupyter.errors import ExecutionError
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.spec import PortSpec

from .helpers import math_specs, no_problems


def _graph() -> tuple[GraphModel, Engine, InProcessExecutor, OutputCache]:
    """ok (1) -> plus (3); bad (raises) -> below (VE-505)."""
    specs = math_specs()
    m = GraphModel()
    m.add_node("add", {"a": 1}, id="ok")
    m.add_node("add", {"b": 2}, id="plus")
    m.connect("ok", 0, "plus", "a")
    m.add_node("boom", {"a": 7}, id="bad")
    m.add_node("add", {}, id="below")
    m.connect("bad", 0, "below", "a")
    ex = InProcessExecutor()
    return m, Engine(m, specs.lookup, no_problems), ex, OutputCache(ex)


def _run(eng: Engine, ex: InProcessExecutor, cache: OutputCache, **kw) -> Run:
    return Run(eng.run(ex, cache=cache, **kw), CancelToken())


def test_outputs_is_a_mapping_of_exactly_the_nodes_that_produced_outputs():
    _m, eng, ex, cache = _graph()
    run = _run(eng, ex, cache)
    out = run.outputs
    assert isinstance(out, Mapping)
    assert sorted(out) == ["ok", "plus"] and len(out) == 2 and sorted(out.keys()) == ["ok", "plus"]
    assert dict(out.items()) == {"ok": (1,), "plus": (3,)} and sorted(out.values()) == [(1,), (3,)]
    assert out == {"ok": (1,), "plus": (3,)}
    assert {"plus": (3,), "ok": (1,)} == out  # noqa: SIM300  # a dict on the left compares too
    assert out != {"ok": (1,)}
    assert "ok" in out and "bad" not in out and "below" not in out and "nope" not in out
    assert set(run.errors) == {"bad", "below"}  # the errors stay where they were


def test_get_of_a_failed_node_returns_the_default_and_indexing_it_says_how_it_failed():
    _m, eng, ex, cache = _graph()
    run = _run(eng, ex, cache)
    assert run.outputs.get("bad") is None and run.outputs.get("below", "none") == "none"
    with pytest.raises(KeyError) as info:
        run.outputs["bad"]
    err = info.value
    assert isinstance(err, MissingOutputError)
    assert str(err).startswith("node 'bad' has no outputs: it failed with VE-500 (node 'bad' (boom) raised ValueError")
    assert "run.errors['bad']" in str(err)
    assert isinstance(err.__cause__, ExecutionError) and err.__cause__ is run.errors["bad"]
    with pytest.raises(KeyError, match=r"node 'below' has no outputs: it failed with VE-505 .*upstream node 'bad'"):
        run.outputs["below"]


def test_a_node_that_was_not_part_of_the_run_is_a_key_error_saying_so():
    _m, eng, ex, cache = _graph()
    run = _run(eng, ex, cache, outputs=["ok"])
    assert dict(run.outputs) == {"ok": (1,)}
    for node in ("plus", "no-such-node"):
        with pytest.raises(KeyError, match=f"node '{node}' was not part of this run, so it did not run"):
            run.outputs[node]
        assert run.outputs.get(node) is None


def test_cached_nodes_are_outputs_too_and_handles_with_an_id_work_as_keys():
    _m, eng, ex, cache = _graph()
    _run(eng, ex, cache)
    again = _run(eng, ex, cache)
    assert again.stats["cached"] == 2 and again.outputs == {"ok": (1,), "plus": (3,)}

    class Handle:
        id = "plus"

    assert again.outputs[Handle()] == (3,) and Handle() in again.outputs


def test_evicted_outputs_leave_the_mapping_and_reading_them_says_why():
    _m, eng, ex, _cache = _graph()
    run = _run(eng, ex, OutputCache(ex, max_entries=1))  # only the newest entry stays
    present = list(run.outputs)
    assert len(present) == 1 and present[0] in ("ok", "plus")
    gone = "plus" if present[0] == "ok" else "ok"
    assert gone not in run.outputs and run.outputs.get(gone) is None
    with pytest.raises(KeyError, match=f"the outputs of node '{gone}' are no longer cached"):
        run.outputs[gone]


def test_while_a_run_is_in_flight_only_finished_nodes_are_outputs():
    specs = math_specs()
    gate = threading.Event()
    specs.define("wait", lambda a=0: (gate.wait(30) and a,), [PortSpec("a", "INT", default=0)])
    m = GraphModel()
    m.add_node("add", {"a": 5}, id="first")
    m.add_node("wait", {}, id="slow")
    m.connect("first", 0, "slow", "a")
    ex = InProcessExecutor()
    eng, cache = Engine(m, specs.lookup, no_problems), OutputCache(ex)
    state = RunState("r1", ex, cache)  # as Graph.start() makes it: readable while the run goes on
    thread = threading.Thread(target=eng.run, args=(ex,), kwargs={"cache": cache, "state": state})
    thread.start()
    outputs = Run(state, CancelToken()).outputs
    try:
        deadline = time.monotonic() + 30
        while not any(call[0] == "wait" for call in specs.calls):
            assert time.monotonic() < deadline, "the slow node never started"
            time.sleep(0.005)
        assert dict(outputs) == {"first": (5,)} and "slow" not in outputs
        with pytest.raises(KeyError, match="node 'slow' has no outputs yet: the run is still running"):
            outputs["slow"]
    finally:
        gate.set()
        thread.join(30)
    assert outputs == {"first": (5,), "slow": (5,)}
