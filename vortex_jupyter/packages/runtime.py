"""Installed packs at run time: their node types in the registry, and the call that runs one.

Policy (pack code is never imported into the kernel):

- ``vtx install`` discovers a pack's node types in a subprocess of its environment and keeps
  their listings in ``state.json`` (``envs.py``). ``installed_specs`` turns those listings back
  into ``NodeSpec``\\ s (``spec_from_json``) with ``pack`` set and ``fn`` a ``PackCall``: the
  kernel validates, plans and caches pack nodes like any other, without their code.
- The engine's worker pool routes a task whose spec has a ``pack`` to that pack's worker:
  a process started with the pack environment's python, the pack's folder first on its
  ``sys.path`` and, unless ``VORTEX_PACK_SANDBOX=off``, sandboxed with the pack's
  ``[tool.vortex.permissions]`` (``workers/sandbox.py``). One worker per pack, so packs
  sharing an environment still cannot patch each other's modules.
- ``PackCall`` imports the pack on its first call, in that worker (after the sandbox is in
  place), and finds the node type's real callable; anywhere else (the kernel, ``executor=
  "inline"``) it refuses with VE-900.
- Names: a pack's node type registers under its own name (what ComfyUI workflows use) unless
  the core or an earlier pack has it; it is always reachable as ``pack/type`` too.
- A ComfyUI ``IS_CHANGED`` cannot be called without the pack's code: such nodes always run.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from ..nodes.spec import NodeSpec, spec_from_json
from .pack import PackError, import_target

__all__ = ["PackCall", "PackWorker", "installed_specs", "pack_worker"]

#: Set in a pack's worker process to the pack's canonical name (``workers/worker.py``).
WORKER_PACK_ENV = "VORTEX_WORKER_PACK"


@dataclass(frozen=True)
class PackCall:
    """Runs node type ``type`` of pack ``pack`` (module ``module``) in that pack's worker."""

    pack: str
    module: str
    type: str
    kind: str  # "comfy" (NODE_CLASS_MAPPINGS) or "vx" (@vx.node)

    def __call__(self, **kwargs: Any) -> Any:
        return _resolve(self)(**kwargs)


_RESOLVED: dict[PackCall, Any] = {}


def _resolve(call: PackCall) -> Any:
    fn = _RESOLVED.get(call)
    if fn is not None:
        return fn
    here = os.environ.get(WORKER_PACK_ENV, "")
    if here != call.pack:
        where = f"the worker of pack {here!r}" if here else "this process"
        raise PackError(f"node type {call.type!r} of pack {call.pack!r} cannot run in {where}: a pack's "
                        "nodes run only in its own worker", hint="run the graph with the default executor "
                        "(workers), not executor='inline'")
    module = importlib.import_module(call.module)
    if call.kind == "comfy":
        from ..nodes.comfy import spec_from_comfy_class

        mappings = getattr(module, "NODE_CLASS_MAPPINGS", {}) or {}
        if call.type not in mappings:
            raise PackError(f"pack {call.pack!r} no longer defines node type {call.type!r}",
                            hint="`vtx install` the pack again to refresh its node list")
        fn = spec_from_comfy_class(call.type, mappings[call.type]).fn
    else:
        fn = _vx_function(module, call)
    _RESOLVED[call] = fn
    return fn


def _vx_function(module: Any, call: PackCall) -> Any:
    prefix = module.__name__
    for name, mod in sorted(sys.modules.items()):
        if mod is None or not (name == prefix or name.startswith(prefix + ".")):
            continue
        for value in list(vars(mod).values()):
            spec = getattr(value, "spec", None)
            if callable(value) and isinstance(spec, NodeSpec) and spec.type == call.type and spec.fn is not None:
                return spec.fn
    raise PackError(f"pack {call.pack!r} no longer defines node type {call.type!r}",
                    hint="`vtx install` the pack again to refresh its node list")


@dataclass(frozen=True)
class PackWorker:
    """How to start a pack's worker: its env's python, its import folder, its permissions."""

    pack: str
    env: str
    python: str
    paths: tuple[str, ...]
    permissions: dict[str, Any] = field(default_factory=dict, hash=False)
    version: str = ""
    #: the installed code's folder's mtime: a new install (``vtx install``/``update``) changes it
    stamp: int = 0


def pack_worker(pack: str, store: Any = None) -> PackWorker:
    """The worker settings of installed pack ``pack`` (canonical name)."""
    from .envs import PackStore

    store = store or PackStore.default()
    entry = store.packs().get(pack)
    if entry is None:
        raise PackError(f"pack {pack!r} is not installed (packs folder {store.root})",
                        hint="`vtx install` it, or set VORTEX_PACKS_DIR to the folder it was installed in")
    python = store.python(entry["env"])
    if not python.exists():
        raise PackError(f"the environment {entry['env']!r} of pack {pack!r} is missing ({python})",
                        hint="`vtx sync` recreates every environment from its lock")
    src = store.root / "src" / pack
    path, _ = import_target(src)
    return PackWorker(pack, str(entry["env"]), str(python), (str(path),), dict(entry.get("permissions", {})),
                      str(entry.get("version", "")), src.stat().st_mtime_ns)


def installed_specs(store: Any = None) -> list[NodeSpec]:
    """The node types of every installed pack, as kernel-side specs (no pack code imported)."""
    from .envs import PackStore

    store = store or PackStore.default()
    if not (store.root / "state.json").is_file():
        return []
    specs = []
    for key, entry in sorted(store.packs().items()):
        src = store.root / "src" / key
        try:
            _, module = import_target(src)
        except (PackError, OSError):
            continue  # its code is gone: `vtx doctor` / `vtx sync` say so; its nodes are unknown
        for listing in entry.get("specs", []):
            call = PackCall(key, module, str(listing["type"]), str(listing.get("kind", "comfy")))
            specs.append(spec_from_json(
                {**listing, "pack": key, "version": f"{entry.get('version', '')}:{listing.get('version', '1')}"},
                fn=call, hidden=tuple(listing.get("hidden", ())), always_run=bool(listing.get("always_run")),
                heavy=bool(listing.get("heavy")), timeout=listing.get("timeout"), source=f"{module}:{listing['type']}"))
    return specs
