"""The project manifest ``vortex.toml``: the node packs a project's workflows need.

::

    [packs.comfyui-kjnodes]
    version = "==1.1.0"                                     # a PEP 440 specifier, or "" for any
    source = "git+https://github.com/kijai/ComfyUI-KJNodes@f91daf9"

``source`` is a folder path, a wheel/sdist path or a git URL (``git+URL[@REV]``), what
``vtx install`` takes. ``suggest(workflow)`` proposes entries from what ComfyUI saves in a
workflow: ``extra.node_versions`` (pack id -> version or git hash) and each node's
``properties.cnr_id`` / ``properties.ver``; ComfyUI's own nodes (``comfy-core``) are skipped.

>>> m = Manifest({"six-nodes": PackEntry("six-nodes", ">=1.0", "./six-nodes")})
>>> Manifest.loads(m.dumps()) == m
True
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from .pack import PackError

__all__ = ["CORE_PACKS", "Manifest", "PackEntry", "packs_of_workflow", "suggest"]

#: Pack ids that name ComfyUI itself (its built-in nodes), never a pack to install.
CORE_PACKS = frozenset({"comfy-core", "comfyui", "comfy"})
_GIT_HASH = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class PackEntry:
    name: str
    version: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        try:
            SpecifierSet(self.version)
        except InvalidSpecifier:
            raise PackError(f"vortex.toml: [packs.{self.name}] version {self.version!r} is not a "
                            "version specifier", hint='e.g. version = ">=1.2,<2" or "==1.2.0"') from None


@dataclass
class Manifest:
    packs: dict[str, PackEntry] = field(default_factory=dict)

    @classmethod
    def loads(cls, text: str, where: str = "vortex.toml") -> Manifest:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PackError(f"{where}: not valid TOML ({exc})") from None
        packs = data.get("packs", {})
        if not isinstance(packs, dict):
            raise PackError(f"{where}: [packs] must be a table of tables")
        out: dict[str, PackEntry] = {}
        for name, body in packs.items():
            if not isinstance(body, dict):
                raise PackError(f"{where}: [packs.{name}] must be a table", hint='version = "", source = "..."')
            out[name] = PackEntry(name, str(body.get("version", "")), str(body.get("source", "")))
        return cls(out)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        return cls.loads(Path(path).read_text(), str(path))

    def dumps(self) -> str:
        lines = ["# node packs this project's workflows need (vtx install reads `source`)"]
        for name in sorted(self.packs):
            entry = self.packs[name]
            lines += ["", f"[packs.{json.dumps(name)}]", f"version = {json.dumps(entry.version)}",
                      f"source = {json.dumps(entry.source)}"]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps())

    def merge(self, other: Manifest) -> Manifest:
        """Entries of ``other`` added where this manifest has none (ours win)."""
        return Manifest({**other.packs, **self.packs})


def packs_of_workflow(workflow: dict[str, Any]) -> dict[str, str]:
    """``{pack id: version or git hash}`` that a ComfyUI UI-format workflow says it used."""
    found: dict[str, str] = {}
    extra = workflow.get("extra") if isinstance(workflow.get("extra"), dict) else {}
    for name, ver in (extra or {}).get("node_versions", {}).items():
        found[str(name)] = str(ver)
    for node in workflow.get("nodes", []) if isinstance(workflow.get("nodes"), list) else []:
        props = node.get("properties") if isinstance(node, dict) else None
        if isinstance(props, dict) and props.get("cnr_id"):
            found.setdefault(str(props["cnr_id"]), str(props.get("ver", "")))
    return {k: v for k, v in found.items() if canonicalize_name(k) not in CORE_PACKS}


def suggest(workflow: dict[str, Any]) -> Manifest:
    """Manifest entries for the packs a workflow used: a semver pins ``==``; a git hash
    becomes a git source at that commit (a registry id gives a GitHub guess to check)."""
    packs: dict[str, PackEntry] = {}
    for name, ver in sorted(packs_of_workflow(workflow).items()):
        if _GIT_HASH.match(ver):
            packs[name] = PackEntry(name, "", f"git+https://github.com/<owner>/{name}@{ver}")
        else:
            try:
                packs[name] = PackEntry(name, f"=={ver}" if ver else "", "")
            except PackError:  # not a PEP 440 version: keep the pack, unpinned
                packs[name] = PackEntry(name, "", "")
    return Manifest(packs)
