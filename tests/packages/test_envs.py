"""Installing packs into uv environments: own dependencies, conflicts, locks with hashes."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from vortex_jupyter.packages.envs import PackStore
from vortex_jupyter.packages.lock import LockError, core_pins, locked_packages
from vortex_jupyter.packages.pack import PackError

from .conftest import VX_NODE_INIT, build_wheel, comfy_pack, write_pack


def _py(store: PackStore, env: str, code: str) -> str:
    return subprocess.run([str(store.python(env)), "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_core_pins_are_the_installed_versions_of_the_core_closure() -> None:
    pins = core_pins()
    assert pins["numpy"] == metadata.version("numpy")
    assert pins["packaging"] == metadata.version("packaging")
    assert "vortex-jupyter" not in pins and "six" not in pins


def test_a_comfyui_pack_installs_with_its_own_dependency(tmp_path: Path, packs_env: Path) -> None:
    store = PackStore.default()
    entry = store.install(str(comfy_pack(tmp_path / "old-six", "old-six", "six<1.16")))
    assert entry["nodes"] == ["SixVersion"] and entry["env"] == "old-six"
    assert any("WEB_DIRECTORY" in n for n in entry["notes"])
    assert locked_packages(store.lock_path("old-six")) == {"six": "1.15.0"}
    assert 'sha256 = "' in store.lock_path("old-six").read_text()
    assert _py(store, "old-six", "import six; print(six.__version__)") == "1.15.0"
    # the core is shared, not reinstalled: numpy comes from our own site-packages
    where = _py(store, "old-six", "import numpy; print(numpy.__file__)")
    assert str(packs_env) not in where and where.startswith(str(Path(metadata.distribution("numpy")
                                                                         .locate_file(""))))


def test_conflicting_packs_get_separate_envs_and_both_work(tmp_path: Path) -> None:
    store = PackStore.default()
    old = store.install(str(comfy_pack(tmp_path / "a", "old-six", "six<1.16", node="OldSix")))
    new = store.install(str(comfy_pack(tmp_path / "b", "new-six", "six>=1.16", node="NewSix")))
    assert old["env"] != new["env"]
    assert _py(store, old["env"], "import six; print(six.__version__)") == "1.15.0"
    assert _py(store, new["env"], "import six; print(six.__version__)").split(".")[:2] >= ["1", "16"]
    assert (old["nodes"], new["nodes"]) == (["OldSix"], ["NewSix"])
    assert store.pack_for_node("NewSix") == "new-six"
    # a pack with compatible needs joins an env that resolves with it, not a new one
    plain = store.install(str(write_pack(tmp_path / "c", "plain", ["six"], VX_NODE_INIT)))
    assert plain["env"] in (old["env"], new["env"]) and plain["nodes"] == ["add_one"]
    assert len(store.envs()) == 2


def test_a_wheel_pack_installs(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "vx-nodes", "vx_nodes", VX_NODE_INIT)
    entry = PackStore.default().install(str(wheel))
    assert (entry["name"], entry["version"], entry["nodes"]) == ("vx-nodes", "2.0.0", ["add_one"])


def test_an_sdist_pack_installs(tmp_path: Path) -> None:
    sdist = build_wheel(tmp_path, "vx-sdist", "vx_sdist", VX_NODE_INIT, kind="sdist")
    entry = PackStore.default().install(str(sdist))
    assert (entry["name"], entry["version"], entry["nodes"]) == ("vx-sdist", "2.0.0", ["add_one"])


def test_a_git_checkout_installs_at_a_revision(tmp_path: Path) -> None:
    repo = write_pack(tmp_path / "repo", "git-pack", [], VX_NODE_INIT)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    rev = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    entry = PackStore.default().install(f"git+file://{repo}@{rev}")
    assert entry["name"] == "git-pack" and entry["nodes"] == ["add_one"]


def test_a_tampered_lock_hash_is_refused_at_sync(tmp_path: Path, packs_env: Path) -> None:
    store = PackStore.default()
    store.install(str(comfy_pack(tmp_path / "a", "old-six", "six<1.16")))
    lock = store.lock_path("old-six")
    text = lock.read_text()
    digest = text.split('hashes = { sha256 = "')[-1][:64]
    lock.write_text(text.replace(digest, ("0" if digest[0] != "0" else "1") + digest[1:]))
    subprocess.run(["rm", "-rf", str(packs_env / "envs" / "old-six")], check=True)
    with pytest.raises(LockError, match="hash does not match the lock"):
        store.sync()


def test_sync_recreates_envs_from_the_locks_and_remove_drops_them(tmp_path: Path, packs_env: Path) -> None:
    store = PackStore.default()
    store.install(str(comfy_pack(tmp_path / "a", "old-six", "six<1.16")))
    subprocess.run(["rm", "-rf", str(packs_env / "envs")], check=True)
    assert store.sync() == ["old-six"]
    assert _py(store, "old-six", "import six; print(six.__version__)") == "1.15.0"
    store.remove("Old_Six")
    assert store.packs() == {} and not (packs_env / "envs" / "old-six").exists()


def test_a_pack_that_fails_to_load_is_not_installed_and_its_env_is_put_back(tmp_path: Path) -> None:
    store = PackStore.default()
    store.install(str(comfy_pack(tmp_path / "a", "old-six", "six<1.16")))
    lock_before = store.lock_path("old-six").read_text()
    # resolves with old-six, so it joins (and re-locks, re-syncs) that env before failing to import
    broken = write_pack(tmp_path / "b", "broken", ["toolz"], "import toolz\nraise RuntimeError('boom')\n")
    with pytest.raises(PackError, match="boom"):
        store.install(str(broken))
    assert list(store.packs()) == ["old-six"] and store.envs() == {"old-six": ["old-six"]}
    assert store.lock_path("old-six").read_text() == lock_before
    assert not (store.root / "src" / "broken").exists()
    assert _py(store, "old-six", "import importlib.util as u; print(u.find_spec('toolz'))") == "None"


def test_a_core_living_in_a_venv_is_linked_after_the_packs_own_packages(tmp_path: Path) -> None:
    """``--system-site-packages`` of a core venv would reach the base python's site-packages, not
    the core venv's: ``link_core`` adds those (with their ``.pth`` files) after the env's own."""
    from vortex_jupyter.packages.envs import link_core

    store = PackStore.default()
    store.install(str(comfy_pack(tmp_path / "a", "old-six", "six<1.16")))
    core = tmp_path / "core-site"
    (core / "only_in_core").mkdir(parents=True)
    (core / "only_in_core" / "__init__.py").write_text("WHERE = 'core'\n")
    (core / "six.py").write_text("__version__ = 'core'\n")  # the pack's own six must win over it
    (core / "extra").mkdir()
    (core / "extra" / "editable_thing.py").write_text("X = 1\n")
    (core / "_editable.pth").write_text(str(core / "extra") + "\n")
    link_core(store.python("old-six"), [str(core)])
    code = "import only_in_core, six, editable_thing; print(only_in_core.WHERE, six.__version__, editable_thing.X)"
    assert _py(store, "old-six", code) == "core 1.15.0 1"
