"""Our own API under ``/api/v1``: graphs as documents, validate, run, runs and their events (SSE).

One definition: the request and response bodies are the msgspec ``Struct``\\ s below; requests
are decoded (and checked) with them, responses encoded from them, and the OpenAPI 3.1 document
at ``/api/v1/openapi.json`` is generated from them and from ``ROUTES`` (each route's method,
path, summary, body and response types, status and example), so the code, the checks and the
document cannot disagree.

Routes::

    GET    /api/v1/graphs                     list the graph documents
    POST   /api/v1/graphs                     create one (native JSON, or ComfyUI API / UI JSON)
    GET    /api/v1/graphs/{id}                one document
    PATCH  /api/v1/graphs/{id}                rename, replace the graph, or set params (If-Version)
    DELETE /api/v1/graphs/{id}
    POST   /api/v1/graphs/{id}/validate       the graph's problems (VE codes)
    POST   /api/v1/graphs/{id}/run            queue a run (the same queue as ComfyUI's /prompt)
    GET    /api/v1/runs/{id}                  a run's status and its nodes
    GET    /api/v1/runs/{id}/events           its engine events as server-sent events
    GET    /api/v1/openapi.json

Documents live in the history file (table ``documents``); every change bumps ``version``, and a
PATCH with ``if_version`` that is not the current one is refused (409), so two clients cannot
overwrite each other's edits unknowingly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import RequestError, ValidationError, VortexError

# ---- the types (one definition) ----------------------------------------------------------------


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    hint: str = ""


class ErrorOut(msgspec.Struct):
    error: ErrorBody


class GraphIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new graph document: ``graph`` is native JSON, or ComfyUI API / UI JSON (converted)."""

    graph: dict[str, Any]
    name: str = ""


class GraphPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Changes to a document; ``params`` sets ``{node id: {param: value}}``."""

    name: str | None = None
    graph: dict[str, Any] | None = None
    params: dict[str, dict[str, Any]] | None = None
    if_version: int | None = None


class GraphDocument(msgspec.Struct):
    id: str
    name: str
    version: int
    created: float
    updated: float
    graph: dict[str, Any]


class GraphSummary(msgspec.Struct):
    id: str
    name: str
    version: int
    updated: float
    nodes: int


class ProblemOut(msgspec.Struct):
    code: str
    node: str | None
    port: str | None
    message: str
    hint: str = ""


class ValidationOut(msgspec.Struct):
    ok: bool
    problems: list[ProblemOut]


class RunRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``outputs``: run only these nodes and what they need (default: the whole graph)."""

    priority: int = 0
    outputs: list[str] | None = None


class NodeOut(msgspec.Struct):
    node: str
    type: str | None
    status: str
    elapsed: float | None = None
    code: str | None = None
    message: str | None = None


class RunOut(msgspec.Struct):
    id: int
    graph: str
    status: str
    run_id: str | None = None
    error: str | None = None
    nodes: list[NodeOut] = []
    outputs: dict[str, Any] = {}


@dataclass(frozen=True)
class RouteDoc:
    method: str
    path: str
    summary: str
    body: Any = None
    response: Any = None
    status: int = 200
    example: Any = None
    stream: bool = False


_EXAMPLE_GRAPH = {"1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
                  "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}

ROUTES = [
    RouteDoc("get", "/api/v1/graphs", "List the graph documents", response=list[GraphSummary]),
    RouteDoc("post", "/api/v1/graphs", "Create a graph document (native, ComfyUI API or UI JSON)", GraphIn,
             GraphDocument, 201, {"name": "add", "graph": _EXAMPLE_GRAPH}),
    RouteDoc("get", "/api/v1/graphs/{id}", "One graph document", response=GraphDocument),
    RouteDoc("patch", "/api/v1/graphs/{id}", "Rename, replace or set params (if_version: refuse a stale edit)",
             GraphPatch, GraphDocument, 200, {"params": {"1": {"a": 5}}, "if_version": 1}),
    RouteDoc("delete", "/api/v1/graphs/{id}", "Delete a graph document", status=204),
    RouteDoc("post", "/api/v1/graphs/{id}/validate", "The graph's problems, with VE codes", response=ValidationOut),
    RouteDoc("post", "/api/v1/graphs/{id}/run", "Queue a run of the graph as it is now (or of some outputs)",
             RunRequest, RunOut, 202, {"priority": 0}),
    RouteDoc("get", "/api/v1/runs/{id}", "A run: its status, nodes and outputs", response=RunOut),
    RouteDoc("get", "/api/v1/runs/{id}/events", "The run's engine events as server-sent events", stream=True),
    RouteDoc("get", "/api/v1/openapi.json", "This document"),
]


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated from ``ROUTES`` and the Structs."""
    types = {t for r in ROUTES for t in (r.body, r.response) if t is not None} | {ErrorOut}
    ordered = sorted(types, key=repr)
    schemas, components = msgspec.json.schema_components(ordered, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(ordered, schemas, strict=True))
    error = {"description": "error (a VE code, a message and a hint)",
             "content": {"application/json": {"schema": by_type[ErrorOut]}}}
    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {"summary": r.summary, "operationId": f"{r.method}_{r.path.strip('/').replace('/', '_')}"
                              .replace("{", "").replace("}", "").replace(".", "_").replace("-", "_"),
                              "responses": {"400": error, "401": error, "404": error, "413": error}}
        params = [p.strip("{}") for p in r.path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                for p in params]
        if r.body is not None:
            media: dict[str, Any] = {"schema": by_type[r.body]}
            if r.example is not None:
                media["example"] = r.example
            op["requestBody"] = {"required": True, "content": {"application/json": media}}
        if r.stream:
            ok: dict[str, Any] = {"description": "events", "content": {"text/event-stream": {"schema": {"type": "string"}}}}
        elif r.response is not None:
            ok = {"description": "ok", "content": {"application/json": {"schema": by_type[r.response]}}}
        elif r.status == 204:
            ok = {"description": "done"}
        else:
            ok = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
        op["responses"][str(r.status)] = ok
        if r.method in ("patch", "delete"):
            op["responses"]["409"] = error
        paths.setdefault(r.path, {})[r.method] = op
    return {"openapi": "3.1.0", "info": {"title": "vortex-jupyter", "version": "1"},
            "paths": paths, "components": {"schemas": components}}


# ---- the logic ---------------------------------------------------------------------------------

def decode(raw: bytes, kind: Any) -> Any:
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise RequestError(f"the request body does not fit {kind.__name__}: {exc}", code="VE-1001",
                           hint="see /api/v1/openapi.json for the schema") from None
    except msgspec.DecodeError as exc:
        raise RequestError(f"the body is not JSON: {exc}", code="VE-1001", hint="send a JSON object") from None


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


class Documents:
    """Graph documents in the history file (schema 5's ``documents`` table)."""

    def __init__(self, history: Any) -> None:
        self.history = history

    def _native(self, graph: dict[str, Any]) -> dict[str, Any]:
        from .._api import load

        try:
            g = load(graph)
        except VortexError as exc:
            raise RequestError(f"graph: {exc.message}", code=exc.code, hint=exc.hint or "") from None
        return g.to_json()

    def _row(self, doc_id: str) -> Any:
        rows = self.history.query("SELECT id, name, version, created, updated, graph FROM documents WHERE id = ?",
                                  (doc_id,))
        if not rows:
            raise RequestError(f"no graph document {doc_id!r}", code="VE-1004", status=404,
                               hint="GET /api/v1/graphs lists them")
        return rows[0]

    def get(self, doc_id: str) -> GraphDocument:
        r = self._row(doc_id)
        return GraphDocument(r["id"], r["name"], r["version"], r["created"], r["updated"], json.loads(r["graph"]))

    def list(self) -> list[GraphSummary]:
        rows = self.history.query("SELECT id, name, version, updated, graph FROM documents ORDER BY updated DESC")
        return [GraphSummary(r["id"], r["name"], r["version"], r["updated"], len(json.loads(r["graph"]).get("nodes", [])))
                for r in rows]

    def create(self, body: GraphIn) -> GraphDocument:
        native, now, doc_id = self._native(body.graph), time.time(), uuid.uuid4().hex[:12]
        with self.history.write() as db:
            db.execute("INSERT INTO documents (id, name, version, created, updated, graph) VALUES (?, ?, 1, ?, ?, ?)",
                       (doc_id, body.name, now, now, json.dumps(native)))
        return self.get(doc_id)

    def patch(self, doc_id: str, body: GraphPatch) -> GraphDocument:
        current = self.get(doc_id)
        if body.if_version is not None and body.if_version != current.version:
            raise RequestError(f"graph {doc_id!r} is at version {current.version}, not {body.if_version}",
                               code="VE-1005", status=409, hint="GET it again, re-apply the change, PATCH with the "
                                                                 "new if_version")
        graph = self._native(body.graph) if body.graph is not None else current.graph
        if body.params:
            from .._api import load

            g = load(graph)
            for node, values in body.params.items():
                if node not in g.model.nodes:
                    raise RequestError(f"params: no node {node!r} in graph {doc_id!r}", code="VE-1001",
                                       hint=f"node ids: {', '.join(list(g.model.nodes)[:20])}")
                for name, value in values.items():
                    g.model.set_param(node, name, value)
            graph = g.to_json()
        with self.history.write() as db:
            db.execute("UPDATE documents SET name = ?, graph = ?, version = version + 1, updated = ? WHERE id = ?",
                       (body.name if body.name is not None else current.name, json.dumps(graph), time.time(), doc_id))
        return self.get(doc_id)

    def delete(self, doc_id: str) -> None:
        self._row(doc_id)
        with self.history.write() as db:
            db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def validate(self, doc_id: str) -> ValidationOut:
        from .._api import load

        problems = load(self.get(doc_id).graph).problems()
        return ValidationOut(not problems, [ProblemOut(p.code, p.node, p.port, p.message, p.hint or "")
                                            for p in problems])


class Events:
    """Each API run's engine events, kept for late readers and pushed to live SSE readers."""

    LIMIT = 20_000

    def __init__(self) -> None:
        self.events: dict[int, list[dict[str, Any]]] = {}
        self.done: set[int] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: dict[int, list[asyncio.Event]] = {}

    KEEP_RUNS = 200

    def listener(self, item_id: int) -> Any:
        self.events.setdefault(item_id, [])
        for old in sorted(self.events)[:-self.KEEP_RUNS]:  # the newest runs' events stay readable
            self.events.pop(old, None)
            self.done.discard(old)

        def on_event(event: Any) -> None:
            data = event.to_dict()
            if isinstance(data.get("data"), bytes):  # previews: not as text
                data.pop("data")
            kept = self.events.setdefault(item_id, [])
            if len(kept) < self.LIMIT:
                kept.append(data)
            self._wake(item_id)

        return on_event

    def finish(self, item_id: int) -> None:
        self.done.add(item_id)
        self._wake(item_id)

    def _wake(self, item_id: int) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        for waiter in list(self.waiters.get(item_id, [])):
            loop.call_soon_threadsafe(waiter.set)

    async def stream(self, item_id: int, finished: Any) -> Any:
        """SSE lines of the item's events; ends after its run ends."""
        sent = 0
        waiter = asyncio.Event()
        self.waiters.setdefault(item_id, []).append(waiter)
        try:
            while True:
                kept = self.events.get(item_id, [])
                while sent < len(kept):
                    event = kept[sent]
                    sent += 1
                    yield f"event: {event['kind']}\ndata: {json.dumps(event, default=str)}\n\n"
                if item_id in self.done or finished():
                    if sent >= len(self.events.get(item_id, [])):
                        yield "event: end\ndata: {}\n\n"
                        return
                    continue
                waiter.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter.wait(), 1.0)
        finally:
            self.waiters[item_id].remove(waiter)


def queue_document(docs: Documents, queue: Any, doc_id: str, *, priority: int = 0, origin: str = "api",
                   outputs: list[str] | None = None) -> Any:
    """Queue document ``doc_id``'s graph as stored, with ``extra={"document": id}`` (the rooms
    follow such runs); the ``QueueItem``. ``outputs``: only those nodes and what they need.
    Raises ``ValidationError`` (its ``problems``) and queues nothing when the graph has
    problems, ``RequestError`` when ``outputs`` names a node it lacks."""
    from .._api import load

    doc = docs.get(doc_id)
    graph = load(doc.graph)
    missing = [n for n in outputs or () if n not in graph.nodes]
    if missing:
        raise RequestError(f"outputs: no node {missing[0]!r} in graph {doc_id!r}", code="VE-1001",
                           hint=f"its nodes: {', '.join(sorted(graph.nodes)[:20])}")
    problems = graph.problems()
    if problems:
        raise ValidationError(problems)
    return queue.submit(doc.graph, priority=priority, origin=origin, extra={"document": doc.id},
                        targets=outputs or None)


def run_out(queue: Any, item_id: int) -> RunOut:
    """A queue item as the API's ``RunOut`` (its nodes and outputs once it ran)."""
    try:
        item = queue.item(item_id)
    except VortexError:
        raise RequestError(f"no run {item_id}", code="VE-1004", status=404,
                           hint="POST /api/v1/graphs/{id}/run answers with the run's id") from None
    rows = queue.history.query("SELECT graph FROM queue WHERE id = ?", (item_id,))
    out = RunOut(item.id, str(rows[0][0]) if rows else "", item.status, item.run_id, item.error)
    if item.run_id:
        out.nodes = [NodeOut(r["node"], r["type"], r["status"], r["elapsed"], r["code"], r["message"])
                     for r in queue.history.query("SELECT node, type, status, elapsed, code, message FROM nodes "
                                                  "WHERE run_id = ? ORDER BY rowid", (item.run_id,))]
        ui = queue.history.query("SELECT ui FROM runs WHERE id = ?", (item.run_id,))
        out.outputs = json.loads(ui[0][0]) if ui and ui[0][0] else {}
    return out
