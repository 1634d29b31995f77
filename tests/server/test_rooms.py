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


def new_document(srv: Server, name: str = "room", token: str = "", graph: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    status, body = srv.request("/api/v1/graphs", {"name": name, "graph": graph or API_PROMPT}, headers=headers)
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
            assert await text() == {"t": "state", "running": False}  # then the run state (no run yet)
            await ws.send(b"\x00\x02" + b"\xff" * (9 << 20))  # over the 8 MiB frame limit
            refused = await text()
            assert refused["t"] == "error" and refused["code"] == "VE-600" and "limit" in refused["message"]
            await ws.send(json.dumps({"t": "no-such-message"}))
            answer = await text()
            assert answer["t"] == "error" and "no-such-message" in answer["message"]

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


# ---- runs, the queue and the history panel in a room (roomruns.py) -----------------------------
RUN_S = 120.0  # a first run starts the server's worker processes


def adder(a: int) -> dict[str, Any]:
    """IntAdd -> PreviewAny with its own ``a``: each test's run misses the output cache."""
    return {"1": {"class_type": "IntAdd", "inputs": {"a": a, "b": 2}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


class Aware:
    """A client that says hello, as the standalone canvas does: our messages, in order, each
    with the buffers that followed it (``"_buffers"``)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.got: list[dict[str, Any]] = []

    async def read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        waiting: tuple[dict[str, Any], int] | None = None
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                if isinstance(frame, str):
                    msg = json.loads(frame)
                    msg["_buffers"] = []
                    count = msg.pop("buffers", 0)
                    if count:
                        waiting = (msg, count)
                    else:
                        self.got.append(msg)
                elif waiting is not None:  # a message's buffers, not a y frame
                    waiting[0]["_buffers"].append(frame)
                    if len(waiting[0]["_buffers"]) == waiting[1]:
                        self.got.append(waiting[0])
                        waiting = None

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.got if m["t"] == kind]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [m["event"] for m in self.of("event") if kind is None or m["event"]["kind"] == kind]

    async def ask(self, msg: dict[str, Any], kind: str, timeout: float = 15.0) -> dict[str, Any]:
        """Send ``msg``; the first ``kind`` (or error) message that came after it."""
        start = len(self.got)
        await self.send(msg)
        return await until(lambda: next((m for m in self.got[start:] if m["t"] in (kind, "error")), None), timeout)


@contextlib.asynccontextmanager
async def aware(srv: Server, doc_id: str) -> AsyncIterator[Aware]:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{srv.port}/api/v1/graphs/{doc_id}/room", max_size=None) as ws:
        view = Aware(ws)
        reader = asyncio.create_task(view.read())
        await view.send({"t": "hello"})
        await until(lambda: view.of("specs"), 60)
        try:
            yield view
        finally:
            reader.cancel()


def finished(view: Aware) -> dict[str, Any] | None:
    return next(iter(view.events("run_finished")), None)


def test_run_in_a_room_streams_its_events_to_every_client_and_replays_them_to_a_late_one(server: Server) -> None:
    doc_id = new_document(server, "room-run", graph=adder(101))["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a, aware(server, doc_id) as b:
            await a.send({"t": "run", "outputs": None})
            done = await until(lambda: finished(a), RUN_S)
            assert done["status"] == "ok", a.got
            await until(lambda: finished(b))
            for view in (a, b):
                states = [m["running"] for m in view.of("state")]
                assert states[0] is False and True in states and states[-1] is False, states
                kinds = [(e["kind"], e.get("node")) for e in view.events()]
                assert kinds[0] == ("run_started", None) and ("node_finished", "1") in kinds, kinds
                assert ("node_finished", "2") in kinds and kinds[-1] == ("run_finished", None)
                assert not view.of("error")
            assert [e for e in a.events() if e["kind"] != "node_progress"] == \
                   [e for e in b.events() if e["kind"] != "node_progress"]  # the same run, the same events
            shown = next(e for e in a.events("node_finished") if e["node"] == "2")
            assert "103" in json.dumps(shown.get("ui")), shown  # PreviewAny shows 101 + 2
            run_id = done["run_id"]

            async with aware(server, doc_id) as late:  # joins after the run: gets it replayed
                await until(lambda: finished(late))
                assert late.of("state")[0]["running"] is False
                replayed = late.of("event")
                assert replayed and all(m.get("replay") is True for m in replayed)
                assert replayed[0]["event"]["kind"] == "run_started"
                assert finished(late)["run_id"] == run_id  # type: ignore[index]

            runs = await a.ask({"t": "history"}, "runs")
            row = next(r for r in runs["rows"] if r["id"] == run_id)
            assert row["status"] == "ok" and row["origin"] == "canvas", row

    asyncio.run(main())


def test_the_latest_run_is_replayed_after_every_client_left_and_for_a_run_no_room_saw(server: Server) -> None:
    doc_id = new_document(server, "room-kept", graph=adder(404))["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a:
            await a.send({"t": "run", "outputs": None})
            run_id = (await until(lambda: finished(a), RUN_S))["run_id"]
        # every client left: the room closed; a new one opens and replays the run
        async with aware(server, doc_id) as back:
            done = await until(lambda: finished(back))
            assert done["run_id"] == run_id and all(m.get("replay") for m in back.of("event"))
        # a run queued over HTTP while no room is open is followed, and replayed later
        status, body = await asyncio.to_thread(server.request, f"/api/v1/graphs/{doc_id}/run", {"priority": 0})
        assert status == 202, body
        deadline = time.monotonic() + RUN_S
        while (await asyncio.to_thread(server.request, f"/api/v1/runs/{body['id']}"))[1]["status"] != "ok":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        api_run = (await asyncio.to_thread(server.request, f"/api/v1/runs/{body['id']}"))[1]["run_id"]
        async with aware(server, doc_id) as later:
            done = await until(lambda: finished(later))
            assert done["run_id"] == api_run != run_id
            assert later.of("state")[0]["running"] is False

    asyncio.run(main())


def test_run_selected_nodes_in_a_room_runs_them_and_what_they_need(server: Server) -> None:
    graph = {**adder(303), "3": {"class_type": "IntAdd", "inputs": {"a": 5, "b": 6}},
             "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    doc_id = new_document(server, "room-selected", graph=graph)["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a:
            refused = await a.ask({"t": "run", "outputs": ["9"]}, "error")
            assert refused["code"] == "VE-1001" and "no node '9'" in refused["message"], refused
            await a.send({"t": "run", "outputs": ["4"]})
            done = await until(lambda: finished(a), RUN_S)
            assert done["status"] == "ok", a.got
            ran = {e["node"] for e in a.events("node_finished")}
            assert ran == {"3", "4"}, ran  # the selected node and its input, not the other branch

    asyncio.run(main())


def test_a_run_of_a_graph_with_a_problem_is_refused_with_the_problem_on_its_node(server: Server) -> None:
    graph = {"1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}}, "2": {"class_type": "PreviewAny", "inputs": {}}}
    doc_id = new_document(server, "room-problem", graph=graph)["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a:
            refused = await a.ask({"t": "run", "outputs": None}, "error")
            assert refused["code"] == "VE-100" and "problem" in refused["message"], refused
            assert [(p["node"], p["port"]) for p in refused["problems"]] == [("2", "source")]
            refused = await a.ask({"t": "queue"}, "error")
            assert refused["code"] == "VE-100" and "not queued" in refused["message"]
            assert [m["running"] for m in a.of("state")] == [False]  # it never started

    asyncio.run(main())
    _, queue = server.request("/queue")
    assert not queue["queue_pending"]


def test_the_queue_panel_queues_the_graph_every_client_sees_the_queue_and_the_item_runs(server: Server) -> None:
    doc_id = new_document(server, "room-queue", graph=adder(202))["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a, aware(server, doc_id) as b:
            try:
                paused = await a.ask({"t": "queue_pause"}, "queue_items")
                assert paused["paused"] is True
                await a.send({"t": "queue", "priority": 3})
                queued = await until(lambda: next((m for m in b.of("queue_items") if m["items"]), None))
                item = queued["items"][0]  # every client of the room hears of it
                assert (item["status"], item["priority"], item["origin"]) == ("queued", 3, "canvas")
                listed = await a.ask({"t": "queue_list"}, "queue_items")
                assert [i["id"] for i in listed["items"]] == [item["id"]] and listed["paused"] is True
            finally:
                await a.send({"t": "queue_resume"})
            done = await until(lambda: finished(b), RUN_S)  # the queued run streams to the room
            assert done["status"] == "ok"
            await until(lambda: not b.of("queue_items")[-1]["items"])  # and the queue says it is over
            assert not a.of("error") and not b.of("error")

    asyncio.run(main())


def test_one_run_at_a_time_per_room_and_cancel_drops_the_queued_one(server: Server) -> None:
    doc_id = new_document(server, "room-busy", graph=adder(303))["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a:
            try:
                await a.ask({"t": "queue_pause"}, "queue_items")
                await a.send({"t": "run", "outputs": None})
                await until(lambda: a.of("state")[-1]["running"])
                busy = await a.ask({"t": "run", "outputs": None}, "error")
                assert "already in progress" in busy["message"]
                await a.send({"t": "cancel"})
                await until(lambda: a.of("state")[-1]["running"] is False)
                _, queue = await asyncio.to_thread(server.request, "/queue")
                assert not queue["queue_pending"]
            finally:
                await a.send({"t": "queue_resume"})
                await a.ask({"t": "queue_list"}, "queue_items")
            assert not a.events()  # it never ran

    asyncio.run(main())


def test_diff_and_restore_in_a_room_edit_the_room_s_graph_for_every_client(server: Server) -> None:
    doc_id = new_document(server, "room-restore", graph=adder(404))["id"]

    async def main() -> None:
        async with aware(server, doc_id) as a, client(server, doc_id) as (y, _):
            await a.send({"t": "run", "outputs": None})
            run_id = (await until(lambda: finished(a), RUN_S))["run_id"]
            nodes(y)["1"]["params"]["a"] = 405  # an edit after the run, by a y-websocket client
            deadline = time.monotonic() + 15
            while (diff := await a.ask({"t": "diff", "run_id": run_id}, "run_diff"))["lines"] == []:
                assert time.monotonic() < deadline, "the edit did not reach the room"  # (it is on its way)
                await asyncio.sleep(0.05)
            assert diff["lines"] == ["node 1 (IntAdd): a 404 -> 405"], diff
            restored = await a.ask({"t": "restore", "run_id": run_id}, "restored")
            assert restored["edits"] == 1, restored
            await until(lambda: nodes(y)["1"]["params"]["a"] == 404)  # the room's graph went back, synced
            await until(lambda: (stored_node(server, doc_id, "1") or {}).get("params", {}).get("a") == 404)
            unknown = await a.ask({"t": "diff", "run_id": "no-such-run"}, "run_diff")
            assert unknown["t"] == "error" and "no-such-run" in unknown["message"]

    asyncio.run(main())
