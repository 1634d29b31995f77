"""Wired tasks: the run loop's tasks carry plain params and links; ``Task.args`` still gives
the ``Lit``/``Ref`` form every executor may read (the worker pool does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.executor import BatchCallbacks, CancelToken, Lit, Ref, Task, Wiring
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.model import GraphModel

from .helpers import math_specs


class Recording(InProcessExecutor):
    """The in-process executor, keeping each batch and each task's ``args`` as it saw them."""

    def __init__(self) -> None:
        self.batches: list[list[Task]] = []

    def execute(self, batch: Sequence[Task], callbacks: BatchCallbacks, cancel: CancelToken) -> None:
        self.batches.append(list(batch))
        super().execute(batch, callbacks, cancel)


def _chain() -> GraphModel:
    m = GraphModel()
    m.add_node("const", {"value": 2}, id="a")
    m.add_node("add", {"b": 3}, id="b")
    m.add_node("add", {"b": 4}, id="c")
    m.connect("a", 0, "b", "a")
    m.connect("b", 0, "c", "a")
    return m


def test_wired_args_are_lits_and_refs_with_held_references_for_cached_sources() -> None:
    wiring = Wiring({"src": "k-src", "new": "k-new"}, {"k-src": ("v0", "v1")})
    task = Task.wired("n", "k-n", None, {"x": 5}, (("a", "src", 1), ("b", "new", 0)),  # type: ignore[arg-type]
                      wiring, None, "r")
    assert task.args == {"x": Lit(5), "a": Ref("k-src", 1, "v1"), "b": Ref("k-new", 0)}
    assert task.args is task.args  # built once
    eager = Task("n", "k-n", None, {"x": Lit(5), "a": Ref("k-src", 1, "v1"), "b": Ref("k-new", 0)},  # type: ignore[arg-type]
                 None, "r")
    assert task == eager and repr(task) == repr(eager)
    assert eager.params is None and eager.links is None


def test_a_run_after_an_edit_reads_the_unchanged_source_from_the_cache_through_a_held_ref() -> None:
    specs, ex = math_specs(), Recording()
    m = _chain()
    eng, cache = Engine(m, specs.lookup), OutputCache(ex)
    first = eng.run(ex, cache=cache)
    assert [t.node_id for t in ex.batches[0]] == ["a", "b", "c"]
    m.set_param("c", "b", 40)
    second = eng.run(ex, cache=cache)
    (task,) = ex.batches[1]
    assert task.args == {"b": Lit(40), "a": Ref(first.node_keys["b"], 0, 5)}
    assert second.output("c") == (45,)


def test_the_in_process_executor_still_runs_tasks_built_with_lit_and_ref_args() -> None:
    specs, ex = math_specs(), InProcessExecutor()
    results: dict[str, Any] = {}
    callbacks = BatchCallbacks(lambda event: None, lambda task, refs: results.update({task.node_id: refs}))
    add = specs["add"]
    ex.execute([Task("x", "kx", add, {"a": Lit(1), "b": Lit(2)}),
                Task("y", "ky", add, {"a": Ref("kx", 0), "b": Ref("held", 0, 10)})], callbacks, CancelToken())
    assert results == {"x": (3,), "y": (13,)}


def test_a_node_editing_the_graph_while_the_run_goes_on_does_not_change_the_batchs_keys() -> None:
    specs, ex = math_specs(), InProcessExecutor()
    m = _chain()
    specs.define("edit", lambda a: (m.set_param("a", "value", 100), a)[1:],
                 [specs["add"].inputs[0]])
    m.add_node("edit", id="e")
    m.connect("b", 0, "e", "a")
    m.connect("e", 0, "c", "a")  # c now reads e, which re-keys a, b, e and c mid-run
    eng = Engine(m, specs.lookup)
    run = eng.run(ex, cache=OutputCache(ex))
    assert not run.errors and run.output("c") == (9,)


def test_a_partly_cached_whole_graph_run_pins_only_the_cached_sources() -> None:
    specs, ex = math_specs(), Recording()
    m = _chain()
    m.add_node("add", {"b": 1}, id="d")
    m.connect("a", 0, "d", "a")
    eng, cache = Engine(m, specs.lookup), OutputCache(ex)
    eng.run(ex, cache=cache)
    m.set_param("b", "b", 30)  # b and c re-run; a stays cached, d too
    run = eng.run(ex, cache=cache)
    assert [t.node_id for t in ex.batches[1]] == ["b", "c"]
    assert ex.batches[1][0].args["a"].held == 2  # type: ignore[union-attr]
    assert ex.batches[1][1].args["a"].held is None  # type: ignore[union-attr]
    assert run.output("c") == (36,) and cache._pins == {}
