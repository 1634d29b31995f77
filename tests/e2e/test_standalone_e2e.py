"""The standalone canvas: ``vortex serve``'s page at ``/`` in real Chromium, no Jupyter.

The page lists the graph documents; ``/?graph=ID`` shows the document's nodes on the canvas,
synced with its room; an edit made in one page shows in a second one and reaches the stored
document; the Run button runs the graph on the server's queue and every page shows its nodes
done and its preview image. Screenshots go to ``test-artifacts/e2e/`` (``VORTEX_E2E_ARTIFACTS`` overrides).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server.test_comfy_api import Server  # (tests/ is on sys.path: e2e and server are top-level packages)

from .lab import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
GRAPH = {"1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
HOOK = "document.querySelector('.vx-root').__vortex"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (ROOT / "vortex_jupyter/static/standalone.js").is_file():
        pytest.fail("the canvas bundle is not built: npm --prefix js run build")
    srv = Server(tmp_path_factory.mktemp("standalone"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (DESIGN.md §8)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium")), executable_path=CHROMIUM, headless=False,
            args=CHROMIUM_ARGS, viewport={"width": 1200, "height": 800})
        try:
            yield ctx
        finally:
            ctx.close()


def _screenshot(page: Any, name: str) -> None:
    out = Path(os.environ.get("VORTEX_E2E_ARTIFACTS", ROOT / "test-artifacts" / "e2e"))
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"))


def _open(context: Any, url: str) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(f"() => !!document.querySelector('.vx-root') && {HOOK}.synced()", timeout=30_000)
    page.wait_for_function("() => document.querySelector('.vx-standalone-state').dataset.status === 'open'")
    page.errors = errors
    return page


def test_the_page_lists_documents_and_shows_a_document_s_nodes(server: Server, context: Any) -> None:
    status, doc = server.request("/api/v1/graphs", {"name": "adder", "graph": GRAPH})
    assert status == 201, doc
    listing = context.new_page()
    listing.goto(server.url + "/")
    listing.get_by_role("link", name="adder").first.click()
    listing.wait_for_url(f"**/?graph={doc['id']}")
    listing.close()

    a = _open(context, f"{server.url}/?graph={doc['id']}")
    a.wait_for_function("() => document.querySelectorAll('.vx-nodelist li[data-node-id]').length === 2")
    types = a.eval_on_selector_all(".vx-nodelist li[data-node-id]", "els => els.map(e => [e.dataset.nodeId, e.dataset.nodeType])")
    assert sorted(types) == [["1", "IntAdd"], ["2", "PreviewAny"]]
    assert a.evaluate(f"() => {HOOK}.drawStats().nodes") == 2
    assert a.eval_on_selector("strong", "e => e.textContent") == "adder"
    # the node specs came with the room's answer to hello: IntAdd has its output socket
    a.wait_for_function(f"() => {HOOK}.portPosition('1', 'output', 0) !== null", timeout=60_000)
    _screenshot(a, "standalone-canvas")

    b = _open(context, f"{server.url}/?graph={doc['id']}")
    a.evaluate(f"() => {HOOK}.setParam('1', 'a', 41)")
    b.wait_for_function(f"() => {HOOK}.doc.getMap('nodes').get('1').get('params').get('a') === 41")
    deadline = time.monotonic() + 15
    while True:
        node = next(n for n in server.request(f"/api/v1/graphs/{doc['id']}")[1]["graph"]["nodes"] if n["id"] == "1")
        if node["params"]["a"] == 41:
            break
        assert time.monotonic() < deadline, node
        time.sleep(0.1)
    assert a.errors == [] and b.errors == []
    b.evaluate(f"() => {HOOK}.addNode('n_new', 'IntAdd', 400, 200)")
    a.wait_for_function("() => document.querySelectorAll('.vx-nodelist li[data-node-id]').length === 3")


IMAGE_GRAPH = {"load": {"class_type": "LoadImage", "inputs": {"image": "red.png"}},
               "invert": {"class_type": "ImageInvert", "inputs": {"image": ["load", 0]}},
               "preview": {"class_type": "PreviewImage", "inputs": {"images": ["invert", 0]}},
               "save": {"class_type": "SaveImage", "inputs": {"images": ["invert", 0], "filename_prefix": "room"}}}


def test_the_run_button_runs_the_graph_and_every_page_shows_it_done_with_its_preview(server: Server,
                                                                                     context: Any) -> None:
    from PIL import Image

    (server.tmp / "in").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 48), (255, 0, 0)).save(server.tmp / "in" / "red.png")
    status, doc = server.request("/api/v1/graphs", {"name": "invert", "graph": IMAGE_GRAPH})
    assert status == 201, doc
    a = _open(context, f"{server.url}/?graph={doc['id']}")
    b = _open(context, f"{server.url}/?graph={doc['id']}")
    a.wait_for_function(f"() => {HOOK}.portPosition('load', 'output', 0) !== null", timeout=60_000)  # specs came
    a.click(".vx-root .vx-btn-run")
    for page in (a, b):  # the run's events reach every page of the room
        page.wait_for_function(f"() => ['load', 'invert', 'preview', 'save'].every(n => {HOOK}.states()[n] === 'done')",
                               timeout=120_000)
        img = page.wait_for_selector(".vx-root img.vx-output-image[data-node='preview']", timeout=30_000)
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img)
        assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [48, 48]  # the bytes came as a buffer
    a.wait_for_function("() => !document.querySelector('.vx-root .vx-btn-run').disabled")
    _screenshot(a, "standalone-run")
    # the history panel, answered by the room from the server's history file
    a.click(".vx-root .vx-btn-history")
    a.wait_for_selector(".vx-root .vx-history .vx-run-entry.vx-run-ok", timeout=30_000)
    assert "canvas" in a.inner_text(".vx-root .vx-history .vx-run-entry")
    a.click(".vx-root .vx-history .vx-history-tab-gallery")
    thumb = a.wait_for_selector(".vx-root .vx-history .vx-thumb img", timeout=30_000)  # a thumbnail buffer
    a.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=thumb)
    assert thumb.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [48, 48]
    _screenshot(a, "standalone-gallery")
    assert a.errors == [] and b.errors == []
