"""Locks: PEP 751 ``pylock.<env>.toml`` files with hashes, made and installed by uv.

Policy:

- The resolver is uv's (``uv pip compile --format pylock.toml --generate-hashes``); we never
  resolve ourselves. Installs go through ``uv pip sync`` of the lock, which checks every
  file against its sha256 (a tampered hash or file fails the install: ``LockError``).
- The core's packages (vortex-jupyter's requirement closure: torch, numpy, safetensors, ...)
  are CONSTRAINTS pinned to exactly the versions installed here (``importlib.metadata``), so no
  pack can resolve another version of them. Pack environments see the core's site-packages
  (``uv venv --system-site-packages``, see ``envs``), so the core pins are then DROPPED from the
  lock: torch is shared, never reinstalled, and a pack's own packages (in the venv, first on
  ``sys.path``) shadow anything else of the core's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .pack import PackError

__all__ = ["LockError", "ResolutionError", "compile_lock", "core_pins", "locked_packages", "sync_env", "uv"]

_CORE_ROOT = "vortex-jupyter"
_CORE_EXTRAS = ("diffusion",)


class LockError(PackError):
    """A lock cannot be installed: a hash mismatch, a missing file, a broken lock."""


class ResolutionError(PackError):
    """Requirements that do not resolve together (or against the core's pins)."""


def uv() -> str:
    """The uv binary: the ``uv`` package's (a dependency), else one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise PackError("uv is not installed", hint="pip install uv") from None
        return found


def run_uv(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    proc = subprocess.run([uv(), *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise PackError(f"uv {args[0]} {args[1] if len(args) > 1 else ''} failed:\n{proc.stderr.strip()}")
    return proc


def core_pins() -> dict[str, str]:
    """``{canonical name: installed version}`` of the core's requirement closure (not the core itself)."""
    pins: dict[str, str] = {}
    todo, extras = [_CORE_ROOT], set(_CORE_EXTRAS)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = extras if name == _CORE_ROOT else set()
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted | {""}):
                todo.append(req.name)
    pins.pop(_CORE_ROOT, None)
    return dict(sorted(pins.items()))


def _constraints_file(folder: Path) -> Path:
    path = folder / "core-constraints.txt"
    text = "".join(f"{n}=={v}\n" for n, v in core_pins().items())
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def compile_lock(requirements: list[str], out: Path) -> Path:
    """Resolve ``requirements`` under the core's pins into ``out`` (``pylock.<env>.toml``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    env = out.name[len("pylock."):-len(".toml")]
    req_in = out.with_name(f"requirements.{env}.in")
    req_in.write_text("".join(r + "\n" for r in requirements))
    tmp = out.with_name(f"pylock.{env}-new.toml")
    proc = run_uv("pip", "compile", str(req_in), "--format", "pylock.toml", "--generate-hashes",
                  "--constraint", str(_constraints_file(out.parent)), "--python", sys.executable,
                  "--no-header", "-q", "-o", str(tmp), check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ResolutionError("requirements do not resolve: " + ", ".join(requirements) + "\n"
                              + proc.stderr.strip(), hint="the packs need another environment, or "
                              "a version range that the core's pins (torch, numpy, ...) allow")
    out.write_text(_drop_core(tmp.read_text(), set(core_pins())))
    tmp.unlink()
    return out


def _drop_core(text: str, core: set[str]) -> str:
    """Remove the ``[[packages]]`` of the core's pins (provided by the core's site-packages)."""
    head, *blocks = text.split("\n[[packages]]\n")
    kept = [b for b in blocks
            if canonicalize_name(tomllib.loads(b.split("\n\n")[0]).get("name", "")) not in core]
    return "\n[[packages]]\n".join([head, *kept]) if kept else head + "\n"


def locked_packages(lock: Path) -> dict[str, str]:
    """``{name: version}`` of a lock's packages."""
    try:
        data = tomllib.loads(lock.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"{lock}: unreadable lock ({exc})", hint="`vtx lock` writes it again") from None
    return {p["name"]: p.get("version", "") for p in data.get("packages", [])}


def sync_env(python: Path, lock: Path) -> None:
    """Make the venv of ``python`` exactly the lock (hashes verified by uv)."""
    proc = run_uv("pip", "sync", "--python", str(python), "--preview-features", "pylock",
                  "-q", str(lock), check=False)
    if proc.returncode != 0:
        detail = proc.stderr.strip()
        what = "a hash does not match the lock" if "Hash mismatch" in detail else "the install failed"
        raise LockError(f"refused to install {lock.name}: {what}\n{detail}",
                        hint="a file differs from the one locked (tampered lock or index): check the "
                             "source, then `vtx lock` to resolve again")
