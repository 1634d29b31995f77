"""Wire protocol between the kernel and the canvas views, written once as types.

Twin of ``js/src/protocol.ts`` (change both together); the contract is ``docs/canvas-protocol.md``.
Messages ride anywidget custom messages: JSON content tagged by ``"t"``, binary payloads in
``buffers[0]``. ``{"t": "y"}`` buffers use y-websocket framing (first varuint 0 = sync,
1 = awareness) so pycrdt's ``create_sync_message``/``handle_sync_message`` and y-protocols'
``writeSyncStep1``/``writeUpdate`` read each other's frames.

>>> error_msg("bad update")["code"]
'VE-600'
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

#: y-websocket framing, first varuint of a ``{"t": "y"}`` buffer.
Y_MESSAGE_SYNC = 0
Y_MESSAGE_AWARENESS = 1

#: Largest incoming frame the kernel accepts (the view caps its own sends the same way).
MAX_UPDATE_BYTES = 8 * 1024 * 1024

#: Transaction/Change origin of edits that came from a view: the binding never echoes them.
CANVAS_ORIGIN = "canvas"

ROOT_NODES = "nodes"
ROOT_EDGES = "edges"
ROOT_GROUPS = "groups"
ROOT_META = "meta"
#: a document's file data (``docio``): format, kept data, order; never edited by views
ROOT_FILE = "file"
ROOTS = (ROOT_NODES, ROOT_EDGES, ROOT_GROUPS, ROOT_META, ROOT_FILE)
#: roots a doc may also have: jupyter_ydoc's document state (path, dirty, hash) under RTC
FOREIGN_ROOTS = ("state",)

#: Integers beyond this travel as decimal strings (JS numbers are IEEE doubles).
MAX_SAFE_INT = 2**53 - 1


# ---- view -> kernel ---------------------------------------------------------------------
class HelloMsg(TypedDict):
    t: Literal["hello"]


class YMsg(TypedDict):
    t: Literal["y"]


class RunMsg(TypedDict):
    t: Literal["run"]
    outputs: list[str] | None


class CancelMsg(TypedDict):
    t: Literal["cancel"]


class LogMsg(TypedDict):
    t: Literal["log"]
    level: str
    message: str


# ---- kernel -> view ---------------------------------------------------------------------
class EventMsg(TypedDict):
    t: Literal["event"]
    event: dict[str, Any]
    #: true for events of an earlier run replayed to a view that opened later (no toasts)
    replay: NotRequired[bool]


class ImageMsg(TypedDict):
    t: Literal["image"]
    node: str
    final: bool
    mime: str


class ErrorMsg(TypedDict):
    t: Literal["error"]
    code: str
    message: str
    #: a refused run's validation problems (``Problem.to_dict()``), marked on their nodes
    problems: NotRequired[list[dict[str, Any]]]


class StateMsg(TypedDict):
    t: Literal["state"]
    running: bool


class SpecsMsg(TypedDict):
    """The node specs (``/object_info`` shape) for views that have no widget trait for them."""

    t: Literal["specs"]
    specs: dict[str, Any]


# ---- kernel -> a workflow document's panel (``vortex_jupyter/lab/document.py``) ------------
class DocumentMsg(TypedDict):
    """How the document is shared: "bridge" (a room the panel syncs with the kernel), "file"
    (the kernel is the authority), "room"; and its file format."""

    t: Literal["document"]
    mode: str
    format: str


class FileMsg(TypedDict):
    """The document's file as the panel should save it ("text", or "base64" for a PNG)."""

    t: Literal["file"]
    content: str
    format: str


class SaveMsg(TypedDict):
    """Python asked to save the document (``g.save()``)."""

    t: Literal["save"]


def edge_key(dst: str, dst_input: str) -> str:
    """Key of an edge in the ``edges`` root: one edge per input by construction."""
    return f"{dst}:{dst_input}"


def y_msg() -> YMsg:
    return {"t": "y"}


def error_msg(message: str, code: str = "VE-600", problems: list[dict[str, Any]] | None = None) -> ErrorMsg:
    msg: ErrorMsg = {"t": "error", "code": code, "message": message}
    if problems:
        msg["problems"] = problems
    return msg


def state_msg(running: bool) -> StateMsg:
    return {"t": "state", "running": running}


def specs_msg(specs: dict[str, Any]) -> SpecsMsg:
    return {"t": "specs", "specs": specs}


def event_msg(event: dict[str, Any], replay: bool = False) -> EventMsg:
    """An engine event for the views; preview bytes never ride in JSON (they go as images)."""
    msg: EventMsg = {"t": "event", "event": {k: v for k, v in event.items() if k != "data"}}
    if replay:
        msg["replay"] = True
    return msg


def image_msg(node: str, final: bool, mime: str) -> ImageMsg:
    return {"t": "image", "node": node, "final": final, "mime": mime}
