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

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from ..errors import ProtocolError

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


class HistoryMsg(TypedDict):
    """List recorded runs, newest first; ``filter`` keys: status, origin, node_type, since."""

    t: Literal["history"]
    filter: NotRequired[dict[str, Any]]
    limit: NotRequired[int]


class DiffMsg(TypedDict):
    """What changed from run ``run_id``'s graph to the current one (what a restore takes back)."""

    t: Literal["diff"]
    run_id: str


class RestoreMsg(TypedDict):
    """Put run ``run_id``'s graph back (``HistoryTable.restore``: ordinary model edits)."""

    t: Literal["restore"]
    run_id: str


class GalleryMsg(TypedDict):
    t: Literal["gallery"]
    limit: NotRequired[int]


class QueueMsg(TypedDict):
    """Queue the graph as it is now (``Queue.submit``)."""

    t: Literal["queue"]
    priority: NotRequired[int]


class QueueListMsg(TypedDict):
    t: Literal["queue_list"]


class QueuePauseMsg(TypedDict):
    t: Literal["queue_pause"]


class QueueResumeMsg(TypedDict):
    t: Literal["queue_resume"]


class QueueCancelMsg(TypedDict):
    t: Literal["queue_cancel"]
    item: int


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


class RunsMsg(TypedDict):
    """Reply to ``history``: rows as ``run_row`` makes them, newest first."""

    t: Literal["runs"]
    rows: list[dict[str, Any]]


class RunDiffMsg(TypedDict):
    """Reply to ``diff``: the changes in words, and the run's node failures."""

    t: Literal["run_diff"]
    run_id: str
    lines: list[str]
    errors: list[str]


class RestoredMsg(TypedDict):
    """Reply to ``restore``: how many model edits it took (the doc update goes to every view)."""

    t: Literal["restored"]
    run_id: str
    edits: int


class GalleryItemsMsg(TypedDict):
    """Reply to ``gallery``: output files, newest first; ``thumb`` of an item is the index of its
    PNG thumbnail in the message's buffers (``null``: none recorded)."""

    t: Literal["gallery_items"]
    items: list[dict[str, Any]]


class QueueItemsMsg(TypedDict):
    """The pending queue (running first, then in run order) and whether it is paused; sent to
    every view whenever it changes."""

    t: Literal["queue_items"]
    items: list[dict[str, Any]]
    paused: bool


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


# ---- history and queue: reading requests, shaping replies -----------------------------------
HISTORY_LIMIT = 50
HISTORY_MAX_LIMIT = 500
GALLERY_LIMIT = 24
GALLERY_MAX_LIMIT = 200
#: prompts longer than this are cut in run rows and gallery items (the panel shows a line)
PROMPT_CHARS = 500
HISTORY_FILTERS = frozenset({"status", "origin", "node_type", "since"})


def read_run_id(content: Mapping[str, Any]) -> str:
    run_id = content.get("run_id")
    if not isinstance(run_id, str) or not 0 < len(run_id) <= 256:
        raise ProtocolError(f"run_id has to be a run's id (a string of 1 to 256 characters) but is {run_id!r}")
    return run_id


def read_limit(content: Mapping[str, Any], default: int, maximum: int) -> int:
    limit = content.get("limit", default)
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # JS numbers are doubles
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ProtocolError(f"limit has to be an integer from 1 to {maximum} but is {limit!r}")
    return limit


def read_int(content: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = content.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SAFE_INT:
        raise ProtocolError(f"{name} has to be an integer but is {value!r}")
    return value


def read_filter(content: Mapping[str, Any]) -> dict[str, Any]:
    """The ``filter`` of a ``history`` request as ``HistoryTable.filter`` keywords."""
    raw = content.get("filter") or {}
    if not isinstance(raw, dict):
        raise ProtocolError(f"filter has to be an object but is {raw!r}")
    unknown = sorted(set(raw) - HISTORY_FILTERS)
    if unknown:
        raise ProtocolError(f"filter has no key {unknown[0]!r}; it takes {', '.join(sorted(HISTORY_FILTERS))}")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None or value == "":
            continue
        ok = isinstance(value, str) and len(value) <= 256
        if name == "status" and isinstance(value, list):
            ok = all(isinstance(v, str) and len(v) <= 64 for v in value) and len(value) <= 16
        elif name == "since":
            ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            raise ProtocolError(f"filter {name} = {value!r} is not a "
                                f"{'time (seconds or ISO text)' if name == 'since' else 'string'}")
        out[name] = value
    return out


def _safe(value: Any) -> Any:
    """A seed for JSON to JS: integers past 2**53 - 1 as decimal text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INT else value


def seeds_json(seeds: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _safe(v) for k, v in seeds.items()}


def prompts_json(prompts: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v)[:PROMPT_CHARS] for k, v in prompts.items()}


def run_row(row: Any) -> dict[str, Any]:
    """One ``history.table.RunRow`` for a view (``started``/``finished``: Unix seconds)."""
    return {"id": row.id, "started": row.started, "finished": row.finished, "status": row.status,
            "origin": row.origin, "who": row.who, "elapsed": row.elapsed, "ran": row.ran or 0,
            "cached": row.cached or 0, "failed": row.failed or 0,
            "seeds": seeds_json(row.seeds), "prompts": prompts_json(row.prompts)}


def runs_msg(rows: list[Any]) -> RunsMsg:
    return {"t": "runs", "rows": [run_row(r) for r in rows]}


def run_diff_msg(run_id: str, lines: list[str], errors: list[str]) -> RunDiffMsg:
    return {"t": "run_diff", "run_id": run_id, "lines": lines, "errors": errors}


def restored_msg(run_id: str, edits: int) -> RestoredMsg:
    return {"t": "restored", "run_id": run_id, "edits": edits}


def gallery_msg(entries: list[dict[str, Any]]) -> tuple[GalleryItemsMsg, list[bytes]]:
    """``HistoryTable.gallery`` entries: JSON items and their thumbnails as buffers."""
    items: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for e in entries:
        thumb = e.get("thumbnail")
        index = None
        if isinstance(thumb, (bytes, bytearray, memoryview)) and len(thumb):
            index = len(buffers)
            buffers.append(bytes(thumb))
        items.append({"run_id": e["run_id"], "node": e["node"], "path": e["path"], "sha256": e.get("sha256"),
                      "started": e.get("started"), "seeds": seeds_json(e.get("seeds") or {}),
                      "prompts": prompts_json(e.get("prompts") or {}), "thumb": index})
    return {"t": "gallery_items", "items": items}, buffers


def queue_items_msg(items: list[Any], paused: bool) -> QueueItemsMsg:
    """``history.queue.QueueItem`` s for a view."""
    return {"t": "queue_items", "paused": paused, "items": [
        {"id": i.id, "status": i.status, "priority": i.priority, "created": i.created, "origin": i.origin,
         "run_id": i.run_id, "error": i.error} for i in items]}
