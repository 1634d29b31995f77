"""The wheel carries the prebuilt JupyterLab extension, and ``pip install`` is all a user needs.

- The wheel built from this checkout reuses the assets ``npm --prefix js run build`` made (an
  ``npm`` on PATH that always fails proves nothing is rebuilt) and holds the extension under
  ``share/jupyter/labextensions/vortex-jupyter`` and the canvas bundle in the package.
- The sdist carries those built assets, so a wheel built from it needs no npm either.
- Installed into a fresh venv (no system site packages) with its dependencies and JupyterLab,
  ``jupyter labextension list`` shows vortex-jupyter enabled and OK under the venv's
  ``share/jupyter/labextensions``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = [ROOT / "vortex_jupyter/static/widget.js", ROOT / "vortex_jupyter/labextension/package.json"]
SHARED = "vortex_jupyter-0.1.0.data/data/share/jupyter/labextensions/vortex-jupyter/"


def _no_npm_env(tmp: Path) -> dict[str, str]:
    """os.environ with an npm first on PATH that fails loudly: a build must not need it."""
    bin_dir = tmp / "failing-npm"
    bin_dir.mkdir(exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\necho 'test_labextension: npm must not run here' >&2\nexit 1\n")
    npm.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VORTEX_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _pip_wheel(source: Path, out: Path, env: dict[str, str]) -> Path:
    # no build isolation: the test extra has hatchling and hatch-jupyter-builder, and a fresh
    # isolated build env would add ~15 s of installs to test nothing about the extension
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                           "--no-build-isolation", "-w", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("vortex_jupyter-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [str(p.relative_to(ROOT)) for p in ASSETS if not p.is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `npm --prefix js ci && npm --prefix js run build` "
                    "first (bash scripts/test.sh does)")
    tmp = tmp_path_factory.mktemp("wheel")
    before = {p: p.stat().st_mtime_ns for p in ASSETS}
    built = _pip_wheel(ROOT, tmp / "dist", _no_npm_env(tmp))
    assert {p: p.stat().st_mtime_ns for p in ASSETS} == before, "the wheel build rebuilt the JS"
    return built


def test_the_wheel_ships_the_prebuilt_extension_and_the_canvas_bundle(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {SHARED + "package.json", SHARED + "install.json", "vortex_jupyter/static/widget.js"} <= names
    assert any(re.fullmatch(re.escape(SHARED) + r"static/remoteEntry\.[0-9a-f]+\.js", n) for n in names)
    # only under share/: the package itself does not carry a second copy
    assert not [n for n in names if n.startswith("vortex_jupyter/labextension/")]


def test_the_sdist_carries_the_built_assets_and_builds_a_wheel_without_npm(tmp_path: Path) -> None:
    env = _no_npm_env(tmp_path)
    code = "import sys, hatchling.build as b; print(b.build_sdist(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sdist")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdist = tmp_path / "sdist" / proc.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
    top = "vortex_jupyter-0.1.0/"
    assert {top + "vortex_jupyter/labextension/package.json", top + "vortex_jupyter/static/widget.js",
            top + "js/package.json", top + "install.json"} <= names
    assert not [n for n in names if n.startswith((top + "js/node_modules/", top + "js/lib/"))]
    with zipfile.ZipFile(_pip_wheel(sdist, tmp_path / "dist", env)) as zf:
        assert SHARED + "package.json" in zf.namelist()


def _sections(listing: str) -> dict[str, list[str]]:
    """`jupyter labextension list` output -> {labextensions dir: [extension lines]}."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", listing).splitlines():
        if line.strip() and not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        elif line.strip():
            current.append(line.strip())
    return sections


@pytest.mark.slow
def test_pip_install_of_the_wheel_into_a_fresh_venv_enables_the_extension(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VORTEX_", "JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
    # nothing of this machine's Jupyter setup: the listing shows what the venv itself has
    env.update(HOME=str(tmp_path / "home"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), PIP_DISABLE_PIP_VERSION_CHECK="1",
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    # the wheel's own dependencies plus JupyterLab (a user's notebook app, not a dependency)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel),
                              "jupyterlab>=4.2,<5"],
                             env=env, capture_output=True, text=True, timeout=280, check=False)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    print(f"fresh venv: pip install of the wheel + jupyterlab took {time.monotonic() - started:.1f}s")
    listing = subprocess.run([str(venv / "bin" / "jupyter"), "labextension", "list"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert listing.returncode == 0, listing.stderr
    labextensions = (venv / "share" / "jupyter" / "labextensions").resolve()
    sections = _sections(listing.stdout + listing.stderr)
    lines = next((v for k, v in sections.items() if k.startswith("/") and Path(k).resolve() == labextensions), [])
    ours = [line for line in lines if line.startswith("vortex-jupyter ")]
    assert ours, f"vortex-jupyter is not listed under {labextensions}:\n{listing.stdout}{listing.stderr}"
    assert "enabled" in ours[0] and " OK" in ours[0], ours[0]
