"""A kernel's graph as one more collaborator of a workflow document's room.

jupyter-collaboration serves each open document as a room (``/api/collaboration/room/
<format>:<type>:<file id>``) speaking the y-websocket protocol: sync step 1/2 and updates
(message type 0), awareness (1), and Jupyter's own JSON messages (2: save requests and
replies). ``RoomClient`` connects the kernel's ``GraphDoc`` to the room of a file:

- the doc starts empty and is filled by the room (never merged from a second load of the
  file: two histories of one file would fight over every node);
- the room's updates are not vetted by anyone before they arrive, so they are applied as
  untrusted (``GraphDoc.apply_untrusted``): what breaks the schema never reaches the model
  (and the server repairs it, ``ydoc.py``);
- the kernel's own edits (``g.add(...)`` and friends) go to the room as updates;
- the websocket runs on its own thread and event loop. In a kernel, the room's updates are
  applied on the kernel's main thread between cells (``Kernel.io_loop``), so user code
  never sees the graph change under it; elsewhere on the socket's thread;
- a dropped connection is retried with backoff; on reconnecting both sides send what the
  other lacks (edits made offline are kept).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from pycrdt import Encoder, create_sync_message, create_update_message, write_message

from ..canvas.sync import SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE, Reader
from ..canvas.ydoc import GraphDoc
from ..errors import VortexError
from .server import ServerInfo, find_server

log = logging.getLogger(__name__)
MESSAGE_SYNC, MESSAGE_AWARENESS, MESSAGE_RAW = 0, 1, 2
CONTENT_TYPE, FILE_FORMAT = "vortex", "text"
KERNEL_USER = {"username": "kernel", "name": "Python kernel", "display_name": "Python kernel",
               "initials": "Py", "color": "#7e57c2"}


class RoomError(VortexError):
    code = "VE-602"


class RoomClient:
    """Keeps ``gd`` in sync with the room of ``path`` (relative to the server's root)."""

    def __init__(self, gd: GraphDoc, server: ServerInfo, path: str) -> None:
        self.gd, self.server, self.path = gd, server, path
        self.synced = threading.Event()
        self.error: BaseException | None = None
        self.connected = False
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Any = None
        self._closing = False
        self._dispatch: Callable[[Callable[[], None]], None] | None = None
        self._save_id = 0
        self._saves: dict[int, threading.Event] = {}
        self._thread = threading.Thread(target=self._run, name=f"vortex-room-{path}", daemon=True)
        self._client_id = gd.doc.client_id
        gd.subscribe(self._on_local)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> RoomClient:
        """Connect and wait for the room's content; ``RoomError`` if it does not come."""
        self._thread.start()
        if not self.synced.wait(timeout):
            self.close()
            raise RoomError(f"the room of {self.path!r} did not sync within {timeout:.0f} s"
                            + (f": {self.error}" if self.error else ""),
                            hint="is jupyter-collaboration enabled on the server?")
        self._dispatch = _main_thread_dispatcher()
        return self

    def close(self) -> None:
        self._closing = True
        self.gd.unsubscribe(self._on_local)
        loop, conn = self._loop, self._conn
        if loop is not None and conn is not None and not loop.is_closed():
            loop.call_soon_threadsafe(conn.close)

    def save(self, timeout: float = 10.0) -> bool:
        """Ask the server to save the file now; True once it says it did."""
        self._save_id += 1
        done = self._saves[self._save_id] = threading.Event()
        enc = Encoder()
        enc.write_var_uint(MESSAGE_RAW)
        enc.write_var_string("save")
        enc.write_var_uint(self._save_id)
        self._send(enc.to_bytes())
        return done.wait(timeout)

    # ---- the socket thread ---------------------------------------------------------------
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await self._session()
                delay = 0.5
            except Exception as exc:
                self.error = exc
                log.info("room %s: %s", self.path, exc)
            self.connected = False
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _session(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        status, body = await asyncio.to_thread(
            self.server.request, "PUT", f"api/collaboration/session/{urllib.parse.quote(self.path)}",
            {"format": FILE_FORMAT, "type": CONTENT_TYPE})
        if status not in (200, 201) or not isinstance(body, dict):
            raise RoomError(f"the server has no collaboration session for {self.path!r} (HTTP {status})",
                            hint="install jupyter-collaboration on the server, or use g.save()")
        room = f"{FILE_FORMAT}:{CONTENT_TYPE}:{body['fileId']}"
        url = self.server.ws(f"api/collaboration/room/{room}") + "?" + urllib.parse.urlencode(
            {"sessionId": body.get("sessionId", "")})
        self._conn = await websocket_connect(HTTPRequest(url, headers=self.server.headers()),
                                             max_message_size=1 << 30)
        self.connected = True
        with self.gd.lock:
            step1 = create_sync_message(self.gd.doc)
        await self._conn.write_message(step1, binary=True)
        await self._conn.write_message(_awareness(self._client_id, 1, KERNEL_USER), binary=True)
        while True:
            message = await self._conn.read_message()
            if message is None:
                code, reason = self._conn.close_code, self._conn.close_reason
                raise RoomError(f"the room closed the connection ({code}: {reason})")
            if isinstance(message, bytes):
                self._on_message(message)

    def _on_message(self, message: bytes) -> None:
        reader = Reader(message)
        kind = reader.uint()
        if kind == MESSAGE_SYNC:
            step = reader.uint()
            payload = reader.bytes()
            if step == SYNC_STEP1:
                with self.gd.lock:
                    update = self.gd.doc.get_update(payload)
                self._send(bytes([MESSAGE_SYNC, SYNC_STEP2]) + write_message(update))
            elif step in (SYNC_STEP2, SYNC_UPDATE):
                self.received += 1
                self._apply(payload)
                if step == SYNC_STEP2:
                    self.synced.set()
        elif kind == MESSAGE_RAW:
            try:
                data = json.loads(reader.string())
            except (ValueError, UnicodeDecodeError):
                return
            if isinstance(data, dict) and data.get("type") == "save":
                event = self._saves.pop(int(data.get("responseTo", -1)), None)
                if event is not None and data.get("status") in ("success", "skipped"):
                    event.set()

    def _apply(self, update: bytes) -> None:
        def apply() -> None:
            try:
                self.gd.apply_untrusted(update, self)
            except Exception:
                log.exception("applying an update from the room of %s failed", self.path)

        if self._dispatch is None:
            apply()
        else:
            self._dispatch(apply)

    # ---- outgoing ------------------------------------------------------------------------
    def _on_local(self, update: bytes, sender: object) -> None:
        if sender is self or self._closing:
            return  # the room's own update coming back
        self._send(create_update_message(update))

    def _send(self, message: bytes) -> None:
        loop, conn = self._loop, self._conn
        if loop is None or conn is None or loop.is_closed():
            return  # offline: the next connection's sync carries it

        def write() -> None:
            try:
                conn.write_message(message, binary=True)
            except Exception:  # closed: the reconnect's sync step 1/2 brings it over
                log.debug("room %s: write failed", self.path, exc_info=True)

        loop.call_soon_threadsafe(write)


def join_room(gd: GraphDoc, path: os.PathLike[str] | str, timeout: float = 15.0) -> RoomClient:
    """Connect ``gd`` (empty) to the room of the file at ``path``; ``RoomError`` when there is
    no Jupyter server with real-time collaboration to join."""
    from pathlib import Path

    server = find_server()
    if server is None:
        raise RoomError("this kernel was not started by a Jupyter server it can find",
                        hint="set VORTEX_JUPYTER_URL and VORTEX_JUPYTER_TOKEN, or use g.save()")
    rel = server.relative(Path(path))
    if rel is None:
        raise RoomError(f"{path} is outside the Jupyter server's root folder ({server.root})")
    return RoomClient(gd, server, rel).start(timeout)


def _awareness(client_id: int, clock: int, user: dict[str, Any]) -> bytes:
    enc = Encoder()
    enc.write_var_uint(1)
    enc.write_var_uint(client_id)
    enc.write_var_uint(clock)
    enc.write_var_string(json.dumps({"user": user}))
    return bytes([MESSAGE_AWARENESS]) + write_message(enc.to_bytes())


def _main_thread_dispatcher() -> Callable[[Callable[[], None]], None] | None:
    """Run callables on the kernel's main thread between cells (``None`` outside a kernel)."""
    try:
        from ipykernel.kernelbase import Kernel

        if not Kernel.initialized():
            return None
        loop = Kernel.instance().io_loop
    except Exception:
        return None
    return loop.add_callback  # type: ignore[no-any-return]
