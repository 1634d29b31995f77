"""Simulated browsers for ``collab.py``: pycrdt replicas speaking y-websocket frames over any
channel, and the rounds that time how long one peer's message takes to reach the others.

A ``Peer`` is what ``js/src/sync.ts`` does in a browser: it answers sync step 1 with step 2,
applies step 2 and updates, and sends each of its own transactions as an update (never one
it applied). Every arrival is timed: ``expect(pred)`` gives a future that resolves with the
``time.perf_counter()`` of the first arrival after which ``pred`` holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Encoder, Map, create_update_message, handle_sync_message, write_message

NODES, NODE = 20, "n7"  # the workflow's size; the node every edit touches
WARMUP = 5  # rounds before the timed ones
TIMEOUT = 15.0  # seconds a message may take to reach every peer

Pred = Callable[[Any], bool]


def workflow() -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "IntAdd", "params": {"a": i, "b": 1}, "pos": [i % 5 * 300, i // 5 * 150]}
             for i in range(NODES)]
    edges = [{"src": f"n{i - 1}", "src_output": 0, "dst": f"n{i}", "dst_input": "a"} for i in range(1, NODES, 2)]
    return {"schema_version": 1, "nodes": nodes, "edges": edges}


# ---- simulated browsers ----------------------------------------------------------------------
class Waiter:
    """Notes when a condition first holds after something arrives (``expect`` / ``notify``)."""

    def __init__(self) -> None:
        self._waits: list[tuple[Pred, asyncio.Future[float]]] = []

    def expect(self, pred: Pred) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waits.append((pred, fut))
        return fut

    def notify(self, item: Any) -> None:
        if not self._waits:
            return
        now, keep = time.perf_counter(), []
        for pred, fut in self._waits:
            if fut.done():
                continue
            if pred(item):
                fut.set_result(now)
            else:
                keep.append((pred, fut))
        self._waits = keep


class Peer(Waiter):
    """A browser's replica: y-websocket frames in and out over ``send``, as ``js/src/sync.ts``
    (answers sync step 1, applies step 2 and updates, sends its own transactions)."""

    def __init__(self, send: Callable[[bytes], None], client_id: int | None = None) -> None:
        super().__init__()
        self.doc: Doc = Doc() if client_id is None else Doc(client_id=client_id)
        self.nodes = self.doc.get("nodes", type=Map)
        self.send = send
        self._applying = False
        self.doc.observe(self._on_local)

    def on_frame(self, frame: bytes) -> None:
        if frame[:1] == b"\x00":
            self._applying = True
            try:
                reply = handle_sync_message(frame[1:], self.doc)
            finally:
                self._applying = False
            if reply is not None:
                self.send(reply)
        self.notify(frame)

    def _on_local(self, event: Any) -> None:
        if not self._applying:
            self.send(create_update_message(event.update))

    def value_at(self, *path: str) -> Any:
        value: Any = self.nodes
        try:
            for key in path:
                value = value[key]
        except (KeyError, TypeError):
            return None
        return value

    # the edits, and how a peer knows it has them (values are unique per round)
    def set_param(self, i: int) -> None:
        with self.doc.transaction():
            self.nodes[NODE]["params"]["b"] = 1000 + i

    def drag_frame(self, i: int) -> None:
        node = self.nodes[NODE]
        with self.doc.transaction():
            node["x"], node["y"] = _drag_pos(i)

    def has_param(self, i: int) -> Pred:
        return lambda _item: self.value_at(NODE, "params", "b") == 1000 + i

    def has_pos(self, i: int) -> Pred:
        x, y = _drag_pos(i)
        return lambda _item: self.value_at(NODE, "x") == x and self.value_at(NODE, "y") == y

    def synced(self) -> Pred:
        return lambda _item: len(self.nodes) >= NODES


def _drag_pos(i: int) -> tuple[float, float]:
    """Doubles, as a drag gives at any zoom but 1 (a float32-exact value is 4 B shorter)."""
    return 300.0 + i / 3, 150.0 + i / 7


def equals(expected: bytes) -> Pred:
    return lambda frame: frame == expected


def seq_is(i: int) -> Pred:
    return lambda data: isinstance(data, dict) and data.get("seq") == i


def awareness_frame(client_id: int, clock: int, state: dict[str, Any]) -> bytes:
    enc = Encoder()
    enc.write_var_uint(1)
    enc.write_var_uint(client_id)
    enc.write_var_uint(clock)
    enc.write_var_string(json.dumps(state))
    return b"\x01" + write_message(enc.to_bytes())


# ---- rounds --------------------------------------------------------------------------------
@dataclass
class Series:
    """One kind of message sent by the editor and awaited by the others."""

    name: str
    act: Callable[[int], None]
    preds: Callable[[int], list[tuple[Waiter, Pred]]]
    all: list[float] = field(default_factory=list)
    each: list[float] = field(default_factory=list)


async def run_rounds(series: list[Series], count: int) -> None:
    """``count`` rounds (after ``WARMUP``); each round sends one message of every series in
    turn, each only after the previous one reached every peer (interleaved: drift on a shared
    machine hits the edits and their baseline alike)."""
    for i in range(-WARMUP, count):
        for s in series:
            futs = [waiter.expect(pred) for waiter, pred in s.preds(i)]
            t0 = time.perf_counter()
            s.act(i)
            try:
                done = await asyncio.wait_for(asyncio.gather(*futs), TIMEOUT)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                raise RuntimeError(f"{s.name}: round {i} did not reach every peer in {TIMEOUT:.0f} s") from None
            if i >= 0:
                s.each += [t - t0 for t in done]
                s.all.append(max(done) - t0)


async def synced(peers: list[Peer]) -> None:
    """Until every peer holds the whole workflow (``asyncio.TimeoutError`` after ``TIMEOUT``)."""
    waits = [p.expect(p.synced()) for p in peers if not p.synced()(None)]
    await asyncio.wait_for(asyncio.gather(*waits), TIMEOUT)


def edit_series(label: str, peers: list[Peer]) -> list[Series]:
    editor, others = peers[0], peers[1:]
    return [Series(f"{label}: param edit", editor.set_param, lambda i: [(p, p.has_param(i)) for p in others]),
            Series(f"{label}: drag frame", editor.drag_frame, lambda i: [(p, p.has_pos(i)) for p in others])]
