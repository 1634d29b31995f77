"""Hatch build hook: build the canvas JS bundle when it is missing.

Wired in ``pyproject.toml`` as ``[tool.hatch.build.hooks.custom]`` (hatch's default path is
this file). ``pip install .`` / ``pip install -e .`` / ``python -m build`` from a clone then
produce ``vortex_jupyter/static/widget.js`` with ``npm --prefix js ci && npm --prefix js run
build``; the wheel ships it (``artifacts`` in pyproject).

Policy: never fail a Python install because of the JS side. Without node/npm, or when the
npm build fails, the hook warns and the widget shows how to build the bundle instead.
``VORTEX_SKIP_JS=1`` skips the hook; ``VORTEX_BUILD_JS=1`` rebuilds an existing bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = Path("vortex_jupyter") / "static" / "widget.js"


def _warn(message: str) -> None:
    warnings.warn(f"vortex-jupyter: {message}", stacklevel=2)
    print(f"WARNING vortex-jupyter: {message}")  # pip shows build output only with -v


def build_bundle(root: Path, force: bool = False) -> bool:
    """Build the JS bundle under ``root`` if needed; returns True when it exists afterwards."""
    bundle = root / BUNDLE
    if bundle.is_file() and not force:
        return True
    npm = shutil.which("npm")
    if npm is None or not (root / "js" / "package.json").is_file():
        _warn(f"{BUNDLE} is missing and npm (or js/package.json) is not available; the canvas "
              "will show a build hint. Fix: install node >= 18, then run "
              "`npm --prefix js ci && npm --prefix js run build`.")
        return False
    for args in (["--prefix", "js", "ci"], ["--prefix", "js", "run", "build"]):
        try:
            subprocess.run([npm, *args], cwd=root, check=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            _warn(f"`npm {' '.join(args)}` failed ({exc}); the canvas bundle was not built.")
            return False
    if not bundle.is_file():
        _warn(f"the npm build finished but {BUNDLE} is missing; check js/build.mjs.")
        return False
    return True


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("VORTEX_SKIP_JS") == "1":
            return
        build_bundle(Path(self.root), force=os.environ.get("VORTEX_BUILD_JS") == "1")
