"""The JS build behind the wheel: vortex-jupyter's policy around hatch-jupyter-builder.

Wired in ``pyproject.toml`` as ``[tool.hatch.build.hooks.jupyter-builder]`` with
``build-function = "hatch_build.build_js"``, which calls ``hatch_jupyter_builder.npm_builder``
(``npm install`` + ``npm run build`` in ``js/``) when it has to. That one npm build makes both
browser assets the wheel ships:

- ``vortex_jupyter/static/widget.js`` (+ ``widget.css``): the canvas's anywidget bundle;
- ``vortex_jupyter/labextension/``: the prebuilt JupyterLab 4 extension, which the wheel's
  shared-data installs (with ``install.json``) to ``share/jupyter/labextensions/vortex-jupyter``.

Policy (the user never needs npm; a broken wheel is never produced):

- Assets already built (a clone after ``npm --prefix js run build``, or an sdist, which
  carries them): no npm, nothing rebuilt (``skip-if-exists``, and the same check here for
  editable installs). ``VORTEX_BUILD_JS=1`` rebuilds them in an editable install.
- ``VORTEX_SKIP_JS=1``: npm is never called (``scripts/test.sh`` installs first, builds after).
- Editable install: a JS problem (no npm, a failing build) is only a warning
  (``optional-editable-build``); the canvas then shows how to build the bundle.
- Wheel or sdist: the assets are required (``ensured-targets``); without them the build fails
  with a message that says how to fix it: a wheel without the extension is broken.

The shared-data (``[tool.hatch.build.hooks.custom.wheel-shared-data]``) goes into standard wheels
only, by ``WheelSharedDataHook``. A dev install links the build folder into JupyterLab with
``jupyter labextension develop --overwrite .`` instead. Had the editable wheel listed the
extension's files too, the next ``pip install -e .`` would uninstall them through that symlink:
pip (23.2) resolves it and removes ``vortex_jupyter/labextension`` itself, then fails writing
through the dangling link.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

from hatch_jupyter_builder.utils import npm_builder
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent
ASSETS = (
    Path("vortex_jupyter") / "static" / "widget.js",
    Path("vortex_jupyter") / "labextension" / "package.json",
)
FIX = (
    "Fix: install Node.js >= 20.19 with npm, then run `npm --prefix js ci && npm --prefix js run build` "
    "in the source tree and build again (or build from the sdist, which carries the built assets)."
)


class JSBuildError(RuntimeError):
    """The browser assets are missing and could not be built."""


def missing_assets(root: Path = ROOT) -> list[str]:
    return [str(asset) for asset in ASSETS if not (root / asset).is_file()]


def _fail(message: str) -> NoReturn:
    # optional-editable-build turns this into a warning for `pip install -e`; pip shows a build's
    # output only with -v or on failure, hence the print as well
    print(f"vortex-jupyter: {message}")
    raise JSBuildError(f"vortex-jupyter: {message}")


def build_js(target_name: str, version: str, path: str = "js", build_cmd: str = "build",
             root: Path = ROOT) -> None:
    """hatch-jupyter-builder build function (``version`` is "standard" or "editable")."""
    missing = missing_assets(root)
    if os.environ.get("VORTEX_SKIP_JS") == "1":
        if missing and version == "standard":
            _fail(f"VORTEX_SKIP_JS=1 is set and {', '.join(missing)} are missing: this {target_name} "
                  f"would ship without the canvas bundle and the JupyterLab extension. {FIX}")
        return
    if not missing and not (version == "editable" and os.environ.get("VORTEX_BUILD_JS") == "1"):
        return
    npm = shutil.which("npm")
    if npm is None or not (root / path / "package.json").is_file():
        _fail(f"{', '.join(missing) or 'the browser assets'} must be built with npm, but npm (or "
              f"{path}/package.json) is not available here. {FIX}")
    try:
        npm_builder(target_name, version, path=str(root / path), build_cmd=build_cmd, npm=[npm])
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        _fail(f"the JS build (`npm install && npm run {build_cmd}` in {path}/) failed: {exc}. {FIX}")
    still_missing = missing_assets(root)
    if still_missing:
        _fail(f"`npm run {build_cmd}` finished but {', '.join(still_missing)} are missing: check "
              f"{path}/build.mjs and the `jupyterlab.outputDir` of {path}/package.json.")


class WheelSharedDataHook(BuildHookInterface):  # type: ignore[type-arg]
    """``[tool.hatch.build.hooks.custom]``: adds ``wheel-shared-data`` to standard wheels only."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "standard":
            build_data["shared_data"].update(shared_data(Path(self.root), self.config.get("wheel-shared-data", {})))


def shared_data(root: Path, mapping: dict[str, str]) -> dict[str, str]:
    """``mapping`` less the files a mapped folder already holds at the same target.

    (``pip install .`` over a develop link writes install.json into the build folder; hatchling
    refuses a second file at one wheel path.)
    """
    folders = {src: dst for src, dst in mapping.items() if (root / src).is_dir()}

    def shadowed(dst: str) -> bool:
        return any(dst.startswith(f"{d}/") and (root / s / dst[len(d) + 1:]).exists() for s, d in folders.items())

    return {src: dst for src, dst in mapping.items() if src in folders or not shadowed(dst)}
