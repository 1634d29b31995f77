"""Canvas UX bugs new users hit, in a real JupyterLab in real Chromium.

Palettes opened over palettes and right after Escape, the add-node palette near the canvas's
edges, and the toolbar Run button after palette and key actions. Shares the fixtures of
``conftest.py`` (one JupyterLab and one browser for this module).
"""

from __future__ import annotations

import ast
import time
from typing import Any

import pytest

from .lab import LabPage

pytestmark = pytest.mark.e2e

CANVAS = ".vx-root canvas"
PALETTE = ".vx-root .vx-palette"
PALETTE_INPUT = ".vx-root .vx-palette-input"


def kernel(nb: LabPage, expr: str) -> Any:
    return ast.literal_eval(nb.kexec(f"print(repr({expr}))").strip())


def canvas_box(nb: LabPage) -> dict[str, float]:
    box = nb.page.query_selector_all(CANVAS)[0].bounding_box()
    assert box is not None
    return box  # type: ignore[no-any-return]


def palette_state(nb: LabPage) -> dict[str, Any]:
    """Whether the first canvas's palette is shown, has focus in its search box, and its box."""
    return nb.page.evaluate(
        "() => { const r = document.querySelector('.vx-root'), p = r.querySelector('.vx-palette');"
        " const i = p.querySelector('.vx-palette-input'), b = p.getBoundingClientRect();"
        " return { open: !p.hidden, focused: document.activeElement === i, placeholder: i.placeholder,"
        " x: b.x, y: b.y, w: b.width, h: b.height }; }")


def settle(nb: LabPage, ms: int = 400) -> None:
    """Longer than any deferred close (the palette's blur handler waits 150 ms)."""
    nb.page.wait_for_timeout(ms)


def empty_spot(nb: LabPage) -> tuple[float, float]:
    """Page coordinates of a spot of the first canvas with no node under it."""
    box = canvas_box(nb)
    return box["x"] + 12, box["y"] + box["height"] - 12


@pytest.fixture(scope="module")
def ui(nb: LabPage) -> LabPage:
    root = nb.canvas(0)
    root.scroll_into_view_if_needed()
    nb.kexec("g.remove('preview2')")  # a PreviewImage with no input: every run would be refused
    nb.hook("h.fit()")
    # every {"t": "run"} the kernel receives from a view, counted in the kernel
    nb.kexec("_vx_runs, _vx_replies = [], []\n_vx_start = c.session.start\n"
             "c.session.start = lambda outputs, reply: (_vx_runs.append(outputs), _vx_start(outputs,"
             " lambda m, b: (_vx_replies.append(m), reply(m, b))))[1]")
    return nb


def test_a_palette_opened_over_a_palette_or_right_after_escape_stays_open_with_focus_in_its_box(
        ui: LabPage) -> None:
    nb = ui
    x, y = empty_spot(nb)
    nb.page.mouse.click(x, y)
    nb.page.keyboard.press("Control+k")
    nb.page.click(".vx-root .vx-btn-add")  # + Node while the command palette is open
    settle(nb)
    state = palette_state(nb)
    assert state["open"] and state["focused"] and state["placeholder"] == "Add node…", state
    nb.page.keyboard.press("Escape")
    nb.page.click(".vx-root .vx-btn-add")  # + Node right after Escape
    settle(nb)
    state = palette_state(nb)
    assert state["open"] and state["focused"], state
    nb.page.mouse.dblclick(x, y)  # a double-click while the add-node palette is open
    settle(nb)
    state = palette_state(nb)
    assert state["open"] and state["focused"], state
    nb.page.keyboard.press("Escape")
    nb.page.mouse.dblclick(x, y)  # a double-click right after Escape
    settle(nb)
    assert palette_state(nb)["open"] and palette_state(nb)["focused"]
    nb.page.keyboard.press("Control+k")  # Ctrl+K typed in the add-node palette: the command palette
    settle(nb)
    state = palette_state(nb)
    assert state["open"] and state["focused"] and state["placeholder"].startswith("Command"), state
    nb.page.keyboard.press("Escape")
    assert not palette_state(nb)["open"]


def test_the_add_node_palette_opened_near_the_canvas_edges_lies_inside_the_canvas(ui: LabPage) -> None:
    nb = ui
    box = canvas_box(nb)
    for dx, dy in ((box["width"] - 6, box["height"] - 6), (box["width"] - 6, 30), (30, box["height"] - 6)):
        nb.page.evaluate("() => document.querySelector('.vx-root').__vortex.setView(0.05, -5000, -5000)")
        nb.page.mouse.dblclick(box["x"] + dx, box["y"] + dy)  # empty canvas: the view is off the graph
        settle(nb)
        p = palette_state(nb)
        assert p["open"], (dx, dy)
        assert p["x"] >= box["x"] and p["y"] >= box["y"], (p, box)
        assert p["x"] + p["w"] <= box["x"] + box["width"] + 0.5, (p, box)
        assert p["y"] + p["h"] <= box["y"] + box["height"] + 0.5, (p, box)
        nb.page.keyboard.press("Escape")
    nb.hook("h.fit()")


def test_ctrl_k_finds_node_types_adds_one_on_a_free_spot_and_says_when_nothing_matches(ui: LabPage) -> None:
    nb = ui
    x, y = empty_spot(nb)
    nb.page.mouse.click(x, y)
    nb.page.keyboard.press("Control+k")
    nb.page.keyboard.type("zzzqqq")
    hint = nb.page.wait_for_selector(".vx-root .vx-palette-empty", timeout=5_000)
    assert hint.is_visible() and hint.inner_text() == "No command or node matches “zzzqqq”"
    nb.page.fill(PALETTE_INPUT, "IntMultiply")
    first = nb.page.wait_for_selector(".vx-root .vx-palette-item[aria-selected=true]")
    assert first.get_attribute("data-kind") == "node" and first.get_attribute("data-id") == "IntMultiply"
    before = set(kernel(nb, "list(g.model.nodes)"))
    nb.page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    while not (added := set(kernel(nb, "list(g.model.nodes)")) - before):
        assert time.monotonic() < deadline, "the node picked in the command palette never reached the kernel"
        nb.page.wait_for_timeout(100)
    (node,) = added
    assert kernel(nb, f"g.model.nodes[{node!r}].type") == "IntMultiply"
    rects = nb.page.evaluate(
        "() => { const h = document.querySelector('.vx-root').__vortex; h.flush();"
        " return Object.fromEntries([...h.doc.getMap('nodes').keys()].map((k) => [k, h.nodeRect(k)])); }")
    mine = rects.pop(node)
    for other, r in rects.items():
        assert not (mine["x"] < r["x"] + r["w"] and r["x"] < mine["x"] + mine["w"]
                    and mine["y"] < r["y"] + r["h"] and r["y"] < mine["y"] + mine["h"]), f"{node} lies on {other}"
    nb.kexec(f"g.remove({node!r})")


def test_run_starts_on_one_click_after_an_interrupted_run_and_palette_and_key_actions(ui: LabPage) -> None:
    nb = ui
    # Jupyter's interrupt reaching g.run() while it waits for a node (simulated by a listener
    # that raises KeyboardInterrupt): the canvas saw run_started; it used to never see
    # run_finished and kept its Run button disabled, so a click on Run sent nothing.
    nb.kexec("g.nodes['add1'].params['a'] = 12345")
    nb.kexec("def _vx_interrupt(e):\n    if e.kind == 'node_started':\n        raise KeyboardInterrupt\n"
             "g.on_event(_vx_interrupt)\n"
             "try:\n    g.run(executor='inline')\nexcept KeyboardInterrupt:\n    pass\n"
             "g.off_event(_vx_interrupt)")
    x, y = empty_spot(nb)
    nb.page.mouse.click(x, y)  # focus the canvas
    nb.page.click(".vx-root .vx-btn-add")
    nb.page.keyboard.press("Escape")
    nb.page.mouse.dblclick(x, y)
    nb.page.keyboard.press("Escape")
    nb.page.keyboard.press("Control+k")
    nb.page.keyboard.press("Escape")
    nb.page.keyboard.press("Control+k")
    nb.page.click(".vx-root .vx-btn-add")  # a palette over a palette
    nb.page.keyboard.press("Escape")
    nb.page.mouse.click(x, y)
    nb.page.keyboard.press("Delete")
    nb.page.keyboard.press("Escape")
    settle(nb)
    assert palette_state(nb)["open"] is False
    before = kernel(nb, "len(_vx_runs)")
    nb.page.click(".vx-root .vx-btn-run", timeout=5_000)
    deadline = time.monotonic() + 10
    while kernel(nb, "len(_vx_runs)") == before:
        assert time.monotonic() < deadline, "one click on Run sent no run to the kernel"
        nb.page.wait_for_timeout(100)
    nb.page.wait_for_function("() => !document.querySelector('.vx-root .vx-btn-run').disabled", timeout=60_000)
    deadline = time.monotonic() + 30
    while kernel(nb, "c.session.run is not None and c.session.run.done and c.session.run.status") != "ok":
        assert time.monotonic() < deadline, kernel(nb, "(c.session.run and c.session.run.status, _vx_replies)")
        nb.page.wait_for_timeout(200)
    assert kernel(nb, "c.js_errors") == []


def test_a_run_on_another_executor_says_on_the_canvas_why_it_reruns(ui: LabPage) -> None:
    nb = ui
    nb.kexec("g.nodes['add1'].params['a'] = 777\n_vx_w = g.run()")  # the worker pool (the default)
    why = nb.kexec("print(g.run(executor='inline').stats['reason'])").strip()
    assert why.startswith("re-running ") and why.endswith("cached outputs belong to the workers executor")
    toast = nb.page.wait_for_selector(f".vx-root .vx-toast-info >> text={why}", timeout=10_000)
    assert toast.is_visible()
