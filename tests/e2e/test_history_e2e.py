"""The canvas's History panel and Queue button in a real JupyterLab in real Chromium.

Run from the toolbar, the run shows in the History panel; a param changed in the browser shows
in the run's diff, and Restore brings the run's value back (in the kernel and on the page). The
Queue button counts pending runs while the queue is paused and the queued run is listed once
resumed. Shares the fixtures of ``conftest.py`` (one JupyterLab and one browser for this module).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .lab import LabPage

pytestmark = pytest.mark.e2e

PANEL = ".vx-root .vx-history"
PARAM_A = "() => document.querySelector('.vx-root').__vortex.doc.getMap('nodes').get('add1').get('params').get('a')"


def kernel(nb: LabPage, expr: str) -> Any:
    return ast.literal_eval(nb.kexec(f"print(repr({expr}))").strip())


def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def ui(nb: LabPage) -> Iterator[LabPage]:
    nb.canvas(0).scroll_into_view_if_needed()
    nb.kexec("g.remove('preview2')")  # a PreviewImage with no input: every run would be refused
    nb.kexec("g.nodes['add1'].params['a'] = 5")
    yield nb
    nb.kexec("import vortex_jupyter as vx\nvx.queue().resume()")  # the history file is the suite's


def first_run(nb: LabPage) -> dict[str, Any]:
    return dict(nb.page.evaluate(
        f"() => {{ const e = document.querySelector('{PANEL} .vx-run-entry');"
        " return e ? { id: e.dataset.run, cls: e.className } : {}; }"))


def test_the_history_panel_lists_a_run_made_with_the_run_button(ui: LabPage) -> None:
    nb = ui
    nb.page.click(".vx-root .vx-btn-history")
    nb.page.wait_for_selector(PANEL, state="visible")
    assert nb.page.get_attribute(".vx-root .vx-btn-history", "aria-pressed") == "true"
    nb.page.click(".vx-root .vx-btn-run")
    run_id = until(lambda: kernel(nb, "getattr(c.session.run, 'run_id', None)"), "the run did not start")
    # the panel reloads when the run finishes, and polls while its row still says "running"
    until(lambda: first_run(nb).get("id") == run_id and "vx-run-ok" in first_run(nb)["cls"],
          f"run {run_id} was not listed as ok: {first_run(nb)}", timeout=90)
    text = nb.page.inner_text(f"{PANEL} .vx-run-entry")
    assert "ok" in text and "canvas" in text and "ran" in text


def test_a_runs_diff_shows_a_changed_param_and_restore_brings_it_back(ui: LabPage) -> None:
    nb = ui
    run_id = first_run(nb)["id"]
    nb.hook("h.setParam('add1', 'a', 99)")  # an edit made in the browser
    until(lambda: kernel(nb, "g.nodes['add1'].params['a']") == 99, "the edit never reached the kernel")
    nb.page.click(f"{PANEL} .vx-run-entry[data-run='{run_id}'] .vx-run")
    line = nb.page.wait_for_selector(f"{PANEL} .vx-run-diff .vx-diff-line")
    assert line.inner_text() == "node add1 (IntAdd): a 5 -> 99"
    nb.page.click(f"{PANEL} .vx-run-diff .vx-restore")
    until(lambda: kernel(nb, "g.nodes['add1'].params['a']") == 5, "restore did not change the kernel's graph")
    until(lambda: nb.page.evaluate(PARAM_A) == 5, "the page's doc did not follow the restore")
    nb.page.wait_for_selector(".vx-root .vx-toast >> text=Restored the graph of run")
    nb.page.wait_for_selector(f"{PANEL} .vx-run-diff .vx-diff-heading >> text=No node, param or link changed")
    assert kernel(nb, "c.js_errors") == []


def test_the_queue_button_counts_pending_runs_and_a_queued_run_is_listed_once_it_ran(ui: LabPage) -> None:
    nb = ui
    nb.page.click(f"{PANEL} .vx-queue-pause")
    nb.page.wait_for_selector(f"{PANEL} .vx-queue-resume")
    before = first_run(nb)["id"]
    nb.page.click(".vx-root .vx-btn-queue")
    nb.page.wait_for_selector(".vx-root .vx-btn-queue >> text=+ Queue (1)")
    nb.page.wait_for_selector(f"{PANEL} .vx-queue-item")
    nb.page.click(f"{PANEL} .vx-queue-resume")
    nb.page.wait_for_selector(".vx-root .vx-btn-queue >> text=/^\\+ Queue$/", timeout=90_000)
    until(lambda: first_run(nb).get("id") not in (None, before) and "vx-run-ok" in first_run(nb)["cls"],
          f"the queued run was not listed: {first_run(nb)}", timeout=60)
    assert "canvas" in nb.page.inner_text(f"{PANEL} .vx-run-entry")
    nb.screenshot("history-panel")
    assert kernel(nb, "c.js_errors") == []


def test_the_gallery_shows_a_saved_image_and_clicking_it_restores_the_graph_that_made_it(ui: LabPage) -> None:
    nb = ui
    nb.kexec("g.add('SaveImage', id='save', images=inv.out(0), filename_prefix='e2e-gallery')")
    nb.page.wait_for_function("() => !document.querySelector('.vx-root .vx-btn-run').disabled")
    nb.page.click(".vx-root .vx-btn-run")
    until(lambda: kernel(nb, "c.session.run is not None and c.session.run.done and 'save' in c.session.run.outputs"),
          "the run with SaveImage did not finish", timeout=90)
    nb.page.click(f"{PANEL} .vx-history-tab-gallery")
    img = nb.page.wait_for_selector(f"{PANEL} .vx-thumb img", timeout=30_000)
    nb.page.wait_for_function("(i) => i.complete && i.naturalWidth > 0", arg=img)
    assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [48, 48]  # the 48 px output, under 96 px
    made_by = nb.page.get_attribute(f"{PANEL} .vx-thumb", "data-run")
    assert made_by == kernel(nb, "c.session.run.run_id")
    nb.kexec("g.nodes['add1'].params['a'] = 7")
    nb.page.click(f"{PANEL} .vx-thumb")
    until(lambda: kernel(nb, "g.nodes['add1'].params['a']") == 5, "clicking the thumbnail did not restore its graph")
    nb.screenshot("history-gallery")
    assert kernel(nb, "c.js_errors") == []
