"""The canvas as a notebook output any collaborator can open, and the comms its views use.

A displayed graph carries, beside the anywidget view, the MIME type ``MIME``
(``{"graph": <session id>}``). The JupyterLab extension renders it with its own renderer,
declared safe (it draws data, never HTML), so it shows for every user of a shared notebook
under real-time collaboration, where other users' widget outputs are untrusted and would
show as text. Each rendered view opens a comm to its notebook's kernel (``CANVAS_TARGET``)
and joins the graph's ``CanvasSession`` like any view: its own Yjs replica synced over the
comm, runs, events and images.

A workflow document's panel opens ``DOCUMENT_TARGET`` instead (``document.py``).

Comm targets are registered in the kernel the first time a graph is displayed (or a document
opened); a comm for a graph this kernel no longer has (the kernel restarted) is told so and
closed.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from typing import Any

from ..canvas import protocol
from ..canvas.session import CanvasSession, session_for

log = logging.getLogger(__name__)

MIME = "application/vnd.vortex.canvas.v1+json"
CANVAS_TARGET = "vortex.canvas"
DOCUMENT_TARGET = "vortex.document"

_SESSIONS: weakref.WeakValueDictionary[str, CanvasSession] = weakref.WeakValueDictionary()
_KEEP: dict[str, CanvasSession] = {}  # sessions with a displayed output stay alive with the kernel
_registered = False
_lock = threading.Lock()


def mime_data(graph: Any) -> dict[str, Any]:
    """The MIME payload naming ``graph``'s canvas session (registering the comm targets)."""
    register_targets()
    session = session_for(graph)
    sid = getattr(session, "public_id", None)
    if sid is None:
        sid = session.public_id = uuid.uuid4().hex  # type: ignore[attr-defined]
    _SESSIONS[sid] = session
    _KEEP[sid] = session
    from .. import __version__

    return {"graph": sid, "version": __version__}


def register_targets() -> None:
    """Register the comm targets with this kernel (once; a no-op outside a kernel)."""
    global _registered
    with _lock:
        if _registered:
            return
        try:
            from comm import get_comm_manager

            manager = get_comm_manager()
            manager.register_target(CANVAS_TARGET, _open_canvas)
            from .document import open_panel

            manager.register_target(DOCUMENT_TARGET, open_panel)
        except Exception:  # no kernel (a script, a test): nothing can open a comm anyway
            log.debug("no comm manager; canvas comm targets not registered", exc_info=True)
            return
        _registered = True


def _open_canvas(comm: Any, open_msg: dict[str, Any]) -> None:
    data = (open_msg.get("content") or {}).get("data") or {}
    session = _SESSIONS.get(str(data.get("graph", "")))
    if session is None:
        comm.send(dict(protocol.error_msg(
            "this canvas belongs to a kernel session that has ended (the kernel restarted); "
            "run the cell again to show the graph", code="VE-601")))
        comm.close()
        return
    connect(comm, session, y=True)


def connect(comm: Any, session: CanvasSession, *, y: bool) -> str:
    """Attach a comm to ``session`` as one view; returns the view id."""
    view_id = f"comm-{comm.comm_id}"

    def send(msg: Any, buffers: list[bytes]) -> None:
        comm.send(msg, buffers=buffers or None)

    def on_msg(msg: dict[str, Any]) -> None:
        content = msg.get("content") or {}
        session.receive(view_id, content.get("data"), list(msg.get("buffers") or []))

    def on_close(_msg: Any) -> None:
        session.detach(view_id)

    session.attach(view_id, send, y=y, specs=True)
    comm.on_msg(on_msg)
    comm.on_close(on_close)
    return view_id
