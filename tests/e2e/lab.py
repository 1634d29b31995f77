"""A real JupyterLab and a real Chromium for the canvas end-to-end tests (DESIGN.md §8).

``JupyterLab`` starts ``jupyter lab`` on 127.0.0.1 with a token and
``--LabApp.expose_app_in_browser=True`` in a temporary root (its own config, runtime,
settings and workspace dirs, so nothing of the developer's setup leaks in) and waits for
``/api/status``. ``LabPage`` drives one browser page: open a notebook, run its cells through
``window.jupyterapp.commands.execute`` (keystrokes proved flaky), run code in the notebook's
kernel and read its output, and find the canvas widget's test hook (``.vx-root.__vortex``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notebook_json(cells: list[str]) -> str:
    """A minimal nbformat 4 notebook with the given code cells."""
    return json.dumps({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
             "source": src}
            for i, src in enumerate(cells)
        ],
    })


class JupyterLab:
    def __init__(self, root: Path, extra_args: list[str] | None = None) -> None:
        self.root = root
        self.extra_args = list(extra_args or [])
        self.notebooks = root / "notebooks"
        self.notebooks.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "jupyterlab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                          ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                          ("IPYTHONDIR", "ipython"), ("VORTEX_OUTPUT_DIR", "output"), ("VORTEX_INPUT_DIR", "input")):
            path = self.root / sub
            path.mkdir(exist_ok=True)
            env[name] = str(path)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout: float = 90.0) -> None:
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            f"--IdentityProvider.token={self.token}", "--LabApp.expose_app_in_browser=True",
            f"--ServerApp.root_dir={self.notebooks}", "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *self.extra_args,
        ]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                     cwd=self.notebooks, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"jupyter lab did not answer /api/status in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def log_tail(self, nbytes: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-nbytes:]
        except OSError:
            return ""

    def quiet(self) -> None:
        """No "get Jupyter news?" popup over the page (it covers the canvas)."""
        settings = self.root / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')

    def write_notebook(self, name: str, cells: list[str]) -> str:
        (self.notebooks / name).write_text(notebook_json(cells))
        return name

    def lab_url(self, path: str, workspace: str = "w1") -> str:
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"


# Runs code in the kernel of the current notebook and returns its text output (no cell needed).
_KEXEC = """async (code) => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let out = "", err = null;
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type, c = msg.content;
    if (t === "stream") out += c.text;
    else if (t === "execute_result") out += c.data["text/plain"];
    else if (t === "error") err = c.ename + ": " + c.evalue;
  };
  await future.done;
  if (err) throw new Error(err);
  return out;
}"""


class LabPage:
    """One browser page with one notebook open."""

    def __init__(self, page: Any, lab: JupyterLab) -> None:
        self.page, self.lab = page, lab
        self.console_errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))

    def open(self, path: str, workspace: str) -> None:
        self.page.goto(self.lab.lab_url(path, workspace))
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel", timeout=60_000)
        self.page.evaluate("async () => { const p = window.jupyterapp.shell.currentWidget;"
                           " await p.context.ready; await p.sessionContext.ready; }")
        self.kexec("1")  # the kernel answers: it is up

    def command(self, name: str, args: dict[str, Any] | None = None) -> Any:
        return self.page.evaluate("([n, a]) => window.jupyterapp.commands.execute(n, a)", [name, args or {}])

    def run_all(self) -> None:
        self.command("notebook:run-all-cells")

    def kexec(self, code: str) -> str:
        return str(self.page.evaluate(_KEXEC, code))

    def canvas(self, index: int = 0, timeout: float = 30_000) -> Any:
        """The ``index``-th canvas root element once its view has synced with the kernel."""
        self.page.wait_for_function(
            "(i) => { const r = document.querySelectorAll('.vx-root')[i];"
            " return r && r.__vortex && r.__vortex.synced(); }", arg=index, timeout=timeout)
        return self.page.query_selector_all(".vx-root")[index]

    def hook(self, expr: str, arg: Any = None, index: int = 0) -> Any:
        """Evaluate ``expr`` with ``h`` bound to the canvas test hook (and ``a`` to ``arg``)."""
        return self.page.evaluate(
            f"([i, a]) => {{ const h = document.querySelectorAll('.vx-root')[i].__vortex; h.flush(); return {expr}; }}",
            [index, arg])

    @staticmethod
    def artifacts() -> Path:
        out = Path(os.environ.get("VORTEX_E2E_ARTIFACTS", "test-artifacts/e2e"))
        out.mkdir(parents=True, exist_ok=True)
        return out

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=str(self.artifacts() / f"{name}.png"))
