"""ComfyUI's HTTP/WebSocket API on our engine, queue and history (read ComfyUI's ``server.py``
and ``script_examples/`` for the shapes; this is our own code).

Routes (same paths, payloads, status codes and WebSocket messages as ComfyUI):
``POST /prompt`` (validate, queue; ``{"prompt_id", "number", "node_errors"}`` or 400 with
``{"error", "node_errors"}``), ``GET /prompt``, ``GET|POST /queue``, ``GET|POST /history``,
``GET /history/{prompt_id}``, ``GET /view``, ``POST /upload/image``, ``GET /object_info[/{type}]``,
``GET /system_stats``, ``POST /interrupt``, ``POST /free``, ``GET /ws?clientId=``.

Execution: a prompt becomes an item of the history file's queue (``history/queue.py``), which
this server's runner runs one at a time; its engine events become ComfyUI's messages
(``Relay``) for the prompt's ``client_id`` (every client when it has none): ``execution_start``,
``execution_cached``, ``executing``, ``progress``, binary preview frames (``>II`` event 1, image
type 1 JPEG / 2 PNG, then the image; only with ``--preview-method auto``: ComfyUI's default is
none, and clients such as comfy-api-simplified take any binary frame for a result image),
``executed``, ``execution_success`` /
``execution_error`` / ``execution_interrupted``, and ``executing`` with ``node: null`` last;
``status`` (``queue_remaining``) goes to everyone whenever the queue changes. Other parts of the
server (the Yjs rooms, ``rooms.py``) hear every item's events and its end through
``ComfyAPI.run_hooks`` and ``done_hooks``: this module knows nothing of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import RequestError, VortexError

log = logging.getLogger("vortex_jupyter.server")

PREVIEW_IMAGE = 1
STATUS_COALESCE_S = 0.05


class Hub:
    """The WebSocket clients by ``clientId``; ``send_sync`` may be called from any thread."""

    def __init__(self) -> None:
        self.sockets: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.messages: asyncio.Queue[tuple[Any, Any, str | None]] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        self.loop = loop
        self.messages = asyncio.Queue()
        return loop.create_task(self._publish())

    def send_sync(self, event: Any, data: Any, sid: str | None = None) -> None:
        loop, messages = self.loop, self.messages
        if loop is not None and messages is not None and not loop.is_closed():
            loop.call_soon_threadsafe(messages.put_nowait, (event, data, sid))

    async def send(self, event: Any, data: Any, sid: str | None = None) -> None:
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        if not targets:
            return
        binary = isinstance(event, int)
        payload = bytes(data) if binary else json.dumps({"type": event, "data": data}, default=str)  # once for all
        for ws in targets:
            try:
                if binary:
                    await ws.send_bytes(payload)
                else:
                    await ws.send_text(payload)
            except Exception:  # a client gone mid-send: its handler removes it
                log.debug("ws send failed", exc_info=True)

    async def _publish(self) -> None:
        assert self.messages is not None
        while True:
            event, data, sid = await self.messages.get()
            await self.send(event, data, sid)


def _ms() -> int:
    return int(time.time() * 1000)


class Relay:
    """One queued prompt's engine events as ComfyUI's WebSocket messages."""

    def __init__(self, hub: Hub, prompt_id: str, client_id: str | None, types: Callable[[str], str],
                 previews: bool = False) -> None:
        self.hub, self.prompt_id, self.sid, self.types, self.previews = hub, prompt_id, client_id, types, previews
        self.started = False
        self.executed: list[str] = []

    def _send(self, event: str, data: dict[str, Any]) -> None:
        self.hub.send_sync(event, {**data, "prompt_id": self.prompt_id}, self.sid)

    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind == "run_started":
            self.started = True
            self._send("execution_start", {"timestamp": _ms()})
            self._send("execution_cached", {"nodes": list(event.cached), "timestamp": _ms()})
        elif kind == "node_started":
            self._send("executing", {"node": event.node, "display_node": event.node})
        elif kind == "node_progress":
            self._send("progress", {"value": event.value, "max": event.total if event.total is not None else 0,
                                    "node": event.node})
        elif kind == "node_preview" and not event.final and self.previews:
            kind_code = 2 if event.mime == "image/png" else 1
            self.hub.send_sync(PREVIEW_IMAGE, struct.pack(">II", PREVIEW_IMAGE, kind_code) + bytes(event.data),
                               self.sid)
        elif kind == "node_finished":
            self.executed.append(event.node)
            if event.ui:
                self._send("executed", {"node": event.node, "display_node": event.node, "output": event.ui})
        elif kind == "node_cached":
            self.executed.append(event.node)
        elif kind == "node_failed" and event.code != "VE-505":  # dependents of a failure: not errors of their own
            self._send("execution_error", {
                "node_id": event.node, "node_type": self.types(event.node), "executed": list(self.executed),
                "exception_message": event.message, "exception_type": event.error_type or event.code,
                "traceback": (event.traceback or "").splitlines(), "current_inputs": {}, "current_outputs": {},
                "timestamp": _ms()})
        elif kind == "run_finished":
            if event.status == "ok":
                self._send("execution_success", {"timestamp": _ms()})
            elif event.status == "cancelled":
                self._send("execution_interrupted", {"node_id": None, "node_type": None,
                                                     "executed": list(self.executed), "timestamp": _ms()})
            # ``executing`` with node null comes from ComfyAPI._done: after the history has the prompt


class ComfyAPI:
    """The ComfyUI-compatible part of ``vortex serve`` over one history file's queue."""

    def __init__(self, history: Any, *, previews: bool = False) -> None:
        from ..history.queue import Queue
        from .api_v1 import Events

        self.previews = previews
        self.events = Events()  # every run's engine events, for /api/v1/runs/{id}/events
        self._status_lock = threading.Lock()
        self._status_pending = False
        self.hub = Hub()
        self.relays: dict[int, Relay] = {}
        #: more listeners for an item's run, ``hook(item, extra) -> [fn(event)]``, and hooks told
        #: ``hook(item, extra)`` when an item ended; both on the runner thread (``Rooms`` adds its own)
        self.run_hooks: list[Callable[[Any, dict[str, Any]], list[Any]]] = []
        self.done_hooks: list[Callable[[Any, dict[str, Any]], None]] = []
        self.queue = Queue(history, autostart=False, listeners=self._listeners, on_done=self._done)
        self.history = history

    # -- the queue's hooks (runner thread) --------------------------------------------------------
    def _listeners(self, item: Any, graph: Any) -> list[Any]:
        from .. import telemetry
        from ..engine.executors import get_executor

        telemetry.watch_pool(get_executor())
        metrics = [telemetry.MetricsListener(graph.model, item.origin or "server"), self.events.listener(item.id)]
        prompt_id, extra = self._extra(item.id)
        for hook in self.run_hooks:
            try:
                metrics += hook(item, extra)
            except Exception:  # the run goes on without that hook's listeners
                log.exception("a queue item's run hook failed")
        if prompt_id is None:
            return metrics
        prompt = extra.get("prompt", {})
        relay = Relay(self.hub, prompt_id, extra.get("client_id"),
                      lambda node: str(prompt.get(node, {}).get("class_type", "")), self.previews)
        self.relays[item.id] = relay
        self.status()
        return [relay, *metrics]

    def _done(self, item: Any) -> None:
        """After the item's status is stored (so ``/history`` has it), as ComfyUI's prompt worker:
        ``executing`` with node null, then the queue's ``status``."""
        relay = self.relays.pop(item.id, None)
        self.events.finish(item.id)
        prompt_id, extra = self._extra(item.id)
        for hook in self.done_hooks:
            try:
                hook(item, extra)
            except Exception:  # one hook's failure must not keep the others or ComfyUI's messages back
                log.exception("a queue item's done hook failed")
        if prompt_id is not None:
            sid = extra.get("client_id")
            if relay is None or not relay.started:  # it never ran: say why
                self.hub.send_sync("execution_error", {
                    "prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
                    "exception_message": item.error or f"the prompt ended {item.status} before it started",
                    "exception_type": "VortexError", "traceback": [], "current_inputs": {}, "current_outputs": {},
                    "timestamp": _ms()}, sid)
            self.hub.send_sync("executing", {"node": None, "display_node": None, "prompt_id": prompt_id}, sid)
        self.status()

    def _extra(self, item_id: int) -> tuple[str | None, dict[str, Any]]:
        """An item's ComfyUI ``prompt_id`` (``None``: not queued through ``/prompt``) and its extra data."""
        rows = self.history.query("SELECT prompt_id, extra FROM queue WHERE id = ?", (item_id,))
        if not rows:
            return None, {}
        extra = json.loads(rows[0][1] or "{}")
        return rows[0][0], extra if isinstance(extra, dict) else {}

    # -- status -----------------------------------------------------------------------------------
    def queue_info(self) -> dict[str, Any]:
        remaining = self.history.query("SELECT count(*) FROM queue WHERE status IN ('queued', 'running')")[0][0]
        return {"exec_info": {"queue_remaining": int(remaining)}}

    def status(self) -> None:
        """Broadcast the queue's ``status``; calls within 50 ms make one broadcast (200 prompts
        queued at once must not send 200 x every client's status)."""
        with self._status_lock:
            if self._status_pending:
                return
            self._status_pending = True
        timer = threading.Timer(STATUS_COALESCE_S, self._send_status)
        timer.daemon = True
        timer.start()

    def _send_status(self) -> None:
        with self._status_lock:
            self._status_pending = False
        try:
            self.hub.send_sync("status", {"status": self.queue_info()})
        except Exception:  # a closing history: nothing to report
            log.debug("status broadcast failed", exc_info=True)

    # -- /prompt ----------------------------------------------------------------------------------
    def submit(self, body: Any) -> dict[str, Any]:
        """``POST /prompt``: validate and queue; raises ``PromptRejected`` (400)."""
        from .._api import load

        if not isinstance(body, dict) or "prompt" not in body:
            raise PromptRejected({"type": "no_prompt", "message": "No prompt provided",
                                  "details": "No prompt provided", "extra_info": {}, "code": "VE-1001"})
        prompt = body["prompt"]
        if not isinstance(prompt, dict) or not prompt:
            raise PromptRejected({"type": "invalid_prompt", "message": "Invalid prompt: not an API-format dict",
                                  "details": "prompt must map node ids to {class_type, inputs}",
                                  "extra_info": {}, "code": "VE-200"})
        try:
            graph = load(prompt)
        except VortexError as exc:
            raise PromptRejected({"type": "invalid_prompt", "message": f"Invalid prompt: {exc.message}",
                                  "details": exc.hint or "", "extra_info": {}, "code": exc.code}) from None
        outputs = _output_nodes(graph)
        targets = body.get("partial_execution_targets")
        if targets is not None:  # ComfyUI's "queue selected output nodes": only these outputs run
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise RequestError(f"partial_execution_targets = {str(targets)[:80]!r} is not a list of node ids",
                                   code="VE-1001", hint='send e.g. ["9"], or leave it out to run every output')
            outputs = [o for o in outputs if o in targets]
        if not outputs:
            raise PromptRejected({"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                                  "details": "", "extra_info": {}, "code": "VE-100"})
        problems = graph.problems()
        if problems:
            node_errors: dict[str, Any] = {}
            for p in problems:
                node = p.node or ""
                entry = node_errors.setdefault(node, {"errors": [], "dependent_outputs": list(outputs),
                                                      "class_type": _class_type(prompt, node)})
                entry["errors"].append({"type": p.code, "message": p.message, "details": p.hint or "",
                                        "extra_info": {"input_name": p.port} if p.port else {}})
            raise PromptRejected({"type": "prompt_outputs_failed_validation",
                                  "message": "Prompt outputs failed validation",
                                  "details": "\n".join(str(p) for p in problems), "extra_info": {}, "code": "VE-100"},
                                 node_errors)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        raw_extra = body.get("extra_data")
        extra_data: dict[str, Any] = dict(raw_extra) if isinstance(raw_extra, dict) else {}
        client_id = body.get("client_id")
        if isinstance(client_id, str):
            extra_data = {**extra_data, "client_id": client_id}
        number = body.get("number")
        try:
            position = float(number) if number is not None else None
        except (TypeError, ValueError):
            raise RequestError(f"number {number!r} is not a number", code="VE-1001") from None
        item = self.queue.submit(graph, origin="server", prompt_id=prompt_id, position=position,
                                 front=bool(body.get("front")),
                                 extra={"prompt": prompt, "client_id": client_id if isinstance(client_id, str) else None,
                                        "extra_data": extra_data, "outputs": outputs},
                                 targets=outputs)  # as ComfyUI: only what the output nodes need runs
        self.status()
        return {"prompt_id": prompt_id, "number": item.position, "node_errors": {}}

    # -- /queue -----------------------------------------------------------------------------------
    def _entries(self, status: str) -> list[list[Any]]:
        rows = self.history.query("SELECT position, prompt_id, extra FROM queue WHERE status = ? AND prompt_id IS NOT "
                                  "NULL ORDER BY priority DESC, position", (status,))
        out = []
        for r in rows:
            extra = json.loads(r["extra"] or "{}")
            out.append([r["position"], r["prompt_id"], extra.get("prompt", {}), extra.get("extra_data", {}),
                        extra.get("outputs", [])])
        return out

    def queue_state(self) -> dict[str, Any]:
        return {"queue_running": self._entries("running"), "queue_pending": self._entries("queued")}

    def change_queue(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise RequestError("POST /queue takes {\"clear\": true} or {\"delete\": [prompt ids]}", code="VE-1001")
        if body.get("clear"):
            with self.history.write() as db:
                db.execute("UPDATE queue SET status = 'cancelled' WHERE status = 'queued' AND prompt_id IS NOT NULL")
        for pid in body.get("delete", []) or []:
            found = self.queue.by_prompt(str(pid))
            if found is not None and found[0].status == "queued":
                self.queue.cancel(found[0])
        self.status()

    def interrupt(self, body: Any) -> None:
        running = self.queue.running()
        if running is None:
            return
        pid = body.get("prompt_id") if isinstance(body, dict) else None
        if pid:
            found = self.queue.by_prompt(str(pid))
            if found is None or found[0].id != running:
                return
        self.queue.cancel(running)

    # -- /history ---------------------------------------------------------------------------------
    def history_entries(self, prompt_id: str | None = None, max_items: int | None = None) -> dict[str, Any]:
        sql = ("SELECT q.position, q.prompt_id, q.extra, q.status, q.error, r.ui, r.status AS run_status, r.started, "
               "r.finished FROM queue q LEFT JOIN runs r ON r.id = q.run_id WHERE q.prompt_id IS NOT NULL AND "
               "q.status NOT IN ('queued', 'running')")
        args: list[Any] = []
        if prompt_id is not None:
            sql += " AND q.prompt_id = ?"
            args.append(prompt_id)
        sql += " ORDER BY q.id DESC"
        if max_items is not None:
            sql += " LIMIT ?"
            args.append(max_items)
        out: dict[str, Any] = {}
        for r in reversed(self.history.query(sql, args)):
            extra = json.loads(r["extra"] or "{}")
            ui = json.loads(r["ui"] or "{}")
            ok = r["status"] == "ok"
            messages: list[Any] = []
            if r["started"] is not None:
                messages.append(["execution_start", {"prompt_id": r["prompt_id"], "timestamp": int(r["started"] * 1000)}])
            if r["finished"] is not None:
                messages.append(["execution_success" if ok else "execution_interrupted" if r["status"] == "cancelled"
                                 else "execution_error",
                                 {"prompt_id": r["prompt_id"], "timestamp": int(r["finished"] * 1000)}])
            out[r["prompt_id"]] = {
                "prompt": [r["position"], r["prompt_id"], extra.get("prompt", {}), extra.get("extra_data", {}),
                           extra.get("outputs", [])],
                "outputs": ui,
                "status": {"status_str": "success" if ok else "error", "completed": ok, "messages": messages},
                "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in ui},
            }
        return out

    def change_history(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise RequestError("POST /history takes {\"clear\": true} or {\"delete\": [prompt ids]}", code="VE-1001")
        with self.history.write() as db:
            if body.get("clear"):
                db.execute("UPDATE queue SET prompt_id = NULL WHERE prompt_id IS NOT NULL "
                           "AND status NOT IN ('queued', 'running')")
            for pid in body.get("delete", []) or []:
                db.execute("UPDATE queue SET prompt_id = NULL WHERE prompt_id = ? AND status NOT IN ('queued', 'running')",
                           (str(pid),))


class PromptRejected(Exception):
    """``POST /prompt`` answered 400 with ComfyUI's ``{"error", "node_errors"}``."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None) -> None:
        super().__init__(error.get("message", ""))
        self.error, self.node_errors = error, node_errors or {}


def _class_type(prompt: dict[str, Any], node: str) -> str:
    entry = prompt.get(node)
    return str(entry.get("class_type", "")) if isinstance(entry, dict) else ""


def _output_nodes(graph: Any) -> list[str]:
    from ..nodes.registry import REGISTRY

    out = []
    for nid, node in graph.model.nodes.items():
        spec = REGISTRY.lookup(node.type)
        if spec is not None and spec.output_node:
            out.append(nid)
    return out
