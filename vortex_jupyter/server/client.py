"""``vortex run FILE --server URL``: run a graph on a running ``vortex serve`` (or ComfyUI).

The graph is sent as ComfyUI's API prompt to ``POST /prompt``; ``/ws`` is followed (progress
on stderr) until ``executing`` with ``node: null`` for it; its output images are fetched from
``/history`` and ``/view`` into ``-o DIR``. The prompt joins that server's queue, so it waits
its turn behind the notebook's and other clients' runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, TextIO

from ..errors import RequestError, VortexError


def _request(url: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload = resp.read()
            return json.loads(payload) if resp.headers.get_content_type() == "application/json" else payload
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            detail = json.loads(text)
        except ValueError:
            detail = {"error": {"message": text[:500]}}
        raise ServerRefused(err.code, detail) from None
    except urllib.error.URLError as err:
        raise RequestError(f"cannot reach {url}: {err.reason}", code="VE-1004",
                           hint="start it with `vortex serve`, or check --server") from None


class ServerRefused(VortexError):
    code = "VE-1001"

    def __init__(self, status: int, detail: dict[str, Any]) -> None:
        error = detail.get("error", {}) if isinstance(detail, dict) else {}
        lines = [f"the server answered {status}: {error.get('message', '')}"]
        for node, entry in (detail.get("node_errors") or {}).items() if isinstance(detail, dict) else []:
            for e in entry.get("errors", []):
                lines.append(f"  node {node} ({entry.get('class_type', '')}): [{e.get('type')}] {e.get('message')}")
        super().__init__("\n".join(lines), hint=error.get("hint") or None)
        self.code = str(error.get("code") or self.code)


def run_remote(graph: Any, url: str, out_dir: Path, *, token: str | None = None, quiet: bool = False,
               err: TextIO = sys.stderr) -> tuple[str, list[Path], dict[str, Any]]:
    """Queue ``graph`` on the server at ``url``, follow it, download its images; returns
    ``(prompt_id, files, history entry)``."""
    import websockets

    client_id = uuid.uuid4().hex
    parsed = urllib.parse.urlsplit(url)
    ws_url = f"{'wss' if parsed.scheme == 'https' else 'ws'}://{parsed.netloc}/ws?clientId={client_id}"
    if token:
        ws_url += f"&token={urllib.parse.quote(token)}"

    async def follow() -> str:
        async with websockets.connect(ws_url, max_size=None) as ws:
            await ws.recv()  # status
            resp = _request(url, "/prompt", {"prompt": graph.to_comfy_api(), "client_id": client_id}, token)
            prompt_id = str(resp["prompt_id"])
            while True:
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    continue
                data = json.loads(msg)
                kind, body = data.get("type"), data.get("data", {})
                if body.get("prompt_id") not in (None, prompt_id):
                    continue
                if kind == "executing" and body.get("node") is None and body.get("prompt_id") == prompt_id:
                    return prompt_id
                if quiet:
                    continue
                if kind == "executing":
                    print(f"  running node {body.get('node')}", file=err)
                elif kind == "progress":
                    print(f"  node {body.get('node')}: {body.get('value')}/{body.get('max')}", file=err)
                elif kind == "execution_error":
                    print(f"  node {body.get('node_id')} failed: {body.get('exception_message')}", file=err)

    try:
        prompt_id = asyncio.run(follow())
    except OSError as exc:  # refused, unreachable, reset
        raise RequestError(f"cannot reach {url}: {exc}", code="VE-1004",
                           hint="start it with `vortex serve`, or check --server") from None
    entry = _request(url, f"/history/{prompt_id}", token=token).get(prompt_id, {})
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for ui in entry.get("outputs", {}).values():
        for image in ui.get("images", []):
            query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
            data = _request(url, f"/view?{query}", token=token)
            target = out_dir / Path(str(image["filename"])).name
            target.write_bytes(data)
            files.append(target)
    return prompt_id, files, entry
