"""Fixtures for the browser tests: ONE JupyterLab and ONE Chromium for the whole module.

The notebook ``canvas.ipynb`` builds a small graph of built-in nodes (a red PNG -> invert ->
preview, plus math and string nodes to connect) and shows its canvas; a second cell shows
``vx.Graph.default()`` (no positions) as a second canvas. Screenshots go to
``test-artifacts/e2e/`` (gitignored; ``VORTEX_E2E_ARTIFACTS`` overrides).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, JupyterLab, LabPage

NOTEBOOK_CELLS = [
    """import vortex_jupyter as vx
g = vx.Graph()
load = g.add("LoadImage", id="load", image="red.png")
inv = g.add("ImageInvert", id="invert", image=load.out(0))
g.add("PreviewImage", id="preview", images=inv.out(0))
g.add("PreviewImage", id="preview2")
g.add("IntAdd", id="add1", a=1, b=2)
g.add("PrimitiveString", id="text", value="hello")
for node_id, pos in {"load": (0, 0), "invert": (320, 0), "preview": (640, 0),
                     "preview2": (640, 330), "add1": (0, 330), "text": (320, 330)}.items():
    g.nodes[node_id].pos = pos
c = g.canvas()
c""",
    # a graph with no positions at all (as built in Python / loaded from API JSON): laid out on display
    """g2 = vx.Graph.default()
g2""",
]


def _write_red_png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (48, 48), (255, 0, 0)).save(path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (DESIGN.md §8)")
    server = JupyterLab(tmp_path_factory.mktemp("lab"))
    env_dirs = server.env()  # makes the input/output dirs
    _write_red_png(Path(env_dirs["VORTEX_INPUT_DIR"]) / "red.png")
    settings = Path(env_dirs["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)  # no "get Jupyter news?" popup over the canvas
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    server.write_notebook("canvas.ipynb", NOTEBOOK_CELLS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser_context(lab: JupyterLab) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(lab.root / "chromium-profile"), executable_path=CHROMIUM, headless=False,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def nb(lab: JupyterLab, browser_context: Any) -> LabPage:
    """Page 1: canvas.ipynb opened and run; its canvas synced with the kernel."""
    page = LabPage(browser_context.new_page(), lab)
    page.open("canvas.ipynb", "w1")
    page.run_all()
    page.canvas(0, timeout=60_000)
    return page
