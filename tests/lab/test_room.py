"""Kernels and hostile clients in a document's room on a real Jupyter server with
jupyter-collaboration (``lab/room.py``, ``lab/ydoc.py``)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, create_update_message

import vortex_jupyter as vx
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.lab import document
from vortex_jupyter.lab.room import RoomClient
from vortex_jupyter.lab.server import ServerInfo

from .jupyter import JupyterServer

FLOW = {"schema_version": 1, "nodes": [
    {"id": "a", "type": "IntAdd", "params": {"a": 1, "b": 2}, "pos": [0, 0]},
    {"id": "b", "type": "IntAdd", "params": {"b": 10}, "pos": [300, 0]}],
    "edges": [{"src": "a", "src_output": 0, "dst": "b", "dst_input": "a"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    s = JupyterServer(tmp_path_factory.mktemp("jupyter")).start()
    try:
        yield s
    finally:
        s.stop()


def info(server: JupyterServer) -> ServerInfo:
    return ServerInfo(server.url, server.token, server.root)


def flow_file(server: JupyterServer, name: str) -> Path:
    path = server.root / name
    path.write_text(json.dumps(FLOW, indent=2) + "\n")
    return path


def joined(server: JupyterServer, name: str) -> tuple[GraphModel, RoomClient]:
    gd = GraphDoc(GraphModel(), mirror=False)
    return gd.model, RoomClient(gd, info(server), name).start(timeout=20)


def wait_for(fn: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def test_two_kernels_in_one_room_converge_and_the_server_saves_the_file(server: JupyterServer) -> None:
    path = flow_file(server, "two.vortex.json")
    a, room_a = joined(server, "two.vortex.json")
    b, room_b = joined(server, "two.vortex.json")
    try:
        assert a.nodes["a"].params == {"a": 1, "b": 2} and [(e.src, e.dst) for e in b.edges()] == [("a", "b")]
        a.set_param("b", "b", 11)
        assert wait_for(lambda: b.nodes["b"].params.get("b") == 11)
        b.add_node("IntAdd", {"a": 5}, id="c", pos=(600, 0))
        b.connect("b", 0, "c", "b")
        assert wait_for(lambda: "c" in a.nodes and a.inputs_of("c").get("b"))
        assert room_a.save(timeout=10)
        saved = json.loads(path.read_text())
        assert saved["nodes"][1]["params"]["b"] == 11 and saved["nodes"][2]["id"] == "c"
        assert path.read_text().startswith('{\n  "schema_version": 1')  # the file's own layout
    finally:
        room_a.close()
        room_b.close()


def test_vx_open_in_a_kernel_under_the_server_joins_the_room(server: JupyterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = flow_file(server, "open.vortex.json")
    monkeypatch.setattr(document, "_DOCS", {})
    monkeypatch.setenv("VORTEX_JUPYTER_URL", server.url)
    monkeypatch.setenv("VORTEX_JUPYTER_TOKEN", server.token)
    monkeypatch.chdir(server.root)
    monkeypatch.setenv("JPY_SESSION_NAME", "nb.ipynb")
    g = vx.open(path)
    doc = document.document_of(g)
    assert doc is not None and doc.mode == "room"
    other, room = joined(server, "open.vortex.json")
    try:
        g.nodes["a"].params["a"] = 7
        assert wait_for(lambda: other.nodes["a"].params.get("a") == 7)
        other.set_param("a", "b", 3)
        assert wait_for(lambda: g.nodes["a"].params.get("b") == 3)
        assert g.run(executor="inline").outputs["b"] == (20,)
        g.save()
        assert json.loads(path.read_text())["nodes"][0]["params"] == {"a": 7, "b": 3}
    finally:
        room.close()
        doc.room.close()


def test_malformed_and_hostile_updates_never_poison_the_room(server: JupyterServer) -> None:
    """A fuzzing client sends garbage frames and well-formed updates that break the schema;
    the server stays up, honest clients stay in sync, and what they hold is a valid graph."""
    flow_file(server, "fuzz.vortex.json")
    honest, room = joined(server, "fuzz.vortex.json")
    rng = random.Random(7)
    try:
        asyncio.run(_fuzz(server, rng))
        assert server.alive()
        honest.set_param("a", "a", 42)  # the room still relays honest edits
        other, room2 = joined(server, "fuzz.vortex.json")
        try:
            assert wait_for(lambda: other.nodes.get("a") is not None and other.nodes["a"].params.get("a") == 42)
            assert wait_for(lambda: set(other.nodes) == set(honest.nodes))
            for model in (honest, other):
                assert all(n.type == "IntAdd" for n in model.nodes.values())  # the hostile nodes were repaired away
                assert all(e.src in model.nodes and e.dst in model.nodes for e in model.edges())
            gd = room2.gd
            for node_id, node in gd.nodes.items():  # the room's doc itself was repaired
                assert set(node.keys()) <= {"type", "x", "y", "w", "h", "title", "mode", "params", "keep"}, node_id
        finally:
            room2.close()
    finally:
        room.close()


async def _fuzz(server: JupyterServer, rng: random.Random) -> None:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    status, body = info(server).request("PUT", "api/collaboration/session/fuzz.vortex.json",
                                        {"format": "text", "type": "vortex"})
    assert status in (200, 201)
    url = info(server).ws(f"api/collaboration/room/text:vortex:{body['fileId']}") + f"?sessionId={body['sessionId']}"
    request = HTTPRequest(url, headers=info(server).headers())
    sent = 0
    for round_ in range(6):
        conn = await websocket_connect(request)
        first = await conn.read_message()  # the room's sync step 1
        assert isinstance(first, bytes) and first[0] == 0
        doc = Doc()
        for frame in _hostile_frames(rng, doc, round_):
            try:
                await conn.write_message(frame, binary=True)
                sent += 1
            except Exception:
                break  # the server dropped us after a garbage frame: reconnect
        await asyncio.sleep(0.2)
        conn.close()
    assert sent >= 12


def _hostile_frames(rng: random.Random, doc: Doc, round_: int) -> list[bytes]:
    frames: list[bytes] = []
    nodes, edges = doc.get("nodes", type=Map), doc.get("edges", type=Map)
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    nodes[f"evil{round_}"] = Map({"type": 5, "x": "far", "params": "nope"})  # no usable type: deleted
    nodes[f"odd{round_}"] = Map({"type": "IntAdd", "x": float("inf"), "y": 1, "params": Map({"a": [1]}), "script": "x"})
    edges[f"a:z{round_}"] = {"src": "ghost", "src_output": 0, "dst": "a", "dst_input": f"z{round_}"}
    edges["bogus-key"] = {"src": "a", "src_output": -3, "dst": "b"}
    doc.get("rogue", type=Map)["x"] = 1  # an unknown root
    doc.unobserve(sub)
    frames += [create_update_message(u) for u in updates]
    frames.append(bytes([0, 2, 5, 1, 2, 3, 4, 5]))  # an update that is not a Yjs update
    frames.append(bytes([0, 2]) + bytes(rng.randrange(256) for _ in range(40)))
    frames.append(bytes([1, 10]) + b"not awareness")
    frames.append(bytes([7]))
    return frames
