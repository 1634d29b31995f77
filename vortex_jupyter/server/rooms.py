"""Yjs rooms: a graph document co-edited in browsers through ``vortex serve``, no Jupyter needed.

Routes (added to the app by ``create_app``)::

    WS   /api/v1/graphs/{id}/room    the document's room: the y-websocket protocol
    GET  /                           the canvas page (``/?graph=ID``; without it, a list to pick from)
    GET  /static/...                 the built canvas bundles (``vortex_jupyter/static``)

State: ``Rooms`` holds one ``Room`` per document that has a socket open. A room owns the
document's graph as a ``GraphModel`` bound to an authoritative ``pycrdt.Doc`` by the canvas's
``GraphDoc`` (the same Y doc schema a notebook canvas uses), the canvas's ``Relay`` between that
doc and the sockets, what it last read from or wrote to the ``documents`` table, and what its
clients are shown of the document's runs (``RoomRun``: the latest run's events and images).

Policy:

- **joining**: the server sends sync step 1, step 2 (the whole doc) and the other clients'
  awareness (``Relay.hello``); the client answers step 1 with what the server lacks, so edits a
  browser made offline arrive when it reconnects. Binary frames are y-websocket frames
  (0 = sync step 1/2/update, 1 = awareness), as ``y-websocket`` and pycrdt's ``Provider`` speak,
  except the ``n`` binary frames right after a text message with ``"buffers": n``: those are
  that message's buffers (a preview image, gallery thumbnails), sent to aware clients only;
- **updates are untrusted**: every frame goes through ``Relay.receive``, the very checks a
  notebook canvas applies to its views (frame size cap, scratch replica, schema, declared
  params, the doc's total size, pycrdt panics caught). A refused update never reaches the graph;
  the relay sends everyone the take-back, so the sender's replica converges too, and the room
  goes on;
- **text frames** are our JSON messages (``canvas/protocol.py``) for clients that say
  ``{"t": "hello"}`` first (the standalone canvas): the server answers with the node specs, the
  run state and the latest run's replay, and tells them about refusals (``{"t": "error",
  "code": "VE-600"}``). Plain y-websocket clients never get a text frame;
- **runs, the queue and the history panel** work as in a notebook (``run``, ``cancel``,
  ``queue``, ``queue_list``/``_pause``/``_resume``/``_cancel``, ``history``, ``diff``,
  ``restore``, ``gallery``), on the server's one queue and history file: every run of the
  document streams its events to every client of its room (``roomruns.py`` has the policy);
- **saving**: the first edit after a save starts a timer; ``debounce`` seconds later the
  graph is written to the document if it differs from what is stored, ``version`` + 1, on the
  condition that nobody else wrote since (``WHERE version = ?``), so ``GET /api/v1/graphs/{id}``
  and runs see room edits within ``debounce`` seconds. The last client leaving saves at once;
- **changes from outside** (``PATCH``, another server on the same file) are looked for every
  ``poll`` seconds and when a conditional save finds a newer version: the change from the
  graph as last saved to the stored one is made on a fork of the doc as it was then
  (``history.diff.restore``), and the fork's update merged into the room, so the room's
  unsaved edits and the outside edit both survive (Yjs merges them). A deleted document
  closes its sockets (code 4404);
- a client that falls ``MAX_PENDING`` bytes behind is closed (1013; y-websocket reconnects).

The token rule of the app's ``Guard`` applies to all of it: on a server with a token, a
socket without one is refused before the room sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..canvas import protocol
from ..canvas.sync import Relay
from ..canvas.ydoc import GraphDoc
from ..errors import RequestError
from .roomruns import KINDS, RoomRun, RoomRuns

log = logging.getLogger(__name__)

DEBOUNCE = 0.5
POLL = 1.0
MAX_PENDING = 64 << 20
STATIC = Path(__file__).resolve().parents[1] / "static"
CLOSE_GONE, CLOSE_SLOW = 4404, 1013


class Client:
    """One socket of a room: its outgoing frames in order, and whether it reads our text messages."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.id = ws, uuid.uuid4().hex
        self.aware = False  # said {"t": "hello"}: takes specs and errors as text frames
        self.queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.pending = 0
        self.closing = False

    def send(self, msg: Any, buffers: list[bytes]) -> None:
        """The relay's ``Send``: y frames as binary frames, our messages as text to aware clients."""
        if msg.get("t") == "error":
            log.info("room client %s: %s", self.id[:8], msg.get("message"))
        if msg.get("t") == "y":
            for buf in buffers:
                self.put(bytes(buf))
        elif self.aware:
            self.put(*frames(msg, buffers))

    def put(self, *frames: bytes | str) -> None:
        """Queue ``frames`` back to back (a message and its buffers are never split)."""
        if self.closing:
            return
        self.pending += sum(len(frame) for frame in frames)
        if self.pending > MAX_PENDING:  # it does not read: let it reconnect and resync
            self.closing = True
            self.queue.put_nowait(None)
            return
        for frame in frames:
            self.queue.put_nowait(frame)

    async def pump(self) -> None:
        while (frame := await self.queue.get()) is not None:
            self.pending -= len(frame)
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_text(frame)
        await self.ws.close(CLOSE_SLOW, "too far behind: reconnect")


def frames(msg: Any, buffers: list[bytes]) -> list[bytes | str]:
    """One of our messages as frames: its JSON text, with ``"buffers": n`` when the ``n``
    binary frames that follow it are its buffers (a preview's image, gallery thumbnails)."""
    head = {**msg, "buffers": len(buffers)} if buffers else msg
    return [json.dumps(head, default=str), *(bytes(b) for b in buffers)]


class Room:
    """One document's graph, its Y doc, its relay and its clients; saved back to the document."""

    def __init__(self, docs: Any, doc_id: str, debounce: float, poll: float) -> None:
        from .._api import load
        from ..canvas.layout import layout_unplaced
        from ..canvas.ydoc import default_lookup

        document = docs.get(doc_id)  # RequestError (VE-1004) when there is none
        self.docs, self.id, self.debounce, self.poll = docs, doc_id, debounce, poll
        self.model = load(document.graph).model
        layout_unplaced(self.model, default_lookup())  # as a notebook canvas does: no pile at (0, 0)
        self.gd = GraphDoc(self.model)
        self.relay = Relay(self.gd)
        self.clients: dict[str, Client] = {}
        self.version, self.saved = document.version, document.graph
        self.base = self.gd.snapshot()  # the doc as of the last save or read
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self.gone = False  # the document was deleted: the room takes no one in
        self._poller = self.loop.create_task(self._poll())
        self.model.add_listener(self._changed)
        self.run = RoomRun(self.broadcast)  # its document's runs, as its clients see them

    # ---- clients -------------------------------------------------------------------------
    def join(self, client: Client) -> None:
        self.clients[client.id] = client
        self.relay.add_view(client.id, client.send)
        self.relay.hello(client.id)

    def leave(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        self.relay.remove_view(client.id)

    def broadcast(self, msg: Any, buffers: list[bytes]) -> None:
        """One of our messages to every client that reads them (serialised once for all)."""
        aware = [c for c in self.clients.values() if c.aware]
        if aware:
            out = frames(msg, buffers)
            for client in aware:
                client.put(*out)

    def close(self) -> None:
        self._poller.cancel()
        if not self.gone:
            self._save_due()
        self.model.remove_listener(self._changed)
        self.gd.close()

    def evict(self, reason: str) -> None:
        self.gone = True
        for client in list(self.clients.values()):
            client.closing = True
            self.loop.create_task(client.ws.close(CLOSE_GONE, reason))

    # ---- saving --------------------------------------------------------------------------
    def _changed(self, change: Any) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self.debounce, self._save_due)

    def _save_due(self) -> None:
        try:
            self.save()
        except Exception:  # (a locked file): tried again after the next edit, or on leaving
            log.exception("saving graph document %s failed", self.id)

    def save(self) -> None:
        """Write the graph to the document when it changed (``version`` + 1); when someone
        else wrote first, merge their change in, then try again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        from ..graph.formats import to_native

        graph = to_native(self.model)
        if graph == self.saved:
            return
        with self.docs.history.write() as db:
            done = db.execute("UPDATE documents SET graph = ?, version = version + 1, updated = ? "
                              "WHERE id = ? AND version = ?",
                              (json.dumps(graph), time.time(), self.id, self.version)).rowcount
        if done:
            self.version, self.saved, self.base = self.version + 1, graph, self.gd.snapshot()
        elif self.read_outside():
            self.save()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                self.read_outside()
            except Exception:  # a locked or broken file must not end the room
                log.exception("reading graph document %s failed", self.id)

    def read_outside(self) -> bool:
        """Merge a change made to the document outside the room; False when it is gone."""
        rows = self.docs.history.query("SELECT version, graph FROM documents WHERE id = ?", (self.id,))
        if not rows:
            self.evict("the graph document was deleted")
            return False
        if rows[0]["version"] != self.version:
            graph = json.loads(rows[0]["graph"])
            self._merge(graph)
            self.version, self.saved, self.base = rows[0]["version"], graph, self.gd.snapshot()
        return True

    def _merge(self, graph: dict[str, Any]) -> None:
        """Make the change from ``self.base`` to ``graph`` on a fork of the doc as it was at
        ``base`` and merge the fork's update in: edits made in the room since survive."""
        from ..graph.model import GraphModel
        from ..history.diff import restore

        fork = GraphDoc(GraphModel(), self.gd.lookup, mirror=False)
        try:
            fork.apply_untrusted(self.base, None)
            at = fork.doc.get_state()
            restore(fork.model, graph)
            update = fork.doc.get_update(at)
        finally:
            fork.close()
        self.gd.apply_untrusted(update, None)  # reconciled into the model; relayed to every client
        self.gd.generation += 1  # the relay's scratch replica is stale now


class Rooms:
    """The rooms of one server, by document id, and the routes that reach them."""

    def __init__(self, docs: Any, api: Any, *, debounce: float = DEBOUNCE, poll: float = POLL) -> None:
        """``docs``: the ``api_v1.Documents``; ``api``: the ``ComfyAPI`` whose queue runs the rooms' runs."""
        self.docs, self.debounce, self.poll = docs, debounce, poll
        self.rooms: dict[str, Room] = {}
        self.runs = RoomRuns(self, api)

    def routes(self) -> list[Any]:
        from starlette.routing import Mount, Route, WebSocketRoute
        from starlette.staticfiles import StaticFiles

        return [WebSocketRoute("/api/v1/graphs/{id}/room", self.serve), Route("/", self.page, methods=["GET"]),
                Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")]

    def _open(self, doc_id: str) -> Room:
        room = self.rooms.get(doc_id)
        if room is None or room.gone:
            room = self.rooms[doc_id] = Room(self.docs, doc_id, self.debounce, self.poll)
            room.run = self.runs.run_of(doc_id, room.broadcast)
        return room

    def _leave(self, room: Room, client: Client) -> None:
        room.leave(client)
        if not room.clients:
            if self.rooms.get(room.id) is room:
                del self.rooms[room.id]
            room.close()
            if not room.gone:
                self.runs.keep(room.id, room.run)

    async def serve(self, ws: Any) -> None:
        """One socket of ``/api/v1/graphs/{id}/room``, from accept to disconnect."""
        await ws.accept()
        self.runs.loop = asyncio.get_running_loop()
        try:
            room = self._open(ws.path_params["id"])
        except RequestError as exc:
            await ws.close(CLOSE_GONE, exc.message[:120])
            return
        client = Client(ws)
        pump = asyncio.create_task(client.pump())
        room.join(client)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    room.relay.receive(client.id, message["bytes"])
                elif message.get("text") is not None:
                    await self._text(room, client, message["text"])
        finally:
            pump.cancel()
            self._leave(room, client)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _text(self, room: Room, client: Client, text: str) -> None:
        """Our JSON messages: ``hello`` (answered with the node specs, the run state and the
        latest run's replay), ``log``, and runs and the panels' requests (``roomruns.py``)."""
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        kind = msg.get("t") if isinstance(msg, dict) else None
        if kind == "hello":
            specs = await asyncio.to_thread(_specs)
            client.aware = True  # from here on without awaiting: no live event comes before the replay
            client.send(dict(protocol.specs_msg(specs)), [])
            self.runs.hello(room, client.send)
        elif kind == "log":
            log.info("canvas in room %s: %s", room.id, str(msg.get("message", ""))[:2000])
        elif isinstance(msg, dict) and kind in KINDS:
            await self.runs.receive(room, client.send, str(kind), msg)
        else:
            client.send(dict(protocol.error_msg(f"unknown canvas message type {kind!r}")), [])

    async def page(self, request: Any) -> Any:
        """The standalone canvas page; the token it was opened with goes on to its assets."""
        from starlette.responses import HTMLResponse

        token = request.query_params.get("token")
        suffix = f"?token={quote(token, safe='')}" if token else ""
        if not (STATIC / "standalone.js").is_file():
            return HTMLResponse(_PAGE.format(head="", body="<p>The canvas bundle is not built: run "
                                             "<code>npm --prefix js run build</code>.</p>"), status_code=503)
        head = f'<link rel="stylesheet" href="static/widget.css{html.escape(suffix)}">'
        body = f'<div id="vx-app"></div><script type="module" src="static/standalone.js{html.escape(suffix)}"></script>'
        return HTMLResponse(_PAGE.format(head=head, body=body))


def _specs() -> dict[str, Any]:
    from ..nodes.registry import REGISTRY

    return dict(REGISTRY.to_json())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>vortex</title>{head}
<style>html, body {{ margin: 0; height: 100%; font: 14px system-ui, sans-serif; background: #15171c; color: #e8e8e8; }}
a {{ color: #8fb4ea; }}
#vx-app {{ height: 100%; display: flex; flex-direction: column; }}
.vx-standalone-bar {{ display: flex; gap: 12px; align-items: baseline; padding: 6px 10px; }}
.vx-standalone-state {{ margin-left: auto; opacity: .7; }}
.vx-standalone-canvas {{ flex: 1 1 auto; min-height: 0; }}
.vx-standalone-list {{ padding: 10px 24px; }} .vx-standalone-meta {{ opacity: .6; }}</style>
</head><body>{body}</body></html>
"""
