"""The run loop's handling of the cyclic GC: paused while planning, objects of a big plan
promoted, and the process's GC state (enabled, someone else's frozen objects) left as found."""

from __future__ import annotations

import gc

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import _PROMOTE_AT, Engine
from vortex_jupyter.graph.model import GraphModel

from .helpers import math_specs, no_problems


def _big_chain() -> GraphModel:
    m = GraphModel()
    for i in range(_PROMOTE_AT + 10):
        m.add_node("add", {"b": i}, id=f"n{i}")
        if i:
            m.connect(f"n{i - 1}", 0, f"n{i}", "a")
    return m


def _run_twice() -> list[int]:
    specs, ex = math_specs(), InProcessExecutor()
    eng, cache = Engine(_big_chain(), specs.lookup, no_problems), OutputCache(ex)
    stats = [eng.run(ex, cache=cache).stats["ran"], eng.run(ex, cache=cache).stats["ran"]]
    eng.close()
    return stats


def test_a_big_run_leaves_the_gc_enabled_and_nothing_frozen() -> None:
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert _run_twice() == [_PROMOTE_AT + 10, 0]
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_objects_someone_else_froze_stay_frozen() -> None:
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert _run_twice()[0] == _PROMOTE_AT + 10
        # a thaw would make it 0; frozen objects that died meanwhile leave the count
        assert gc.get_freeze_count() > frozen - 100 and gc.isenabled()
    finally:
        gc.unfreeze()


def test_a_disabled_gc_stays_disabled() -> None:
    gc.disable()
    try:
        assert _run_twice()[0] == _PROMOTE_AT + 10
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()
