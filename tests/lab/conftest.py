"""Seams for the JupyterLab-side kernel code: a fake comm pair and a browser-like panel.

``Panel`` plays a document panel or a notebook canvas view of the JupyterLab extension
(``js/src/lab/``): it opens a comm to a kernel comm target with some data, says hello, syncs
its own Y doc replica over ``{"t": "y"}`` messages like ``js/src/sync.ts`` (sync step 1/2,
updates, never echoing what it applied) and records every other message. The "comm" is two
plain Python objects calling each other; delivery into a side that is in the middle of
sending is deferred, as a real comm never re-enters.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, create_sync_message, create_update_message, handle_sync_message

_ids = itertools.count(1)


@dataclass
class KernelComm:
    """The kernel's end: what a comm target function receives."""

    panel: Panel
    comm_id: str = field(default_factory=lambda: f"c{next(_ids)}")
    closed: bool = False
    _on_msg: Callable[[dict[str, Any]], None] | None = None
    _on_close: Callable[[Any], None] | None = None

    def send(self, data: Any = None, buffers: list[bytes] | None = None) -> None:
        self.panel.deliver(data, [bytes(b) for b in buffers or []])

    def on_msg(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self._on_msg = fn

    def on_close(self, fn: Callable[[Any], None]) -> None:
        self._on_close = fn

    def close(self) -> None:
        self.closed = True


@dataclass
class Panel:
    """The browser's end: a Y doc replica and an inbox."""

    doc: Doc = field(default_factory=Doc)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    comm: KernelComm | None = None
    _applying: bool = False
    _busy: bool = False
    _deferred: list[tuple[Any, list[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for root in ("nodes", "edges", "groups", "meta"):
            self.doc.get(root, type=Map)
        self.doc.observe(self._on_local_update)

    @property
    def nodes(self) -> Map:
        return self.doc.get("nodes", type=Map)

    @property
    def edges(self) -> Map:
        return self.doc.get("edges", type=Map)

    def open(self, target: Callable[[Any, dict[str, Any]], None], data: dict[str, Any]) -> Panel:
        self.comm = KernelComm(self)
        target(self.comm, {"content": {"data": data}})
        if not self.comm.closed:
            self.send({"t": "hello"})
            self.send({"t": "y"}, [create_sync_message(self.doc)])
        return self

    def send(self, data: Any, buffers: list[bytes] | None = None) -> None:
        assert self.comm is not None and self.comm._on_msg is not None
        self._busy = True
        try:
            self.comm._on_msg({"content": {"data": data}, "buffers": list(buffers or [])})
        finally:
            self._busy = False
        self.flush()

    def close(self) -> None:
        assert self.comm is not None and self.comm._on_close is not None
        self.comm._on_close({})

    def deliver(self, data: Any, buffers: list[bytes]) -> None:
        if self._busy:
            self._deferred.append((data, buffers))
            return
        self._handle(data, buffers)

    def flush(self) -> None:
        while self._deferred and not self._busy:
            self._handle(*self._deferred.pop(0))

    def _handle(self, data: Any, buffers: list[bytes]) -> None:
        self.inbox.append(data)
        if not isinstance(data, dict) or data.get("t") != "y" or not buffers or buffers[0][0] != 0:
            return
        self._applying = True
        try:
            reply = handle_sync_message(buffers[0][1:], self.doc)
        finally:
            self._applying = False
        if reply is not None:
            self.send({"t": "y"}, [reply])

    def _on_local_update(self, event: Any) -> None:
        if not self._applying and self.comm is not None:  # not yet connected: the sync brings it
            self.send({"t": "y"}, [create_update_message(event.update)])

    def messages(self, kind: str) -> list[dict[str, Any]]:
        self.flush()
        return [m for m in self.inbox if isinstance(m, dict) and m.get("t") == kind]
