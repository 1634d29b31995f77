"""``vx.Canvas``: the graph as a live, editable node editor in a notebook cell.

>>> import vortex_jupyter as vx                      # doctest: +SKIP
>>> g = vx.Graph.default(); c = vx.Canvas(g); c       # doctest: +SKIP

Each ``Canvas`` is one anywidget view (its own comm); all canvases of a graph share one
``CanvasSession`` (one authoritative Y doc, one relay, one run at a time). The browser half
is ``vortex_jupyter/static/widget.js``, built from ``js/`` (``npm --prefix js ci && npm
--prefix js run build``); without it the widget shows how to build it instead of failing.

Messages follow ``protocol.py`` / ``js/src/protocol.ts``. Handlers never raise into the
kernel: a bad message is answered with ``{"t": "error"}``.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from . import protocol
from .session import CanvasSession, session_for

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
_MISSING_BUNDLE = """
export default { render({ el }) {
  el.textContent = "vortex canvas: the JS bundle is missing; build it with " +
    "`npm --prefix js ci && npm --prefix js run build` and restart the kernel.";
} };
"""


def _bundle(name: str, fallback: str) -> Path | str:
    path = STATIC / name
    return path if path.is_file() else fallback


def _specs() -> dict[str, Any]:
    try:
        from ..nodes.registry import REGISTRY

        return dict(REGISTRY.to_json())
    except Exception:  # a broken node package must not take the editor down with it
        log.exception("node registry failed; the canvas palette will be empty")
        return {}


class Canvas(anywidget.AnyWidget):
    """An editable view of ``graph`` (a ``vx.Graph`` or a bare ``GraphModel``)."""

    _esm = _bundle("widget.js", _MISSING_BUNDLE)
    _css = _bundle("widget.css", "")
    specs = traitlets.Dict().tag(sync=True)
    height = traitlets.Int(520).tag(sync=True)
    view_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, graph: Any, *, height: int = 520, **kwargs: Any) -> None:
        super().__init__(specs=_specs(), height=height, view_id=uuid.uuid4().hex, **kwargs)
        self.graph = graph
        self.session: CanvasSession = session_for(graph)
        #: JS console errors forwarded by the view (tests assert there are none)
        self.js_errors: list[str] = []
        self.js_log: list[dict[str, Any]] = []
        self.session.attach(self.view_id, self._send_to_view)
        self.on_msg(self._on_msg)

    # ---- plumbing ------------------------------------------------------------------------
    def _send_to_view(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        if self.comm is not None:
            self.send(msg, buffers=buffers or None)

    def close(self) -> None:
        session = getattr(self, "session", None)  # close() also runs from __del__
        if session is not None:
            session.detach(self.view_id)
        super().close()

    def _on_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        try:
            self._handle(content, buffers or [])
        except Exception as exc:  # never let a view's message break the kernel
            log.exception("canvas message failed")
            self._send_to_view(dict(protocol.error_msg(f"{type(exc).__name__}: {exc}", code="VE-000")), [])

    def _handle(self, content: Any, buffers: list[Any]) -> None:
        kind = content.get("t") if isinstance(content, dict) else None
        if kind == "y":
            if not buffers:
                self._send_to_view(dict(protocol.error_msg('a {"t": "y"} message needs one binary buffer')), [])
                return
            self.session.relay.receive(self.view_id, bytes(buffers[0]))
        elif kind == "hello":
            self.session.hello(self.view_id)
        elif kind == "run":
            outputs = content.get("outputs")
            ids = [str(o) for o in outputs] if isinstance(outputs, list) else None
            self.session.start(ids, self._send_to_view)
        elif kind == "cancel":
            self.session.cancel()
        elif kind == "log":
            self._log(content)
        else:
            self._send_to_view(dict(protocol.error_msg(f"unknown canvas message type {kind!r}")), [])

    def _log(self, content: dict[str, Any]) -> None:
        entry = {"level": str(content.get("level", "info")), "message": str(content.get("message", ""))[:10_000]}
        self.js_log.append(entry)
        if entry["level"] == "error":
            self.js_errors.append(entry["message"])
            log.warning("canvas view error: %s", entry["message"])

    # ---- conveniences --------------------------------------------------------------------
    def run(self, outputs: list[str] | None = None) -> None:
        """Start a run as the Run button does (events stream to every view)."""
        self.session.start(outputs, self._send_to_view)

    def cancel(self) -> None:
        self.session.cancel()

    @property
    def images(self) -> dict[str, tuple[str, bool, bytes]]:
        """The latest image of each node: ``{node: (mime, final, bytes)}``."""
        return dict(self.session.images)
