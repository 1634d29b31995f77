"""The kernel's canvas relay under random interleavings (a hypothesis state machine).

Views (real ``CanvasSession`` views, each with a pycrdt replica behaving like
``js/src/sync.ts``: hello + sync step 1 on joining, step 1 again after an error) talk to the
kernel over comms whose messages wait in queues, delivered one at a time in any order. Rules:
valid edits from any view (add, move, delete nodes; set params; connect, disconnect), edits
from Python (``vx.Graph``), edits the kernel refuses (undeclared params, strings over their
limit, nodes that fill the doc past its limit), frames no view would send (random bytes,
truncated updates, unknown message types, frames over the cap), views joining and leaving.

After every step: the doc is within its limit (plus what Python added: the kernel's own
edits are never refused), the kernel's ``GraphModel`` equals the doc, no edge touches a
node that is gone and no input has two edges. After syncing (a rule, and at the end): every
view's replica equals the kernel's doc.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pycrdt import Doc, Map, create_sync_message, create_update_message, handle_sync_message

import vortex_jupyter as vx
from vortex_jupyter.canvas import docio
from vortex_jupyter.canvas.limits import Limits
from vortex_jupyter.canvas.session import CanvasSession, session_for
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.registry import REGISTRY

from .conftest import content

LIMIT = 64 * 1024  # bytes of doc a view may fill (small, so runs reach it)
MAX_STRING = 2048
MAX_FRAME = 64 * 1024
IDS = [f"n{i}" for i in range(6)]
INPUTS = ["a", "b"]
PARAMS = ["a", "b", "value", "junk"]  # IntAdd: a, b; PrimitiveString: value; none takes junk
TYPES = ["IntAdd", "PrimitiveString"]

coords = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
index = st.integers(min_value=0, max_value=1 << 16)
values = st.integers(min_value=-99, max_value=99) | st.text(max_size=8)


class View:
    """A canvas view as ``js/src/sync.ts`` behaves, over a comm whose messages wait in queues."""

    def __init__(self, session: CanvasSession, view_id: str, client_id: int | None = None) -> None:
        self.session, self.view_id = session, view_id
        self.doc = Doc(client_id=client_id)
        for root in ("nodes", "edges", "groups", "meta"):
            self.doc.get(root, type=Map)
        self.to_kernel: deque[tuple[Any, list[bytes]]] = deque()
        self.to_view: deque[tuple[Any, list[bytes]]] = deque()
        self.applying = False
        session.attach(view_id, lambda msg, bufs: self.to_view.append((msg, [bytes(b) for b in bufs])))
        self.doc.observe(self._local)
        self.to_kernel.append(({"t": "hello"}, []))
        self.to_kernel.append(({"t": "y"}, [create_sync_message(self.doc)]))

    @property
    def nodes(self) -> Map:
        return self.doc.get("nodes", type=Map)

    @property
    def edges(self) -> Map:
        return self.doc.get("edges", type=Map)

    def _local(self, event: Any) -> None:
        if not self.applying:
            self.to_kernel.append(({"t": "y"}, [create_update_message(event.update)]))

    def deliver_to_kernel(self) -> None:
        msg, buffers = self.to_kernel.popleft()
        self.session.receive(self.view_id, msg, buffers)

    def deliver_to_view(self) -> None:
        msg, buffers = self.to_view.popleft()
        if msg.get("t") == "error" and "reload the view" in str(msg.get("message", "")):
            self.reload()  # the relay could not take a refused edit back (its size reserve is spent)
        elif msg.get("t") == "error":  # resync after a refused frame
            self.to_kernel.append(({"t": "y"}, [create_sync_message(self.doc)]))
        if msg.get("t") != "y" or not buffers or buffers[0][:1] != b"\x00":
            return
        self.applying = True
        try:
            reply = handle_sync_message(buffers[0][1:], self.doc)
        finally:
            self.applying = False
        if reply is not None:
            self.to_kernel.append(({"t": "y"}, [reply]))

    def busy(self) -> bool:
        return bool(self.to_kernel or self.to_view)

    def reload(self) -> None:
        """What a user does when told to reload: a fresh page (a new doc and client id) syncs anew."""
        self.reloads = getattr(self, "reloads", 0) + 1
        old = self.doc.client_id
        self.doc = Doc(client_id=old + 100_000)
        for root in ("nodes", "edges", "groups", "meta"):
            self.doc.get(root, type=Map)
        self.doc.observe(self._local)
        self.to_kernel.append(({"t": "y"}, [create_sync_message(self.doc)]))


def nth(keys: Any, index: int) -> str:
    ordered = sorted(keys)
    return str(ordered[index % len(ordered)])


def norm(value: Any) -> Any:
    """Numbers as the doc has them (floats); the rest as is."""
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def doc_graph(doc: Doc) -> dict[str, Any]:
    nodes = {k: {f: norm(v) for f, v in n.to_py().items() if f != "keep"} for k, n in doc.get("nodes", type=Map).items()}
    return {"nodes": nodes, "edges": norm(doc.get("edges", type=Map).to_py())}


def doc_meaning(doc: Doc) -> dict[str, Any]:
    """``doc_graph`` with params read as the kernel reads them (``"3"`` into an INT port is 3:
    big integers travel as decimal strings)."""
    graph = doc_graph(doc)
    for node in graph["nodes"].values():
        node["params"] = norm(docio.params_from_doc(REGISTRY.lookup, node["type"], node["params"]))
    return graph


def model_graph(model: GraphModel) -> dict[str, Any]:
    nodes = {}
    for n in model.nodes.values():
        fields: dict[str, Any] = {"type": n.type, "x": n.pos[0], "y": n.pos[1], "params": norm(dict(n.params))}
        if n.title:
            fields["title"] = n.title
        if n.size is not None:
            fields["w"], fields["h"] = n.size
        nodes[n.id] = fields
    edges = {f"{e.dst}:{e.dst_input}": {"src": e.src, "src_output": float(e.src_output), "dst": e.dst,
                                        "dst_input": e.dst_input} for e in model.edges()}
    return {"nodes": nodes, "edges": edges}


class RelayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.graph = vx.Graph()
        self.session = session_for(self.graph)
        self.session.relay.limits = Limits(max_doc_bytes=LIMIT, max_string=MAX_STRING)
        self.session.relay.reserve = LIMIT // 16
        self.session.relay.max_bytes = MAX_FRAME
        self.views: dict[str, View] = {}
        self.names = (f"v{i}" for i in itertools.count())
        self.filler = itertools.count()
        self.python_bytes = 0  # what Python's edits added to the doc (never refused)

    @property
    def kernel(self) -> Doc:
        return self.session.doc.doc

    def doc_bytes(self) -> int:
        return len(self.kernel.get_update())

    def pick(self, index: int) -> View:
        return self.views[sorted(self.views)[index % len(self.views)]]

    @initialize()
    def start(self) -> None:
        for nid in IDS[:3]:
            self.graph.add("IntAdd", id=nid, a=1)
        for _ in range(2):
            self.join()

    # Every rule draws the same way whatever the state (an index taken modulo what there is),
    # so hypothesis sees consistent data generation.

    # ---- views come and go -------------------------------------------------------------
    @precondition(lambda self: len(self.views) < 4)
    @rule()
    def join(self) -> None:
        name = next(self.names)
        self.views[name] = View(self.session, name, client_id=1000 + int(name[1:]))

    @precondition(lambda self: len(self.views) > 1)
    @rule(v=index)
    def leave(self, v: int) -> None:
        view = self.pick(v)
        self.session.detach(view.view_id)
        del self.views[view.view_id]

    # ---- valid edits from a view -------------------------------------------------------
    @rule(v=index, node_id=st.sampled_from(IDS), node_type=st.sampled_from(TYPES), x=coords, y=coords)
    def add_node(self, v: int, node_id: str, node_type: str, x: float, y: float) -> None:
        view = self.pick(v)
        if node_id not in view.nodes:
            params = {"a": 1} if node_type == "IntAdd" else {"value": "hi"}
            view.nodes[node_id] = Map({"type": node_type, "x": x, "y": y, "params": Map(params)})

    @rule(v=index, n=index, x=coords, y=coords)
    def move_node(self, v: int, n: int, x: float, y: float) -> None:
        view = self.pick(v)
        if len(view.nodes):
            node = view.nodes[nth(view.nodes.keys(), n)]
            with view.doc.transaction():
                node["x"], node["y"] = x, y

    @rule(v=index, n=index)
    def delete_node(self, v: int, n: int) -> None:
        view = self.pick(v)
        if len(view.nodes):
            gone = nth(view.nodes.keys(), n)
            with view.doc.transaction():  # as js/src/docmodel.ts deleteNodes: its edges too
                for key in [k for k, e in view.edges.items() if gone in (e["src"], e["dst"])]:
                    del view.edges[key]
                del view.nodes[gone]

    @rule(v=index, n=index, name=st.sampled_from(PARAMS), value=values)
    def set_param(self, v: int, n: int, name: str, value: Any) -> None:
        view = self.pick(v)
        if len(view.nodes):
            view.nodes[nth(view.nodes.keys(), n)]["params"][name] = value

    @rule(v=index, src=st.sampled_from(IDS), dst=st.sampled_from(IDS), inp=st.sampled_from(INPUTS))
    def connect(self, v: int, src: str, dst: str, inp: str) -> None:
        view = self.pick(v)
        if src != dst and src in view.nodes and dst in view.nodes:
            view.edges[f"{dst}:{inp}"] = {"src": src, "src_output": 0, "dst": dst, "dst_input": inp}

    @rule(v=index, e=index)
    def disconnect(self, v: int, e: int) -> None:
        view = self.pick(v)
        if len(view.edges):
            del view.edges[nth(view.edges.keys(), e)]

    # ---- edits from Python -------------------------------------------------------------
    @rule(node_id=st.sampled_from(IDS), kind=st.sampled_from(["add", "remove", "param", "connect"]),
          other=st.sampled_from(IDS), value=st.integers(0, 99))
    def python_edit(self, node_id: str, kind: str, other: str, value: int) -> None:
        g, before = self.graph, self.doc_bytes()
        if kind == "add" and node_id not in g.model.nodes:
            g.add("IntAdd", id=node_id, a=value)
        elif kind == "remove" and node_id in g.model.nodes:
            g.remove(node_id)
        elif kind == "param" and node_id in g.model.nodes and g.model.nodes[node_id].type == "IntAdd":
            g.nodes[node_id].params["b"] = value
        elif kind == "connect" and node_id != other and {node_id, other} <= set(g.model.nodes):
            g.model.connect(node_id, 0, other, INPUTS[value % 2])
        self.python_bytes += max(0, self.doc_bytes() - before)

    # ---- edits the kernel refuses ------------------------------------------------------
    @rule(v=index, n=index, extra=st.integers(1, 64))
    def oversized_string(self, v: int, n: int, extra: int) -> None:
        view = self.pick(v)
        strings = [k for k, node in view.nodes.items() if node.get("type") == "PrimitiveString"]
        if strings:
            view.nodes[nth(strings, n)]["params"]["value"] = "s" * (MAX_STRING + extra)

    @rule(v=index, count=st.integers(1, 16))
    def fill(self, v: int, count: int) -> None:
        """Nodes of long (allowed) strings: the doc reaches its limit within a few steps."""
        view = self.pick(v)
        with view.doc.transaction():
            for _ in range(count):
                view.nodes[f"f{next(self.filler)}"] = Map({"type": "PrimitiveString", "x": 0.0, "y": 0.0,
                                                           "params": Map({"value": "f" * MAX_STRING})})

    # ---- frames no view would send -----------------------------------------------------
    @rule(v=index, garbage=st.binary(max_size=64), cut=st.floats(0.0, 0.99), kind=st.sampled_from(
        ["bytes", "truncated", "unknown type", "unknown step", "no buffer", "unknown message", "oversized"]))
    def malformed(self, v: int, garbage: bytes, cut: float, kind: str) -> None:
        view = self.pick(v)
        if kind == "truncated":  # a real update cut short
            scratch = Doc()
            scratch.apply_update(self.kernel.get_update())
            state = scratch.get_state()
            scratch.get("nodes", type=Map)["t0"] = Map({"type": "IntAdd", "x": 0.0, "y": 0.0, "params": Map()})
            frame = create_update_message(scratch.get_update(state))
            frame = frame[: max(1, int(len(frame) * cut))]
        elif kind == "oversized":
            frame = bytes([0, 2]) + garbage + b"\x00" * MAX_FRAME
        else:
            frame = {"bytes": garbage, "unknown type": b"\x07" + garbage,
                     "unknown step": b"\x00\x09" + garbage}.get(kind, b"")
        msg: Any = {"t": "bogus"} if kind == "unknown message" else {"t": "y"}
        view.to_kernel.append((msg, [] if kind == "no buffer" else [frame]))

    # ---- delivery ----------------------------------------------------------------------
    @rule(picks=st.lists(index, min_size=1, max_size=12))
    def deliver(self, picks: list[int]) -> None:
        """Messages delivered one at a time, from any channel, each channel in order."""
        for i in picks:
            busy = [(name, d) for name, v in sorted(self.views.items()) for d in ("k", "v")
                    if (v.to_kernel if d == "k" else v.to_view)]
            if not busy:
                return
            name, direction = busy[i % len(busy)]
            view = self.views[name]
            view.deliver_to_kernel() if direction == "k" else view.deliver_to_view()

    @rule()
    def sync_all(self) -> None:
        self.drain()
        expected = doc_graph(self.kernel)
        for name, view in self.views.items():
            assert doc_graph(view.doc) == expected, f"view {name} did not converge"
            assert content(view.doc)["nodes"] == content(self.kernel)["nodes"]

    def drain(self) -> None:
        for _ in range(100_000):
            busy = [v for v in self.views.values() if v.busy()]
            if not busy:
                return
            for view in busy:  # round robin: every channel in order
                if view.to_kernel:
                    view.deliver_to_kernel()
                if view.to_view:
                    view.deliver_to_view()
        raise AssertionError("the views and the kernel never went quiet")

    def teardown(self) -> None:
        try:
            self.sync_all()
        finally:
            self.session.close()

    # ---- invariants --------------------------------------------------------------------
    @invariant()
    def doc_within_its_limit(self) -> None:
        assert self.doc_bytes() <= LIMIT + LIMIT // 16 + self.python_bytes

    @invariant()
    def graph_equals_doc(self) -> None:
        assert model_graph(self.graph.model) == doc_meaning(self.kernel)

    @invariant()
    def edges_are_sound(self) -> None:
        model = self.graph.model
        inputs = [(e.dst, e.dst_input) for e in model.edges()]
        assert len(inputs) == len(set(inputs)), "two edges into one input"
        for e in model.edges():
            assert e.src in model.nodes and e.dst in model.nodes, f"edge {e} touches a node that is gone"
        nodes = self.kernel.get("nodes", type=Map)
        for key, e in self.kernel.get("edges", type=Map).items():
            assert e["src"] in nodes and e["dst"] in nodes and key == f"{e['dst']}:{e['dst_input']}"

    @invariant()
    def refused_content_never_enters_the_model(self) -> None:
        for node in self.graph.model.nodes.values():
            assert "junk" not in node.params
            assert all(len(v) <= MAX_STRING for v in node.params.values() if isinstance(v, str))


RelayMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
test_relay_under_random_interleavings = RelayMachine.TestCase
