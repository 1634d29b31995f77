"""What views may add to a graph's doc: a total size, each string, declared params only
(``canvas/limits.py``), and a refused edit taken back in its view too (``canvas/revert.py``)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from pycrdt import Map

import vortex_jupyter as vx
from vortex_jupyter.canvas.limits import ENV_MAX_DOC, Limits
from vortex_jupyter.canvas.session import session_for
from vortex_jupyter.canvas.sync import Relay
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.errors import VortexError
from vortex_jupyter.graph.model import GraphModel

from .conftest import Replica, content, lookup

MIB = 1 << 20


def rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def views_of(relay: Relay, *names: str) -> list[Replica]:
    views = [Replica(relay, name) for name in names]
    for view in views:
        view.connect()
    return views


def doc_bytes(relay: Relay) -> int:
    return len(relay.gd.doc.get_update())


# ---- the reproduction of issue 10, item 4 --------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_forty_frames_of_undeclared_megabyte_params_leave_the_kernel_as_it_was() -> None:
    """Before: every frame under the 8 MiB cap was kept; the doc grew to 280 MiB, the kernel
    by over a GB, and the params entered the model."""
    g = vx.Graph()
    g.add("IntAdd", id="a", a=1)
    session = session_for(g)
    evil, honest = views_of(session.relay, "evil", "honest")
    gc.collect()
    start, start_bytes = rss(), doc_bytes(session.relay)
    for i in range(40):
        with evil.doc.transaction():  # 7 MiB in one frame: under the frame cap
            for j in range(7):
                evil.nodes["a"]["params"][f"junk{i}_{j}"] = chr(97 + j) * MIB
        evil.flush()
        errors = evil.errors()
        assert len(errors) == i + 1 and errors[-1]["code"] == "VE-600", f"frame {i} was not refused"
        assert "node 'a' (IntAdd) has no param 'junk" in errors[-1]["message"]
        assert "IntAdd takes a, b" in errors[-1]["message"]
    gc.collect()
    assert g.model.nodes["a"].params == {"a": 1}
    assert doc_bytes(session.relay) < start_bytes + 64 * 1024
    # the sender's replica dropped its edits; the other view never saw a byte of them
    assert content(evil.doc) == content(session.doc.doc) == content(honest.doc)
    assert len(evil.doc.get_update()) < 64 * 1024
    assert max(len(f) for f in honest.frames) < 64 * 1024
    assert rss() - start < 150 * MIB  # three replicas of 280 MiB lived here before


def test_a_view_can_edit_again_after_a_refused_edit() -> None:
    """A view's later edits build on the refused one: had the kernel just dropped it, they
    would wait for it forever (yjs applies an update only after those it depends on)."""
    g = vx.Graph()
    g.add("IntAdd", id="a", a=1)
    view, other = views_of(session_for(g).relay, "A", "B")
    view.nodes["a"]["params"]["junk"] = 5
    view.flush()
    assert view.errors() and "junk" not in view.nodes["a"]["params"]
    view.nodes["a"]["params"]["b"] = 7
    assert g.model.nodes["a"].params == {"a": 1, "b": 7} and other.nodes["a"]["params"]["b"] == 7


# ---- the total bound -------------------------------------------------------------------------
def test_declared_strings_fill_the_doc_only_up_to_its_limit(model: GraphModel) -> None:
    relay = Relay(GraphDoc(model, lookup=lookup), limits=Limits(max_doc_bytes=4 * MIB))
    view, other = views_of(relay, "A", "B")
    refused_at = None
    for i in range(12):
        view.nodes[f"t{i}"] = Map({"type": "Text", "x": 0.0, "y": float(i), "params": Map({"text": "x" * (MIB // 2)})})
        view.flush()
        if view.errors():
            refused_at = i
            break
    assert refused_at is not None and refused_at >= 6  # 4 MiB hold about 7 of them
    message = view.errors()[0]["message"]
    assert "over the canvas limit of 4,194,304 bytes (4 MiB)" in message and f"{ENV_MAX_DOC}=128MiB" in message
    assert doc_bytes(relay) <= 4 * MIB
    assert sorted(n for n in model.nodes if n.startswith("t")) == [f"t{i}" for i in range(refused_at)]
    assert content(view.doc) == content(relay.gd.doc) == content(other.doc)


def test_above_the_limit_a_view_may_shrink_the_doc_but_not_grow_it(model: GraphModel) -> None:
    """Python's edits are never refused, so the kernel may make a doc larger than the limit."""
    for i in range(6):
        model.add_node("Text", {"text": "y" * 100_000}, id=f"big{i}")
    relay = Relay(GraphDoc(model, lookup=lookup), limits=Limits(max_doc_bytes=300_000))
    view, other = views_of(relay, "A", "B")
    del view.nodes["big0"]
    assert not view.errors() and "big0" not in model.nodes and "big0" not in other.nodes
    view.nodes["1"]["params"]["a"] = 42
    assert "over the canvas limit of 300,000 bytes" in view.errors()[0]["message"]
    assert model.nodes["1"].params["a"] == 1 and view.nodes["1"]["params"]["a"] == 1


def test_once_take_backs_used_their_reserve_a_refused_view_is_told_to_reload(model: GraphModel) -> None:
    for i in range(6):
        model.add_node("Text", {"text": "y" * 100_000}, id=f"big{i}")
    relay = Relay(GraphDoc(model, lookup=lookup), limits=Limits(max_doc_bytes=300_000))
    relay.reserve = 0  # what a take-back leaves above the limit: no room for it now
    view, other = views_of(relay, "A", "B")
    view.nodes["1"]["params"]["a"] = 42
    view.flush()
    assert view.errors()[0]["message"].endswith("then reload the view: it still shows the refused edit)")
    assert model.nodes["1"].params["a"] == 1 and other.nodes["1"]["params"]["a"] == 1


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MAX_DOC, "3MiB")
    assert Limits.from_env().max_doc_bytes == 3 * MIB
    monkeypatch.setenv(ENV_MAX_DOC, "lots")
    with pytest.raises(VortexError, match=ENV_MAX_DOC):
        Limits.from_env()


def test_far_from_the_limit_an_edit_measures_nothing(model: GraphModel, monkeypatch: pytest.MonkeyPatch) -> None:
    relay = Relay(GraphDoc(model, lookup=lookup))
    view, = views_of(relay, "A")
    view.nodes["1"]["params"]["a"] = 2  # the first edit builds the scratch replica
    calls = []
    real = relay.gd.doc.get_update
    monkeypatch.setattr(relay.gd.doc, "get_update", lambda *a: calls.append(a) or real(*a), raising=False)
    for i in range(50):
        view.nodes["1"]["x"] = float(i)
    assert model.nodes["1"].pos == (49.0, 20.0) and calls == []


# ---- strings -------------------------------------------------------------------------------
def test_a_string_over_its_limit_is_refused_and_the_old_value_comes_back(model: GraphModel) -> None:
    text = model.add_node("Text", {"text": "a cat"}, id="t")
    relay = Relay(GraphDoc(model, lookup=lookup), limits=Limits(max_string=1000))
    view, other = views_of(relay, "A", "B")
    view.nodes[text]["params"]["text"] = "z" * 1001
    view.flush()
    message = view.errors()[0]["message"]
    assert "nodes['t'].params['text'] is 1,001 characters; the limit is 1,000" in message
    assert "fix: shorten it" in message
    assert model.nodes[text].params["text"] == "a cat" == view.nodes[text]["params"]["text"]
    assert other.nodes[text]["params"]["text"] == "a cat" and all(b"zzzz" not in f for f in other.frames)
    view.nodes[text]["params"]["text"] = "z" * 1000
    assert model.nodes[text].params["text"] == "z" * 1000


def test_a_title_over_its_limit_is_refused(views: tuple[Replica, Replica], model: GraphModel) -> None:
    a, b = views
    a.nodes["1"]["title"] = "t" * 1001
    a.flush()
    assert "title is 1,001 characters; the limit is 1,000" in a.errors()[0]["message"]
    assert model.nodes["1"].title is None and "title" not in a.nodes["1"] and "title" not in b.nodes["1"]


# ---- params a node type does not declare ----------------------------------------------------------
def test_a_new_node_with_an_undeclared_param_is_refused_and_removed_from_its_view(
        views: tuple[Replica, Replica], model: GraphModel) -> None:
    a, b = views
    a.nodes["n1"] = Map({"type": "Add", "x": 0.0, "y": 0.0, "params": Map({"a": 1, "c": 2})})
    a.flush()
    message = a.errors()[0]["message"]
    assert "node 'n1' (Add) has no param 'c'; Add takes a, b" in message and "fix: set only params" in message
    assert "n1" not in model.nodes and "n1" not in a.nodes and "n1" not in b.nodes


def test_params_of_unknown_node_types_are_taken(views: tuple[Replica, Replica], model: GraphModel) -> None:
    a, _ = views
    a.nodes["n1"] = Map({"type": "SomeCustomNode", "x": 0.0, "y": 0.0, "params": Map({"anything": "x"})})
    a.nodes["n1"]["params"]["more"] = 3
    assert not a.errors() and model.nodes["n1"].params == {"anything": "x", "more": 3}


def test_an_undeclared_param_the_kernel_graph_holds_stays_editable_and_copyable(model: GraphModel) -> None:
    """A ComfyUI API file may give a node an input our spec does not declare."""
    model.add_node("Add", {"a": 1, "legacy": 5}, id="file")
    relay = Relay(GraphDoc(model, lookup=lookup))
    view, = views_of(relay, "A")
    view.nodes["file"]["params"]["legacy"] = 6
    view.nodes["copy"] = Map({"type": "Add", "x": 0.0, "y": 0.0, "params": Map({"legacy": 6})})  # a paste
    assert not view.errors()
    assert model.nodes["file"].params["legacy"] == 6 and model.nodes["copy"].params == {"legacy": 6}
    view.nodes["copy"]["params"]["other"] = 1
    view.flush()
    assert "has no param 'other'" in view.errors()[0]["message"] and "other" not in model.nodes["copy"].params


def test_comfyui_extra_widget_values_survive_a_view_edit() -> None:
    """control_after_generate values and an unknown node's widgets live in ``keep``, not in
    params: a view's edit of the seed leaves them as the file had them."""
    flow = {
        "last_node_id": 2, "last_link_id": 0, "version": 0.4, "links": [], "groups": [],
        "nodes": [
            {"id": 1, "type": "KSampler", "pos": [0, 0], "size": [300, 200], "flags": {}, "order": 0,
             "mode": 0, "inputs": [], "outputs": [], "properties": {},
             "widgets_values": [5, "randomize", 20, 7.0, "euler", "normal", 1.0]},
            {"id": 2, "type": "SomeCustomNode", "pos": [400, 0], "size": [200, 100], "flags": {}, "order": 1,
             "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": ["kept", 3, True]},
        ],
    }
    g = vx.load(flow)
    view, = views_of(session_for(g).relay, "A")
    view.nodes["1"]["params"]["seed"] = 6
    assert not view.errors() and g.model.nodes["1"].params["seed"] == 6
    nodes = {n["id"]: n for n in g.to_comfy_ui()["nodes"]}
    assert nodes[1]["widgets_values"] == [6, "randomize", 20, 7.0, "euler", "normal", 1.0]
    assert nodes[2]["widgets_values"] == ["kept", 3, True]


# ---- a document's room replica ------------------------------------------------------------
def test_a_room_replica_refuses_without_taking_back_and_keeps_a_files_inputs() -> None:
    """Bridged to a room, the kernel is not the authority: it must not push deletions into
    the room, and it cannot tell a file's undeclared inputs from junk."""
    gd = GraphDoc(GraphModel(), lookup=lookup, mirror=False)
    relay = Relay(gd, limits=Limits(max_string=100))
    panel, = views_of(relay, "panel")
    panel.nodes["api"] = Map({"type": "Add", "x": 0.0, "y": 0.0, "params": Map({"a": 1, "legacy": 5})})
    assert not panel.errors() and gd.model.nodes["api"].params == {"a": 1, "legacy": 5}
    frames = len(panel.frames)
    before = gd.doc.get_update()
    panel.nodes["api"]["params"]["a"] = "q" * 101
    panel.flush()
    assert "the limit is 100" in panel.errors()[0]["message"]
    assert gd.doc.get_update() == before and gd.model.nodes["api"].params["a"] == 1
    assert len(panel.frames) == frames  # nothing sent back into the room
