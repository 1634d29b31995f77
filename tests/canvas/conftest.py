"""Seams for canvas tests: browser-like pycrdt replicas talking y frames to a Relay.

``Replica`` plays the JS ``CommProvider`` (js/src/sync.ts): it sends hello + sync step 1,
answers step 1 with step 2, applies incoming updates without echoing them, and sends its own
doc updates as update frames. Frames travel through plain Python calls (a fake comm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import (
    Doc,
    Map,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from vortex_jupyter.canvas.sync import Relay
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.graph.model import GraphModel


@dataclass(frozen=True)
class Port:
    name: str
    type: str


@dataclass(frozen=True)
class Spec:
    """Duck-typed stand-in for a NodeSpec: only ``input(name)`` is consulted."""

    inputs: tuple[Port, ...]

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)


SPECS = {
    "KSampler": Spec((Port("seed", "INT"), Port("steps", "INT"), Port("cfg", "FLOAT"), Port("model", "MODEL"))),
    "Add": Spec((Port("a", "INT"), Port("b", "INT"))),
    "Text": Spec((Port("text", "STRING"),)),
}


def lookup(node_type: str) -> Spec | None:
    return SPECS.get(node_type)


@dataclass
class Replica:
    """A view: a Y doc replica connected to the relay under ``view_id``."""

    relay: Relay
    view_id: str
    doc: Doc = field(default_factory=Doc)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    _applying: bool = False
    _sending: bool = False
    _deferred: list[tuple[dict[str, Any], list[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for root in ("nodes", "edges", "groups", "meta"):
            self.doc.get(root, type=Map)
        self.relay.add_view(self.view_id, self.on_message)
        self.doc.observe(self._on_local_update)

    @property
    def nodes(self) -> Map:
        return self.doc.get("nodes", type=Map)

    @property
    def edges(self) -> Map:
        return self.doc.get("edges", type=Map)

    def connect(self) -> None:
        self.relay.hello(self.view_id)
        self.relay.receive(self.view_id, create_sync_message(self.doc))

    def on_message(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        if self._sending:  # a real comm delivers later, never inside our own transaction
            self._deferred.append((msg, buffers))
            return
        self.flush()
        self._handle(msg, buffers)

    def flush(self) -> None:
        while self._deferred:
            self._handle(*self._deferred.pop(0))

    def _handle(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        self.inbox.append(msg)
        if msg.get("t") != "y":
            return
        frame = buffers[0]
        self.frames.append(frame)
        if frame[0] != 0:
            return  # awareness: recorded in the inbox only
        self._applying = True
        try:
            reply = handle_sync_message(frame[1:], self.doc)
        finally:
            self._applying = False
        if reply is not None:
            self.relay.receive(self.view_id, reply)

    def _on_local_update(self, event: Any) -> None:
        if not self._applying:  # like the JS provider: never echo what came from the kernel
            self._sending = True
            try:
                self.relay.receive(self.view_id, create_update_message(event.update))
            finally:
                self._sending = False

    def errors(self) -> list[dict[str, Any]]:
        self.flush()
        return [m for m in self.inbox if m.get("t") == "error"]


def content(doc: Doc) -> dict[str, Any]:
    """What a doc holds, root by root: equal for two docs that show the same graph (their
    update bytes differ once a refused edit was taken back)."""
    return {root: doc.get(root, type=Map).to_py() for root in ("nodes", "edges", "groups", "meta", "file")}


@pytest.fixture
def model() -> GraphModel:
    m = GraphModel()
    a = m.add_node("Add", {"a": 1, "b": 2}, pos=(10, 20))
    b = m.add_node("Add", {"b": 5}, pos=(200, 20))
    m.connect(a, 0, b, "a")
    return m


@pytest.fixture
def binding(model: GraphModel) -> GraphDoc:
    return GraphDoc(model, lookup=lookup)


@pytest.fixture
def relay(binding: GraphDoc) -> Relay:
    return Relay(binding)


@pytest.fixture
def views(relay: Relay) -> tuple[Replica, Replica]:
    a, b = Replica(relay, "A"), Replica(relay, "B")
    a.connect()
    b.connect()
    return a, b
