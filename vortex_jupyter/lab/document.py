"""Workflow documents in a kernel: ``vx.open(path)`` and the kernel side of a document panel.

One ``Document`` per file and kernel (keyed by its resolved path), holding the ``Graph``
every view of that file edits. How it stays shared depends on what the Jupyter server has:

- ``bridge``: jupyter-collaboration is on and a panel opened the file. The panel's graph
  is the document's room (the server loads and saves the file, ``ydoc.py``); each panel
  also syncs it with this kernel over its comm, so the kernel's replica starts empty and
  fills from the room. Several users' panels bridge the same kernel; Yjs makes that safe.
- ``room``: jupyter-collaboration is on and ``vx.open`` was called with no panel bridging:
  the kernel joins the room itself as one more collaborator (``room.py``).
- ``file``: no collaboration. A panel sends the file it read; the kernel's doc is the
  authority its panels sync with (as a notebook canvas does), and the kernel sends them the
  file text after each change, which the panel saves through JupyterLab. ``vx.open`` on its
  own reads the file from disk and ``g.save()`` writes it back.

Panel comm protocol (``DOCUMENT_TARGET``), beyond the canvas messages (``canvas/protocol.py``):
open data ``{"path", "rtc", "content"?, "format"?}``; the kernel answers
``{"t": "document", "mode", "format"}``, then in ``file`` mode ``{"t": "file", "content",
"format"}`` after changes (``format``: "text", or "base64" for a PNG) and ``{"t": "save"}``
when Python asks to save.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..canvas import protocol
from ..canvas.session import session_for
from ..canvas.ydoc import GraphDoc
from ..errors import FormatError, VortexError
from ..graph.formats.document import DocumentInfo, png_with_graph, read_document, write_document
from ..graph.model import GraphModel
from .views import connect

log = logging.getLogger(__name__)
Mode = Literal["bridge", "room", "file"]
#: seconds between the last change and the file text sent to panels
PUSH_DELAY = 0.15

_DOCS: dict[Path, Document] = {}
_lock = threading.RLock()


@dataclass
class Document:
    key: Path
    graph: Any
    info: DocumentInfo
    mode: Mode
    png: bytes | None = None
    #: panel views that save the file (``file`` mode) or can be asked to (``bridge``)
    panels: dict[str, Any] = field(default_factory=dict)
    room: Any = None
    _timer: threading.Timer | None = None

    # ---- the file ------------------------------------------------------------------------
    def content(self) -> tuple[str, str]:
        """The file as a panel saves it: (content, "text" | "base64")."""
        info = self.graph._vx_doc.info or self.info  # a room's replica learns it from the room
        text = write_document(self.graph.model, info, _lookup())
        if info.format == "png" and self.png is not None:
            return base64.b64encode(png_with_graph(self.png, text, info)).decode("ascii"), "base64"
        return text, "text"

    def save(self) -> str:
        """Save the file: through the room or the panels when there are any, else to disk."""
        if self.mode == "room" and self.room is not None:
            self.room.save()
            return "saved by the Jupyter server (real-time collaboration)"
        if self.panels:
            self.push(now=True)
            for send in list(self.panels.values()):
                send({"t": "save"}, [])
            return f"saved by {len(self.panels)} open panel(s)"
        content, fmt = self.content()
        data = base64.b64decode(content) if fmt == "base64" else content.encode("utf-8")
        tmp = self.key.with_name(f".{self.key.name}.vortex-tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.key)
        return f"written to {self.key}"

    # ---- panels --------------------------------------------------------------------------
    def changed(self, _update: bytes, _sender: object) -> None:
        if self.mode == "file" and self.panels:
            self.push()

    def push(self, now: bool = False) -> None:
        """Send the file text to the panels (debounced: one send per burst of edits)."""
        with _lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not now:
                self._timer = threading.Timer(PUSH_DELAY, self.push, kwargs={"now": True})
                self._timer.daemon = True
                self._timer.start()
                return
        try:
            content, fmt = self.content()
        except Exception as exc:  # a graph that cannot be written yet: say so, keep the old text
            log.warning("cannot write %s: %s", self.key, exc)
            msg: dict[str, Any] = dict(protocol.error_msg(f"the file cannot be written: {exc}", code="VE-200"))
        else:
            msg = {"t": "file", "content": content, "format": fmt}
        for send in list(self.panels.values()):
            try:
                send(msg, [])
            except Exception:
                log.exception("sending the file text to a panel failed")


def _lookup() -> Any:
    from ..nodes.registry import REGISTRY

    return REGISTRY.lookup


def _make_graph(model: GraphModel, info: DocumentInfo | None, mirror: bool) -> Any:
    from .._api import Graph

    graph = Graph(model)
    graph._vx_doc = GraphDoc(model, info=info, mirror=mirror)  # the canvas session binds this doc
    return graph


def _register(doc: Document) -> Document:
    _DOCS[doc.key] = doc
    doc.graph._vx_document = doc
    doc.graph._vx_doc.subscribe(doc.changed)
    return doc


# ---- panels (comm target) --------------------------------------------------------------------
def open_panel(comm: Any, open_msg: dict[str, Any]) -> None:
    """A document panel opened its comm: find or make its ``Document``, join its session."""
    data = (open_msg.get("content") or {}).get("data") or {}
    try:
        doc = _panel_document(data)
    except VortexError as exc:
        comm.send(dict(protocol.error_msg(f"cannot open {data.get('path')!r}: {exc}", code=exc.code)))
        comm.close()
        return
    except Exception as exc:
        log.exception("opening a workflow document failed")
        comm.send(dict(protocol.error_msg(f"cannot open {data.get('path')!r}: {type(exc).__name__}: {exc}",
                                          code="VE-000")))
        comm.close()
        return
    session = session_for(doc.graph)
    view_id = connect(comm, session, y=True)

    def send(msg: Any, buffers: list[bytes]) -> None:
        comm.send(msg, buffers=buffers or None)

    doc.panels[view_id] = send

    def on_close(_msg: Any) -> None:
        session.detach(view_id)
        doc.panels.pop(view_id, None)

    comm.on_close(on_close)
    send({"t": "document", "mode": doc.mode, "format": doc.info.format}, [])


def _panel_document(data: dict[str, Any]) -> Document:
    path = str(data.get("path") or "")
    if not path:
        raise FormatError("a document panel must name its file", hint="open the file from JupyterLab")
    key = resolve(path, server_relative=True)
    with _lock:
        doc = _DOCS.get(key)
        if doc is not None:
            return doc
        if data.get("rtc"):
            graph = _make_graph(GraphModel(), None, mirror=False)
            return _register(Document(key, graph, DocumentInfo(), "bridge"))
        content = data.get("content")
        if data.get("format") == "base64" and isinstance(content, str):
            raw: str | bytes = base64.b64decode(content)
        elif isinstance(content, str):
            raw = content
        else:
            raw = key.read_bytes()
        model, info = read_document(raw, _lookup())
        graph = _make_graph(model, info, mirror=True)
        png = raw if info.format == "png" and isinstance(raw, bytes) else None
        return _register(Document(key, graph, info, "file", png))


# ---- vx.open ---------------------------------------------------------------------------------
def open_document(path: str | os.PathLike[str], *, timeout: float = 15.0) -> Any:
    """The ``Graph`` of a workflow document, shared with every open view of the file.

    In a kernel under a Jupyter server with real-time collaboration the graph joins the
    file's room (edits go both ways, live, and the server saves the file); otherwise it is
    read from the file and ``g.save()`` writes it back. Opening a file twice in one kernel
    gives the same graph.
    """
    key = resolve(path)
    with _lock:
        doc = _DOCS.get(key)
        if doc is not None:
            return doc.graph
    if not key.is_file():
        raise FormatError(f"no such file: {str(path)!r} ({key})", hint="check the path; create it with g.save(path)")
    from .room import join_room

    graph = _make_graph(GraphModel(), None, mirror=False)
    try:
        room = join_room(graph._vx_doc, key, timeout=timeout)
    except VortexError as exc:
        log.info("not joining a room for %s: %s", key, exc)
        graph._vx_doc.close()
    else:
        with _lock:
            return _register(Document(key, graph, graph._vx_doc.info or DocumentInfo(), "room", room=room)).graph
    raw = key.read_bytes()
    model, info = read_document(raw, _lookup())
    graph = _make_graph(model, info, mirror=True)
    with _lock:
        return _register(Document(key, graph, info, "file", raw if info.format == "png" else None)).graph


def resolve(path: str | os.PathLike[str], server_relative: bool = False) -> Path:
    """The absolute path of a document. A panel names it relative to the server's root,
    which the kernel learns from the session it was started for (``JPY_SESSION_NAME``: the
    document's own path when the panel started it), else from the server's runtime file,
    else it assumes its working folder is the document's."""
    if not server_relative:
        return Path(os.path.expanduser(str(path))).resolve()
    rel = str(path).lstrip("/")
    session = os.environ.get("JPY_SESSION_NAME", "")
    if os.path.isabs(session) and (session == "/" + rel or session.endswith("/" + rel)):
        return Path(session).resolve()
    from .server import find_server, root_dir

    root = root_dir()
    if root is None:
        server = find_server()
        root = server.root if server is not None else None
    if root is not None:
        return (root / rel).resolve()
    return (Path.cwd() / Path(rel).name).resolve()


def document_of(graph: Any) -> Document | None:
    return getattr(graph, "_vx_document", None)
