"""Pack environments: one venv per pack, or per group of packs whose requirements resolve together.

State (all under ``packs_dir()``: ``$VORTEX_PACKS_DIR``, default ``~/.cache/vortex-jupyter/packs``)::

    state.json                 packs (name, version, source, env, node types) and envs (their packs)
    src/<pack>/                the pack's code (a copied folder, an unpacked wheel/sdist, a clone)
    locks/pylock.<env>.toml    each env's PEP 751 lock, with hashes
    envs/<env>/                the venv, reproducible from its lock (``sync``)

Policy:

- ``install`` puts a pack into the first env whose packs' requirements resolve together with
  its own (uv decides); otherwise it gets a new env of its own. So ``six<1.16`` and
  ``six>=1.16`` packs land in two envs and both work.
- Envs are ``uv venv --system-site-packages`` on our own python: torch and the rest of the
  core are shared from the core's site-packages, never reinstalled, and pinned by the lock's
  constraints (``lock``); whatever a pack installs lives in its venv and comes first on its
  ``sys.path``. (The alternative, a ``.pth`` naming only the pinned packages' folders, cannot
  work for packages installed flat into one site-packages.)
- Every install is ``uv pip sync`` of the lock: hashes are verified. ``state.json`` is
  written only once the pack's env is synced and its node types are discovered; a failed
  install puts the env's lock, the env and the pack's previous code back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lock import ResolutionError, compile_lock, locked_packages, run_uv, sync_env
from .pack import PackError, PackInfo, discover_specs, read_pack

__all__ = ["PackStore", "packs_dir"]


def packs_dir() -> Path:
    env = os.environ.get("VORTEX_PACKS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vortex-jupyter" / "packs"


def _is_git(source: str) -> bool:
    return source.startswith("git+") or source.endswith(".git") or source.startswith("https://github.com/")


@contextmanager
def _fetched(source: str) -> Iterator[Path]:
    """The pack's source as a folder (a temporary one for archives and git)."""
    path = Path(source)
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vtx-") as tmp:
        dest = Path(tmp) / "pack"
        if _is_git(source):
            url, rev = _git_url(source)
            _git("clone", "--quiet", url, str(dest))
            if rev:
                _git("-C", str(dest), "checkout", "--quiet", rev)
        elif path.suffix == ".whl":
            with zipfile.ZipFile(path) as zf:
                zf.extractall(dest)
        elif path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as tf:
                tf.extractall(dest, filter="data")
            tops = list(dest.iterdir())
            dest = tops[0] if len(tops) == 1 and tops[0].is_dir() else dest
        else:
            raise PackError(f"{source}: not a folder, wheel, sdist or git URL",
                            hint="vtx install ./my-pack | my_pack-1.0.0-py3-none-any.whl | git+https://...")
        yield dest


def _git_url(source: str) -> tuple[str, str]:
    """``git+URL[@REV]`` -> ``(URL, REV)`` (an ``@`` in the host part is a user, not a rev)."""
    url = source.removeprefix("git+")
    base, sep, rev = url.rpartition("@")
    return (base, rev) if sep and "/" not in rev and "://" in base else (url, "")


def _git(*args: str) -> None:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PackError(f"git {args[0]} failed: {proc.stderr.strip()}")


def _read(folder: Path, source: str) -> PackInfo:
    archive = Path(source)
    info = read_pack(archive if archive.is_file() else folder)
    return PackInfo(**{**info.__dict__, "source": source})


@dataclass
class PackStore:
    """The installed packs and their environments under ``root``."""

    root: Path

    @classmethod
    def default(cls) -> PackStore:
        return cls(packs_dir())

    # ------------------------------------------------------------------ state

    def _state(self) -> dict[str, Any]:
        path = self.root / "state.json"
        state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        state.setdefault("packs", {})
        state.setdefault("envs", {})
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.root / "state.json")

    def packs(self) -> dict[str, dict[str, Any]]:
        packs: dict[str, dict[str, Any]] = self._state()["packs"]
        return packs

    def envs(self) -> dict[str, list[str]]:
        envs: dict[str, list[str]] = self._state()["envs"]
        return envs

    def lock_path(self, env: str) -> Path:
        return self.root / "locks" / f"pylock.{env}.toml"

    def scan_path(self, pack_key: str) -> Path:
        """The pack's last scan report (JSON), stored with the locks."""
        return self.root / "locks" / f"scan.{pack_key}.json"

    def python(self, env: str) -> Path:
        return self.root / "envs" / env / "bin" / "python"

    def env_of(self, pack: str) -> str:
        return str(self.packs()[pack]["env"])

    # ------------------------------------------------------------------ install / remove

    def install(self, source: str, allow: Iterable[str] = ()) -> dict[str, Any]:
        """Install a pack from a folder, wheel, sdist or git URL; returns its state entry.
        The pack is scanned first (``scan.py``): HIGH/CRITICAL findings refuse it (PackRejected)
        unless ``allow`` names their rules; the report is kept beside the locks.
        A failure (scan, resolution, hashes, the pack's import) leaves the packs and envs as they were."""
        from .scan import scan

        with _fetched(source) as folder:
            info = _read(folder, source)
            report = scan(folder, pack=info.name)
            report.check(allow)
            self.scan_path(info.key).parent.mkdir(parents=True, exist_ok=True)
            self.scan_path(info.key).write_text(report.to_json())
            state = self._state()
            before = {e: self.lock_path(e).read_text() for e in state["envs"] if self.lock_path(e).is_file()}
            env = self._place(state, info)
            src, old_src = self.root / "src" / info.key, self.root / "src" / f".previous-{info.key}"
            shutil.rmtree(old_src, ignore_errors=True)
            if src.exists():
                src.rename(old_src)
            shutil.copytree(folder, src, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        try:
            entry = self._install_into(state, info, env, src)
        except BaseException:
            self._roll_back(env, before.get(env), src, old_src)
            raise
        shutil.rmtree(old_src, ignore_errors=True)
        return entry

    def _install_into(self, state: dict[str, Any], info: PackInfo, env: str, src: Path) -> dict[str, Any]:
        packs = [p for p in state["envs"].get(env, []) if p != info.key] + [info.key]
        entry = {"name": info.name, "version": info.version, "source": info.source, "env": env,
                 "dependencies": list(info.dependencies), "publisher": info.publisher,
                 "display_name": info.display_name, "permissions": dict(info.permissions)}
        state["packs"][info.key] = entry
        state["envs"][env] = packs
        self._make_env(env)
        found = discover_specs(src, pack=info.name, python=str(self.python(env)))
        entry["nodes"] = sorted(s["type"] for s in found["nodes"])
        entry["specs"] = found["nodes"]  # what the kernel registers, without importing the pack
        entry["notes"] = sorted(set(found["notes"]) | set(info.notes))
        self._save(state)
        return entry

    def _roll_back(self, env: str, lock_text: str | None, src: Path, old_src: Path) -> None:
        shutil.rmtree(src, ignore_errors=True)
        if old_src.exists():
            old_src.rename(src)
        if lock_text is None:  # a new env: drop it
            self.lock_path(env).unlink(missing_ok=True)
            shutil.rmtree(self.root / "envs" / env, ignore_errors=True)
            return
        self.lock_path(env).write_text(lock_text)
        if self.python(env).exists():
            sync_env(self.python(env), self.lock_path(env))

    def _requirements(self, state: dict[str, Any], packs: list[str]) -> list[str]:
        return [d for p in packs for d in state["packs"][p]["dependencies"]]

    def _place(self, state: dict[str, Any], info: PackInfo) -> str:
        """Lock ``info`` into the first env it resolves with, else a new one; returns the env."""
        current = state["packs"].get(info.key, {}).get("env")
        order = ([current] if current else []) + [e for e in state["envs"] if e != current]
        for env in order:
            others = [p for p in state["envs"][env] if p != info.key]
            try:
                compile_lock(self._requirements(state, others) + list(info.dependencies), self.lock_path(env))
                return env
            except ResolutionError:
                continue
        env = re.sub(r"[^a-z0-9-]", "-", info.key)
        while env in state["envs"]:
            env += "-2"
        compile_lock(list(info.dependencies), self.lock_path(env))  # raises: it conflicts with the core
        return env

    def _make_env(self, env: str) -> None:
        if not self.python(env).exists():
            run_uv("venv", "--quiet", "--system-site-packages", "--python", sys.executable,
                   str(self.root / "envs" / env))
            if sys.prefix != sys.base_prefix:  # the core itself lives in a venv: see core_site_dirs
                link_core(self.python(env), core_site_dirs())
        sync_env(self.python(env), self.lock_path(env))

    def remove(self, name: str) -> None:
        state = self._state()
        key = _key(name, state)
        env = state["packs"].pop(key)["env"]
        state["envs"][env] = [p for p in state["envs"][env] if p != key]
        shutil.rmtree(self.root / "src" / key, ignore_errors=True)
        if not state["envs"][env]:
            del state["envs"][env]
            shutil.rmtree(self.root / "envs" / env, ignore_errors=True)
            self.lock_path(env).unlink(missing_ok=True)
        else:
            compile_lock(self._requirements(state, state["envs"][env]), self.lock_path(env))
            self._make_env(env)
        self._save(state)

    # ------------------------------------------------------------------ lock / sync / update

    def lock(self) -> list[str]:
        """Resolve every env again (newest versions the ranges allow); envs not synced."""
        state = self._state()
        for env, packs in state["envs"].items():
            compile_lock(self._requirements(state, packs), self.lock_path(env))
        return list(state["envs"])

    def sync(self) -> list[str]:
        """Recreate every env from its lock (hashes verified)."""
        for env in self.envs():
            self._make_env(env)
        return list(self.envs())

    def update(self) -> list[str]:
        """``lock`` then ``sync``; packs from folders and git are fetched again."""
        for entry in list(self.packs().values()):
            if Path(entry["source"]).exists() or _is_git(entry["source"]):
                self.install(entry["source"])
        self.lock()
        return self.sync()

    def tree(self) -> dict[str, dict[str, Any]]:
        """``{env: {"packs": {name: version}, "packages": {name: version}}}``."""
        state = self._state()
        out: dict[str, dict[str, Any]] = {}
        for env, packs in sorted(state["envs"].items()):
            lock = self.lock_path(env)
            out[env] = {"packs": {state["packs"][p]["name"]: state["packs"][p]["version"] for p in packs},
                        "packages": locked_packages(lock) if lock.is_file() else {}}
        return out

    def pack_for_node(self, node_type: str) -> str | None:
        """The installed pack that defines ``node_type``, if any."""
        return next((e["name"] for e in self.packs().values() if node_type in e.get("nodes", [])), None)


def core_site_dirs() -> list[str]:
    """The core's own site-packages when the core runs in a venv: ``--system-site-packages``
    gives a pack env the *base* interpreter's, not the core venv's (where torch and this
    package are), so those are added with ``link_core``."""
    import site

    return [d for d in site.getsitepackages() if d.startswith(sys.prefix)]


def link_core(python: Path, dirs: list[str]) -> Path:
    """Make ``dirs`` (and their ``.pth`` files: editable installs) visible to the env of ``python``,
    AFTER its own site-packages, so a pack's packages still come first."""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(out) / "_vortex_core.pth"
    pth.write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in dirs))
    return pth


def _key(name: str, state: dict[str, Any]) -> str:
    from packaging.utils import canonicalize_name

    key = canonicalize_name(name)
    if key not in state["packs"]:
        raise PackError(f"no pack named {name!r} is installed", hint="`vtx list` shows the installed packs")
    return key
