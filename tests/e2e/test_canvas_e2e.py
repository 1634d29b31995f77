"""The canvas in a real JupyterLab in real Chromium (DESIGN.md §8, issue 5 acceptance).

Tests share one JupyterLab, one browser and the notebook page ``nb`` (module fixtures) and
run in file order: render, drag, connect, Python edits, run, two pages, malformed update.
"""

from __future__ import annotations

import ast
import json
import time
from typing import Any

import pytest

from .lab import LabPage

pytestmark = pytest.mark.e2e

CANVAS = ".vx-root canvas"


def kernel(nb: LabPage, expr: str) -> Any:
    """Evaluate ``expr`` in the notebook's kernel and return it as a Python literal."""
    return ast.literal_eval(nb.kexec(f"print(repr({expr}))").strip())


def canvas_origin(nb: LabPage, index: int = 0) -> tuple[float, float]:
    box = nb.page.query_selector_all(CANVAS)[index].bounding_box()
    assert box is not None
    return box["x"], box["y"]


def drag(nb: LabPage, start: tuple[float, float], end: tuple[float, float], index: int = 0) -> None:
    """A real pointer drag between two canvas-relative points."""
    ox, oy = canvas_origin(nb, index)
    mouse = nb.page.mouse
    mouse.move(ox + start[0], oy + start[1])
    mouse.down()
    mouse.move(ox + (start[0] + end[0]) / 2, oy + (start[1] + end[1]) / 2, steps=5)
    mouse.move(ox + end[0], oy + end[1], steps=5)
    mouse.up()


def edges_into(nb: LabPage, dst: str) -> list[tuple[str, int, str, str]]:
    return kernel(nb, f"[(e.src, e.src_output, e.dst, e.dst_input) for e in g.model.edges() if e.dst == {dst!r}]")


SNAPSHOT = "() => JSON.stringify(document.querySelector('.vx-root').__vortex.doc.getMap('nodes').toJSON())"


def converged(*pages: LabPage, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until every page's replica holds the same nodes (key order may differ); return them."""
    deadline = time.monotonic() + timeout
    while True:
        snapshots = [json.loads(p.page.evaluate(SNAPSHOT)) for p in pages]
        if all(s == snapshots[0] for s in snapshots) or time.monotonic() > deadline:
            assert all(s == snapshots[0] for s in snapshots), "the replicas did not converge"
            return snapshots[0]
        pages[0].page.wait_for_timeout(100)


def test_the_canvas_renders_the_graph_without_console_errors(nb: LabPage) -> None:
    nb.hook("h.fit()")
    # scoped to the first canvas: the notebook's second cell shows another one
    nb.page.wait_for_function(
        "() => document.querySelector('.vx-root').querySelectorAll('[role=listitem]').length === 6")
    items = nb.page.eval_on_selector(
        ".vx-root", "r => [...r.querySelectorAll('[role=listitem]')].map(e => [e.dataset.nodeId, e.dataset.nodeType])")
    assert sorted(map(tuple, items)) == sorted([
        ("load", "LoadImage"), ("invert", "ImageInvert"), ("preview", "PreviewImage"),
        ("preview2", "PreviewImage"), ("add1", "IntAdd"), ("text", "PrimitiveString")])
    assert nb.hook("h.frames()") > 0
    nb.screenshot("01-rendered")
    assert kernel(nb, "c.js_errors") == []
    assert nb.console_errors == []


def test_dragging_a_node_moves_it_in_the_kernel_graph(nb: LabPage) -> None:
    before = kernel(nb, "g.nodes['add1'].pos")
    rect = nb.hook("h.nodeRect('add1')")
    zoom = nb.hook("h.view.zoom")
    start = (rect["x"] + rect["w"] / 2, rect["y"] + 10)
    drag(nb, start, (start[0] + 60, start[1] + 40))
    # a drag is written every 100 ms and on release: wait for the release's write to arrive
    expected = (before[0] + 60 / zoom, before[1] + 40 / zoom)
    deadline = time.monotonic() + 10
    after = kernel(nb, "g.nodes['add1'].pos")
    while abs(after[0] - expected[0]) > 2 / zoom and time.monotonic() < deadline:
        time.sleep(0.1)
        after = kernel(nb, "g.nodes['add1'].pos")
    assert after[0] - before[0] == pytest.approx(60 / zoom, abs=2 / zoom)
    assert after[1] - before[1] == pytest.approx(40 / zoom, abs=2 / zoom)
    nb.screenshot("02-dragged")


def test_connecting_compatible_ports_adds_the_edge_and_incompatible_ones_are_refused(nb: LabPage) -> None:
    src = nb.hook("h.portPosition('invert', 'output', 0)")
    dst = nb.hook("h.portPosition('preview2', 'input', 'images')")
    assert src and dst, "the test hook must know both sockets"
    drag(nb, tuple(src), tuple(dst))
    nb.page.wait_for_timeout(300)
    assert edges_into(nb, "preview2") == [("invert", 0, "preview2", "images")]
    bad_src = nb.hook("h.portPosition('text', 'output', 0)")  # STRING into IMAGE
    drag(nb, tuple(bad_src), tuple(dst))
    toast = nb.page.wait_for_selector(".vx-root .vx-toast", timeout=5_000)
    assert "STRING" in toast.inner_text() and "IMAGE" in toast.inner_text()
    nb.screenshot("03-refused-connection")
    assert edges_into(nb, "preview2") == [("invert", 0, "preview2", "images")]


def test_a_param_change_in_python_shows_on_the_canvas(nb: LabPage) -> None:
    nb.kexec("g.nodes['add1'].params['b'] = 41\ng.nodes['text'].title = 'greeting'")
    nb.page.wait_for_function(
        "() => { const h = document.querySelector('.vx-root').__vortex; const n = h.doc.getMap('nodes');"
        " return n.get('add1').get('params').get('b') === 41 && n.get('text').get('title') === 'greeting'; }",
        timeout=5_000)
    nb.screenshot("04-python-edit")


def test_a_node_added_from_the_palette_and_deleted_by_key_follows_in_the_kernel(nb: LabPage) -> None:
    nb.page.click(".vx-root .vx-btn-add")
    nb.page.fill(".vx-root .vx-palette-input", "IntMultiply")
    nb.page.keyboard.press("Enter")
    nb.page.wait_for_timeout(300)
    added = kernel(nb, "[n.id for n in g.model.nodes.values() if n.type == 'IntMultiply']")
    assert len(added) == 1 and added[0].startswith("n") and len(added[0]) == 9  # "n" + 8 base36
    params = kernel(nb, f"[(k, type(v).__name__) for k, v in g.model.nodes[{added[0]!r}].params.items()]")
    assert params and all(t == "int" for _, t in params), params  # INT widgets arrive as int, not float
    nb.screenshot("04b-palette-added")
    rect = nb.hook("h.nodeRect(a)", added[0])
    ox, oy = canvas_origin(nb)
    nb.page.mouse.click(ox + rect["x"] + rect["w"] / 2, oy + rect["y"] + 10)
    assert nb.hook("h.selection()") == [added[0]]
    nb.page.keyboard.press("Delete")
    nb.page.wait_for_timeout(300)
    assert kernel(nb, f"{added[0]!r} in g.model.nodes") is False


RED_INVERTED = "([x, y, w, h]) => { const cv = document.querySelector('.vx-root canvas');" \
    " const s = cv.width / cv.clientWidth; const d = cv.getContext('2d').getImageData(" \
    "Math.round(x * s), Math.round(y * s), Math.round(w * s), Math.round(h * s)).data; let n = 0;" \
    " for (let i = 0; i < d.length; i += 4) if (d[i] < 40 && d[i+1] > 215 && d[i+2] > 215) n++; return n; }"


def test_run_shows_progress_then_the_preview_on_the_node_and_inline(nb: LabPage) -> None:
    nb.page.evaluate(
        "() => { const h = document.querySelector('.vx-root').__vortex; window.__vxSeen = new Set();"
        " window.__vxPoll = setInterval(() => { for (const s of Object.values(h.states())) window.__vxSeen.add(s); }, 5); }")
    nb.page.click(".vx-root .vx-btn-run")
    img = nb.page.wait_for_selector(".vx-root img.vx-output-image[data-node='preview']", timeout=90_000)
    nb.page.wait_for_function("() => document.querySelector('.vx-root').__vortex.states().preview === 'done'")
    seen = set(nb.page.evaluate("() => { clearInterval(window.__vxPoll); return [...window.__vxSeen]; }"))
    assert {"queued", "running"} & seen and "done" in seen
    natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert natural == [48, 48]
    rect = nb.hook("h.nodeRect('preview')")
    nb.hook("0")  # flush a frame with the image drawn on the node
    cyan = nb.page.evaluate(RED_INVERTED, [rect["x"], rect["y"], rect["w"], rect["h"]])
    assert cyan > 50, "the inverted (cyan) preview must be drawn on the PreviewImage node"
    mime, final, data = kernel(nb, "c.images['preview'][:2] + (len(c.images['preview'][2]),)")
    assert (mime, final) == ("image/png", True) and data > 0
    nb.screenshot("05-run-preview")


def test_two_pages_on_the_same_notebook_see_each_others_edits_and_converge(nb: LabPage, lab: Any,
                                                                        browser_context: Any) -> None:
    nb.command("docmanager:save")
    nb.page.wait_for_timeout(500)
    other = LabPage(browser_context.new_page(), lab)
    other.open("canvas.ipynb", "w2")
    other.canvas(0, timeout=60_000)
    # page 1 moves a node through its doc; page 2 drags another with the mouse
    nb.page.evaluate("() => { const d = document.querySelector('.vx-root').__vortex.doc;"
                     " d.transact(() => d.getMap('nodes').get('load').set('x', -150)); }")
    rect = other.hook("h.nodeRect('preview2')")
    start = (rect["x"] + rect["w"] / 2, rect["y"] + 10)
    drag(other, start, (start[0] - 50, start[1] + 30))
    other.page.wait_for_function(
        "() => document.querySelector('.vx-root').__vortex.doc.getMap('nodes').get('load').get('x') === -150",
        timeout=5_000)
    # simultaneous edits of one param from both pages: every replica ends up with the same value
    for page, value in ((nb, 111), (other, 222)):
        page.page.evaluate("(v) => { const d = document.querySelector('.vx-root').__vortex.doc;"
                           " d.getMap('nodes').get('add1').get('params').set('a', v); }", value)
    nodes = converged(nb, other)
    assert nodes["preview2"]["x"] == kernel(nb, "g.nodes['preview2'].pos[0]")
    assert kernel(nb, "g.nodes['load'].pos[0]") == -150
    assert kernel(nb, "g.nodes['add1'].params['a']") == nodes["add1"]["params"]["a"] in (111, 222)
    other.screenshot("06-second-page")
    assert other.console_errors == []
    other.page.close()


def test_a_malformed_update_from_the_page_is_rejected_and_the_graph_stays_intact(nb: LabPage) -> None:
    before = kernel(nb, "g.to_json()")
    comm_id = kernel(nb, "c.model_id")
    rejected = kernel(nb, "c.session.relay.rejected")
    # a second kernel connection speaks on the widget's comm like a hostile page would
    nb.page.evaluate("""async (commId) => {
      const app = window.jupyterapp, kernel = app.shell.currentWidget.sessionContext.session.kernel;
      const conn = app.serviceManager.kernels.connectTo({ model: kernel.model, handleComms: true });
      await conn.info;
      const comm = conn.createComm("jupyter.widget", commId);
      const junk = new Uint8Array([0, 2, 12, 1, 250, 250, 250, 250, 250, 250, 250, 250, 7, 7, 7]);
      comm.send({ method: "custom", content: { t: "y" } }, undefined, [junk.buffer]);
      const bad = new Uint8Array([0, 2, 5, 0, 0, 0, 0]);
      comm.send({ method: "custom", content: { t: "y" } }, undefined, [bad.buffer]);
      await new Promise((r) => setTimeout(r, 500));
      conn.dispose();
    }""", comm_id)
    toast = nb.page.wait_for_selector(".vx-root .vx-toast >> text=VE-600", timeout=5_000)
    assert "rejected" in toast.inner_text()
    assert kernel(nb, "c.session.relay.rejected") >= rejected + 1
    assert kernel(nb, "g.to_json()") == before
    nb.screenshot("07-malformed-rejected")


NODE_RECTS = "(i) => { const h = document.querySelectorAll('.vx-root')[i].__vortex; h.flush();" \
    " return Object.fromEntries([...h.doc.getMap('nodes').keys()].map((k) => [k, h.nodeRect(k)])); }"
CANVAS_SIZE = "(i) => { const c = document.querySelectorAll('.vx-root canvas')[i];" \
    " return [c.width, c.height, Math.round(c.clientWidth * devicePixelRatio), Math.round(c.clientHeight * devicePixelRatio)]; }"


def framed_without_overlap(nb: LabPage, index: int) -> dict[str, Any]:
    rects = nb.page.evaluate(NODE_RECTS, index)
    box = nb.page.query_selector_all(CANVAS)[index].bounding_box()
    assert box is not None
    for a, b in ((a, b) for a in rects for b in rects if a < b):
        ra, rb = rects[a], rects[b]
        assert not (ra["x"] < rb["x"] + rb["w"] and rb["x"] < ra["x"] + ra["w"]
                    and ra["y"] < rb["y"] + rb["h"] and rb["y"] < ra["y"] + ra["h"]), f"{a} overlaps {b}"
    for node_id, r in rects.items():
        assert r["x"] >= 0 and r["y"] >= 0, node_id
        assert r["x"] + r["w"] <= box["width"] + 1 and r["y"] + r["h"] <= box["height"] + 1, node_id
    return rects


def test_a_graph_without_positions_opens_laid_out_and_stays_framed_and_drawn_across_resize_and_theme(
        nb: LabPage) -> None:
    root = nb.canvas(1, timeout=30_000)
    root.scroll_into_view_if_needed()
    rects = framed_without_overlap(nb, 1)
    assert rects["4"]["x"] < rects["3"]["x"] < rects["8"]["x"] < rects["9"]["x"]  # loader -> sampler -> decode -> save
    root.screenshot(path=str(nb.artifacts() / "08-default-graph-laid-out.png"))
    size = nb.page.viewport_size
    try:
        nb.page.set_viewport_size({"width": 760, "height": size["height"]})
        nb.page.wait_for_timeout(600)
        root.scroll_into_view_if_needed()
        framed_without_overlap(nb, 1)  # re-fitted to the narrower canvas, not cut off
        nb.command("apputils:change-theme", {"theme": "JupyterLab Dark"})
        nb.page.wait_for_timeout(1500)
        root.scroll_into_view_if_needed()
        nb.page.wait_for_timeout(300)
        w, h, cw, ch = nb.page.evaluate(CANVAS_SIZE, 1)
        assert (w, h) == (cw, ch), "the canvas backing store must follow its size (a 1x1 store draws blank)"
        assert nb.hook("h.drawStats().visible", index=1) == 7  # every node of the default graph drawn
        nb.screenshot("09-narrow-dark-theme")
    finally:
        nb.command("apputils:change-theme", {"theme": "JupyterLab Light"})
        nb.page.set_viewport_size(size)
    assert nb.console_errors == []


def test_the_wheel_is_left_to_the_notebook_over_a_canvas_until_it_is_clicked_then_zooms_it(nb: LabPage) -> None:
    root = nb.canvas(1)
    nb.page.evaluate("() => { document.activeElement && document.activeElement.blur();"
                     " window.__vxWheel = []; window.addEventListener('wheel',"
                     " (e) => window.__vxWheel.push([e.defaultPrevented, e.target.className]), { passive: true }); }")
    root.scroll_into_view_if_needed()
    nb.page.wait_for_timeout(300)  # the previous test's viewport/theme changes re-flow the notebook
    box = nb.page.query_selector_all(CANVAS)[1].bounding_box()
    zoom = nb.hook("h.view.zoom", index=1)
    nb.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    nb.page.mouse.wheel(0, -200)
    nb.page.wait_for_function("() => window.__vxWheel.length > 0")
    # default not prevented: the browser scrolls the notebook (it used to zoom the canvas and
    # trap the page's scrolling); whether JupyterLab then scrolls is not the canvas's business
    assert nb.page.evaluate("() => window.__vxWheel") == [[False, "vx-canvas"]]
    assert nb.hook("h.view.zoom", index=1) == zoom
    # read through the handle: JupyterLab may detach the cell once the notebook scrolled
    assert "Click the canvas" in root.evaluate("r => r.querySelector('.vx-toast-info').textContent")
    root.scroll_into_view_if_needed()
    box = nb.page.query_selector_all(CANVAS)[1].bounding_box()
    nb.page.mouse.click(box["x"] + 5, box["y"] + box["height"] - 5)  # empty corner: engages the canvas
    nb.page.mouse.wheel(0, -200)
    nb.page.wait_for_function("() => window.__vxWheel.length > 1")
    assert nb.page.evaluate("() => window.__vxWheel")[-1] == [True, "vx-canvas"]
    assert nb.hook("h.view.zoom", index=1) > zoom


LEFT_COLLAPSED = "() => window.jupyterapp.shell.leftCollapsed"


def test_ctrl_b_on_the_canvas_bypasses_the_selected_node_and_elsewhere_stays_jupyterlabs(nb: LabPage) -> None:
    root = nb.canvas(0)
    root.scroll_into_view_if_needed()
    nb.page.wait_for_timeout(300)
    assert kernel(nb, "g.model.mode('add1')") == 0
    rect = nb.hook("h.nodeRect('add1')")
    ox, oy = canvas_origin(nb)
    nb.page.mouse.click(ox + rect["x"] + rect["w"] / 2, oy + rect["y"] + 10)  # select it (focuses the canvas)
    assert nb.hook("h.selection()") == ["add1"]
    sidebar = nb.page.evaluate(LEFT_COLLAPSED)
    nb.page.keyboard.press("Control+b")
    deadline = time.monotonic() + 10
    while kernel(nb, "g.model.mode('add1')") != 4:
        assert time.monotonic() < deadline, "the bypass never reached the kernel"
        nb.page.wait_for_timeout(100)
    assert kernel(nb, "g['add1'].mode") == "bypassed"
    nb.page.wait_for_function(
        "() => { const h = document.querySelector('.vx-root').__vortex; h.flush();"
        " const li = document.querySelector('.vx-root [role=listitem][data-node-id=add1]');"
        " return li && li.dataset.mode === 'bypassed'; }", timeout=5_000)
    assert nb.page.evaluate(LEFT_COLLAPSED) == sidebar  # JupyterLab's Ctrl+B (left sidebar) left alone
    nb.screenshot("10-bypassed")
    nb.page.keyboard.press("Control+z")  # one undo step restores it, in the kernel too
    deadline = time.monotonic() + 10
    while kernel(nb, "g.model.mode('add1')") != 0:
        assert time.monotonic() < deadline, "undo of the bypass never reached the kernel"
        nb.page.wait_for_timeout(100)
    # focus elsewhere: the canvas does not take Ctrl+B, JupyterLab toggles its sidebar as usual
    nb.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    nb.page.keyboard.press("Control+b")
    nb.page.wait_for_function(f"() => window.jupyterapp.shell.leftCollapsed === {str(not sidebar).lower()}")
    nb.page.keyboard.press("Control+b")
    assert kernel(nb, "g.model.mode('add1')") == 0
    assert nb.console_errors == []


def test_resizing_a_node_and_renaming_and_moving_a_group_by_mouse_reach_the_kernel(nb: LabPage) -> None:
    root = nb.canvas(0)
    root.scroll_into_view_if_needed()
    nb.page.wait_for_timeout(300)
    x, y = kernel(nb, "g.nodes['add1'].pos")
    nb.hook("h.setView(1, 80 - a[0], 80 - a[1])", [x, y])  # zoom 1 (grips drawn), add1 at (80, 80)
    rect = nb.hook("h.nodeRect('add1')")
    size = kernel(nb, "g.model.nodes['add1'].size")
    corner = (rect["x"] + rect["w"] - 3, rect["y"] + rect["h"] - 3)
    drag(nb, corner, (corner[0] + 90, corner[1] + 50))
    deadline = time.monotonic() + 10
    while kernel(nb, "g.model.nodes['add1'].size") == size:
        assert time.monotonic() < deadline, "the resize never reached the kernel"
        nb.page.wait_for_timeout(100)
    w, h = kernel(nb, "g.model.nodes['add1'].size")
    assert w == pytest.approx(rect["w"] + 90, abs=2) and h == pytest.approx(rect["h"] + 50, abs=2)
    # group it with the command palette's "Group selected nodes", then rename it by double-click
    ox, oy = canvas_origin(nb)
    nb.page.mouse.click(ox + rect["x"] + 40, oy + rect["y"] + 10)
    assert nb.hook("h.selection()") == ["add1"]
    nb.page.click(".vx-root .vx-btn-commands")
    nb.page.fill(".vx-root .vx-palette-input", "Group selected")
    nb.page.keyboard.press("Enter")
    gid = nb.page.wait_for_function(
        "() => [...document.querySelector('.vx-root').__vortex.doc.getMap('groups').keys()][0]").json_value()
    group = nb.hook("h.groupRect(a)", gid)
    nb.page.mouse.dblclick(ox + group["x"] + 30, oy + group["y"] + 10)
    nb.page.wait_for_selector(".vx-root .vx-title-editor", timeout=5_000)
    nb.page.keyboard.type("Math")
    nb.page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    while kernel(nb, "[gr['title'] for gr in g.model.groups]") != ["Math"]:
        assert time.monotonic() < deadline, "the group's new title never reached the kernel"
        nb.page.wait_for_timeout(100)
    # dragging the group's title bar carries the node inside it
    before = kernel(nb, "g.nodes['add1'].pos")
    drag(nb, (group["x"] + 60, group["y"] + 10), (group["x"] + 100, group["y"] + 40))
    deadline = time.monotonic() + 10
    while kernel(nb, "g.nodes['add1'].pos") == before:
        assert time.monotonic() < deadline, "the group move never reached the kernel"
        nb.page.wait_for_timeout(100)
    after = kernel(nb, "g.nodes['add1'].pos")
    assert (after[0] - before[0], after[1] - before[1]) == (pytest.approx(40, abs=2), pytest.approx(30, abs=2))
    assert kernel(nb, "g.model.groups[0]['bounding'][0]") == pytest.approx(group["x"] - 80 + x + 40, abs=2)
    nb.screenshot("11-resized-renamed-group")
    assert kernel(nb, "c.js_errors") == []
    assert nb.console_errors == []
