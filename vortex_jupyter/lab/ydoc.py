"""``YVortex``: a workflow file as a shared document on the Jupyter server.

jupyter-collaboration (``jupyter_server_ydoc``) gives every opened document a room: a
``pycrdt.Doc`` that the users' browsers (and kernels, ``room.py``) sync with over a
websocket. It finds the document class by the content type the frontend asks for
(``"vortex"``), through the ``jupyter_ydoc`` entry point in ``pyproject.toml``
(``vortex_jupyter.lab.workflow_ydoc``, which makes a ``YVortex``), then calls
``set(file text)`` to load the file and ``get()`` to save it (debounced, on every change, and
on Ctrl+S).

- ``set`` reads the file in whatever format it is (native ``.vortex.json``, ComfyUI workflow
  or API JSON) and writes the graph into the doc with ``docio.write_model``: the first load is
  deterministic (the server rebuilds rooms from disk that way), a later load after the file
  changed on disk changes only what differs.
- ``get`` reads the graph back (``docio.read_model``) and writes it in the file's own format
  and layout (``graph/formats/document.py``): an unedited file is saved byte for byte.
- Clients are not vetted before their updates reach the room, so after every change made by
  someone else the touched parts are checked and repaired (``canvas/repair.py``), as one more
  edit every replica receives. A change that took the doc over its size limit
  (``canvas/limits.py``: ``VORTEX_CANVAS_MAX_DOC`` of the server's environment, 32 MiB by
  default) has its content dropped (``repair.drop``), so it is neither kept nor saved. A
  param its node type does not declare stays: the file may have it (a ComfyUI API file's
  input), and the server cannot tell that from junk.

>>> doc = YVortex()
>>> doc.set('{"schema_version": 1, "nodes": [{"id": "a", "type": "IntAdd", "params": {"a": 1}}]}')
>>> doc.get() == doc.get() and '"IntAdd"' in doc.get()
True
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from jupyter_ydoc.ybasedoc import YBaseDoc
from pycrdt import Awareness, Doc, Map

from ..canvas import docio
from ..canvas.limits import DocSize, Limits, size_violation
from ..canvas.protocol import ROOT_EDGES, ROOT_FILE, ROOT_GROUPS, ROOT_META, ROOT_NODES
from ..canvas.repair import REPAIR_ORIGIN, drop, repair
from ..canvas.schema import Touched
from ..graph.formats.document import DocumentInfo, read_document, write_document

log = logging.getLogger(__name__)
CONTENT_TYPE = "vortex"
_GRAPH_ROOTS = (ROOT_NODES, ROOT_EDGES, ROOT_GROUPS, ROOT_META)


def _lookup() -> Callable[[str], Any]:
    from ..nodes.registry import REGISTRY

    return REGISTRY.lookup


class YVortex(YBaseDoc):
    """A workflow document (``*.vortex.json``, or a ComfyUI ``.json`` opened as a canvas)."""

    def __init__(self, ydoc: Doc | None = None, awareness: Awareness | None = None) -> None:
        super().__init__(ydoc, awareness)
        self._roots = {name: self._ydoc.get(name, type=Map)
                       for name in (ROOT_NODES, ROOT_EDGES, ROOT_GROUPS, ROOT_META, ROOT_FILE)}
        for root in self._roots.values():
            self.undo_manager.expand_scope(root)
        self._pending = Touched()
        self._scheduled = False
        self._loading = False
        self._repairs = [self._roots[name].observe_deep(partial(self._on_graph_change, name)) for name in _GRAPH_ROOTS]
        self.limits = Limits.from_env()
        #: an upper bound of the doc's encoded size: every update adds to it, a measure resets it
        self.size = DocSize()
        self.size.measured(len(self._ydoc.get_update()))
        self._growth = self._ydoc.observe(lambda event: self.size.grew(len(event.update)))

    @property
    def version(self) -> str:
        return "1.0.0"

    # ---- load and save -------------------------------------------------------------------
    def get(self) -> str:
        model, info = docio.read_model(self._ydoc, _lookup())
        return write_document(model, info or DocumentInfo(), _lookup())

    def set(self, value: str) -> None:
        model, info = read_document(value, _lookup())
        self._loading = True
        try:
            docio.write_model(self._ydoc, model, info)
        finally:
            self._loading = False
        self.size.measured(len(self._ydoc.get_update()))  # the file is trusted: its size is the base

    def observe(self, callback: Callable[[str, Any], None]) -> None:
        self.unobserve()
        self._subscriptions[self._ystate] = self._ystate.observe(partial(callback, "state"))
        for name, root in self._roots.items():
            self._subscriptions[root] = root.observe_deep(partial(callback, name))

    # ---- repair --------------------------------------------------------------------------
    def _on_graph_change(self, root: str, events: Any) -> None:
        """After a client's change: note what it touched, repair once the transaction is over
        (a doc cannot be written from inside its observers)."""
        if self._loading:
            return
        try:
            origin = events[0].transaction.origin if events else None
        except Exception:  # an event without its transaction: check anyway
            origin = None
        if origin == REPAIR_ORIGIN:
            return
        self._pending.add_events(root, list(events))
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a test, a script): ``repair_now`` does it on demand
        self._scheduled = True
        loop.call_soon(self.repair_now)

    def repair_now(self) -> int:
        """Repair what changed since the last repair, and drop it if it took the doc over its
        size limit; returns the number of fixes."""
        touched, self._pending, self._scheduled = self._pending, Touched(), False
        if touched.empty():
            return 0
        try:
            return repair(self._ydoc, touched) + self._bound_size(touched)
        except Exception:  # a repair must never take the room down
            log.exception("repairing a shared workflow failed")
            return 0

    def _bound_size(self, touched: Touched) -> int:
        """Drop ``touched`` when it grew the doc past its limit (measured only near it)."""
        bound = self.size.bound()
        if bound is not None and bound <= self.limits.max_doc_bytes:
            return 0
        before, now = self.size.exact, len(self._ydoc.get_update())
        self.size.measured(now)
        violation = size_violation(now, before if before is not None else 0, self.limits.max_doc_bytes)
        if violation is None:
            return 0
        dropped = drop(self._ydoc, touched, f"{violation} ({violation.hint})")
        self.size.measured(len(self._ydoc.get_update()))
        return dropped
