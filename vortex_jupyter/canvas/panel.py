"""The canvas's history and queue panels, answered the same way wherever the canvas runs.

Two hosts answer a canvas's requests: ``CanvasSession`` (``session.py``) for a notebook's
views, and a ``vortex serve`` room (``server/rooms.py``) for the standalone page. They differ
in where the history table, the queue and the graph come from and in who hears the answer;
what the answer is lives here, once.

Policy:

- ``history``, ``diff``, ``restore``, ``gallery`` read a ``HistoryTable`` and are answered to
  the view that asked (``answer``); a restore is ordinary model edits with origin
  ``"history"``, so the host's doc and every view follow as for any edit;
- ``queue_pause``, ``queue_resume``, ``queue_cancel`` change a ``Queue`` (``change``), and the
  host then sends the pending queue (``queue_state``) to every view; ``queue_list`` changes
  nothing and is answered to the asker. ``queue`` (submit) is the host's own: what it queues
  (a notebook's graph, a room's saved document) differs; a graph with problems is refused
  before it is queued, with the problems marked on the nodes (``refusal``);
- a bad field is a ``ProtocolError`` (VE-600), an unknown run a ``VortexError``: the host
  answers either with ``error_for`` and changes nothing.

>>> from vortex_jupyter.errors import Problem, ValidationError
>>> msg = refusal(ValidationError([Problem("VE-101", "2", "source", "is not connected")]))
>>> msg["problems"][0]["node"], msg["code"]
('2', 'VE-100')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import VortexError
from . import protocol

#: requests answered from the history table, and those acting on the queue
HISTORY_KINDS = frozenset({"history", "diff", "restore", "gallery"})
QUEUE_KINDS = frozenset({"queue", "queue_list", "queue_pause", "queue_resume", "queue_cancel"})
KINDS = HISTORY_KINDS | QUEUE_KINDS
#: the newest runs the gallery looks through (``HistoryTable.gallery`` reads every output row,
#: thumbnails included, of the table's runs before it keeps ``limit`` of them)
GALLERY_RUNS = 200
#: an answer: the message and its binary buffers
Answer = tuple[Mapping[str, Any], list[bytes]]


def teach(exc: VortexError) -> str:
    """An error's message with its fix, the way the canvas's other errors put it."""
    message = getattr(exc, "message", None) or str(exc)
    hint = getattr(exc, "hint", None)
    return f"{message} (fix: {hint})" if hint else message


def error_for(exc: VortexError) -> protocol.ErrorMsg:
    """A request's failure (bad fields, an unknown run or queue item) as the view's toast."""
    return protocol.error_msg(teach(exc), code=exc.code)


def refusal(exc: BaseException, what: str = "the run did not start") -> protocol.ErrorMsg:
    """The message for a run that did not start (or was not queued: ``what``). Validation
    problems travel as a list the views mark on their nodes; the toast text stays short (the
    full list would cover the canvas): a count, then the first problem, preferring one with no
    node to be shown on (e.g. a cycle)."""
    code = str(getattr(exc, "code", "VE-000"))
    problems = list(getattr(exc, "problems", None) or [])
    if not problems:
        return protocol.error_msg(f"{what}: {exc}", code=code)
    count = len(problems)
    text = f"{what}: the graph has {count} problem{'s' if count != 1 else ''}, marked on the nodes"
    first = next((p for p in problems if getattr(p, "node", None) is None), problems[0])
    text += f"; first: {first}"
    return protocol.error_msg(text, code=code, problems=[p.to_dict() for p in problems[:500]])


# ---- the history panel -------------------------------------------------------------------------
def answer(kind: str, content: Mapping[str, Any], table: Any, graph: Any) -> Answer:
    """The answer to history request ``kind``; ``graph`` (anything with ``.model``) is the
    graph a diff compares with and a restore edits."""
    if kind == "history":
        limit = protocol.read_limit(content, protocol.HISTORY_LIMIT, protocol.HISTORY_MAX_LIMIT)
        return protocol.runs_msg(table.filter(**protocol.read_filter(content), limit=limit).rows), []
    if kind == "diff":
        return diff(content, table, graph), []
    if kind == "restore":
        run_id = protocol.read_run_id(content)
        return protocol.restored_msg(run_id, table.restore(run_id, graph)), []
    if kind == "gallery":
        limit = protocol.read_limit(content, protocol.GALLERY_LIMIT, protocol.GALLERY_MAX_LIMIT)
        return protocol.gallery_msg(table.filter(limit=GALLERY_RUNS).gallery(limit))
    raise ValueError(f"{kind!r} is not a history panel request")


def diff(content: Mapping[str, Any], table: Any, graph: Any) -> protocol.RunDiffMsg:
    """What a restore of run ``run_id`` would change, and that run's node errors."""
    run_id = protocol.read_run_id(content)
    failed = [n for n in table.run(run_id).nodes if n.get("status") == "failed"]
    errors = [f"{n['node']} ({n.get('type') or '?'}): {n.get('code') or 'VE-500'} {n.get('message') or 'failed'}"
              for n in failed[:50]]
    return protocol.run_diff_msg(run_id, table.diff(run_id, graph), errors)


# ---- the queue panel ---------------------------------------------------------------------------
def change(q: Any, kind: str, content: Mapping[str, Any]) -> None:
    """Carry out queue request ``kind`` other than ``queue`` (``queue_list`` changes nothing)."""
    if kind == "queue_pause":
        q.pause()
    elif kind == "queue_resume":
        q.resume()
    elif kind == "queue_cancel":
        q.cancel(protocol.read_int(content, "item"))
    elif kind != "queue_list":
        raise ValueError(f"{kind!r} is not a queue change")


def priority(content: Mapping[str, Any]) -> int:
    """A ``queue`` request's priority (default 0)."""
    return protocol.read_int(content, "priority", 0)


def queue_state(q: Any) -> tuple[protocol.QueueItemsMsg, bool]:
    """The pending queue for the views, and whether anything is pending."""
    items = q.items()
    return protocol.queue_items_msg(items, q.paused), bool(items)
