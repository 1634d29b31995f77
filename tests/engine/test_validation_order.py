"""The order validation hands to the planner: the same as ``topo_order``, never a stale one."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.topology import topo_order
from vortex_jupyter.graph.validate import validate, validate_ordered
from vortex_jupyter.nodes.spec import PortSpec

from .helpers import Specs, math_specs


def _specs() -> Specs:
    specs = math_specs()
    specs.define("sum3", lambda a=0, b=0, c=0, k=0: ((a + b + c + k) % 1009,),
                  [PortSpec(n, "INT", default=0) for n in ("a", "b", "c", "k")])
    return specs


@st.composite
def graphs(draw) -> GraphModel:
    """Random graphs of sum3 nodes, sometimes with a back edge (a cycle), a self-loop, a
    dangling edge or two links into one input."""
    n = draw(st.integers(1, 25))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    m = GraphModel()
    names = [f"v{i}" for i in range(n)]
    rng.shuffle(names)
    for i in range(n):
        m.add_node("sum3", {"k": i}, id=names[i])
        for port in rng.sample("abc", rng.randint(0, min(3, i))):
            m.connect(names[rng.randrange(i)], 0, names[i], port)
    flaw = draw(st.sampled_from(["none", "none", "cycle", "self", "dangling", "double"]))
    a, b = names[rng.randrange(n)], names[rng.randrange(n)]
    if flaw == "cycle" and a != b:
        m.connect(a, 0, b, "k", replace=False)
        m.connect(b, 0, a, "k", replace=False)
    elif flaw == "self":
        m.connect(a, 0, a, "k", replace=False)
    elif flaw == "dangling":
        m.connect("ghost", 0, a, "k", replace=False)
    elif flaw == "double":
        m.connect(b, 0, a, "k", replace=False)
        m.connect(b, 0, a, "k", replace=False)
    return m


@settings(max_examples=80, deadline=None)
@given(graphs())
def test_validate_ordered_gives_topo_orders_order_or_none_on_a_cycle(m: GraphModel) -> None:
    specs = _specs()
    problems, order = validate_ordered(m, specs.lookup)
    assert problems == validate(m, specs.lookup)
    try:
        expected = topo_order(m)
    except Exception:
        assert order is None and any(p.code in ("VE-110", "VE-111") for p in problems)
    else:
        assert order == expected


def test_the_planner_uses_validations_order_only_for_the_structure_it_was_computed_on() -> None:
    specs, ex = _specs(), InProcessExecutor()
    m = GraphModel()
    m.add_node("sum3", {"k": 1}, id="a")
    m.add_node("sum3", {"k": 2}, id="b")
    m.connect("a", 0, "b", "a")
    eng, cache = Engine(m, specs.lookup), OutputCache(ex)
    assert eng.run(ex, cache=cache).planned == ["a", "b"]
    assert eng.memo.take_order() is None  # handed over once
    eng.validate()  # a full validation leaves an order behind ...
    m.add_node("sum3", {"k": 3}, id="c")  # ... that a structural edit makes stale
    m.connect("c", 0, "a", "b")
    assert eng.memo.take_order() is None
    assert eng.run(ex, cache=cache).planned == ["c", "a", "b"]


# ---- validation's fast acceptance of plain widget values ----------------------------------
def test_a_value_accepted_by_the_fast_path_passes_the_full_checks() -> None:
    """Every (port, value) of a grid of edge cases: ``_Port.plain`` may say "look closer" for
    a fine value, but must never accept a value the full checks reject."""
    import itertools
    import math
    from unittest import mock

    from vortex_jupyter.graph import validate as v

    bounds = [None, -1, 0.5, 10, 2**64 - 1, math.inf]
    values = [0, 1, -1, 5, 11, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 0.0, -0.0, 0.5, 10.5, 1e308, math.inf,
              -math.inf, math.nan, True, False, "", "a", "x", "a" * (v.MAX_STRING + 1), None, [1, 2], b"x"]
    accepted = 0
    for ptype, lo, hi, choices in itertools.product(["INT", "FLOAT", "STRING", "COMBO", "BOOLEAN", "IMAGE"],
                                                    bounds, bounds, [None, (), ("a", "b"), ("a", 1)]):
        port = PortSpec("p", ptype, default=None, min=lo, max=hi, choices=choices)
        fast = v._Port(port)
        plain = [value for value in values if fast.plain(value)]
        accepted += len(plain)
        with mock.patch.object(v._Port, "plain", lambda self, value: False):
            assert [(value, v.check_value("n", port, value)) for value in plain] == [(value, None) for value in plain]
    assert accepted > 300  # the fast path does take the common cases
