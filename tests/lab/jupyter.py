"""A real Jupyter server with real-time collaboration, for the room tests (no browser).

Started as ``python -m jupyter_server`` in a temporary root with its own config, runtime and
data folders, a token, and jupyter-collaboration's server extension on (as installed). Its
document rooms load and save files through ``vortex_jupyter.lab.ydoc.YVortex`` (the
``jupyter_ydoc`` entry point of this package).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterServer:
    def __init__(self, root: Path, collaboration: bool = True) -> None:
        self.root = root / "files"
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = root / "server.log"
        self.collaboration = collaboration
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                          ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")):
            (self.home / sub).mkdir(exist_ok=True)
            env[name] = str(self.home / sub)
        return env

    def start(self, timeout: float = 60.0) -> JupyterServer:
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.allow_root=True", "--YDocExtension.document_save_delay=0.2",
               "--YDocExtension.document_cleanup_delay=1"]
        if not self.collaboration:
            cmd.append("--ServerApp.jpserver_extensions={'jupyter_server_ydoc': False}")
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=self.env(),
                                     cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}api/status?token={self.token}", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"jupyter server did not start:\n{self.log.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
