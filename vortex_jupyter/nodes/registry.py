"""The node type registry: name -> ``NodeSpec``, for validation, the engine and the canvas palette.

State and policy:

- ``REGISTRY`` is process-global. Built-in nodes (``nodes.builtin``) and, when importable, the
  diffusion nodes (``nodes.diffusion.nodes.NODE_CLASS_MAPPINGS``) are registered lazily on the
  first READ (``get``/``lookup``/``types``/``to_json``/``in``/``len``), so importing the package
  stays cheap. Loading never overrides a name the user registered before it: user code wins.
- ``register`` replaces an existing name by default (re-running a notebook cell must update
  the node); ``replace=False`` raises instead.
- Thread-safe: writes and the lazy load hold one re-entrant lock; reads of a loaded registry
  are plain dict reads.
- ComfyUI classes keep their class: ``refresh()`` re-reads ``INPUT_TYPES`` (ComfyUI calls it on
  every ``/object_info`` request, e.g. LoadImage lists the input folder). A class may define
  ``VORTEX_INPUTS_TOKEN()``; when its value changes, ``lookup`` re-reads that class first.

>>> r = NodeRegistry(builtins=False)
>>> class Noop:
...     RETURN_TYPES = ("INT",); FUNCTION = "go"
...     @classmethod
...     def INPUT_TYPES(cls): return {"required": {"x": ("INT", {"default": 1})}}
...     def go(self, x): return (x,)
>>> r.register_comfy_class("Noop", Noop).fn(x=4)
(4,)
"""

from __future__ import annotations

import difflib
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import NodeDefinitionError, UnknownNodeTypeError
from . import decorator
from .comfy import spec_from_comfy_class
from .spec import NodeSpec

__all__ = ["REGISTRY", "NodeRegistry", "node"]

_DIFFUSION_MODULE = "vortex_jupyter.nodes.diffusion.nodes"


class NodeRegistry:
    def __init__(self, *, builtins: bool = True) -> None:
        self._lock = threading.RLock()
        self._specs: dict[str, NodeSpec] = {}
        # name -> (class, display name, heavy) for ComfyUI classes, to re-read INPUT_TYPES.
        self._comfy: dict[str, tuple[type, str | None, bool | None]] = {}
        self._tokens: dict[str, Any] = {}
        self._loaded = not builtins
        self._loading = False
        #: Modules whose lazy registration failed, with the error (shown, not raised).
        self.load_errors: dict[str, str] = {}

    # ------------------------------------------------------------------ writes

    def register(self, spec: NodeSpec, replace: bool = True) -> NodeSpec:
        if not isinstance(spec, NodeSpec):
            raise NodeDefinitionError(f"register() needs a NodeSpec, got {spec!r:.100}",
                                      hint="use @vx.node or register_comfy_class for classes")
        with self._lock:
            if not replace and spec.type in self._specs:
                raise NodeDefinitionError(f"node type {spec.type!r} is already registered",
                                          hint="pick another name or pass replace=True")
            self._specs[spec.type] = spec
            self._comfy.pop(spec.type, None)
            self._tokens.pop(spec.type, None)
        return spec

    def register_comfy_class(self, name: str, cls: type, display_name: str | None = None, *,
                             heavy: bool | None = None, replace: bool = True) -> NodeSpec:
        """Register a ComfyUI node class as type ``name``; returns its spec."""
        spec = spec_from_comfy_class(name, cls, display_name, heavy=heavy)
        with self._lock:
            self.register(spec, replace=replace)
            self._comfy[name] = (cls, display_name, heavy)
            self._tokens[name] = _token(cls)
        return spec

    def register_comfy_mappings(self, mappings: Mapping[str, type],
                                display_names: Mapping[str, str] | None = None, *,
                                heavy: bool | None = None) -> list[NodeSpec]:
        """Register a custom-node package's ``NODE_CLASS_MAPPINGS`` (and display names)."""
        names = display_names or {}
        return [self.register_comfy_class(n, c, names.get(n), heavy=heavy) for n, c in mappings.items()]

    def unregister(self, type_: str) -> None:
        with self._lock:
            self._specs.pop(type_, None)
            self._comfy.pop(type_, None)
            self._tokens.pop(type_, None)

    def refresh(self, type_: str | None = None) -> None:
        """Re-read ``INPUT_TYPES`` of one or all ComfyUI classes (e.g. new files to load)."""
        self._ensure_loaded()
        with self._lock:
            for name in [type_] if type_ is not None else list(self._comfy):
                if name not in self._comfy:
                    continue
                cls, display, heavy = self._comfy[name]
                try:
                    self._specs[name] = spec_from_comfy_class(name, cls, display, heavy=heavy)
                except NodeDefinitionError:
                    if type_ is not None:
                        raise
                    continue  # listing everything: keep the last good spec of a flaky class
                self._tokens[name] = _token(cls)

    # ------------------------------------------------------------------ reads

    def lookup(self, type_: str) -> NodeSpec | None:
        """The spec of ``type_`` or ``None`` (what validation takes as its ``lookup``)."""
        self._ensure_loaded()
        if type_ in self._tokens and self._tokens[type_] is not None:
            cls = self._comfy[type_][0]
            if _token(cls) != self._tokens[type_]:
                self.refresh(type_)
        return self._specs.get(type_)

    def get(self, type_: str) -> NodeSpec:
        spec = self.lookup(type_)
        if spec is None:
            raise UnknownNodeTypeError(f"unknown node type {type_!r}", hint=self._suggest(type_))
        return spec

    def _suggest(self, type_: str) -> str:
        names = list(self._specs)
        close = difflib.get_close_matches(str(type_), names, n=3, cutoff=0.6)
        lowered = {n.lower(): n for n in names}
        if str(type_).lower() in lowered and lowered[str(type_).lower()] not in close:
            close.insert(0, lowered[str(type_).lower()])
        if close:
            return "did you mean " + " or ".join(repr(c) for c in close) + "?"
        return "register it with @vx.node or registry.register_comfy_class (vortex nodes lists known types)"

    def _snapshot(self) -> list[tuple[str, NodeSpec]]:
        """Sorted ``(type, spec)`` pairs, copied under the lock (another thread may register)."""
        self._ensure_loaded()
        with self._lock:
            return sorted(self._specs.items(), key=lambda item: item[0])

    def types(self) -> list[str]:
        return [name for name, _ in self._snapshot()]

    def categories(self) -> dict[str, list[str]]:
        """Category -> sorted type names (uncategorised types under ``""``)."""
        out: dict[str, list[str]] = {}
        for name, spec in self._snapshot():
            out.setdefault(spec.category, []).append(name)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        """``{type: spec.to_json()}`` for every type (our ``/object_info``), with fresh combo lists."""
        self.refresh()
        return {name: spec.to_json() for name, spec in self._snapshot()}

    def to_object_info(self) -> dict[str, Any]:
        """The listing in the exact shape of ComfyUI's ``/object_info`` (for ComfyUI tools)."""
        self.refresh()
        return {name: _object_info(spec) for name, spec in self._snapshot()}

    def __contains__(self, type_: object) -> bool:
        return isinstance(type_, str) and self.lookup(type_) is not None

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._specs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.types())

    # ------------------------------------------------------------------ lazy load

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:  # _loading: re-entry from the loading thread
                return
            self._loading = True
            try:
                self._load_defaults()
                if self is REGISTRY:  # the process-wide registry knows the installed packs
                    self.load_packs()
            finally:
                self._loading = False
                self._loaded = True

    def _load_defaults(self) -> None:
        from . import builtin

        for func in builtin.FUNCTION_NODES:
            self._specs.setdefault(func.spec.type, func.spec)
        self._load_mappings(builtin.NODE_CLASS_MAPPINGS, builtin.NODE_DISPLAY_NAME_MAPPINGS, None)
        try:
            import importlib

            module = importlib.import_module(_DIFFUSION_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name not in (_DIFFUSION_MODULE, "vortex_jupyter.nodes.diffusion"):
                self._load_failed(_DIFFUSION_MODULE, exc)
            return
        except Exception as exc:  # a broken module must not take the built-ins down with it
            self._load_failed(_DIFFUSION_MODULE, exc)
            return
        # Diffusion nodes need torch: heavy unless a class says otherwise (VORTEX_HEAVY = False).
        self._load_mappings(getattr(module, "NODE_CLASS_MAPPINGS", {}),
                            getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}), True)

    def load_packs(self, store: Any = None) -> list[str]:
        """Register the node types of the installed node packs (``packages.runtime``): each under
        its own name unless that is taken (the core's nodes and earlier packs win), then as
        ``pack/type``. Returns the names registered. Pack code is not imported here."""
        from ..packages.runtime import installed_specs

        self._ensure_loaded()
        try:
            specs = installed_specs(store)
        except Exception as exc:  # a damaged packs folder must not take the core's nodes down
            self._load_failed("node packs", exc)
            return []
        names = []
        with self._lock:
            for spec in specs:
                name = spec.type
                current = self._specs.get(name)
                if current is not None and current.pack != spec.pack:
                    name = f"{spec.pack}/{spec.type}"
                self._specs[name] = spec
                names.append(name)
        return names

    def _load_mappings(self, mappings: Mapping[str, type], names: Mapping[str, str], heavy: bool | None) -> None:
        for name, cls in mappings.items():
            if name in self._specs:
                continue  # registered by the user before the first read: theirs wins
            class_heavy = getattr(cls, "VORTEX_HEAVY", heavy)
            try:
                self.register_comfy_class(name, cls, names.get(name), heavy=class_heavy)
            except NodeDefinitionError as exc:
                self._load_failed(f"{cls.__module__}:{name}", exc)

    def _load_failed(self, where: str, exc: BaseException) -> None:
        self.load_errors[where] = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"vortex-jupyter: could not register nodes from {where}: {exc}", stacklevel=3)


def _token(cls: type) -> Any:
    getter = getattr(cls, "VORTEX_INPUTS_TOKEN", None)
    if not callable(getter):
        return None
    try:
        return getter()
    except Exception:
        return None


def _object_info(spec: NodeSpec) -> dict[str, Any]:
    sections: dict[str, dict[str, Any]] = {"required": {}, "optional": {}}
    for port in spec.inputs:
        opts = {k: v for k, v in port.to_json().items() if k not in ("name", "type", "required", "widget", "choices")}
        kind: Any = list(port.choices) if port.choices is not None else port.type
        sections["required" if port.required else "optional"][port.name] = [kind, opts] if opts else [kind]
    if spec.hidden:
        sections["hidden"] = {h: h.upper() for h in spec.hidden}
    return {
        "input": sections,
        "input_order": {k: list(v) for k, v in sections.items() if k != "hidden"},
        "output": [o.type for o in spec.outputs],
        "output_is_list": [o.is_list for o in spec.outputs],
        "output_name": [o.name for o in spec.outputs],
        "name": spec.type,
        "display_name": spec.display_name or spec.type,
        "description": spec.description,
        "category": spec.category,
        "output_node": spec.output_node,
        "python_module": spec.source.split(":")[0],
    }


#: The process-global registry (``vx.registry``).
REGISTRY = NodeRegistry()


def node(fn: Any = None, /, **options: Any) -> Any:
    """``@vx.node``: ``decorator.node`` registering into the global ``REGISTRY`` (or the
    ``registry=`` given). Defined here so that the decorator module needs no registry."""
    options.setdefault("registry", REGISTRY)
    return decorator.node(fn, **options)
