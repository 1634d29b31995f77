"""Node packs: what one is, how to read its metadata, and how to list its node types safely.

A pack is a directory, a wheel, an sdist or a git checkout with a ``pyproject.toml`` in the
Comfy registry's conventions::

    [project]
    name = "comfyui-mynodes"        # the pack's id (a PEP 508 name)
    version = "1.2.0"               # semver: MAJOR.MINOR.PATCH[-pre][+build]
    dependencies = ["six>=1.16"]

    [tool.comfy]
    PublisherId = "me"
    DisplayName = "My nodes"
    Icon = "https://..."

Its code exposes ``@vx.node`` functions or ComfyUI's ``NODE_CLASS_MAPPINGS`` /
``NODE_DISPLAY_NAME_MAPPINGS``; a ComfyUI pack loads unchanged (its ``WEB_DIRECTORY``, front-end
JavaScript, is ignored with a note: our canvas does not run pack JavaScript).

Policy: pack code is NEVER imported into the kernel. ``discover`` runs the import in a
subprocess of the pack environment's python and reads back JSON (a hostile pack can at worst
fail that subprocess). A wheel carries no ``pyproject.toml``: its METADATA gives the name,
version and dependencies.

>>> validate_version("1.2.0", "pyproject.toml")
'1.2.0'
"""

from __future__ import annotations

import email.parser
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import PackError

__all__ = ["PackError", "PackInfo", "discover", "discover_specs", "read_pack", "validate_version"]

# semver 2.0.0 (https://semver.org), what the Comfy registry requires of `version`
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


@dataclass(frozen=True)
class PackInfo:
    """A pack's metadata. ``root``: the folder its code is imported from (``None`` for an
    archive not yet unpacked)."""

    name: str
    version: str
    dependencies: tuple[str, ...] = ()
    publisher: str = ""
    display_name: str = ""
    icon: str = ""
    source: str = ""
    root: Path | None = None
    notes: tuple[str, ...] = field(default=())
    #: ``[tool.vortex.permissions]``: what the pack's sandboxed worker may do beyond the defaults
    #: (``network``, ``processes``: booleans; ``read``, ``write``: folders). See ``workers/sandbox.py``.
    permissions: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The canonical id (``canonicalize_name``): what environments and locks use."""
        return canonicalize_name(self.name)


def validate_version(version: Any, where: str) -> str:
    if not isinstance(version, str) or not _SEMVER.match(version):
        raise PackError(f"{where}: [project] version {version!r} is not a semantic version",
                        hint="use MAJOR.MINOR.PATCH, e.g. version = \"1.0.0\" (the Comfy registry's rule)")
    return version


def _validate_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise PackError(f"{where}: [project] name {name!r} is not a valid package name",
                        hint="letters, digits, '-', '_' and '.', starting and ending with a letter or digit")
    return name


def _validate_deps(deps: Any, where: str) -> tuple[str, ...]:
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise PackError(f"{where}: [project] dependencies must be a list of strings, got {deps!r:.80}",
                        hint='e.g. dependencies = ["six>=1.16"]')
    for dep in deps:
        try:
            Requirement(dep)
        except InvalidRequirement as exc:
            raise PackError(f"{where}: [project] dependencies: {dep!r} is not a PEP 508 requirement ({exc})",
                            hint='e.g. "six>=1.16"') from None
    return tuple(deps)


def _from_pyproject(data: dict[str, Any], where: str, root: Path | None, source: str) -> PackInfo:
    project = data.get("project")
    if not isinstance(project, dict):
        raise PackError(f"{where}: no [project] table", hint="a node pack needs [project] name and version")
    comfy = data.get("tool", {}).get("comfy", {})
    if not isinstance(comfy, dict):
        raise PackError(f"{where}: [tool.comfy] must be a table")
    vortex = data.get("tool", {}).get("vortex", {})
    permissions = _validate_permissions(vortex.get("permissions", {}) if isinstance(vortex, dict) else None, where)
    return PackInfo(
        name=_validate_name(project.get("name"), where),
        version=validate_version(project.get("version"), where),
        dependencies=_validate_deps(project.get("dependencies", []), where),
        publisher=str(comfy.get("PublisherId", "")), display_name=str(comfy.get("DisplayName", "")),
        icon=str(comfy.get("Icon", "")), source=source, root=root, permissions=permissions)


_PERMISSIONS = {"network": bool, "processes": bool, "read": list, "write": list}


def _validate_permissions(table: Any, where: str) -> dict[str, Any]:
    hint = ("e.g. [tool.vortex.permissions] network = true, processes = false, "
            'read = ["/data/luts"], write = []')
    if not isinstance(table, dict):
        raise PackError(f"{where}: [tool.vortex.permissions] must be a table", hint=hint)
    for key, value in table.items():
        kind = _PERMISSIONS.get(key)
        if kind is None:
            raise PackError(f"{where}: [tool.vortex.permissions] has no setting {key!r} "
                            f"(known: {', '.join(_PERMISSIONS)})", hint=hint)
        if not isinstance(value, kind) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
            raise PackError(f"{where}: [tool.vortex.permissions] {key} must be "
                            f"{'true or false' if kind is bool else 'a list of folders'}, got {value!r:.60}",
                            hint=hint)
    return {k: (list(v) if isinstance(v, list) else v) for k, v in table.items()}


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PackError(f"{where}: not valid TOML ({exc})") from None


def _from_wheel(path: Path) -> PackInfo:
    with zipfile.ZipFile(path) as zf:
        meta_name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if meta_name is None:
            raise PackError(f"{path}: a wheel without .dist-info/METADATA")
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    where = f"{path}!{meta_name}"
    return PackInfo(name=_validate_name(meta.get("Name"), where),
                    version=validate_version(meta.get("Version"), where),
                    dependencies=_validate_deps(meta.get_all("Requires-Dist") or [], where),
                    source=str(path))


def _from_sdist(path: Path) -> PackInfo:
    with tarfile.open(path) as tf:
        member = next((m for m in tf.getmembers() if m.name.count("/") == 1
                       and m.name.endswith("/pyproject.toml")), None)
        handle = tf.extractfile(member) if member is not None else None
        if member is None or handle is None:
            raise PackError(f"{path}: an sdist without a top-level pyproject.toml")
        text, where = handle.read().decode(), f"{path}!{member.name}"
    return _from_pyproject(_read_toml(text, where), where, None, str(path))


def read_pack(path: str | Path) -> PackInfo:
    """Read and validate a pack's metadata from a directory, wheel or sdist."""
    p = Path(path)
    if p.is_dir():
        where = p / "pyproject.toml"
        if not where.is_file():
            raise PackError(f"{p}: no pyproject.toml", hint="a node pack needs a pyproject.toml with "
                            "[project] name and version (`comfy node init` writes one)")
        info = _from_pyproject(_read_toml(where.read_text(), str(where)), str(where), p.resolve(), str(p))
        notes = _web_note(p)
        return PackInfo(**{**info.__dict__, "notes": notes}) if notes else info
    if p.suffix == ".whl":
        return _from_wheel(p)
    if p.name.endswith((".tar.gz", ".tgz")):
        return _from_sdist(p)
    raise PackError(f"{path}: not a folder, wheel or sdist", hint="pass a pack folder, a .whl or a .tar.gz")


def _web_note(root: Path) -> tuple[str, ...]:
    init = root / "__init__.py"
    if init.is_file() and "WEB_DIRECTORY" in init.read_text(errors="replace"):
        return ("WEB_DIRECTORY ignored: the vortex canvas does not run a pack's JavaScript",)
    return ()


def import_target(root: Path) -> tuple[Path, str]:
    """``(folder for sys.path, module name)`` to import a pack unpacked at ``root``: ComfyUI's
    way (the folder itself is the package) when it has an ``__init__.py``, else its one
    top-level package (a wheel's layout, or ``src/``)."""
    if (root / "__init__.py").is_file():
        return root.parent, root.name
    for base in (root, root / "src"):
        pkgs = sorted(d.name for d in base.iterdir() if (d / "__init__.py").is_file()) if base.is_dir() else []
        if len(pkgs) == 1:
            return base, pkgs[0]
    raise PackError(f"{root}: no package to import", hint="put NODE_CLASS_MAPPINGS or @vx.node functions "
                    "in the pack's __init__.py (or in its one top-level package)")


# Runs in the pack environment's python: imports the pack, prints its node specs as JSON.
_DISCOVER = r"""
import importlib, json, sys
path, module, pack = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, path)
mod = importlib.import_module(module)
from vortex_jupyter.nodes.comfy import spec_from_comfy_class
out, notes = [], []
def entry(spec, kind):
    d = spec.to_json()
    d.update(pack=pack, qualified=pack + "/" + spec.type, kind=kind, hidden=list(spec.hidden),
             always_run=bool(spec.always_run or spec.fingerprint is not None), heavy=bool(spec.heavy),
             timeout=spec.timeout)
    return d
names = getattr(mod, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {}
for name, cls in (getattr(mod, "NODE_CLASS_MAPPINGS", {}) or {}).items():
    out.append(entry(spec_from_comfy_class(name, cls, names.get(name)), "comfy"))
if getattr(mod, "WEB_DIRECTORY", None):
    notes.append("WEB_DIRECTORY ignored: the vortex canvas does not run a pack's JavaScript")
seen = {s["type"] for s in out}
for mname, m in sorted(sys.modules.items()):
    if m is None or not (mname == module or mname.startswith(module + ".")):
        continue
    for value in list(vars(m).values()):
        spec = getattr(value, "spec", None)
        if callable(value) and type(spec).__name__ == "NodeSpec" and spec.type not in seen:
            seen.add(spec.type)
            out.append(entry(spec, "vx"))
sys.stdout.write("\n@@VORTEX@@" + json.dumps({"nodes": out, "notes": notes}))
"""


def discover_specs(root: str | Path, *, pack: str | None = None, python: str | None = None,
                   timeout: float = 120.0) -> dict[str, Any]:
    """Import the pack unpacked at ``root`` in a subprocess of ``python`` (the pack
    environment's; default: ours) and return ``{"nodes": [spec json ...], "notes": [...]}``.
    Each spec carries ``pack`` and ``qualified`` (``pack/type``)."""
    root = Path(root).resolve()
    path, module = import_target(root)
    name = pack or root.name
    proc = subprocess.run([python or sys.executable, "-c", _DISCOVER, str(path), module, name],
                          capture_output=True, text=True, timeout=timeout, cwd=root)
    marker = proc.stdout.rfind("\n@@VORTEX@@")
    if proc.returncode != 0 or marker < 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise PackError(f"pack {name!r} failed to load in {python or sys.executable}:\n{tail}",
                        hint="fix the pack's import error, or `vtx sync` if its environment is incomplete")
    result: dict[str, Any] = json.loads(proc.stdout[marker + len("\n@@VORTEX@@"):])
    return result


def discover(root: str | Path, *, pack: str | None = None, python: str | None = None) -> list[str]:
    """The node type names a pack defines (imported in a subprocess, see ``discover_specs``)."""
    return [s["type"] for s in discover_specs(root, pack=pack, python=python)["nodes"]]
