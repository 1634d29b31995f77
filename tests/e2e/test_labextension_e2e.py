"""The prebuilt JupyterLab extension loads in a real JupyterLab in real Chromium.

JupyterLab finds it in ``share/jupyter/labextensions/vortex-jupyter``: the wheel installs it
there, a development checkout links it with ``jupyter labextension develop --overwrite .``
(``scripts/test.sh`` does both the npm build and the link).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .lab import JupyterLab

pytestmark = pytest.mark.e2e

PLUGIN = "vortex-jupyter:plugin"
COMMAND = "vortex:about"


@pytest.fixture(scope="module")
def lab_page(lab: JupyterLab, browser_context: Any) -> Iterator[tuple[Any, list[str]]]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(f"{lab.url}/lab/workspaces/labext?token={lab.token}")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    try:
        yield page, errors
    finally:
        page.close()


def test_jupyterlab_loads_the_extension_and_activates_its_plugin(lab_page: tuple[Any, list[str]]) -> None:
    page, errors = lab_page
    federated = page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)")
    assert "vortex-jupyter" in federated, (
        f"JupyterLab did not find the extension (found {federated}): build it with "
        "`npm --prefix js run build` and link it with `jupyter labextension develop --overwrite .`")
    assert page.evaluate(f"() => window.jupyterapp.hasPlugin({PLUGIN!r})")
    assert page.evaluate(f"() => window.jupyterapp.isPluginActivated({PLUGIN!r})")
    assert not [e for e in errors if "vortex" in e.lower()], errors


def test_the_about_command_exists_and_opens_a_dialog(lab_page: tuple[Any, list[str]]) -> None:
    page, _ = lab_page
    assert page.evaluate(f"() => window.jupyterapp.commands.hasCommand({COMMAND!r})")
    assert page.evaluate(f"() => window.jupyterapp.commands.label({COMMAND!r})") == "About vortex-jupyter"
    page.evaluate(f"() => {{ window.jupyterapp.commands.execute({COMMAND!r}); }}")
    dialog = page.wait_for_selector(".jp-Dialog", timeout=10_000)
    assert "vortex-jupyter" in dialog.inner_text()
    page.keyboard.press("Escape")
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)
