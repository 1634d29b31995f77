"""The run loop with the in-process executor: events, failures, cancel, hidden inputs."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.executor import CancelToken
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.errors import Problem, ValidationError, VortexError
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.spec import NodeResult, PortSpec

from .helpers import Specs, math_specs, no_problems

INT = [PortSpec("a", "INT", default=0)]


def _engine(m: GraphModel, specs: Specs, validator=no_problems) -> tuple[Engine, InProcessExecutor, OutputCache]:
    ex = InProcessExecutor()
    return Engine(m, specs.lookup, validator), ex, OutputCache(ex)


def _chain(specs_types: list[str]) -> GraphModel:
    m = GraphModel()
    prev = None
    for i, t in enumerate(specs_types):
        n = m.add_node(t, {"b": i} if t == "add" else {}, id=f"n{i}")
        if prev is not None:
            m.connect(prev, 0, n, "a")
        prev = n
    return m


def test_events_come_in_order_cached_then_queued_then_node_events_then_finished():
    m = _chain(["add", "add"])
    eng, ex, cache = _engine(m, math_specs())
    eng.run(ex, cache=cache)
    m.set_param("n1", "b", 10)
    seen: list = []
    state = eng.run(ex, cache=cache, listeners=[seen.append])
    kinds = [(e.kind, getattr(e, "node", None)) for e in seen]
    assert kinds == [("run_started", None), ("node_cached", "n0"), ("node_queued", "n1"),
                     ("node_started", "n1"), ("node_finished", "n1"), ("run_finished", None)]
    assert seen[0].planned == ("n1",) and seen[0].cached == ("n0",)
    assert seen[-1].stats == {"ran": 1, "cached": 1, "failed": 0} == state.stats
    assert state.events == seen


def test_a_failing_node_fails_only_its_descendants_and_the_rest_stays_cached():
    specs = math_specs()
    m = GraphModel()
    m.add_node("add", {"a": 1}, id="root")
    m.add_node("boom", id="bad")
    m.add_node("add", id="below_bad")
    m.add_node("add", {"b": 2}, id="ok")
    m.connect("root", 0, "bad", "a")
    m.connect("bad", 0, "below_bad", "a")
    m.connect("root", 0, "ok", "a")
    eng, ex, cache = _engine(m, specs)
    state = eng.run(ex, cache=cache)
    assert state.status == "failed"
    assert state.output("ok") == (3,)
    assert state.errors["bad"].code == "VE-500" and "boom on 1" in state.errors["bad"].message
    assert "ValueError" in state.errors["bad"].traceback
    assert state.errors["below_bad"].code == "VE-505" and "'bad'" in state.errors["below_bad"].message
    assert state.stats == {"ran": 2, "cached": 0, "failed": 2}
    with pytest.raises(Exception, match="boom"):
        state.output("bad")
    again = eng.run(ex, cache=cache)
    assert set(again.cached) == {"root", "ok"}  # finished results survived the failure
    assert again.planned == ["bad", "below_bad"]


def test_a_listener_that_raises_is_logged_and_the_run_goes_on(caplog):
    m = _chain(["add", "add"])
    eng, ex, cache = _engine(m, math_specs())

    def bad_listener(event):
        raise RuntimeError("listener bug")

    state = eng.run(ex, cache=cache, listeners=[bad_listener])
    assert state.status == "ok" and state.output("n1") == (1,)
    assert "listener bug" in caplog.text


def test_cancel_stops_the_run_between_nodes_and_reports_the_rest():
    specs = math_specs()
    started = threading.Event()

    def slow(a=0):
        started.set()
        for _ in range(200):
            context.current().raise_if_cancelled()
            time.sleep(0.01)
        return (a,)

    specs.define("slow", slow, INT)
    m = _chain(["add", "slow", "add", "add"])
    eng, ex, cache = _engine(m, specs)
    token = CancelToken()
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("s", eng.run(ex, cache=cache, cancel=token)))
    t.start()
    assert started.wait(10)
    token.cancel()
    t.join(10)
    state = result["s"]
    assert state.status == "cancelled"
    assert state.output("n0") == (0,)
    assert {state.errors[n].code for n in ("n1", "n2", "n3")} == {"VE-504"}


def test_cooperative_timeout_fails_the_node_with_ve_501():
    specs = math_specs()

    def hang(a=0):
        while True:
            context.current().raise_if_cancelled()
            time.sleep(0.005)

    specs.define("hang", hang, INT)
    m = _chain(["hang"])
    eng, ex, cache = _engine(m, specs)
    state = eng.run(ex, cache=cache, node_timeout=0.05)
    assert state.errors["n0"].code == "VE-501"
    assert "timeout" in state.errors["n0"].message


def test_validation_problems_raise_before_anything_runs():
    specs = math_specs()
    m = _chain(["add"])

    def one_problem(model, lookup):
        return [Problem("VE-105", "n0", "b", "b is out of range", "use 0..10")]

    eng, ex, cache = _engine(m, specs, one_problem)
    with pytest.raises(ValidationError) as info:
        eng.run(ex, cache=cache)
    assert info.value.problems[0].code == "VE-105"
    assert specs.calls == []


def test_outputs_restrict_the_run_to_their_ancestors():
    specs = math_specs()
    m = GraphModel()
    for n in ("a", "b", "other"):
        m.add_node("add", {"b": 1}, id=n)
    m.connect("a", 0, "b", "a")
    eng, ex, cache = _engine(m, specs)
    state = eng.run(ex, cache=cache, outputs=["b"])
    assert state.planned == ["a", "b"] and state.output("b") == (2,)
    with pytest.raises(KeyError):
        state.output("other")


def test_nodes_with_the_same_key_run_once():
    specs = math_specs()
    m = GraphModel()
    m.add_node("add", {"a": 1, "b": 2}, id="x")
    m.add_node("add", {"a": 1, "b": 2}, id="twin")
    eng, ex, cache = _engine(m, specs)
    state = eng.run(ex, cache=cache)
    assert len(specs.calls) == 1
    assert state.output("twin") == state.output("x") == (3,)
    assert state.stats == {"ran": 1, "cached": 1, "failed": 0}


def test_always_run_nodes_and_their_descendants_run_every_time():
    specs = math_specs()
    counter = iter(range(1000))
    specs.define("tick", lambda: (next(counter),), [], always_run=True)
    m = GraphModel()
    m.add_node("tick", id="t")
    m.add_node("add", id="below")
    m.add_node("add", {"a": 5}, id="aside")
    m.connect("t", 0, "below", "a")
    eng, ex, cache = _engine(m, specs)
    first = eng.run(ex, cache=cache)
    second = eng.run(ex, cache=cache)
    assert second.planned == ["t", "below"] and second.cached == ["aside"]
    assert second.output("below") != first.output("below") or second.output("below") == (1,)


def test_fingerprint_change_reruns_the_node_and_its_descendants():
    specs = math_specs()
    stamp = {"v": 1}
    specs.define("file", lambda path="x": (stamp["v"],), [PortSpec("path", "STRING", default="x")],
                 fingerprint=lambda path: (path, stamp["v"]))
    m = GraphModel()
    m.add_node("file", id="f")
    m.add_node("add", id="g")
    m.connect("f", 0, "g", "a")
    eng, ex, cache = _engine(m, specs)
    eng.run(ex, cache=cache)
    assert eng.run(ex, cache=cache).planned == []
    stamp["v"] = 2
    state = eng.run(ex, cache=cache)
    assert state.planned == ["f", "g"] and state.output("g") == (2,)


def test_hidden_inputs_are_filled_only_for_nodes_that_declare_them():
    specs = math_specs()
    seen: dict = {}

    def save(a=0, prompt=None, extra_pnginfo=None, unique_id=None):
        seen.update(prompt=prompt, extra_pnginfo=extra_pnginfo, unique_id=unique_id)
        return NodeResult((), {"text": [str(a)]})

    specs.define("save", save, INT, outputs=[], output_node=True,
                 hidden=("prompt", "extra_pnginfo", "unique_id"))
    m = GraphModel()
    m.add_node("add", {"a": 2}, id="src")
    m.add_node("save", id="out")
    m.connect("src", 0, "out", "a")
    eng, ex, cache = _engine(m, specs)
    state = eng.run(ex, cache=cache)
    assert state.status == "ok", state.errors
    assert seen["unique_id"] == "out"
    assert seen["prompt"]["out"]["class_type"] == "save"
    assert seen["prompt"]["out"]["inputs"]["a"] == ["src", 0]
    assert "nodes" in seen["extra_pnginfo"]["workflow"]
    assert state.ui["out"] == {"text": ["2"]}


def test_previews_become_png_events_and_final_ones_stay_with_the_cache():
    specs = math_specs()

    def show(a=0):
        ctx = context.current()
        ctx.progress(1, 2)
        ctx.preview(np.full((1, 4, 4, 3), 0.5, dtype=np.float32))
        ctx.preview(np.zeros((4, 4, 3), dtype=np.uint8), final=True)
        return NodeResult((), {})

    specs.define("show", show, INT, outputs=[], output_node=True)
    m = _chain(["show"])
    eng, ex, cache = _engine(m, specs)
    seen: list = []
    state = eng.run(ex, cache=cache, listeners=[seen.append])
    previews = [e for e in seen if e.kind == "node_preview"]
    assert [p.final for p in previews] == [False, True]
    assert all(p.data.startswith(b"\x89PNG") for p in previews)
    assert [e.kind for e in seen if e.kind == "node_progress"] == ["node_progress"]
    assert len(state.final_previews()) == 1
    again = eng.run(ex, cache=cache)
    assert again.cached == ["n0"] and len(again.final_previews()) == 1


def test_lost_outputs_are_dropped_and_recomputed():
    m = _chain(["add", "add"])
    eng, ex, cache = _engine(m, math_specs())
    state = eng.run(ex, cache=cache)
    cache.drop([state.node_keys["n0"]])
    again = eng.run(ex, cache=cache)
    assert again.planned == ["n0"] and again.cached == ["n1"]


def test_wrong_number_of_outputs_fails_the_node_with_a_clear_message():
    specs = math_specs()
    specs.define("two", lambda a=0: (1, 2), INT)
    eng, ex, cache = _engine(_chain(["two"]), specs)
    state = eng.run(ex, cache=cache)
    assert "returned 2 value(s) but declares 1 output" in state.errors["n0"].message


def test_a_nan_or_failing_fingerprint_means_changed_and_never_breaks_the_run():
    specs = math_specs()
    specs.define("nan_fp", lambda a=0: (a,), INT, fingerprint=lambda a: float("nan"))

    def broken(a):
        raise OSError("file vanished")

    specs.define("broken_fp", lambda a=0: (a + 1,), INT, fingerprint=broken)
    m = GraphModel()
    m.add_node("nan_fp", {"a": 1}, id="n")
    m.add_node("broken_fp", {"a": 1}, id="b")
    m.add_node("add", {"a": 9}, id="steady")
    eng, ex, cache = _engine(m, specs)
    eng.run(ex, cache=cache)
    again = eng.run(ex, cache=cache)
    assert again.status == "ok" and sorted(again.planned) == ["b", "n"] and again.cached == ["steady"]
    assert again.output("b") == (2,)


def test_run_node_timeout_overrides_a_nodes_declared_timeout_both_ways(monkeypatch):
    specs = math_specs()

    def nap(a=0, seconds=0.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            context.current().raise_if_cancelled()
            time.sleep(0.005)
        return (a,)

    specs.define("nap", nap, [*INT, PortSpec("seconds", "FLOAT", default=0.0)], timeout=0.05)
    m = GraphModel()
    m.add_node("nap", {"seconds": 0.3}, id="n")
    eng, ex, cache = _engine(m, specs)
    assert eng.run(ex, cache=cache).errors["n"].code == "VE-501"  # the declared 0.05 s
    assert eng.run(ex, cache=cache, node_timeout=5).status == "ok"  # raised for this run, as hints say
    m.set_param("n", "seconds", 0.31)
    monkeypatch.setenv("VORTEX_NODE_TIMEOUT", "5")  # the env default never beats a declared timeout
    assert eng.run(ex, cache=cache).errors["n"].code == "VE-501"
    assert eng.run(ex, cache=cache, node_timeout=0.05).errors["n"].code == "VE-501"  # lowered too


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "soon", True])
def test_a_timeout_that_is_not_a_positive_number_is_refused_before_anything_runs(bad, monkeypatch):
    specs = math_specs()
    m = _chain(["add"])
    eng, ex, cache = _engine(m, specs)
    with pytest.raises(VortexError, match=r"node_timeout .* positive number of seconds"):
        eng.run(ex, cache=cache, node_timeout=bad)
    monkeypatch.setenv("VORTEX_NODE_TIMEOUT", str(bad))
    with pytest.raises(VortexError, match="VORTEX_NODE_TIMEOUT"):
        eng.run(ex, cache=cache)
    assert specs.calls == []


def test_a_vortex_error_raised_by_a_node_keeps_its_code_and_its_fix():
    from vortex_jupyter.errors import ModelError

    specs = math_specs()

    def load(a=0):
        raise ModelError("checkpoint 'x.safetensors' not found", hint="put it in the models folder")

    specs.define("load", load, INT)
    eng, ex, cache = _engine(_chain(["load"]), specs)
    err = eng.run(ex, cache=cache).errors["n0"]
    assert err.code == "VE-800" and "'x.safetensors' not found" in err.message
    assert "fix: put it in the models folder" in err.message  # shown by run.errors and the CLI


def test_sys_exit_in_a_node_is_a_node_failure_and_keyboard_interrupt_cancels_the_run():
    import sys

    specs = math_specs()

    def bye(a=0):
        sys.exit(3)

    def interrupted(a=0):
        raise KeyboardInterrupt

    specs.define("bye", bye, INT)
    specs.define("interrupted", interrupted, INT)
    m = GraphModel()
    m.add_node("bye", id="exit")
    m.add_node("add", {"b": 1}, id="independent")
    eng, ex, cache = _engine(m, specs)
    state = eng.run(ex, cache=cache)  # does not raise SystemExit
    assert state.errors["exit"].code == "VE-500" and "SystemExit" in state.errors["exit"].message
    assert state.output("independent") == (1,)

    m2 = _chain(["interrupted", "add"])
    eng2, ex2, cache2 = _engine(m2, specs)
    state2 = eng2.run(ex2, cache=cache2)  # the interrupt ends the run, not the caller
    assert state2.status == "cancelled"
    assert state2.errors["n0"].code == "VE-504" and "interrupted" in state2.errors["n0"].message
    assert state2.errors["n1"].code in ("VE-504", "VE-505")


class _Interrupt:
    """A listener that raises KeyboardInterrupt at the first ``node_started``: Jupyter's interrupt
    arriving while the run waits between nodes (or on a worker), outside any node's code."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, event) -> None:
        if event.kind == "node_started" and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def test_an_interrupted_run_still_ends_with_run_finished_then_re_raises():
    m = _chain(["add", "add", "add"])
    eng, ex, cache = _engine(m, math_specs())
    seen: list = []
    state = None
    with pytest.raises(KeyboardInterrupt):
        state = eng.run(ex, cache=cache, listeners=[seen.append, _Interrupt()])
    assert state is None
    assert [e.kind for e in seen][-1] == "run_finished"  # a canvas re-enables its Run button
    finished = seen[-1]
    assert finished.status == "cancelled"
    assert {e.node for e in seen if e.kind == "node_failed"} == {"n0", "n1", "n2"}
    again = eng.run(ex, cache=cache, listeners=[seen.append])  # and the next run runs
    assert again.status == "ok" and again.stats["ran"] == 3


def test_an_executor_that_raises_still_ends_the_run_with_run_finished():
    class Broken(InProcessExecutor):
        def execute(self, batch, callbacks, cancel):
            raise RuntimeError("pool is gone")

    m = _chain(["add"])
    ex = Broken()
    eng = Engine(m, math_specs().lookup, no_problems)
    seen: list = []
    with pytest.raises(RuntimeError, match="pool is gone"):
        eng.run(ex, cache=OutputCache(ex), listeners=[seen.append])
    assert (seen[-1].kind, seen[-1].status) == ("run_finished", "failed")
