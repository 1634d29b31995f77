"""``vortex serve``: the ASGI app (Starlette on uvicorn) and its safety rules.

Safety:
- binds 127.0.0.1 by default; any other interface needs a token (``--token`` or
  ``VORTEX_SERVER_TOKEN``), sent as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (also on
  ``/ws``); a request without it gets 401 (VE-1003). No CORS headers: browsers of other
  origins cannot read responses.
- request bodies are bounded (``VORTEX_SERVER_MAX_BODY``, default 32 MiB; uploads included):
  past it 413 (VE-1002), whether or not the client sent a Content-Length.
- every input is validated; errors are JSON ``{"error": {"code": "VE-...", "message", "hint"}}``
  (``/prompt`` keeps ComfyUI's ``{"error": {...}, "node_errors": {...}}`` with a ``code`` added);
  ``/view`` and ``/upload/image`` stay inside their folders (``nodes.paths.path_under``).
- a handler that raises answers 500 with a VE code; the server, its queue and history go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import platform
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import RequestError, ValidationError, VortexError
from .comfy import ComfyAPI, PromptRejected

log = logging.getLogger("vortex_jupyter.server")

MAX_BODY = 32 * 2**20
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def max_body() -> int:
    raw = os.environ.get("VORTEX_SERVER_MAX_BODY", "").strip()
    if not raw:
        return MAX_BODY
    from ..workers.procs import parse_bytes

    return parse_bytes(raw)


def _error(exc: VortexError, status: int | None = None) -> Any:
    from starlette.responses import JSONResponse

    body = {"error": {"code": exc.code, "message": exc.message, "hint": exc.hint or ""}}
    code: int = status if status is not None else getattr(exc, "status", 400)
    return JSONResponse(body, status_code=code)


class Guard:
    """ASGI middleware: the token and the body size limit, before any route runs."""

    def __init__(self, app: Any, token: str | None, limit: int) -> None:
        self.app, self.token, self.limit = app, token, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.token and not self._authorised(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            await _error(RequestError("a token is required: this server listens beyond this machine",
                                      code="VE-1003", status=401,
                                      hint="send Authorization: Bearer TOKEN or ?token=TOKEN"))(scope, receive, send)
            return
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                await self._too_large(scope, receive, send)
                return
            receive = self._bounded(receive)
        await self.app(scope, receive, send)

    async def _too_large(self, scope: Any, receive: Any, send: Any) -> None:
        await _error(RequestError(f"the request body is over {self.limit} bytes", code="VE-1002", status=413,
                                  hint="send less, or raise VORTEX_SERVER_MAX_BODY"))(scope, receive, send)

    def _bounded(self, receive: Any) -> Any:
        seen = 0

        async def wrapped() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # (no Content-Length, or a false one): answered 413 by the app
                    raise RequestError(f"the request body is over {self.limit} bytes", code="VE-1002", status=413,
                                       hint="send less, or raise VORTEX_SERVER_MAX_BODY")
            return message

        return wrapped

    def _authorised(self, scope: Any) -> bool:
        assert self.token is not None
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.token):
            return True
        from urllib.parse import parse_qs

        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        return bool(given) and hmac.compare_digest(given, self.token)


async def _json(request: Any) -> Any:
    body = await request.body()
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise RequestError(f"the body is not JSON: {exc}", code="VE-1001", hint="send a JSON object") from None


def create_app(*, history: Any = None, token: str | None = None, previews: bool = False) -> Any:
    """The app; ``history``: the ``History`` whose queue it serves (default ``VORTEX_HISTORY``'s);
    ``previews``: send samplers' step previews as binary WebSocket frames."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from ..history.db import open_history

    hist = history if history is not None else open_history()
    if hist is None:
        raise VortexError("vortex serve needs the history file for its queue (VORTEX_HISTORY=off)",
                          hint="unset VORTEX_HISTORY or point it at a file")
    api = ComfyAPI(hist, previews=previews)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        publisher = api.hub.start(asyncio.get_running_loop())
        api.events.loop = asyncio.get_running_loop()
        api.queue.start()
        yield
        api.queue._stop.set()
        publisher.cancel()

    async def post_prompt(request: Any) -> Any:
        body = await _json(request)
        try:  # ~0.3 ms of work: on the loop (a thread hop costs more than that under load)
            result = api.submit(body)
        except PromptRejected as exc:
            return JSONResponse({"error": exc.error, "node_errors": exc.node_errors}, status_code=400)
        return JSONResponse(result)

    async def get_prompt(request: Any) -> Any:
        return JSONResponse(api.queue_info())

    async def get_queue(request: Any) -> Any:
        return JSONResponse(api.queue_state())

    async def post_queue(request: Any) -> Any:
        api.change_queue(await _json(request))
        return Response(status_code=200)

    async def get_history(request: Any) -> Any:
        raw = request.query_params.get("max_items")
        try:
            limit = int(raw) if raw is not None else None
        except ValueError:
            raise RequestError(f"max_items {raw!r} is not a whole number", code="VE-1001") from None
        return JSONResponse(api.history_entries(max_items=limit))

    async def get_history_one(request: Any) -> Any:
        return JSONResponse(api.history_entries(prompt_id=request.path_params["prompt_id"]))

    async def post_history(request: Any) -> Any:
        api.change_history(await _json(request))
        return Response(status_code=200)

    async def interrupt(request: Any) -> Any:
        api.interrupt(await _json(request))
        return Response(status_code=200)

    async def free(request: Any) -> Any:
        body = await _json(request)
        if isinstance(body, dict) and (body.get("unload_models") or body.get("free_memory")):
            from ..engine.cache import cache_for
            from ..engine.executors import get_executor

            cache_for(get_executor()).clear()  # outputs (loaded models too) released in the workers
        return Response(status_code=200)

    async def metrics(request: Any) -> Any:
        from .. import telemetry

        telemetry.set_queue_depth(api.queue_info()["exec_info"]["queue_remaining"])
        body, content_type = telemetry.metrics_text()
        return Response(body, media_type=content_type)

    async def object_info(request: Any) -> Any:
        from ..nodes.registry import REGISTRY

        info = await asyncio.to_thread(REGISTRY.to_object_info)
        name = request.path_params.get("node_class")
        if name is not None:
            return JSONResponse({name: info[name]} if name in info else {})
        return JSONResponse(info)

    async def system_stats(request: Any) -> Any:
        from importlib import metadata

        from ..workers.procs import physical_memory
        from ..workers.supervisor import default_devices

        def version(dist: str) -> str:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return ""

        free = 0
        with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        from ..telemetry import gpu_memory

        vram = {g["index"]: g for g in gpu_memory()}  # NVML: no torch, no CUDA context in the server
        devices = []
        for d in default_devices():
            kind, _, index = d.partition(":")
            g = vram.get(int(index or 0), {}) if kind == "cuda" else {}
            devices.append({"name": f"{d} {g['name']}" if g else d, "type": kind, "index": int(index or 0),
                            "vram_total": g.get("total", 0), "vram_free": g.get("free", 0),
                            "torch_vram_total": g.get("total", 0), "torch_vram_free": g.get("free", 0)})
        return JSONResponse({"system": {"os": os.name, "ram_total": physical_memory(), "ram_free": free,
                                        "comfyui_version": f"vortex-jupyter {version('vortex-jupyter')}",
                                        "python_version": platform.python_version(), "pytorch_version": version("torch"),
                                        "embedded_python": False, "argv": ["vortex", "serve"]},
                             "devices": devices})

    def folder(kind: str | None) -> Path:
        from ..nodes.paths import input_root, output_root, temp_root

        roots = {"output": output_root, "input": input_root, "temp": temp_root}
        if kind not in roots:
            raise RequestError(f"type {kind!r} is not one of output, input, temp", code="VE-1001")
        return Path(roots[kind]())

    async def view(request: Any) -> Any:
        from ..nodes.paths import path_under

        q = request.query_params
        name = q.get("filename")
        if not name:
            raise RequestError("/view needs ?filename=", code="VE-1001")
        path = path_under(folder(q.get("type", "output")), q.get("subfolder", ""), name)  # PathError: 400
        if not path.is_file():
            raise RequestError(f"no file {name!r} there", code="VE-1004", status=404)
        return FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    async def upload_image(request: Any) -> Any:
        from ..nodes.paths import path_under

        form = await request.form()
        image = form.get("image")
        if image is None or not hasattr(image, "read") or not getattr(image, "filename", ""):
            raise RequestError("/upload/image needs a multipart field 'image' with a file name", code="VE-1001")
        kind = str(form.get("type") or "input")
        subfolder = str(form.get("subfolder") or "")
        root = folder(kind)
        target = path_under(root, subfolder, os.path.basename(str(image.filename)))  # PathError: 400
        data = await image.read()
        target.parent.mkdir(parents=True, exist_ok=True)
        overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
        stem, suffix, i = target.stem, target.suffix, 1
        while target.exists() and not overwrite:
            if target.read_bytes() == data:  # the same image: not saved twice (ComfyUI's rule)
                break
            target = target.with_name(f"{stem} ({i}){suffix}")
            i += 1
        else:
            target.write_bytes(data)
        return JSONResponse({"name": target.name, "subfolder": subfolder, "type": kind})

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        sid = ws.query_params.get("clientId") or os.urandom(16).hex()
        api.hub.sockets[sid] = ws
        try:
            await ws.send_text(json.dumps({"type": "status", "data": {"status": api.queue_info(), "sid": sid}}))
            while True:
                await ws.receive_text()  # clients' messages (feature flags) are read and ignored
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if api.hub.sockets.get(sid) is ws:
                del api.hub.sockets[sid]

    # -- /api/v1 (api_v1.py: the types, the OpenAPI document, documents and events) -----------------
    from starlette.responses import StreamingResponse

    from . import api_v1 as v1

    docs = v1.Documents(hist)
    from .rooms import Rooms  # Yjs rooms of the graph documents, the standalone canvas at /

    rooms = Rooms(docs, api)

    def typed(value: Any, status: int = 200) -> Any:
        return Response(v1.encode(value), status_code=status, media_type="application/json")

    async def v1_list(request: Any) -> Any:
        return typed(docs.list())

    async def v1_create(request: Any) -> Any:
        return typed(docs.create(v1.decode(await request.body(), v1.GraphIn)), 201)

    async def v1_get(request: Any) -> Any:
        return typed(docs.get(request.path_params["id"]))

    async def v1_patch(request: Any) -> Any:
        return typed(docs.patch(request.path_params["id"], v1.decode(await request.body(), v1.GraphPatch)))

    async def v1_delete(request: Any) -> Any:
        docs.delete(request.path_params["id"])
        return Response(status_code=204)

    async def v1_validate(request: Any) -> Any:
        return typed(docs.validate(request.path_params["id"]))

    async def v1_run(request: Any) -> Any:
        body = v1.decode(await request.body(), v1.RunRequest)
        doc_id = request.path_params["id"]
        try:
            item = rooms.runs.submit(doc_id, priority=body.priority, origin="api", outputs=body.outputs)
        except ValidationError as exc:
            raise RequestError(f"graph {doc_id!r} has {len(exc.problems)} problem(s): "
                               + "; ".join(f"[{p.code}] {p.message}" for p in exc.problems[:5]),
                               code="VE-100", hint="POST .../validate lists them all") from None
        return typed(v1.run_out(api.queue, item.id), 202)

    def _item(request: Any) -> int:
        raw = request.path_params["id"]
        if not str(raw).isdigit():
            raise RequestError(f"run id {raw!r} is not a number", code="VE-1001")
        return int(raw)

    async def v1_run_get(request: Any) -> Any:
        return typed(v1.run_out(api.queue, _item(request)))

    async def v1_events(request: Any) -> Any:
        item_id = _item(request)
        v1.run_out(api.queue, item_id)  # 404 for an unknown run
        api.events.loop = asyncio.get_running_loop()
        return StreamingResponse(api.events.stream(item_id, lambda: api.queue.item(item_id).done),
                                 media_type="text/event-stream")

    async def v1_openapi(request: Any) -> Any:
        return JSONResponse(v1.openapi())

    routes = [
        Route("/api/v1/graphs", v1_list, methods=["GET"]), Route("/api/v1/graphs", v1_create, methods=["POST"]),
        Route("/api/v1/graphs/{id}", v1_get, methods=["GET"]), Route("/api/v1/graphs/{id}", v1_patch, methods=["PATCH"]),
        Route("/api/v1/graphs/{id}", v1_delete, methods=["DELETE"]),
        Route("/api/v1/graphs/{id}/validate", v1_validate, methods=["POST"]),
        Route("/api/v1/graphs/{id}/run", v1_run, methods=["POST"]),
        Route("/api/v1/runs/{id}", v1_run_get, methods=["GET"]),
        Route("/api/v1/runs/{id}/events", v1_events, methods=["GET"]),
        Route("/api/v1/openapi.json", v1_openapi, methods=["GET"]),
        Route("/prompt", post_prompt, methods=["POST"]), Route("/prompt", get_prompt, methods=["GET"]),
        Route("/queue", get_queue, methods=["GET"]), Route("/queue", post_queue, methods=["POST"]),
        Route("/history", get_history, methods=["GET"]), Route("/history", post_history, methods=["POST"]),
        Route("/history/{prompt_id}", get_history_one, methods=["GET"]),
        Route("/interrupt", interrupt, methods=["POST"]), Route("/free", free, methods=["POST"]),
        Route("/object_info", object_info, methods=["GET"]),
        Route("/object_info/{node_class}", object_info, methods=["GET"]),
        Route("/system_stats", system_stats, methods=["GET"]), Route("/metrics", metrics, methods=["GET"]),
        Route("/view", view, methods=["GET"]), Route("/upload/image", upload_image, methods=["POST"]),
        WebSocketRoute("/ws", websocket),
    ]
    routes += rooms.routes()

    async def vortex_error(request: Any, exc: Exception) -> Any:
        assert isinstance(exc, VortexError)
        return _error(exc, getattr(exc, "status", 400))

    async def internal(request: Any, exc: Exception) -> Any:
        log.exception("request %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": {"code": "VE-000", "message": f"internal error: {type(exc).__name__}: {exc}",
                                       "hint": "the server goes on; report this with the request"}}, status_code=500)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={VortexError: vortex_error,
                                                                         Exception: internal})
    app.state.api = api
    return Guard(app, token, max_body())


def serve(host: str = "127.0.0.1", port: int = 8188, *, token: str | None = None,
          models: str | None = None, previews: bool = False) -> None:
    """Run the server until interrupted (``vortex serve``)."""
    import uvicorn

    from ..telemetry import configure_logging

    configure_logging()
    token = token or os.environ.get("VORTEX_SERVER_TOKEN") or None
    if host not in LOOPBACK and not token:
        raise RequestError(f"vortex serve on {host} would let anyone who can reach this machine run graphs",
                           code="VE-1003", hint="give --token (or VORTEX_SERVER_TOKEN), or bind 127.0.0.1")
    if models:
        os.environ["VORTEX_MODELS_DIR"] = str(Path(models).resolve())
    app = create_app(token=token, previews=previews)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        print(f"vortex serve: listening on http://{host}:{bound}", flush=True)
        await task

    asyncio.run(main())
