"""The hatch build hook never breaks a Python install: no npm means a warning, not a failure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _hook_module():
    spec = importlib.util.spec_from_file_location("vortex_hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_npm_the_hook_warns_and_the_install_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook_module()
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "package.json").write_text("{}")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.warns(UserWarning, match="npm"):
        assert hook.build_bundle(tmp_path) is False


def test_an_existing_bundle_is_kept_without_calling_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook_module()
    bundle = tmp_path / hook.BUNDLE
    bundle.parent.mkdir(parents=True)
    bundle.write_text("export default {}")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert hook.build_bundle(tmp_path) is True


def test_a_failing_npm_build_warns_instead_of_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook_module()
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "package.json").write_text("{}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_npm = bin_dir / "npm"
    fake_npm.write_text("#!/bin/sh\necho 'npm ERR! offline' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.warns(UserWarning, match="failed"):
        assert hook.build_bundle(tmp_path) is False
