"""Property tests on random DAGs: plans are topological, keys ignore ids, runs are minimal."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.engine.testing import keys_of, renumbered
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.topology import descendants
from vortex_jupyter.nodes.spec import PortSpec

from .helpers import Specs, math_specs, no_problems


def _specs() -> Specs:
    specs = math_specs()
    ports = [PortSpec(n, "INT", default=0) for n in ("a", "b", "c", "k")]
    specs.define("sum3", lambda a=0, b=0, c=0, k=0: ((a + b + c + k) % 1009,), ports)
    return specs


@st.composite
def dags(draw) -> GraphModel:
    """Random DAGs: node i reads up to 3 earlier nodes; every node has a distinct param."""
    n = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    m = GraphModel()
    names = [f"v{i}" for i in range(n)]
    rng.shuffle(names)  # ids unrelated to the topological order
    for i in range(n):
        m.add_node("sum3", {"k": i}, id=names[i])
        for port in rng.sample("abc", rng.randint(0, min(3, i))):
            m.connect(names[rng.randrange(i)], 0, names[i], port)
    return m


def _engine(m: GraphModel, specs: Specs) -> tuple[Engine, InProcessExecutor, OutputCache]:
    ex = InProcessExecutor()
    return Engine(m, specs.lookup, no_problems), ex, OutputCache(ex)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_the_plan_is_a_valid_topological_order(m):
    eng, _ex, cache = _engine(m, _specs())
    plan = eng.plan(cache)
    position = {n: i for i, n in enumerate(plan.planned)}
    assert set(position) == set(m.nodes)
    for e in m.edges():
        assert position[e.src] < position[e.dst]


@settings(max_examples=60, deadline=None)
@given(dags(), st.integers(0, 1000))
def test_keys_do_not_change_when_node_ids_are_renumbered(m, seed):
    specs = _specs()
    before = keys_of(m, specs.lookup)
    copy, mapping = renumbered(m, seed)
    after = keys_of(copy, specs.lookup)
    assert {mapping[n]: k for n, k in before.items()} == after


@settings(max_examples=60, deadline=None)
@given(dags())
def test_a_rerun_with_nothing_changed_runs_nothing(m):
    eng, ex, cache = _engine(m, _specs())
    first = eng.run(ex, cache=cache)
    assert first.stats == {"ran": len(m), "cached": 0, "failed": 0}
    again = eng.run(ex, cache=cache)
    assert again.stats == {"ran": 0, "cached": len(m), "failed": 0}


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_a_param_change_reruns_exactly_the_changed_node_and_its_descendants(m, data):
    specs = _specs()
    eng, ex, cache = _engine(m, specs)
    eng.run(ex, cache=cache)
    target = data.draw(st.sampled_from(sorted(m.nodes)))
    m.set_param(target, "k", 10_000)  # a value no other node has: no key collisions
    state = eng.run(ex, cache=cache)
    assert set(state.planned) == {target} | descendants(m, [target])
    assert state.stats["ran"] == len(state.planned)


@settings(max_examples=30, deadline=None)
@given(dags())
def test_a_renumbered_copy_hits_the_same_cache(m):
    specs = _specs()
    eng, ex, cache = _engine(m, specs)
    eng.run(ex, cache=cache)
    copy, _ = renumbered(m, 1)
    state = Engine(copy, specs.lookup, no_problems).run(ex, cache=cache)
    assert state.stats == {"ran": 0, "cached": len(m), "failed": 0}
