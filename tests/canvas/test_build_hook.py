"""The JS build behind the wheel (hatch_build.py + hatch-jupyter-builder) keeps its promises.

Each test builds a real wheel or editable wheel with hatchling's PEP 517 hooks, in a
subprocess, from a small copy of the project: the real pyproject.toml, hatch_build.py and
install.json, a stub package, and an ``npm`` on PATH that is either missing or a shell stub
that logs its arguments (and makes the assets for ``run build``). A user never needs npm; a
wheel without the canvas bundle and the JupyterLab extension is never produced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDGET = Path("vortex_jupyter/static/widget.js")
LABEXT = Path("vortex_jupyter/labextension/package.json")
SHARED = "vortex_jupyter-0.1.0.data/data/share/jupyter/labextensions/vortex-jupyter/"
FIX = "npm --prefix js ci && npm --prefix js run build"

# An npm that logs each call; `npm run build` writes both assets as the real build would.
FAKE_NPM = """#!/bin/sh
PATH=/usr/bin:/bin
echo "$@" >> "{log}"
if [ "$1" = run ] && [ "$2" = build ]; then
  {fail}
  mkdir -p ../vortex_jupyter/static ../vortex_jupyter/labextension/static
  echo 'export default {{}}' > ../vortex_jupyter/static/widget.js
  echo '{{"name": "vortex-jupyter"}}' > ../vortex_jupyter/labextension/package.json
  echo '// built' > ../vortex_jupyter/labextension/static/remoteEntry.0.js
fi
"""


def make_project(tmp_path: Path, with_assets: bool = False) -> Path:
    project = tmp_path / "project"
    (project / "vortex_jupyter").mkdir(parents=True)
    (project / "js").mkdir()
    for name in ("pyproject.toml", "hatch_build.py", "install.json", "README.md", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    # explicit editable mode (a .pth to the project), so build_editable needs no `editables`
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '\n[tool.hatch.build.targets.wheel]\n' in text
    pyproject.write_text(text.replace("\n[tool.hatch.build.targets.wheel]\n",
                                      '\n[tool.hatch.build.targets.wheel]\ndev-mode-dirs = ["."]\n'))
    (project / "vortex_jupyter" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (project / "js" / "package.json").write_text('{"name": "vortex-jupyter"}\n')
    if with_assets:
        for asset, text in ((WIDGET, "export default {}"), (LABEXT, '{"name": "vortex-jupyter"}')):
            (project / asset).parent.mkdir(parents=True, exist_ok=True)
            (project / asset).write_text(text)
    return project


def fake_npm(tmp_path: Path, fail: bool = False) -> Path:
    """A bin dir holding an npm that logs its calls to tmp_path/npm.log (and fails if asked)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(log=tmp_path / "npm.log",
                                   fail="echo 'npm ERR! offline' >&2; exit 1" if fail else ":"))
    npm.chmod(0o755)
    return bin_dir


def npm_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "npm.log"
    return log.read_text().splitlines() if log.exists() else []


def build(project: Path, kind: str, path_dirs: list[Path], **env: str) -> subprocess.CompletedProcess[str]:
    """Run hatchling's build_wheel / build_editable in ``project`` with only ``path_dirs`` on PATH."""
    code = f"import hatchling.build as b; print('BUILT', b.build_{kind}('dist'))"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VORTEX_")}
    full_env.update(PATH=os.pathsep.join(str(d) for d in path_dirs), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=project, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def wheel_names(project: Path) -> list[str]:
    (wheel,) = (project / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_existing_assets_are_shipped_without_calling_npm(tmp_path: Path) -> None:
    project = make_project(tmp_path, with_assets=True)
    proc = build(project, "wheel", [fake_npm(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert npm_calls(tmp_path) == []
    names = wheel_names(project)
    assert str(WIDGET) in names
    assert SHARED + "package.json" in names and SHARED + "install.json" in names


def test_a_wheel_without_assets_is_built_with_npm_install_and_npm_run_build(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    proc = build(project, "wheel", [fake_npm(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert npm_calls(tmp_path) == ["install", "run build"]
    assert SHARED + "static/remoteEntry.0.js" in wheel_names(project)


def test_a_wheel_without_assets_and_without_npm_fails_and_says_how_to_fix_it(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    proc = build(project, "wheel", [tmp_path / "no-bin"])
    assert proc.returncode != 0
    assert "npm" in proc.stderr and FIX in proc.stderr
    assert not (project / "dist").exists() or not list((project / "dist").glob("*.whl"))


def test_a_failing_npm_build_fails_a_wheel_with_the_fix(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    proc = build(project, "wheel", [fake_npm(tmp_path, fail=True)])
    assert proc.returncode != 0
    assert "failed" in proc.stderr and FIX in proc.stderr


@pytest.mark.parametrize("npm", ["missing", "failing"])
def test_an_editable_install_warns_instead_of_failing(tmp_path: Path, npm: str) -> None:
    project = make_project(tmp_path)
    bin_dir = tmp_path / "no-bin" if npm == "missing" else fake_npm(tmp_path, fail=True)
    proc = build(project, "editable", [bin_dir])
    assert proc.returncode == 0, proc.stderr
    assert "BUILT" in proc.stdout
    assert "vortex-jupyter:" in proc.stdout + proc.stderr and FIX in proc.stdout + proc.stderr


def test_vortex_skip_js_never_calls_npm(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    bin_dir = fake_npm(tmp_path)
    editable = build(project, "editable", [bin_dir], VORTEX_SKIP_JS="1")
    assert editable.returncode == 0, editable.stderr
    wheel = build(project, "wheel", [bin_dir], VORTEX_SKIP_JS="1")
    assert wheel.returncode != 0  # a wheel without the assets would be broken
    assert "VORTEX_SKIP_JS=1" in wheel.stderr and FIX in wheel.stderr
    assert npm_calls(tmp_path) == []


def test_vortex_build_js_rebuilds_existing_assets_in_an_editable_install(tmp_path: Path) -> None:
    project = make_project(tmp_path, with_assets=True)
    proc = build(project, "editable", [fake_npm(tmp_path)], VORTEX_BUILD_JS="1")
    assert proc.returncode == 0, proc.stderr
    assert npm_calls(tmp_path) == ["install", "run build"]


def test_an_editable_wheel_leaves_the_extension_to_labextension_develop(tmp_path: Path) -> None:
    # pip would uninstall listed files through the develop symlink, removing the build folder
    project = make_project(tmp_path, with_assets=True)
    proc = build(project, "editable", [fake_npm(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert not [n for n in wheel_names(project) if ".data/" in n]


def test_an_install_json_pip_wrote_into_the_build_folder_ships_once(tmp_path: Path) -> None:
    # `pip install .` over a `jupyter labextension develop` link writes it there
    project = make_project(tmp_path, with_assets=True)
    shutil.copy(project / "install.json", project / "vortex_jupyter/labextension/install.json")
    proc = build(project, "wheel", [fake_npm(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert wheel_names(project).count(SHARED + "install.json") == 1
