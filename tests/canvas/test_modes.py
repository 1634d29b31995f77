"""Node modes (muted / bypassed) across the Y doc: the ``mode`` node field, both ways."""

from __future__ import annotations

import pytest
from pycrdt import Map

import vortex_jupyter as vx
from vortex_jupyter.canvas.session import session_for
from vortex_jupyter.canvas.sync import Relay
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.graph.model import GraphModel

from .conftest import Replica, content, lookup


def _chain() -> tuple[vx.Graph, str, str, str]:
    """a -> b -> c, each an IntAdd: c = (1 + 2) + 10 + 100 = 113."""
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    b = g.add("IntAdd", a=a.out(0), b=10)
    c = g.add("IntAdd", a=b.out(0), b=100)
    return g, a.id, b.id, c.id


def _view(g: vx.Graph, name: str) -> Replica:
    view = Replica(session_for(g).relay, name)
    view.connect()
    return view


def test_a_mode_set_in_python_shows_in_every_view_and_zero_clears_it(
    model: GraphModel, views: tuple[Replica, Replica]
) -> None:
    a, b = views
    assert "mode" not in a.nodes["2"]  # absent means 0 (always)
    model.set_mode("2", 4)
    assert a.nodes["2"]["mode"] == 4 and b.nodes["2"]["mode"] == 4
    model.set_mode("2", 2)
    assert b.nodes["2"]["mode"] == 2
    model.set_mode("2", 0)
    assert "mode" not in a.nodes["2"] and "mode" not in b.nodes["2"]


def test_the_initial_mirror_carries_non_zero_modes_only() -> None:
    model = GraphModel()
    muted = model.add_node("Add", {"a": 1})
    plain = model.add_node("Add", {"a": 2})
    model.set_mode(muted, 2)
    gd = GraphDoc(model, lookup=lookup)
    view = Replica(Relay(gd), "A")
    view.connect()
    assert view.nodes[muted]["mode"] == 2
    assert "mode" not in view.nodes[plain]


def test_the_python_api_mode_reaches_the_view() -> None:
    g, _a, b, _c = _chain()
    view = _view(g, "A")
    g[b].mode = "muted"
    assert view.nodes[b]["mode"] == 2
    g[b].mode = "always"
    assert "mode" not in view.nodes[b]


def test_a_view_bypassing_a_node_passes_its_input_through_on_the_next_run() -> None:
    g, a, b, c = _chain()
    assert g.run(executor="inline").outputs[c] == (113,)
    view, other = _view(g, "A"), _view(g, "B")
    view.nodes[b]["mode"] = 4.0  # a JS number on the wire
    assert g.model.mode(b) == 4 and other.nodes[b]["mode"] == 4
    assert not view.errors()
    run = g.run(executor="inline")
    assert run.outputs[c] == (103,)  # a + 100: b's 10 is skipped
    assert b not in run.outputs
    del view.nodes[b]["mode"]
    assert g.model.mode(b) == 0 and "mode" not in other.nodes[b]
    assert g.run(executor="inline").outputs[c] == (113,)
    assert g.model.mode(a) == 0  # nothing else changed


def test_a_node_added_by_a_view_keeps_its_mode() -> None:
    g, _a, _b, _c = _chain()
    view = _view(g, "A")
    view.nodes["n00000001"] = Map({"type": "IntAdd", "x": 0.0, "y": 0.0, "mode": 2.0, "params": Map({"a": 1.0})})
    assert g.model.mode("n00000001") == 2 and not view.errors()


@pytest.mark.parametrize("bad", [7, "x", 2.5, True, -1])
def test_a_view_writing_a_bad_mode_is_rejected_and_nothing_changes(bad: object) -> None:
    g, _a, b, _c = _chain()
    g.model.set_mode(b, 2)
    view, other = _view(g, "A"), _view(g, "B")
    gd = session_for(g).doc
    before = content(gd.doc)
    view.nodes[b]["mode"] = bad
    errors = view.errors()
    assert [m["code"] for m in errors] == ["VE-600"]
    assert f"nodes['{b}'].mode must be a node mode 0..4" in errors[0]["message"]
    assert g.model.mode(b) == 2 and gd.nodes[b]["mode"] == 2 and other.nodes[b]["mode"] == 2
    assert content(gd.doc) == before
    assert view.nodes[b]["mode"] == 2  # the refused edit was taken back in the view too
