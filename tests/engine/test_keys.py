"""Incremental keys: an edit drops exactly the keys it can have changed."""

from __future__ import annotations

from vortex_jupyter.engine.hashing import node_key
from vortex_jupyter.engine.keys import KeyIndex
from vortex_jupyter.engine.plan import topo_order
from vortex_jupyter.engine.testing import assert_keys_stable_under_renumbering
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.spec import PortSpec

from .helpers import math_specs


def _diamond() -> tuple[GraphModel, KeyIndex]:
    """a -> b -> d, a -> c -> d, plus an unrelated e."""
    specs = math_specs()
    m = GraphModel()
    for n in "abcde":
        m.add_node("add", {"b": ord(n)}, id=n)
    m.connect("a", 0, "b", "a")
    m.connect("a", 0, "c", "a")
    m.connect("b", 0, "d", "a")
    m.connect("c", 0, "d", "b")
    index = KeyIndex(m, specs.lookup)
    index.ensure(topo_order(m))
    return m, index


def test_keys_match_node_key_computed_from_scratch():
    _m, index = _diamond()
    ka = node_key("add", "1", {"a": 0, "b": ord("a")}, {})
    kb = node_key("add", "1", {"b": ord("b")}, {"a": (ka, 0)})
    assert index.get("a") == ka
    assert index.get("b") == kb


def test_param_edit_drops_the_node_and_its_descendants_only():
    m, index = _diamond()
    before = dict(index.keys)
    m.set_param("b", "b", 1000)
    assert set(index.keys) == {"a", "c", "e"}
    index.ensure(topo_order(m))
    changed = {n for n in before if before[n] != index.get(n)}
    assert changed == {"b", "d"}


def test_invalidation_stops_at_nodes_already_invalid():
    m, index = _diamond()
    m.set_param("a", "b", 1)
    assert index.invalidate("a") == 0  # already dropped with everything below it
    assert set(index.keys) == {"e"}


def test_layout_and_no_op_edits_invalidate_nothing():
    m, index = _diamond()
    m.set_layout("b", pos=(10, 20), title="renamed")
    m.set_param("b", "b", ord("b"))  # same value and type: a no-op in the model
    assert set(index.keys) == set("abcde")


def test_edge_edit_drops_the_destination_and_below():
    m, index = _diamond()
    m.disconnect("c", "a")
    assert set(index.keys) == {"a", "b", "e"}


def test_default_filled_and_explicit_default_give_the_same_key():
    specs = math_specs()
    m = GraphModel()
    m.add_node("add", {"a": 1}, id="x")
    m.add_node("add", {"a": 1, "b": 0}, id="y")
    index = KeyIndex(m, specs.lookup)
    index.ensure(["x", "y"])
    assert index.get("x") == index.get("y")


def test_an_int_for_a_FLOAT_param_is_the_same_value_as_the_float_same_key_and_argument():
    specs = math_specs()
    specs.define("scale", lambda x=1.0: (x * 2,), [PortSpec("x", "FLOAT", default=1.0)], outputs=None)
    m = GraphModel()
    m.add_node("scale", {"x": 7}, id="from_ui")  # UI workflows and JS write 7.0 as 7
    m.add_node("scale", {"x": 7.0}, id="from_api")
    m.add_node("scale", {"x": 7.5}, id="other")
    index = KeyIndex(m, specs.lookup)
    index.ensure(["from_ui", "from_api", "other"])
    assert index.get("from_ui") == index.get("from_api") != index.get("other")
    assert type(index.args("from_ui")["x"]) is float
    assert m.nodes["from_ui"].params["x"] == 7 and type(m.nodes["from_ui"].params["x"]) is int  # model untouched


def test_redefined_spec_drops_the_keys_of_its_nodes():
    specs = math_specs()
    m = GraphModel()
    m.add_node("add", {"a": 1}, id="x")
    m.add_node("const", {"value": 1}, id="c")
    index = KeyIndex(m, specs.lookup)
    index.ensure(["x", "c"])
    old = index.get("x")
    assert index.refresh_specs() == []
    specs.define("add", lambda a, b=0: (a - b,), [PortSpec("a", "INT", default=0), PortSpec("b", "INT", default=0)],
                 version="2")
    assert index.refresh_specs() == ["add"]
    assert set(index.keys) == {"c"}
    index.ensure(["x"])
    assert index.get("x") != old


def test_keys_do_not_depend_on_node_ids():
    m, _ = _diamond()
    for seed in range(3):
        assert_keys_stable_under_renumbering(m, math_specs().lookup, seed)
