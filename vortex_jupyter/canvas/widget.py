"""``vx.Canvas``: the graph as a live, editable node editor in a notebook cell.

>>> import vortex_jupyter as vx                      # doctest: +SKIP
>>> g = vx.Graph.default(); c = vx.Canvas(g); c       # doctest: +SKIP

Each ``Canvas`` is one anywidget view (its own comm); all canvases of a graph share one
``CanvasSession`` (one authoritative Y doc, one relay, one run at a time). The browser half
is ``vortex_jupyter/static/widget.js``, built from ``js/`` (``npm --prefix js ci && npm
--prefix js run build``); without it the widget shows how to build it instead of failing.

Messages follow ``protocol.py`` / ``js/src/protocol.ts`` and are handled by the session
(``CanvasSession.receive``), which never raises into the kernel: a bad message is answered
with ``{"t": "error"}``.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .session import CanvasSession, _specs, session_for

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
        # echo: one widget model may be shown by several browser pages that share its comm,
        # so an update from one page must come back on it to reach the others
        self.session.attach(self.view_id, self._send_to_view, echo=True)
        self.on_msg(self._on_msg)

    # ---- plumbing ------------------------------------------------------------------------
    def _send_to_view(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        if self.comm is not None:
            self.send(msg, buffers=buffers or None)

    def _on_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        self.session.receive(self.view_id, content, buffers or [])

    def close(self) -> None:
        session = getattr(self, "session", None)  # close() also runs from __del__
        if session is not None:
            session.detach(self.view_id)
        super().close()

    @property
    def js_errors(self) -> list[str]:
        """JS console errors forwarded by the graph's views (tests assert there are none)."""
        return self.session.js_errors

    @property
    def js_log(self) -> list[dict[str, Any]]:
        return self.session.js_log

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
