"""One canvas session per graph: the shared doc binding, the relay, runs and their events.

State: every ``Canvas`` of a graph joins the same ``CanvasSession`` (an attribute of the
graph), so all views edit ONE
authoritative doc and see the same runs.

Policy:
- ``{"t": "run"}`` from any view starts ``graph.start(outputs=...)`` in the background; one
  run at a time per graph (a second request gets an error message, the run goes on).
- Every event of every run of the graph (the canvas's own, or ``g.run()`` from Python)
  arrives through ``graph.on_event`` and goes to ALL views; preview bytes go as
  ``{"t": "image"}`` binary messages, never inside the JSON event or the doc.
- The last image of each node and the latest run's events (states, failure messages) are
  kept, so a view that opens later shows the latest results; replayed events carry
  ``"replay": true`` so that view does not toast old failures.
- The history panel's requests (``history``, ``diff``, ``restore``, ``gallery``) are answered
  to the view that asked, from ``vx.history()``; a restore is ordinary model edits
  (``HistoryTable.restore``), so the doc and every view follow as for any edit. The queue's
  requests act on ``vx.queue()`` (its runner then runs in this kernel); the pending queue goes
  to every view after each change, and, while items are pending, whenever a poll of the
  queue (every ``QUEUE_POLL_S``) sees it change. A view that joins later gets it at ``hello``
  once this session has used the queue; the queue is never opened just to show a view.
  The answers themselves are ``panel.py``'s, shared with ``vortex serve``'s rooms
  (``server/rooms.py``), which serve the same messages to the standalone canvas.
"""

from __future__ import annotations

import logging
import threading
import types
from dataclasses import dataclass
from typing import Any

from ..engine.events import NodeCached, NodeFinished
from ..errors import ValidationError, VortexError
from ..graph.model import GraphModel
from . import layout, panel, protocol
from .panel import refusal
from .protocol import CANVAS_ORIGIN
from .sync import Relay, Send
from .ydoc import GraphDoc, default_lookup

log = logging.getLogger(__name__)
_ATTR = "_vx_canvas_session"
HISTORY_MAX = 50_000  # events kept for late views (a few per node; bounded for huge graphs)
_FALLBACK: dict[int, CanvasSession] = {}  # graphs that refuse new attributes (__slots__)
_SESSIONS_LOCK = threading.Lock()
QUEUE_POLL_S = 0.5


def session_for(graph: Any) -> CanvasSession:
    """The session of ``graph`` (a ``vx.Graph`` or a bare ``GraphModel``), made on first use.

    The graph holds its session (an attribute), so both live and die together.
    """
    with _SESSIONS_LOCK:
        session = getattr(graph, _ATTR, None) or _FALLBACK.get(id(graph))
        if isinstance(session, CanvasSession) and session.graph is graph:
            return session
        session = CanvasSession(graph, getattr(graph, "_vx_doc", None))
        try:
            setattr(graph, _ATTR, session)
        except AttributeError:
            _FALLBACK[id(graph)] = session
        return session


#: a node's last image: (mime, final, bytes)
Image = tuple[str, bool, bytes]


def remember(events: list[dict[str, Any]], images: dict[str, Image], data: dict[str, Any]) -> list[panel.Answer]:
    """Keep engine event ``data`` for views that open later (``events``: the latest run's, less
    previews and progress, emptied by ``run_started``; ``images``: each node's last) and return
    what every view is sent for it: a preview's image message (its bytes as the buffer), then
    the event. Shared by a notebook's session and ``vortex serve``'s rooms."""
    kind = data.get("kind")
    if kind == "run_started":
        events.clear()
    if kind not in ("node_preview", "node_progress") and len(events) < HISTORY_MAX:
        events.append({k: v for k, v in data.items() if k != "data"})
    out: list[panel.Answer] = []
    if kind == "node_preview" and data.get("data"):
        node, final, mime = str(data.get("node")), bool(data.get("final")), str(data.get("mime", "image/png"))
        images[node] = (mime, final, bytes(data["data"]))
        out.append((protocol.image_msg(node, final, mime), [images[node][2]]))
    out.append((protocol.event_msg(data), []))
    return out


def replay(events: list[dict[str, Any]], images: dict[str, Image]) -> list[panel.Answer]:
    """What a view that opens later is sent: the latest run's node states and failure messages
    (``replay: true``), then its images (a replayed run_started clears a view's output strip,
    so images must come after it)."""
    out: list[panel.Answer] = [(protocol.event_msg(event, replay=True), []) for event in list(events)]
    out += [(protocol.image_msg(node, final, mime), [data]) for node, (mime, final, data) in list(images.items())]
    return out


def _specs() -> dict[str, Any]:
    """The node specs for a view's palette (``/object_info`` shape)."""
    try:
        from ..nodes.registry import REGISTRY

        return dict(REGISTRY.to_json())
    except Exception:  # a broken node package must not take the editor down with it
        log.exception("node registry failed; the canvas palette will be empty")
        return {}


@dataclass
class View:
    """One open view of a graph: how to reach it and what it takes."""

    send: Send
    #: syncs its own replica of the doc over this channel (a document's panel under
    #: real-time collaboration gets the graph from its room instead)
    y: bool = True
    #: wants the node specs as a message (an anywidget view has them as a widget trait)
    specs: bool = False


class CanvasSession:
    """The doc binding, relay and run control shared by every view of one graph."""

    def __init__(self, graph: Any, doc: GraphDoc | None = None) -> None:
        """``doc``: an existing binding of the graph's model to use (a document's); by
        default one is made."""
        self.graph = graph
        self.model: GraphModel = graph if isinstance(graph, GraphModel) else graph.model
        # Graphs built in Python or loaded from API-format JSON have no positions: lay them
        # out before the doc is made, so no view ever opens on a pile of nodes at (0, 0).
        self._lookup = default_lookup()
        layout.layout_unplaced(self.model, self._lookup)
        self.doc = doc if doc is not None else GraphDoc(self.model)
        self.views: dict[str, View] = {}
        #: JS errors and log lines the views forwarded (tests assert there are no errors)
        self.js_log: list[dict[str, Any]] = []
        self.js_errors: list[str] = []
        self._extents = layout.Extents(self.model, self._lookup)
        self.model.add_listener(self._place_added)
        # views that share one channel (an anywidget comm shown by several pages) ask for
        # echo when they attach; yjs ignores updates it already has
        self.relay = Relay(self.doc)
        self.run: Any = None
        self.running = False
        self.images: dict[str, Image] = {}  # node -> (mime, final, data)
        #: the latest run's events (no previews/progress), replayed to views that open later
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ended: str | None = None  # run id of the latest run_finished event
        #: the history file the panel reads and the queue lives in (``None``: ``VORTEX_HISTORY``)
        self.history_file: Any = None
        self._queue: Any = None  # the queue, once a view used it
        self._queue_watch: threading.Thread | None = None
        self._watch_lock = threading.Lock()
        self._closed = threading.Event()
        on_event = getattr(graph, "on_event", None)
        if callable(on_event):
            on_event(self._on_event)
        # A run made before this canvas existed (g.run(), then display g) is shown too.
        last = getattr(graph, "last_run", None)
        if last is not None and hasattr(last, "_state"):
            if last.done:
                self._adopt(last)
            else:  # it streams to the listeners it started with: show it once it is over
                threading.Thread(target=self._adopt_when_done, args=(last,), name="vortex-canvas-adopt",
                                 daemon=True).start()

    # ---- views ---------------------------------------------------------------------------
    def attach(self, view_id: str, send: Send, *, y: bool = True, echo: bool | None = None,
               specs: bool = False) -> None:
        """A view joins: ``y`` it syncs a replica over ``send`` (``echo``: see ``Relay``),
        ``specs`` it gets the node specs as a message."""
        self.views[view_id] = View(send, y, specs)
        if y:
            self.relay.add_view(view_id, send, echo)

    def detach(self, view_id: str) -> None:
        self.views.pop(view_id, None)
        self.relay.remove_view(view_id)

    def hello(self, view_id: str) -> None:
        """Sync a (re)connecting view, then give it the run state and the latest images."""
        view = self.views[view_id]
        if view.specs:
            view.send(dict(protocol.specs_msg(_specs())), [])
        if view.y:
            self.relay.hello(view_id)
        view.send(dict(protocol.state_msg(self.running)), [])
        self._replay(view.send)
        if self._queue is not None:
            self._queue_changed(self._queue, view.send)

    def receive(self, view_id: str, content: Any, buffers: list[Any]) -> None:
        """One message from a view (``protocol.py``); a bad one is answered with an error,
        never raised into the kernel."""
        view = self.views.get(view_id)
        if view is None:
            return
        try:
            self._receive(view_id, view, content, buffers)
        except Exception as exc:  # never let a view's message break the kernel
            log.exception("canvas message failed")
            view.send(dict(protocol.error_msg(f"{type(exc).__name__}: {exc}", code="VE-000")), [])

    def _receive(self, view_id: str, view: View, content: Any, buffers: list[Any]) -> None:
        kind = content.get("t") if isinstance(content, dict) else None
        if kind == "y":
            if not view.y:
                view.send(dict(protocol.error_msg("this view syncs the graph elsewhere; y messages are not taken")), [])
            elif not buffers:
                view.send(dict(protocol.error_msg('a {"t": "y"} message needs one binary buffer')), [])
            else:
                self.relay.receive(view_id, bytes(buffers[0]))
        elif kind == "hello":
            self.hello(view_id)
        elif kind == "run":
            outputs = content.get("outputs")
            self.start([str(o) for o in outputs] if isinstance(outputs, list) else None, view.send)
        elif kind == "cancel":
            self.cancel()
        elif kind == "log":
            entry = {"level": str(content.get("level", "info")), "message": str(content.get("message", ""))[:10_000]}
            self.js_log.append(entry)
            if entry["level"] == "error":
                self.js_errors.append(entry["message"])
                log.warning("canvas view error: %s", entry["message"])
        elif isinstance(kind, str) and kind in panel.KINDS:
            try:
                self._panel(kind, view.send, content)
            except VortexError as exc:  # bad fields (VE-600), an unknown run or queue item...
                view.send(dict(panel.error_for(exc)), [])
        else:
            view.send(dict(protocol.error_msg(f"unknown canvas message type {kind!r}")), [])

    def _replay(self, send: Send) -> None:
        for msg, buffers in replay(self.history, self.images):
            send(dict(msg), buffers)

    def broadcast(self, msg: Any, buffers: list[bytes] | None = None) -> None:
        for view in list(self.views.values()):
            try:
                view.send(dict(msg), list(buffers or []))
            except Exception:  # a closed channel must not stop the others
                log.exception("sending to a canvas view failed")

    # ---- runs ----------------------------------------------------------------------------
    def start(self, outputs: list[str] | None, reply: Send) -> None:
        start = getattr(self.graph, "start", None)
        if not callable(start):
            reply(dict(protocol.error_msg("this canvas shows a bare GraphModel; wrap it in vx.Graph to run it",
                                          code="VE-000")), [])
            return
        with self._lock:
            # a run whose run_finished event came is over for the views, even in the moment
            # before its thread has wound up (the Run button is enabled again by that event)
            busy = self.run is not None and not getattr(self.run, "done", True)
            run_id = getattr(self.run, "run_id", None)
            if busy and (run_id is None or run_id != self._ended):
                reply(dict(protocol.error_msg("a run of this graph is already in progress; cancel it first",
                                              code="VE-000")), [])
                return
            try:
                self.run = start(outputs=outputs, origin="canvas") if outputs else start(origin="canvas")
            except VortexError as exc:  # e.g. validation problems: shown as a toast
                reply(dict(refusal(exc)), [])
                return
        self._set_running(True)
        threading.Thread(target=self._watch, args=(self.run,), name="vortex-canvas-watch", daemon=True).start()

    def _watch(self, run: Any) -> None:
        """A run that cannot start (e.g. a ValidationError) emits no events: tell the views."""
        try:
            run.wait()
        except BaseException as exc:
            self.broadcast(refusal(exc))
        if self.run is run:
            self._set_running(False)

    def cancel(self) -> None:
        run = self.run
        if run is not None and not getattr(run, "done", True):
            run.cancel()

    def _set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            self.broadcast(protocol.state_msg(running))

    def _on_event(self, event: Any) -> None:
        """From any thread: forward one engine event to every view."""
        data = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        kind = data.get("kind")
        if kind == "run_started":
            self._set_running(True)
        if kind == "run_finished":
            self._ended = str(data.get("run_id"))
        for msg, buffers in remember(self.history, self.images, data):
            self.broadcast(msg, buffers)
        if kind == "run_finished":
            self._set_running(False)

    def _adopt(self, run: Any) -> bool:
        """Take ``run``'s record as the latest run's: node states, failures and output images.

        A run without listeners recorded no per-node detail (``Run.events``); its finished
        and cached nodes are then filled in from the plan, so the nodes still show "done".
        Returns False (and changes nothing) when a newer run was already seen.
        """
        state = run._state
        if state.status == "pending" or not state.events:
            return False  # it never started (e.g. the graph had problems)
        history = [e.to_dict() for e in list(state.events)
                   if e.kind not in ("node_preview", "node_progress")][:HISTORY_MAX]
        seen = {h.get("node") for h in history if h.get("kind") in ("node_finished", "node_cached", "node_failed")}
        end = next((i for i, h in enumerate(history) if h.get("kind") == "run_finished"), len(history))
        filled = [NodeCached(state.run_id, n).to_dict() for n in state.cached if n not in seen]
        filled += [NodeFinished(state.run_id, n, state.timings.get(n, 0.0)).to_dict()
                   for n in state.planned if n not in seen and n not in state.errors and n in state.finished]
        history[end:end] = filled[:max(0, HISTORY_MAX - len(history))]
        images = {node: (mime, True, bytes(data)) for node, (mime, data) in state.final_previews()}
        with self._lock:
            if self.history or self.run is not None:
                return False  # a newer run (or its events) got here first
            self.history, self.images = history, images
        return True

    def _adopt_when_done(self, run: Any) -> None:
        try:
            run.wait()
        except BaseException:  # a run that could not start has nothing to show
            return
        if self._adopt(run):
            self._replay(self.broadcast)

    # ---- the history and queue panels (``panel.py``) -------------------------------------
    def _panel(self, kind: str, reply: Send, content: dict[str, Any]) -> None:
        if kind in panel.HISTORY_KINDS:
            from ..history.table import history

            # HistoryTable.restore edits ``graph.model``: a bare GraphModel's canvas passes a holder
            graph = self.graph if hasattr(self.graph, "model") else types.SimpleNamespace(model=self.model)
            msg, buffers = panel.answer(kind, content, history(self.history_file), graph)
            reply(dict(msg), buffers)
        elif kind == "queue":
            self._submit(reply, content)
        else:
            q = self._queue_for()
            panel.change(q, kind, content)
            self._queue_changed(q, reply if kind == "queue_list" else None)

    def _queue_for(self) -> Any:
        from ..history.queue import queue

        self._queue = queue(self.history_file)
        return self._queue

    def _submit(self, reply: Send, content: dict[str, Any]) -> None:
        from ..graph.formats import to_native

        priority = panel.priority(content)
        problems = getattr(self.graph, "problems", None)
        found = problems() if callable(problems) else []
        if found:  # refused now, with the problems on the nodes, not failed later in the queue
            reply(dict(refusal(ValidationError(found), "the graph was not queued")), [])
            return
        q = self._queue_for()
        q.submit(to_native(self.model), priority=priority, origin=CANVAS_ORIGIN)
        self._queue_changed(q)

    def _queue_changed(self, q: Any, reply: Send | None = None) -> None:
        """Send the queue to ``reply`` (default: every view); watch it while items are pending."""
        msg, pending = panel.queue_state(q)
        if reply is None:
            self.broadcast(msg)
        else:
            reply(dict(msg), [])
        with self._watch_lock:
            if pending and self._queue_watch is None and not self._closed.is_set():
                self._queue_watch = threading.Thread(target=self._watch_queue, args=(q, msg),
                                                     name="vortex-canvas-queue", daemon=True)
                self._queue_watch.start()

    def _watch_queue(self, q: Any, last: protocol.QueueItemsMsg) -> None:
        """Items queued here run on the queue's thread, out of this session's sight: poll the
        queue while items are pending and send it to every view when it changes."""
        while not self._closed.wait(QUEUE_POLL_S):
            try:
                with self._watch_lock:  # decided under the lock: a submit either sees us or starts one
                    msg, pending = panel.queue_state(q)
                    if not pending:
                        self._queue_watch = None
            except Exception:  # a busy or damaged file: look again at the next poll
                log.debug("polling the queue failed", exc_info=True)
                continue
            if msg != last:
                self.broadcast(msg)
                last = msg
            if not pending:
                return

    def _place_added(self, change: Any) -> None:
        """A node added from Python (``g.add``) on an occupied spot goes right of the rest."""
        self._extents.on_change(change)
        if change.kind == "node_added" and change.origin != CANVAS_ORIGIN:
            layout.place_new(self.model, change.node, self._lookup, extents=self._extents)

    def close(self) -> None:
        self._closed.set()
        if self._place_added in self.model._listeners:
            self.model.remove_listener(self._place_added)
        off = getattr(self.graph, "off_event", None)
        if callable(off):
            off(self._on_event)
        self.doc.close()
