"""Fixtures for node-pack tests: real packs written on the fly, one uv cache per session.

Packs resolve against PyPI (``six``: small, pure Python, not one of the core's packages).
Every test gets its own ``VORTEX_PACKS_DIR``; the uv cache is shared so a wheel downloads once.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

COMFY_INIT = '''
import six

class SixVersion:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 1})}}

    def go(self, x):
        return (six.__version__,)

NODE_CLASS_MAPPINGS = {"%(node)s": SixVersion}
NODE_DISPLAY_NAME_MAPPINGS = {"%(node)s": "Six version"}
WEB_DIRECTORY = "./js"
'''

VX_NODE_INIT = '''
import vortex_jupyter as vx

@vx.node(category="test")
def add_one(x: int = 1) -> int:
    return x + 1
'''


def write_pack(folder: Path, name: str, deps: list[str], init: str, *, version: str = "1.0.0") -> Path:
    """A ComfyUI-style pack folder: pyproject.toml + __init__.py at its root."""
    folder.mkdir(parents=True)
    quoted = ", ".join(f'"{d}"' for d in deps)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{name}"
        version = "{version}"
        dependencies = [{quoted}]

        [tool.comfy]
        PublisherId = "tester"
        DisplayName = "{name} display"
        Icon = ""
        """))
    (folder / "__init__.py").write_text(init)
    return folder


def comfy_pack(folder: Path, name: str, dep: str, node: str = "SixVersion") -> Path:
    return write_pack(folder, name, [dep], COMFY_INIT % {"node": node})


def build_wheel(tmp: Path, name: str, module: str, init: str, kind: str = "wheel") -> Path:
    """A real wheel (or ``kind="sdist"``) built by hatchling through ``uv build``, of a pack whose
    code is package ``module``."""
    src = tmp / f"{name}-src"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(init)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "{name}"
        version = "2.0.0"
        dependencies = []

        [tool.hatch.build.targets.wheel]
        packages = ["{module}"]
        """))
    from vortex_jupyter.packages.lock import uv

    subprocess.run([uv(), "build", f"--{kind}", "--no-build-isolation", "-q", "--out-dir", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True)
    return next((tmp / "dist").glob("*.whl" if kind == "wheel" else "*.tar.gz"))


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture(autouse=True)
def packs_env(tmp_path: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    monkeypatch.setenv("VORTEX_PACKS_DIR", str(tmp_path / "store"))
    yield tmp_path / "store"
    shutil.rmtree(tmp_path / "store", ignore_errors=True)
