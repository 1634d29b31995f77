"""Drives the real widget bundle in headless Chromium against the fake kernel (no Jupyter).

A quick end-to-end check of the browser side alone: it renders, the accessible list
matches the canvas, dragging a node / connecting ports / the palette / undo / param editing
write to the kernel's doc, an incompatible link is refused with a toast, Run sends
``{"t":"run"}``, and run events and images show on the nodes. Exits non-zero on failure::

    python benchmarks/canvas/check_widget.py [--no-build] [--screenshot test-artifacts/canvas.png]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CHROMIUM_ARGS, ROOT, build, serve


def png(size: int = 64) -> bytes:
    """A small gradient PNG, as the kernel would send for a preview."""
    from PIL import Image

    img = Image.new("RGB", (size, size))
    img.putdata([(x * 4 % 256, y * 4 % 256, 128) for y in range(size) for x in range(size)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Page:
    def __init__(self, page: Any) -> None:
        self.page = page
        box = page.locator(".vx-canvas").bounding_box()
        self.ox, self.oy = box["x"], box["y"]

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def port(self, node: str, side: str, port: Any) -> tuple[float, float]:
        x, y = self.js("([n, s, p]) => vxDemo.hook.portPosition(n, s, p)", [node, side, port])
        return self.ox + x, self.oy + y

    def drag(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        m = self.page.mouse
        m.move(*a)
        m.down()
        m.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
        m.move(*b, steps=4)
        m.up()

    def kernel_node(self, node: str) -> Any:
        return self.js("(n) => vxDemo.kernel.doc.getMap('nodes').get(n)?.toJSON()", node)

    def edges(self) -> dict[str, Any]:
        return self.js("() => vxDemo.kernel.doc.getMap('edges').toJSON()")

    def items(self) -> list[dict[str, str]]:
        self.js("() => vxDemo.hook.flush()")
        return self.js("""() => [...document.querySelectorAll('.vx-nodelist li')].map(li => ({...li.dataset,
            label: li.getAttribute('aria-label')}))""")


def checks(p: Page, shot: Path | None) -> list[str]:
    fails: list[str] = []

    def expect(cond: bool, what: str) -> None:
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            fails.append(what)

    items = p.items()
    expect(sorted(i["nodeId"] for i in items) == ["load", "proc", "view"], "accessible list has the 3 visible nodes")
    expect(all(float(i["w"]) > 50 and i["state"] == "idle" for i in items), "list items carry screen rects and state")

    rect = p.js("() => vxDemo.hook.nodeRect('load')")
    start = (p.ox + rect["x"] + 40, p.oy + rect["y"] + 8)
    before = p.kernel_node("load")
    p.drag(start, (start[0] + 60, start[1] + 90))
    after = p.kernel_node("load")
    expect(after["x"] > before["x"] + 30 and after["y"] > before["y"] + 30, "dragging a node moves it in the kernel doc")

    p.drag(p.port("proc", "output", 0), p.port("view", "input", "images"))
    expect(p.edges().get("view:images", {}).get("src") == "proc", "drag output->input adds the edge in the kernel")

    p.drag(p.port("load", "output", 1), p.port("proc", "input", "image"))
    toast = p.page.locator(".vx-toast[role=alert]").last
    expect(toast.is_visible() and "MASK" in toast.inner_text(), "incompatible link refused with a toast naming types")
    expect(p.edges()["proc:image"]["src_output"] == 0, "refused link leaves the edges unchanged")

    p.drag(p.port("proc", "input", "mask"), p.port("proc", "input", "mask"))  # a click, no link there
    p.drag(p.port("load", "output", 1), p.port("proc", "input", "mask"))
    expect("proc:mask" in p.edges(), "MASK output into MASK input connects")
    ix, iy = p.port("proc", "input", "mask")
    p.drag((ix, iy), (ix - 60, iy + 200))
    expect("proc:mask" not in p.edges(), "dragging a connected input off to empty canvas disconnects it")

    n_before = len(p.js("() => vxDemo.kernel.doc.getMap('nodes').toJSON()"))
    p.page.mouse.dblclick(p.ox + 600, p.oy + 450)
    p.page.keyboard.type("process")
    p.page.keyboard.press("Enter")
    nodes = p.js("() => vxDemo.kernel.doc.getMap('nodes').toJSON()")
    expect(len(nodes) == n_before + 1 and any(v["type"] == "BenchProcess" and k != "proc" for k, v in nodes.items()),
           "palette (double-click, search, Enter) adds a node")
    p.page.keyboard.press("Control+z")
    expect(len(p.js("() => vxDemo.kernel.doc.getMap('nodes').toJSON()")) == n_before, "Ctrl+Z undoes the add")

    p.js("() => vxDemo.hook.setView(1, 20, 40)")
    p.js("() => vxDemo.hook.flush()")
    proc = p.js("() => vxDemo.hook.nodeRect('proc')")
    steps_y = p.port("proc", "input", "steps")[1]
    p.page.mouse.click(p.ox + proc["x"] + proc["w"] / 2, steps_y)
    editor = p.page.locator(".vx-editor input[type=number]")
    expect(editor.count() == 1, "clicking a widget row opens one DOM editor")
    editor.fill("42")
    editor.press("Enter")
    expect(p.kernel_node("proc")["params"]["steps"] == 42, "editing a param writes it to the kernel doc")

    p.page.locator(".vx-btn-run").click()
    expect({"t": "run", "outputs": None} in p.js("() => vxDemo.kernel.sent"), "Run sends {t: run}")

    p.js("""() => { const m = vxDemo.model;
        m.deliver({t: 'state', running: true});
        m.deliver({t: 'event', event: {kind: 'run_started', run_id: 'r', planned: ['load','proc','view'], cached: []}});
        m.deliver({t: 'event', event: {kind: 'node_started', run_id: 'r', node: 'proc'}});
        m.deliver({t: 'event', event: {kind: 'node_progress', run_id: 'r', node: 'proc', value: 2, total: 4}});
        m.deliver({t: 'event', event: {kind: 'node_failed', run_id: 'r', node: 'load', code: 'VE-500', message: 'bad file'}}); }""")
    p.js("(b) => vxDemo.model.deliver({t: 'image', node: 'view', final: true, mime: 'image/png'}, [new Uint8Array(b)])",
         list(png()))
    p.page.wait_for_selector(".vx-outputs img.vx-output-image")
    states = {i["nodeId"]: i for i in p.items()}
    expect(states["proc"]["state"] == "running" and states["load"]["state"] == "failed", "run events set node states")
    expect("bad file" in states["load"]["label"], "a failed node's message is in its label")
    expect(float(states["view"]["h"]) > float(states["proc"]["h"]) * 0.9, "a node with an image grows a preview area")
    expect(p.page.locator(".vx-btn-cancel").is_enabled(), "Cancel is enabled while running")

    p.page.locator(".vx-root").focus()
    p.page.keyboard.press("Escape")
    p.page.keyboard.press("Tab")
    expect(len(p.js("() => vxDemo.hook.selection()")) == 1, "Tab selects a node")
    editing(p, expect)
    if shot:
        shot.parent.mkdir(parents=True, exist_ok=True)
        p.page.screenshot(path=str(shot))
    return fails


def editing(p: Page, expect: Any) -> None:
    """Titles, box select, group + group drag, copy/paste, delete, wheel zoom."""
    p.js("() => vxDemo.hook.setView(1, 20, 40)")
    load = p.js("() => vxDemo.hook.nodeRect('load')")
    p.page.mouse.dblclick(p.ox + load["x"] + 30, p.oy + load["y"] + 10)
    title = p.page.locator(".vx-title-editor")
    expect(title.count() == 1, "double-clicking a title opens the title editor")
    title.fill("My loader")
    title.press("Enter")
    expect(p.kernel_node("load").get("title") == "My loader", "renaming writes the title to the kernel doc")

    p.page.keyboard.down("Shift")
    p.drag((p.ox + 5, p.oy + 5), (p.ox + 900, p.oy + 400))
    p.page.keyboard.up("Shift")
    sel = sorted(p.js("() => vxDemo.hook.selection()"))
    expect({"load", "proc", "view"} <= set(sel), "shift-drag on empty canvas box-selects nodes")

    p.page.keyboard.press("Control+g")
    groups = p.js("() => vxDemo.kernel.doc.getMap('groups').toJSON()")
    expect(len(groups) == 1, "Ctrl+G groups the selection")
    g = next(iter(groups.values()))
    gx, gy = p.js("([x, y]) => vxDemo.hook.graphToScreen(x, y)", [g["x"] + 10, g["y"] + 8])
    before = p.kernel_node("proc")
    p.drag((p.ox + gx, p.oy + gy), (p.ox + gx + 40, p.oy + gy + 30))
    after = p.kernel_node("proc")
    expect(after["x"] > before["x"] + 20, "dragging a group's title moves its member nodes")

    p.page.locator(".vx-root").focus()
    n0 = len(p.js("() => vxDemo.kernel.doc.getMap('nodes').toJSON()"))
    p.page.keyboard.press("Control+c")
    p.page.keyboard.press("Control+v")
    p.page.wait_for_function(f"() => vxDemo.kernel.doc.getMap('nodes').size === {2 * n0}", timeout=5000)
    edges = p.edges()
    expect(len(edges) == 4, "copy/paste duplicates the nodes and the edges among them")
    p.page.keyboard.press("Delete")
    expect(len(p.js("() => vxDemo.kernel.doc.getMap('nodes').toJSON()")) == n0, "Delete removes the pasted selection")

    z0 = p.js("() => vxDemo.hook.view.zoom")
    p.page.mouse.move(p.ox + 400, p.oy + 300)
    p.page.mouse.wheel(0, -300)
    p.page.wait_for_timeout(100)
    expect(p.js("() => vxDemo.hook.view.zoom") > z0, "mouse wheel zooms in")
    p.js("() => { vxDemo.hook.setView(1, 20, 40); vxDemo.hook.flush(); }")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--screenshot", type=Path, default=ROOT / "test-artifacts/canvas-widget.png")
    args = ap.parse_args(argv)
    if not args.no_build:
        build()
    from playwright.sync_api import sync_playwright

    server, base = serve()
    profile = tempfile.mkdtemp(prefix="vx-check-profile-")
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium",
                                                        args=CHROMIUM_ARGS, viewport={"width": 1300, "height": 800})
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/benchmarks/canvas/bench.html")
            page.wait_for_function("window.vxBench !== undefined")
            page.evaluate("() => vxBench.mountDemo()")
            page.wait_for_function("vxDemo.hook.synced() && vxDemo.hook.frames() > 0")
            fails = checks(Page(page), args.screenshot)
            ctx.close()
    finally:
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    for e in errors:
        print("console error:", e)
    return 1 if fails or errors else 0


if __name__ == "__main__":
    sys.exit(main())
