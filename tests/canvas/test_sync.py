"""The relay between the kernel doc and browser-like replicas (two in-memory docs + a fake comm)."""

from __future__ import annotations

import random

import pytest
from pycrdt import Doc, Map, create_update_message

from vortex_jupyter.canvas.sync import Relay
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.graph.model import Change, Edge, GraphModel

from .conftest import Replica, content, lookup


def test_a_connecting_view_receives_the_whole_graph(views: tuple[Replica, Replica]) -> None:
    a, _ = views
    assert sorted(a.nodes.keys()) == ["1", "2"]
    assert a.nodes["1"]["params"].to_py() == {"a": 1.0, "b": 2.0}
    assert a.edges["2:a"] == {"src": "1", "src_output": 0.0, "dst": "2", "dst_input": "a"}


def test_python_edits_appear_in_every_view(model: GraphModel, views: tuple[Replica, Replica]) -> None:
    a, b = views
    new = model.add_node("Text", {"text": "a cat"}, pos=(5, 6))
    model.set_param("1", "a", 42)
    model.set_layout("2", pos=(300.0, 40.0), title="sum")
    model.connect(new, 0, "1", "b")
    for view in (a, b):
        assert view.nodes[new]["params"]["text"] == "a cat"
        assert view.nodes["1"]["params"]["a"] == 42
        assert (view.nodes["2"]["x"], view.nodes["2"]["title"]) == (300.0, "sum")
        assert view.edges["1:b"]["src"] == new
    model.remove_node(new)
    assert new not in a.nodes and "1:b" not in a.edges


def test_a_view_edit_reaches_the_model_and_the_other_view(model: GraphModel, views: tuple[Replica, Replica]) -> None:
    a, b = views
    a_frames = len(a.frames)
    a.nodes["1"]["x"] = 77.0
    a.nodes["2"]["params"]["b"] = 9
    assert len(a.frames) == a_frames  # relayed to the OTHER views only (no echo by default)
    assert model.nodes["1"].pos == (77.0, 20.0)
    assert model.nodes["2"].params["b"] == 9 and type(model.nodes["2"].params["b"]) is int
    assert b.nodes["1"]["x"] == 77.0 and b.nodes["2"]["params"]["b"] == 9


def test_view_edits_change_exactly_the_affected_parts_of_the_model(
    model: GraphModel, views: tuple[Replica, Replica]
) -> None:
    a, _ = views
    seen: list[Change] = []
    model.add_listener(seen.append)
    a.nodes["2"]["params"]["b"] = 6
    assert [(c.kind, c.node, c.detail, c.origin) for c in seen] == [("param_set", "2", "b", "canvas")]
    seen.clear()
    a.nodes["1"]["y"] = 99.0  # layout never touches params, so no cache key moves
    assert [(c.kind, c.node) for c in seen] == [("layout", "1")]
    seen.clear()
    with a.doc.transaction():
        a.nodes["n0000abcd"] = Map({"type": "Add", "x": 1.0, "y": 2.0, "params": Map({"a": 3})})
        a.edges["2:b"] = {"src": "n0000abcd", "src_output": 0, "dst": "2", "dst_input": "b"}
    assert [(c.kind, c.node) for c in seen] == [("node_added", "n0000abcd"), ("edge_added", "2")]
    assert model.nodes["n0000abcd"].params == {"a": 3}
    assert Edge("n0000abcd", 0, "2", "b") in list(model.edges())


def test_a_view_removing_a_node_removes_its_edges_everywhere(model: GraphModel, views: tuple[Replica, Replica]) -> None:
    a, b = views
    del a.nodes["1"]  # the view forgot the edge 1 -> 2.a: the kernel drops it for everyone
    assert "1" not in model.nodes and list(model.edges()) == []
    a.flush()
    assert "2:a" not in b.edges and "2:a" not in a.edges


def test_edges_and_disconnects_from_a_view(model: GraphModel, views: tuple[Replica, Replica]) -> None:
    a, _ = views
    del a.edges["2:a"]
    assert list(model.edges()) == []
    a.edges["1:a"] = {"src": "2", "src_output": 0, "dst": "1", "dst_input": "a"}
    assert list(model.edges()) == [Edge("2", 0, "1", "a")]


def test_integer_ports_come_back_as_int_and_big_ints_round_trip(model: GraphModel, views: tuple[Replica, Replica]) -> None:
    a, b = views
    k = model.add_node("KSampler", {"seed": 2**63 - 25, "steps": 20, "cfg": 7.0})
    assert a.nodes[k]["params"]["seed"] == str(2**63 - 25)  # beyond 2**53: a decimal string
    a.nodes[k]["params"]["steps"] = 30.0
    a.nodes[k]["params"]["cfg"] = 8.0
    a.nodes[k]["params"]["seed"] = str(2**64 + 1)
    params = model.nodes[k].params
    assert params == {"seed": 2**64 + 1, "steps": 30, "cfg": 8.0}
    assert (type(params["seed"]), type(params["steps"]), type(params["cfg"])) == (int, int, float)
    assert b.nodes[k]["params"]["seed"] == str(2**64 + 1)


def test_concurrent_edits_from_two_views_converge(model: GraphModel, relay: Relay) -> None:
    a, b = Replica(relay, "A"), Replica(relay, "B")
    a.connect()
    b.connect()
    # B edits offline, then delivers its edits; A edits meanwhile through the kernel
    offline = Doc()
    offline.apply_update(b.doc.get_update())
    nodes = offline.get("nodes", type=Map)
    nodes["1"]["params"]["a"] = 100
    nodes["2"]["x"] = 500.0
    a.nodes["1"]["params"]["a"] = 200
    a.nodes["2"]["y"] = 600.0
    relay.receive("B", create_update_message(offline.get_update(b.doc.get_state())))
    relay.hello("A")  # a resync brings A the merged state too
    kernel = relay.gd.nodes.to_py()
    assert a.nodes.to_py() == kernel
    assert model.nodes["2"].pos == (500.0, 600.0)
    assert model.nodes["1"].params["a"] == kernel["1"]["params"]["a"] in (100, 200)


def test_sync_step1_is_answered_with_what_the_view_lacks(relay: Relay) -> None:
    fresh = Replica(relay, "C")
    fresh.relay.receive("C", bytes([0, 0, 1, 0]))  # step 1 with an empty state vector
    assert sorted(fresh.nodes.keys()) == ["1", "2"]


def test_awareness_is_relayed_and_cleared_when_a_view_leaves(views: tuple[Replica, Replica]) -> None:
    a, b = views
    state = b'{"user":"ana"}'
    update = bytes([1, 77, 3, len(state)]) + state
    frame = bytes([1, len(update)]) + update
    a.relay.receive("A", frame)
    assert b.frames[-1] == frame and not a.errors()
    a.relay.remove_view("A")
    removal = b.frames[-1]  # state null with clock + 1 for client 77
    assert removal == bytes([1, 8, 1, 77, 4, 4]) + b"null"
    a.relay.receive("A", bytes([1, 5, 1, 77, 3, 1]) + b"{")  # not JSON: rejected
    assert a.errors() == []  # A left: errors have nowhere to go
    late = Replica(a.relay, "late")
    late.relay.receive("late", bytes([1, 5, 1, 9, 3, 1]) + b"{")
    assert late.errors()[0]["code"] == "VE-600"


# ---- untrusted input ---------------------------------------------------------------------
def _bad_node_update(base: Doc, mutate) -> bytes:
    doc = Doc()
    doc.apply_update(base.get_update())
    before = doc.get_state()
    mutate(doc)
    return doc.get_update(before)


BAD_EDITS = {
    "params as a string": lambda d: d.get("nodes", type=Map)["1"].__setitem__("params", "x"),
    "a node as a plain object": lambda d: d.get("nodes", type=Map).__setitem__("9", {"type": "Add"}),
    "edge to a non-string": lambda d: d.get("edges", type=Map).__setitem__(
        "2:b", {"src": 1, "src_output": 0, "dst": "2", "dst_input": "b"}),
    "edge key not matching": lambda d: d.get("edges", type=Map).__setitem__(
        "2:zzz", {"src": "1", "src_output": 0, "dst": "2", "dst_input": "b"}),
    "negative output index": lambda d: d.get("edges", type=Map).__setitem__(
        "2:b", {"src": "1", "src_output": -1, "dst": "2", "dst_input": "b"}),
    "param as a nested map": lambda d: d.get("nodes", type=Map)["1"]["params"].__setitem__("a", Map({"x": 1})),
    "absurd coordinate": lambda d: d.get("nodes", type=Map)["1"].__setitem__("x", 1e300),
    "node type missing": lambda d: d.get("nodes", type=Map)["1"].pop("type"),
    "unknown root": lambda d: d.get("evil", type=Map).__setitem__("k", 1),
    "huge string param": lambda d: d.get("nodes", type=Map)["1"]["params"].__setitem__("a", "x" * (2 << 20)),
}


@pytest.mark.parametrize("name", sorted(BAD_EDITS))
def test_schema_violating_updates_are_rejected_and_the_doc_stays_intact(
    name: str, model: GraphModel, relay: Relay
) -> None:
    a, b = Replica(relay, "A"), Replica(relay, "B")
    a.connect()
    b.connect()
    before = content(relay.gd.doc)
    relay.receive("A", create_update_message(_bad_node_update(relay.gd.doc, BAD_EDITS[name])))
    assert [m["code"] for m in a.errors()] == ["VE-600"]
    assert not b.errors() and relay.rejected == 1
    assert content(relay.gd.doc) == before == content(a.doc) == content(b.doc)
    assert model.nodes["1"].params == {"a": 1, "b": 2} and len(list(model.edges())) == 1
    # the relay is not poisoned: a good edit still goes through afterwards
    a2 = Replica(relay, "A2")
    a2.connect()
    a2.nodes["1"]["params"]["a"] = 5
    assert model.nodes["1"].params["a"] == 5 and b.nodes["1"]["params"]["a"] == 5


def test_garbage_truncated_and_oversized_frames_are_rejected(model: GraphModel, relay: Relay) -> None:
    a = Replica(relay, "A")
    a.connect()
    before = relay.gd.doc.get_update()
    good = Doc()
    good.apply_update(before)
    state = good.get_state()
    good.get("nodes", type=Map)["1"]["params"]["a"] = 11
    update = good.get_update(state)
    rng = random.Random(5)
    frames = [
        b"",
        b"\x07",
        b"\x00\x05\x01",
        create_update_message(update)[:-3],  # truncated (length prefix says more)
        bytes([0, 2]) + bytes([len(update) - 4]) + update[: len(update) - 4],  # truncated update
        bytes([0, 2, 10]) + bytes(rng.getrandbits(8) for _ in range(10)),
    ] + [bytes([0, 2, 40]) + bytes(rng.getrandbits(8) for _ in range(40)) for _ in range(50)]
    for frame in frames:
        relay.receive("A", frame)
    assert len(a.errors()) == len(frames)
    assert relay.gd.doc.get_update() == before
    assert model.nodes["1"].params == {"a": 1, "b": 2}
    small = Relay(relay.gd, max_bytes=64)
    v = Replica(small, "S")
    small.receive("S", create_update_message(b"\x00" * 100))
    assert "exceeds the 64-byte limit" in v.errors()[0]["message"]
    relay.receive("A", create_update_message(update))
    assert model.nodes["1"].params["a"] == 11


def test_initial_mirror_of_a_2000_node_graph_is_fast() -> None:
    import time

    m = GraphModel()
    prev = None
    for i in range(2000):
        n = m.add_node("KSampler", {"seed": i, "steps": 20, "cfg": 7.5}, pos=(i * 10.0, 0.0))
        if prev is not None:
            m.connect(prev, 0, n, "model")
        prev = n
    t0 = time.perf_counter()
    gd = GraphDoc(m, lookup=lookup)
    elapsed = time.perf_counter() - t0
    assert len(gd.nodes) == 2000 and len(gd.edges) == 1999
    assert elapsed < 0.5, f"initial mirror took {elapsed:.3f}s"


def test_bit_flipped_updates_never_leave_model_and_doc_apart(model: GraphModel, relay: Relay) -> None:
    """Fuzz: every frame is either rejected (the graph untouched) or accepted with model == doc."""
    a = Replica(relay, "A")
    a.connect()
    source = Doc()
    source.apply_update(relay.gd.doc.get_update())
    state = source.get_state()
    nodes = source.get("nodes", type=Map)
    with source.transaction():
        nodes["1"]["params"]["a"] = 3
        nodes["2"]["x"] = 5.0
        nodes["n1"] = Map({"type": "Add", "x": 0.0, "y": 0.0, "params": Map({"b": 4})})
    update = source.get_update(state)
    rng = random.Random(11)
    for _ in range(400):
        flipped = bytearray(update)
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(len(flipped))] = rng.getrandbits(8)
        before, errors = content(relay.gd.doc), len(a.errors())
        relay.receive("A", create_update_message(bytes(flipped)))
        if len(a.errors()) > errors:
            assert content(relay.gd.doc) == before
        doc_nodes = relay.gd.nodes.to_py()
        assert set(doc_nodes) == set(model.nodes)
        for node_id, node in doc_nodes.items():
            assert node["params"] == {k: v for k, v in model.nodes[node_id].params.items()}
