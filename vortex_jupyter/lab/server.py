"""The Jupyter server a kernel runs under: its URL, a token for it, its root folder.

A kernel started by a Jupyter server is its child process and inherits its environment;
the server writes a runtime file (``jpserver-<pid>.json`` in ``jupyter --runtime-dir``) with
its URL, token and root folder. ``find_server`` picks, in order:

1. ``VORTEX_JUPYTER_URL`` (+ ``VORTEX_JUPYTER_TOKEN``): set by hand when the rest fails;
2. the runtime file of the kernel's parent process (the server that started it);
3. the one runtime file whose root folder holds the kernel's working directory.

JupyterHub single-user servers pass ``JUPYTERHUB_API_TOKEN`` to kernels, which authenticates
the same way when the runtime file has no token. ``root_dir`` also works without a runtime
file: a kernel started for a session knows its path (``JPY_SESSION_NAME``, relative to the
root) and starts in that path's folder.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VortexError


@dataclass(frozen=True)
class ServerInfo:
    url: str  # base URL, ending with "/"
    token: str
    root: Path | None

    def api(self, path: str) -> str:
        return urllib.parse.urljoin(self.url, path.lstrip("/"))

    def ws(self, path: str) -> str:
        url = self.api(path)
        return "ws" + url[4:] if url.startswith("http") else url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """One JSON request to the server: (status, parsed body or None)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api(path), data=data, method=method,
                                     headers={**self.headers(), "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError) as exc:
            raise VortexError(f"the Jupyter server at {self.url} did not answer: {exc}",
                              hint="is it still running? set VORTEX_JUPYTER_URL if it moved") from None

    def relative(self, path: Path) -> str | None:
        """``path`` relative to the server's root ("a/b.json"), or ``None`` if outside it."""
        if self.root is None:
            return None
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None


def find_server() -> ServerInfo | None:
    """The Jupyter server this process runs under, or ``None``."""
    url = os.environ.get("VORTEX_JUPYTER_URL")
    if url:
        return ServerInfo(url.rstrip("/") + "/", os.environ.get("VORTEX_JUPYTER_TOKEN", ""), root_dir())
    candidates = _runtime_files()
    ppid = os.getppid()
    chosen = next((c for c in candidates if c.get("pid") == ppid), None)
    if chosen is None:
        here = Path.cwd().resolve()
        inside = [c for c in candidates if _holds(c.get("root_dir"), here)]
        chosen = inside[0] if len(inside) == 1 else None
    if chosen is None or not chosen.get("url"):
        return None
    token = str(chosen.get("token") or os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    root = Path(chosen["root_dir"]) if chosen.get("root_dir") else root_dir()
    return ServerInfo(str(chosen["url"]).rstrip("/") + "/", token, root)


def root_dir() -> Path | None:
    """The server's root folder as this kernel can tell it without asking the server
    (``None``: it cannot). Servers that name sessions by absolute path (jupyter_server 2.x
    does) tell nothing here; the runtime file does (``find_server``)."""
    session = os.environ.get("JPY_SESSION_NAME")
    if not session or os.path.isabs(session):
        return None
    folder = Path(session).parent
    cwd = Path.cwd().resolve()
    if folder == Path("."):
        return cwd
    parts = folder.parts
    if cwd.parts[-len(parts):] == parts:
        return Path(*cwd.parts[: -len(parts)]) if len(cwd.parts) > len(parts) else Path(cwd.anchor)
    return None


def _runtime_files() -> list[dict[str, Any]]:
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return []
    found = []
    for path in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            found.append(info)
    return found


def _holds(root: Any, path: Path) -> bool:
    if not root:
        return False
    try:
        path.relative_to(Path(str(root)).resolve())
        return True
    except ValueError:
        return False
