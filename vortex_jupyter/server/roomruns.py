"""Runs in the Yjs rooms: the standalone canvas's Run, Cancel, queue and history panels.

A room (``rooms.py``) answers the canvas's run and panel messages (``canvas/protocol.py``) the
way a notebook's ``CanvasSession`` does, but on the server's ONE queue and history file
(``ComfyAPI.queue``: its runner runs ComfyUI prompts, API runs and the rooms' runs alike, one
at a time). ``ComfyAPI`` knows nothing of rooms: ``RoomRuns`` adds itself to its ``run_hooks``
and ``done_hooks``.

State: ``RoomRuns`` (one per server) holds the server's loop and whether a room has shown the
queue yet; each room has a ``RoomRun``: the room's own queued or running item, the item whose
events stream now, and the latest run's events and each node's last image. Both are touched on
the loop only: the runner thread's events hop onto it (``call_soon_threadsafe``), because the
rooms' sockets (``Client``) live there.

Policy:

- ``run`` saves the room, then queues the document's graph as stored (origin ``canvas``,
  extra ``{"document": id}``), as ``POST /api/v1/graphs/{id}/run`` does (``submit``, used by
  both). A graph with problems is refused with them marked on the nodes. One run per room at
  a time: a second ``run`` while the room's item is queued or running gets an error. "Run
  selected nodes" (``outputs``) queues a run of those nodes and what they need;
- every run of a document (the room's, the queue panel's, the HTTP API's) streams to every
  client of the document's room, as a notebook's runs do: ``state``, ``event`` and, for
  previews, ``image`` messages with the bytes as a buffer. The state is "running" while the
  room's own item is pending or a run of the document streams;
- the latest run's events (less previews and progress) and each node's last image are kept
  (``canvas.session.remember``) and replayed, ``replay: true``, to a client that says ``hello``
  later, also after every client left (``RoomRuns.kept``: the latest ``KEEP`` documents' runs,
  followed while no room is open; a server restart forgets them, the History panel does not);
- ``cancel`` cancels the room's own item, else the document's run that streams now;
- ``queue``, ``queue_list``, ``queue_pause``, ``queue_resume``, ``queue_cancel`` act on the
  server's queue; the pending queue then goes to every client of every room (the queue is
  shared; ``queue_list``: to the asker), and, once a room has shown it, again whenever an
  item starts or ends;
- ``history``, ``diff``, ``restore``, ``gallery`` are answered from the server's history file
  (``canvas/panel.py``, as in a notebook); a restore edits the room's model, which its
  ``GraphDoc`` syncs to every client and the room saves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import types
from collections.abc import Callable, Mapping
from typing import Any

from ..canvas import panel, protocol
from ..canvas.protocol import CANVAS_ORIGIN
from ..canvas.session import Image, remember, replay
from ..errors import ValidationError, VortexError
from .api_v1 import queue_document

log = logging.getLogger(__name__)

#: the text messages ``RoomRuns.receive`` answers
KINDS = frozenset({"run", "cancel"}) | panel.KINDS
BUSY = "a run of this graph is already in progress; cancel it first"
Broadcast = Callable[[Mapping[str, Any], list[bytes]], None]
#: documents whose latest run is remembered while no room shows it
KEEP = 64


def _nowhere(msg: Mapping[str, Any], buffers: list[bytes]) -> None:
    """The broadcast of a document's runs while no room is open."""


class RoomRun:
    """What one room shows of its document's runs (the loop's thread only)."""

    def __init__(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        self.item: int | None = None  # the room's own run, queued or running
        self.live: int | None = None  # the item whose events stream now
        self.started: int | None = None  # the latest item that sent run_started
        self.events: list[dict[str, Any]] = []
        self.images: dict[str, Image] = {}
        self._told = False  # the running state the clients were last sent

    @property
    def running(self) -> bool:
        return self.item is not None or self.live is not None

    def _tell(self) -> None:
        if self.running != self._told:
            self._told = self.running
            self.broadcast(protocol.state_msg(self._told), [])

    def queued(self, item_id: int) -> None:
        self.item = item_id
        self._tell()

    def event(self, item_id: int, data: dict[str, Any]) -> None:
        kind = data.get("kind")
        if kind == "run_started":
            self.live = self.started = item_id
            self._tell()
        for msg, buffers in remember(self.events, self.images, data):
            self.broadcast(msg, buffers)
        if kind == "run_finished":
            self._over(item_id)

    def ended(self, item: Any) -> None:
        """Queue item ``item`` is over, however it ended (also dropped while queued, or failed
        before its run started: then its error is the clients' toast)."""
        if item.id not in (self.item, self.live):
            return
        if item.error and self.started != item.id:
            self.broadcast(protocol.error_msg(f"the run did not start: {item.error}", code="VE-000"), [])
        self._over(item.id)

    def _over(self, item_id: int) -> None:
        if self.item == item_id:
            self.item = None
        if self.live == item_id:
            self.live = None
        self._tell()

    def hello(self, send: Broadcast) -> None:
        """A client that said hello: the run state, then the latest run's replay."""
        send(protocol.state_msg(self.running), [])
        for msg, buffers in replay(self.events, self.images):
            send(msg, buffers)


class RoomRuns:
    """The rooms' side of the server's queue and history (one per server)."""

    def __init__(self, rooms: Any, api: Any) -> None:
        """``rooms``: the server's ``Rooms``; ``api``: its ``ComfyAPI`` (the queue's owner)."""
        self.rooms, self.api = rooms, api
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once a room opened
        self.shown = False  # a room has shown the queue: keep it current as items start and end
        #: the runs of documents with no room open, latest used last (``KEEP`` at most): a client
        #: that opens the graph later still sees its latest run
        self.kept: collections.OrderedDict[str, RoomRun] = collections.OrderedDict()
        api.run_hooks.append(self._listeners)
        api.done_hooks.append(self._done)

    def run_of(self, doc_id: str, broadcast: Broadcast) -> RoomRun:
        """Document ``doc_id``'s runs as a room that opens shows them (``broadcast``)."""
        run = self.kept.pop(doc_id, None) or RoomRun(broadcast)
        run.broadcast = broadcast
        return run

    def keep(self, doc_id: str, run: RoomRun) -> None:
        """A room closed: its document's runs are remembered (and followed) without it."""
        run.broadcast = _nowhere
        self.kept[doc_id] = run
        self.kept.move_to_end(doc_id)
        while len(self.kept) > KEEP:
            self.kept.popitem(last=False)

    def _memory(self, doc_id: str) -> RoomRun:
        """Where the runs of ``doc_id`` land: its open room's, else the kept (or a new) memory."""
        room = self.rooms.rooms.get(doc_id)
        if room is not None and not room.gone:
            return room.run
        if doc_id not in self.kept:
            self.keep(doc_id, RoomRun(_nowhere))
        return self.kept[doc_id]

    def submit(self, doc_id: str, *, priority: int = 0, origin: str = "api", outputs: list[str] | None = None) -> Any:
        """Queue document ``doc_id`` as it is now: its open room is saved first (edits are
        saved on a delay). Raises ``ValidationError`` when the graph has problems."""
        room = self.rooms.rooms.get(doc_id)
        if room is not None and not room.gone:
            room.save()
        item = queue_document(self.rooms.docs, self.api.queue, doc_id, priority=priority, origin=origin,
                              outputs=outputs)
        self.api.status()
        return item

    def hello(self, room: Any, send: Broadcast) -> None:
        self._settle()  # (a kept run's item may have been dropped while no room was open)
        room.run.hello(send)
        if self.shown:
            send(panel.queue_state(self.api.queue)[0], [])

    # ---- requests (on the loop) ----------------------------------------------------------
    async def receive(self, room: Any, send: Broadcast, kind: str, msg: dict[str, Any]) -> None:
        """Answer one of ``KINDS``; a bad request gets an error message and changes nothing."""
        try:
            if kind == "run":
                self._run(room, send, msg)
            elif kind == "cancel":
                self._cancel(room)
            elif kind == "queue":
                self._queue(room, send, msg)
            elif kind in panel.QUEUE_KINDS:
                self._change(send, kind, msg)
            else:
                await self._history(room, send, kind, msg)
        except VortexError as exc:  # bad fields (VE-600), an unknown run or queue item...
            send(panel.error_for(exc), [])
        except Exception as exc:  # never let a message end the socket
            log.exception("room %s: %r failed", room.id, kind)
            send(protocol.error_msg(f"{type(exc).__name__}: {exc}", code="VE-000"), [])

    def _run(self, room: Any, send: Broadcast, msg: dict[str, Any]) -> None:
        outputs = msg.get("outputs") or None
        if outputs is not None and (not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs)):
            send(protocol.error_msg("run: outputs must be a list of node ids", code="VE-600"), [])
            return
        self._settle()
        if room.run.item is not None:
            send(protocol.error_msg(BUSY, code="VE-000"), [])
            return
        try:
            item = self.submit(room.id, origin=CANVAS_ORIGIN, outputs=outputs)
        except ValidationError as exc:
            send(panel.refusal(exc), [])
            return
        room.run.queued(item.id)
        if self.shown:
            self._everyone(panel.queue_state(self.api.queue)[0])

    def _cancel(self, room: Any) -> None:
        target = room.run.item if room.run.item is not None else room.run.live
        if target is not None:
            self.api.queue.cancel(target)
            self._settle()

    def _queue(self, room: Any, send: Broadcast, msg: dict[str, Any]) -> None:
        priority = panel.priority(msg)
        try:
            self.submit(room.id, priority=priority, origin=CANVAS_ORIGIN)
        except ValidationError as exc:  # refused now, with the problems on the nodes
            send(panel.refusal(exc, "the graph was not queued"), [])
            return
        self.shown = True
        self._everyone(panel.queue_state(self.api.queue)[0])

    def _change(self, send: Broadcast, kind: str, msg: dict[str, Any]) -> None:
        panel.change(self.api.queue, kind, msg)
        self.shown = True
        if kind == "queue_cancel":
            self._settle()
        state = panel.queue_state(self.api.queue)[0]
        if kind == "queue_list":
            send(state, [])
        else:
            self._everyone(state)

    async def _history(self, room: Any, send: Broadcast, kind: str, msg: dict[str, Any]) -> None:
        from ..history.table import HistoryTable

        table, graph = HistoryTable(self.api.history), types.SimpleNamespace(model=room.model)
        if kind in ("history", "gallery"):  # reads only: off the loop (a gallery carries thumbnails)
            reply, buffers = await asyncio.to_thread(panel.answer, kind, msg, table, graph)
        else:  # a diff reads the room's model, a restore edits it: where the model lives
            reply, buffers = panel.answer(kind, msg, table, graph)
        send(reply, buffers)

    def _settle(self) -> None:
        """Rooms whose own item was dropped while queued (cancelled here, or elsewhere: the
        runner never tells of those) are told it is over."""
        for run in [room.run for room in self.rooms.rooms.values()] + list(self.kept.values()):
            if run.item is not None:
                item = self.api.queue.item(run.item)
                if item.done:
                    run.ended(item)

    def _everyone(self, msg: Mapping[str, Any]) -> None:
        for room in list(self.rooms.rooms.values()):
            room.broadcast(msg, [])

    # ---- the queue's hooks (runner thread) -----------------------------------------------
    def _listeners(self, item: Any, extra: dict[str, Any]) -> list[Any]:
        self._queue_moved()  # the item runs now
        doc_id, item_id = extra.get("document"), item.id
        if not isinstance(doc_id, str):
            return []

        def on_event(event: Any) -> None:  # (the run's threads): converted on the loop, if a room is open
            self._hop(self._event, doc_id, item_id, event)

        return [on_event]

    def _done(self, item: Any, extra: dict[str, Any]) -> None:
        doc_id = extra.get("document")
        if isinstance(doc_id, str):
            self._hop(self._ended, doc_id, item)
        self._queue_moved()

    def _queue_moved(self) -> None:
        if not self.shown:
            return
        try:
            state = panel.queue_state(self.api.queue)[0]
        except Exception:  # a busy file: the next start or end sends it
            log.debug("reading the queue failed", exc_info=True)
            return
        self._hop(self._everyone, state)

    def _hop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # (closed in the meantime: the server is stopping)
                loop.call_soon_threadsafe(fn, *args)

    # ---- ... landing on the loop ---------------------------------------------------------
    def _event(self, doc_id: str, item_id: int, event: Any) -> None:
        self._memory(doc_id).event(item_id, event.to_dict() if hasattr(event, "to_dict") else dict(event))

    def _ended(self, doc_id: str, item: Any) -> None:
        self._memory(doc_id).ended(item)
