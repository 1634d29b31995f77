"""Yjs rooms of ``vortex serve``: graph documents co-edited over WebSocket, no Jupyter.

Clients here are pycrdt's own ``Provider`` (an independent y-sync implementation) over the
``websockets`` library, against a real server subprocess: they see each other's edits, the
document's JSON and version follow through ``GET /api/v1/graphs/{id}``, a hostile update is
refused while the room goes on, a PATCH made outside the room reaches it without losing the
room's edits, and a token-protected server refuses a socket without the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, Provider, create_update_message

from .test_comfy_api import Server

API_PROMPT = {"1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
TOKEN = "s3cret-room-token"


class Channel:
    """pycrdt's ``Channel`` over a ``websockets`` connection (binary frames only)."""

    def __init__(self, ws: Any, path: str) -> None:
        self.ws, self._path = ws, path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        await self.ws.send(message)

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            assert isinstance(message, bytes), f"a plain y-websocket client got a text frame: {message!r}"
            return message


@contextlib.asynccontextmanager
async def client(srv: Server, doc_id: str, token: str = "") -> AsyncIterator[tuple[Doc, Any]]:
    """A pycrdt Doc synced with the document's room (and the raw socket, to send hostile frames)."""
    import websockets

    query = f"?token={token}" if token else ""
    doc = Doc()
    for root in ("nodes", "edges", "groups", "meta"):
        doc.get(root, type=Map)
    url = f"ws://127.0.0.1:{srv.port}/api/v1/graphs/{doc_id}/room{query}"
    async with websockets.connect(url) as ws, Provider(doc, Channel(ws, doc_id)) as provider:
        await asyncio.wait_for(provider.synced.wait(), 30)
        yield doc, ws


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()  # (on the loop: pycrdt docs stay on their thread; HTTP reads are short)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check}")
        await asyncio.sleep(0.05)


def nodes(doc: Doc) -> Map:
    return doc.get("nodes", type=Map)


def stored(srv: Server, doc_id: str) -> dict[str, Any]:
    status, body = srv.request(f"/api/v1/graphs/{doc_id}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def stored_node(srv: Server, doc_id: str, node: str) -> dict[str, Any] | None:
    return next((n for n in stored(srv, doc_id)["graph"]["nodes"] if n["id"] == node), None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("rooms"))
    yield srv
    srv.close()


def new_document(srv: Server, name: str = "room", token: str = "") -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    status, body = srv.request("/api/v1/graphs", {"name": name, "graph": API_PROMPT}, headers=headers)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def test_two_clients_see_each_other_s_edits_and_the_document_follows(server: Server) -> None:
    created = new_document(server)
    doc_id, version = created["id"], created["version"]

    async def main() -> None:
        async with client(server, doc_id) as (a, _), client(server, doc_id) as (b, _):
            assert set(nodes(a).keys()) == set(nodes(b).keys()) == {"1", "2"}
            assert nodes(a)["1"]["params"]["a"] == 1  # the same schema as a notebook canvas
            nodes(a)["1"]["params"]["a"] = 40  # A sets a param
            await until(lambda: nodes(b)["1"]["params"].get("a") == 40)
            with b.transaction():  # B adds a node and wires it
                nodes(b)["3"] = Map({"type": "IntAdd", "x": 300.0, "y": 40.0, "params": Map({"a": 2, "b": 5})})
                b.get("edges", type=Map)["2:source"] = {"src": "3", "src_output": 0, "dst": "2", "dst_input": "source"}
            await until(lambda: "3" in nodes(a) and a.get("edges", type=Map).get("2:source", {}).get("src") == "3")
            await until(lambda: stored(server, doc_id)["version"] > version
                        and (stored_node(server, doc_id, "3") or {}).get("params") == {"a": 2, "b": 5})
            doc = stored(server, doc_id)
            assert stored_node(server, doc_id, "1")["params"]["a"] == 40  # type: ignore[index]
            assert {"src": "3", "src_output": 0, "dst": "2", "dst_input": "source"} in doc["graph"]["edges"]

    asyncio.run(main())
    status, problems = server.request(f"/api/v1/graphs/{doc_id}/validate", {}, method="POST")
    assert status == 200 and problems["ok"], problems  # what the room saved is a valid graph


def test_a_hostile_update_is_refused_and_the_room_goes_on(server: Server) -> None:
    doc_id = new_document(server, "hostile")["id"]

    async def main() -> None:
        async with client(server, doc_id) as (a, _), client(server, doc_id) as (b, ws_b):
            # an update made on a side doc, sent raw: a node whose type is a number
            evil = Doc()
            evil.apply_update(b.get_update())
            with evil.transaction():
                evil.get("nodes", type=Map)["x1"] = Map({"type": 7, "x": 0.0, "y": 0.0, "params": Map()})
            await ws_b.send(create_update_message(evil.get_update(b.get_state())))
            await ws_b.send(b"\x00\x02\x05garbage")  # and an update that is not one
            nodes(b)["1"]["params"]["b"] = 9  # the room goes on: a good edit after them
            await until(lambda: nodes(a)["1"]["params"].get("b") == 9)
            await until(lambda: (stored_node(server, doc_id, "1") or {}).get("params", {}).get("b") == 9)
            assert "x1" not in nodes(a)
            assert stored_node(server, doc_id, "x1") is None

    asyncio.run(main())


def test_a_patch_made_outside_reaches_the_room_and_keeps_its_edits(server: Server) -> None:
    doc_id = new_document(server, "outside")["id"]

    async def main() -> None:
        async with client(server, doc_id) as (a, _):
            nodes(a)["1"]["params"]["a"] = 11  # a room edit...
            version = await until(lambda: (stored_node(server, doc_id, "1") or {}).get("params", {}).get("a") == 11
                                  and stored(server, doc_id)["version"])
            status, body = server.request(f"/api/v1/graphs/{doc_id}", {"params": {"1": {"b": 22}}, "if_version": version},
                                          method="PATCH")
            assert status == 200, body  # ...then one made over HTTP
            await until(lambda: nodes(a)["1"]["params"].get("b") == 22)
            assert nodes(a)["1"]["params"]["a"] == 11
            nodes(a)["2"]["x"] = 555.0  # and the room keeps saving on top of it
            await until(lambda: (stored_node(server, doc_id, "2") or {}).get("pos", [0])[0] == 555.0)
            params = stored_node(server, doc_id, "1")["params"]  # type: ignore[index]
            assert params == {"a": 11, "b": 22}

    asyncio.run(main())


def test_a_client_that_says_hello_gets_the_specs_and_is_told_of_refusals(server: Server) -> None:
    import json

    import websockets

    doc_id = new_document(server, "aware")["id"]

    async def main() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/v1/graphs/{doc_id}/room",
                                      max_size=None) as ws:
            await ws.send(json.dumps({"t": "hello"}))
            texts: list[dict[str, Any]] = []

            async def text() -> dict[str, Any]:
                while True:
                    frame = await asyncio.wait_for(ws.recv(), 60)
                    if isinstance(frame, str):
                        texts.append(json.loads(frame))
                        return texts[-1]

            specs = await text()
            assert specs["t"] == "specs" and {"IntAdd", "PreviewAny"} <= set(specs["specs"])
            await ws.send(b"\x00\x02" + b"\xff" * (9 << 20))  # over the 8 MiB frame limit
            refused = await text()
            assert refused["t"] == "error" and refused["code"] == "VE-600" and "limit" in refused["message"]
            await ws.send(json.dumps({"t": "run", "outputs": None}))
            answer = await text()
            assert answer["code"] == "VE-1001" and f"/api/v1/graphs/{doc_id}/run" in answer["message"]

    asyncio.run(main())


def test_deleting_the_document_closes_its_room_with_4404(server: Server) -> None:
    doc_id = new_document(server, "doomed")["id"]

    async def main() -> None:
        async with client(server, doc_id) as (_, ws):
            status, _body = server.request(f"/api/v1/graphs/{doc_id}", method="DELETE")
            assert status == 204
            await asyncio.wait_for(ws.wait_closed(), 15)  # (the provider is the one reading)
            assert ws.close_code == 4404

    asyncio.run(main())


def test_an_unknown_document_closes_the_socket_with_4404(server: Server) -> None:
    import websockets

    async def main() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/v1/graphs/nope/room") as ws:
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4404

    asyncio.run(main())


def test_the_page_lists_and_opens_documents(server: Server) -> None:
    status, page = server.request("/")
    assert status in (200, 503)
    text = page.decode() if isinstance(page, bytes) else str(page)
    assert "standalone.js" in text or "npm --prefix js run build" in text


def test_a_token_protected_server_refuses_a_room_socket_without_the_token(tmp_path: Path) -> None:
    import websockets

    srv = Server(tmp_path, "--token", TOKEN)
    try:
        doc_id = new_document(srv, "guarded", token=TOKEN)["id"]

        async def main() -> None:
            with pytest.raises((websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed)):
                async with websockets.connect(f"ws://127.0.0.1:{srv.port}/api/v1/graphs/{doc_id}/room") as ws:
                    await asyncio.wait_for(ws.recv(), 10)
            async with client(srv, doc_id, token=TOKEN) as (a, _):  # with it: served
                assert set(nodes(a).keys()) == {"1", "2"}

        asyncio.run(main())
    finally:
        srv.close()


def test_a_run_right_after_a_room_edit_runs_the_edit(server: Server) -> None:
    """Rooms save on a delay; POST .../run saves an open room first."""
    doc_id = new_document(server, "run-after-edit")["id"]

    async def main() -> int:
        async with client(server, doc_id) as (a, _):
            nodes(a)["1"]["params"]["a"] = 1000
            await asyncio.sleep(0.05)  # the update reaches the room; its save is still ~0.5 s away
            status, run = await asyncio.to_thread(server.request, f"/api/v1/graphs/{doc_id}/run", {})
            assert status == 202, run
            return int(run["id"])

    run_id = asyncio.run(main())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, run = server.request(f"/api/v1/runs/{run_id}")
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert run["status"] == "ok", run
    shown = json.dumps(run["outputs"]["2"])  # PreviewAny's UI output: 1000 + 2, not the stored 1 + 2
    assert "1002" in shown and "3" not in shown.replace("1002", ""), shown
