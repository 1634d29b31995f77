"""Concurrent edits from several users and Python converge, and the graph's invariants hold.

Two randomized simulations with 3+ replicas whose messages are delivered in random
interleavings (each channel in order, as comms and websockets are):

- the kernel as hub (a notebook canvas; a document without real-time collaboration): views
  sync with the kernel's doc through the real session and relay (untrusted-update checks);
- a document's room (real-time collaboration): clients and a kernel replica sync through the
  server's ``YVortex`` doc, which repairs what concurrent edits leave behind.

At the end every replica holds the same graph, the kernel's ``GraphModel`` equals the doc,
no edge touches a node that is gone, and no input has two edges (the edges map is keyed
by input, so that one holds by construction and is checked anyway).
"""

from __future__ import annotations

import json
import random
from collections import deque
from typing import Any

import pytest
from pycrdt import Doc, Map, create_sync_message, create_update_message, handle_sync_message

import vortex_jupyter as vx
from vortex_jupyter.canvas import docio
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.lab import views
from vortex_jupyter.lab.ydoc import YVortex

IDS = [f"n{i}" for i in range(8)]
INPUTS = ["a", "b"]


def graph_of(doc: Doc) -> dict[str, Any]:
    """The graph part of a doc, in a comparable form (numbers as floats, as Y has them)."""
    nodes = {k: {f: v for f, v in n.to_py().items() if f != "keep"} for k, n in doc.get("nodes", type=Map).items()}
    return {"nodes": nodes, "edges": doc.get("edges", type=Map).to_py()}


def model_graph(model: GraphModel) -> dict[str, Any]:
    nodes = {n.id: {"type": n.type, "x": float(n.pos[0]), "y": float(n.pos[1]),
                    "params": {k: float(v) for k, v in n.params.items()}} for n in model.nodes.values()}
    edges = {f"{e.dst}:{e.dst_input}": {"src": e.src, "src_output": float(e.src_output), "dst": e.dst,
                                         "dst_input": e.dst_input} for e in model.edges()}
    return {"nodes": nodes, "edges": edges}


def check_invariants(graph: dict[str, Any]) -> None:
    nodes, edges = graph["nodes"], graph["edges"]
    for key, e in edges.items():
        assert e["src"] in nodes and e["dst"] in nodes, f"edge {key} touches a node that is gone"
        assert key == f"{e['dst']}:{e['dst_input']}"
    inputs = [(e["dst"], e["dst_input"]) for e in edges.values()]
    assert len(inputs) == len(set(inputs)), "two edges into one input"


def random_doc_edit(rng: random.Random, doc: Doc) -> None:
    """One edit a user could make on the canvas (one transaction)."""
    nodes, edges = doc.get("nodes", type=Map), doc.get("edges", type=Map)
    present = list(nodes.keys())
    kind = rng.choice(["add", "add", "delete", "param", "move", "connect", "connect", "disconnect"])
    with doc.transaction():
        if kind == "add" or not present:
            nid = rng.choice(IDS)
            if nid not in nodes:
                nodes[nid] = Map({"type": "IntAdd", "x": rng.uniform(0, 900), "y": rng.uniform(0, 600),
                                  "params": Map({"a": rng.randint(0, 9)})})
        elif kind == "delete":
            nid = rng.choice(present)
            del nodes[nid]
            for key in [k for k, e in edges.items() if nid in (e["src"], e["dst"])]:
                del edges[key]
        elif kind == "param":
            nodes[rng.choice(present)]["params"][rng.choice(INPUTS)] = rng.randint(0, 99)
        elif kind == "move":
            node = nodes[rng.choice(present)]
            node["x"], node["y"] = rng.uniform(0, 900), rng.uniform(0, 600)
        elif kind == "connect" and len(present) >= 2:
            src, dst = rng.sample(present, 2)
            inp = rng.choice(INPUTS)
            edges[f"{dst}:{inp}"] = {"src": src, "src_output": 0, "dst": dst, "dst_input": inp}
        elif kind == "disconnect" and len(edges):
            del edges[rng.choice(list(edges.keys()))]


def random_python_edit(rng: random.Random, g: vx.Graph) -> None:
    present = list(g.model.nodes)
    kind = rng.choice(["add", "remove", "param", "connect"])
    if kind == "add" or not present:
        nid = rng.choice(IDS)
        if nid not in g.model.nodes:
            g.add("IntAdd", id=nid, a=rng.randint(0, 9))
    elif kind == "remove":
        g.remove(rng.choice(present))
    elif kind == "param":
        g.nodes[rng.choice(present)].params[rng.choice(INPUTS)] = rng.randint(0, 99)
    elif len(present) >= 2:
        src, dst = rng.sample(present, 2)
        g.model.connect(src, 0, dst, rng.choice(INPUTS))


# ---- the kernel as hub ---------------------------------------------------------------------
class QueuedView:
    """A canvas view whose messages to and from the kernel wait in queues."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.doc = Doc()
        for root in ("nodes", "edges", "groups", "meta"):
            self.doc.get(root, type=Map)
        self.to_kernel: deque[tuple[Any, list[bytes]]] = deque()
        self.to_view: deque[tuple[Any, list[bytes]]] = deque()
        self.applying = False
        self.comm: Any = _Comm(self)
        views._open_canvas(self.comm, {"content": {"data": data}})
        self.doc.observe(self._local)
        self.to_kernel.append(({"t": "hello"}, []))
        self.to_kernel.append(({"t": "y"}, [create_sync_message(self.doc)]))

    def _local(self, event: Any) -> None:
        if not self.applying:
            self.to_kernel.append(({"t": "y"}, [create_update_message(event.update)]))

    def deliver_to_kernel(self) -> None:
        data, buffers = self.to_kernel.popleft()
        self.comm.handler({"content": {"data": data}, "buffers": buffers})

    def deliver_to_view(self) -> None:
        data, buffers = self.to_view.popleft()
        if data.get("t") == "error":  # like js/src/sync.ts: resync after a rejected update
            self.to_kernel.append(({"t": "y"}, [create_sync_message(self.doc)]))
        if data.get("t") != "y" or buffers[0][0] != 0:
            return
        self.applying = True
        try:
            reply = handle_sync_message(buffers[0][1:], self.doc)
        finally:
            self.applying = False
        if reply is not None:
            self.to_kernel.append(({"t": "y"}, [reply]))


class _Comm:
    def __init__(self, view: QueuedView) -> None:
        self.view, self.comm_id, self.handler, self.closed = view, f"q{id(view)}", None, False

    def send(self, data: Any = None, buffers: list[bytes] | None = None) -> None:
        self.view.to_view.append((data, [bytes(b) for b in buffers or []]))

    def on_msg(self, fn: Any) -> None:
        self.handler = fn

    def on_close(self, fn: Any) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("seed", range(6))
def test_views_and_python_editing_through_the_kernel_converge(seed: int) -> None:
    rng = random.Random(seed)
    g = vx.Graph()
    for nid in IDS[:4]:
        g.add("IntAdd", id=nid, a=1)
    data = g._repr_mimebundle_()[views.MIME]
    replicas = [QueuedView(data) for _ in range(3)]
    for _ in range(400):
        roll = rng.random()
        if roll < 0.25:
            random_doc_edit(rng, rng.choice(replicas).doc)
        elif roll < 0.32:
            random_python_edit(rng, g)
        else:
            busy = [(v, d) for v in replicas for d in ("k", "v") if (v.to_kernel if d == "k" else v.to_view)]
            if busy:
                view, direction = rng.choice(busy)
                view.deliver_to_kernel() if direction == "k" else view.deliver_to_view()
    while any(v.to_kernel or v.to_view for v in replicas):  # drain, still interleaved
        busy = [(v, d) for v in replicas for d in ("k", "v") if (v.to_kernel if d == "k" else v.to_view)]
        view, direction = rng.choice(busy)
        view.deliver_to_kernel() if direction == "k" else view.deliver_to_view()
    kernel_doc = g._vx_canvas_session.doc.doc  # type: ignore[attr-defined]
    expected = graph_of(kernel_doc)
    for view in replicas:
        assert graph_of(view.doc) == expected
    check_invariants(expected)
    assert model_graph(g.model) == expected  # the kernel's Graph equals the doc


# ---- a document's room ---------------------------------------------------------------------
class RoomPeer:
    """A client of the room: its doc, and the updates it has not yet received / sent."""

    def __init__(self, room: Doc, doc: Doc | None = None) -> None:
        self.doc = doc if doc is not None else Doc()
        self.doc.apply_update(room.get_update())
        self.inbox: deque[bytes] = deque()
        self.outbox: deque[bytes] = deque()
        self.applying = False
        self.doc.observe(self._local)

    def _local(self, event: Any) -> None:
        if not self.applying:
            self.outbox.append(event.update)

    def receive(self) -> None:
        update = self.inbox.popleft()
        self.applying = True
        try:
            self.doc.apply_update(update)
        finally:
            self.applying = False


class KernelPeer:
    """The kernel's replica as ``room.RoomClient`` drives it: room updates applied untrusted,
    every other change of its doc (Python edits, the reconciler's own fixes) sent up."""

    def __init__(self, gd: GraphDoc) -> None:
        self.gd, self.doc = gd, gd.doc
        self.inbox: deque[bytes] = deque()
        self.outbox: deque[bytes] = deque()
        gd.subscribe(lambda update, sender: sender != "room" and self.outbox.append(update))

    def receive(self) -> None:
        self.gd.apply_untrusted(self.inbox.popleft(), "room")


@pytest.mark.parametrize("seed", range(12))
def test_users_and_a_kernel_editing_a_documents_room_converge(seed: int) -> None:
    rng = random.Random(1000 + seed)
    server = YVortex()
    m = GraphModel()
    for nid in IDS[:4]:
        m.add_node("IntAdd", {"a": 1}, id=nid)
    server.set(json.dumps(vx.Graph(m).to_json()))
    room = server.ydoc
    clients = [RoomPeer(room) for _ in range(3)]
    kernel_gd = GraphDoc(GraphModel(), mirror=False)
    kernel_gd.apply_untrusted(room.get_update(), "room")
    kernel = KernelPeer(kernel_gd)
    g = vx.Graph(kernel_gd.model)
    peers: list[Any] = [*clients, kernel]
    server_out: list[bytes] = []
    room.observe(lambda event: server_out.append(event.update))

    def deliver_one() -> bool:
        choices = [("up", p) for p in peers if p.outbox] + [("down", p) for p in peers if p.inbox]
        if server_out:
            choices.append(("broadcast", None))
        if not choices:
            return False
        kind, peer = rng.choice(choices)
        if kind == "up":  # the room applies a client's update (unvetted), then repairs soon after
            room.apply_update(peer.outbox.popleft())
            if rng.random() < 0.5:
                server.repair_now()
        elif kind == "down":
            peer.receive()
        else:
            update = server_out.pop(0)
            for p in peers:
                p.inbox.append(update)
        return True

    for _ in range(400):
        roll = rng.random()
        if roll < 0.25:
            random_doc_edit(rng, rng.choice(clients).doc)
        elif roll < 0.32:
            random_python_edit(rng, g)
        else:
            deliver_one()
    while True:
        server.repair_now()
        if not deliver_one() and server._pending.empty() and not server_out:
            break
    expected = graph_of(room)
    check_invariants(expected)
    for peer in peers:
        assert graph_of(peer.doc) == expected
    assert model_graph(kernel_gd.model) == expected
    saved, _ = docio.read_model(room, None)
    assert sorted(saved.nodes) == sorted(expected["nodes"])  # and the server saves that graph
