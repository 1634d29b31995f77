"""``NodeSpec`` and ``PortSpec``: what a node type takes, gives, and how it runs.

A spec is immutable data plus the callable that runs the node. Both ways of declaring nodes
(``@vx.node`` functions and ComfyUI-style classes) end up as a ``NodeSpec`` in the registry.

Calling convention: ``spec.fn(**inputs)`` gets every input by name (links resolved to values,
widget params as given, defaults filled in) and returns a ``tuple`` with one item per output,
or a ``NodeResult`` when it also has UI data (images to show) for the canvas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .types import WIDGET_TYPES


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


#: Marks a port without a default.
MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One input of a node.

    ``widget`` inputs hold a value in ``node.params`` (INT, FLOAT, STRING, BOOLEAN, COMBO unless
    ``force_input``); the others are wired from another node's output. A widget input may also
    be linked (ComfyUI "convert widget to input").
    """

    name: str
    type: str
    default: Any = MISSING
    required: bool = True
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    multiline: bool = False
    force_input: bool = False
    #: ComfyUI seed widgets carry an extra UI value ("fixed", "randomize", ...) after them in
    #: ``widgets_values``; formats must skip/emit it.
    control_after_generate: bool = False
    display: str | None = None  # "slider", "number", "toggle", "seed", ... (a canvas hint)
    tooltip: str = ""
    #: A setting of a ComfyUI DynamicCombo: ``(combo input, values)``. It exists (is shown, sent,
    #: and placed right after the combo's widget in UI files) only while the combo holds one of
    #: ``values``. ``None`` for ordinary inputs.
    shown_when: tuple[str, tuple[Any, ...]] | None = None

    @property
    def widget(self) -> bool:
        return self.type in WIDGET_TYPES and not self.force_input

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        for key in ("min", "max", "step", "tooltip", "display"):
            value = getattr(self, key)
            if value not in (None, ""):
                out[key] = value
        if self.has_default:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.multiline:
            out["multiline"] = True
        if self.force_input:
            out["forceInput"] = True
        if self.control_after_generate:
            out["control_after_generate"] = True
        if self.shown_when is not None:
            out["shown_when"] = [self.shown_when[0], list(self.shown_when[1])]
        out["widget"] = self.widget
        return out


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    type: str
    is_list: bool = False


@dataclass(frozen=True, slots=True)
class NodeResult:
    """What a node returns when it has UI data besides its outputs (e.g. images to show)."""

    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeSpec:
    """A node type. ``version`` enters every cache key of nodes of this type."""

    type: str
    inputs: tuple[PortSpec, ...]
    outputs: tuple[OutputSpec, ...]
    fn: Callable[..., Any] | None = None
    category: str = ""
    display_name: str = ""
    description: str = ""
    output_node: bool = False
    version: str = "1"
    #: Run every time (e.g. randomness without a seed); never served from the cache.
    always_run: bool = False
    #: Like ComfyUI's IS_CHANGED: called with the node's widget params, its (hashable) result
    #: enters the cache key, e.g. a file's mtime+size+hash.
    fingerprint: Callable[..., Any] | None = None
    #: Default per-node timeout in seconds (``None``: the run's default).
    timeout: float | None = None
    #: Where the callable lives ("package.module:qualname"), for workers that import it.
    source: str = ""
    #: Defined in ``__main__`` or otherwise not importable: must be shipped by value.
    by_value: bool = False
    #: Needs torch/diffusers (runs only in workers that loaded them).
    heavy: bool = False
    #: ComfyUI hidden inputs the run loop fills in: "prompt" (the graph in API format),
    #: "extra_pnginfo" ({"workflow": the graph in UI format}), "unique_id" (the node id).
    hidden: tuple[str, ...] = ()
    #: Extra validation of a node's params beyond ranges/choices (e.g. an unsupported
    #: sampler/scheduler pair): ``check(params) -> [(port, message, hint), ...]``, reported
    #: by validation as VE-116; a 4th item "VE-117" reports a file the node reads as missing
    #: (``errors.MissingFile``). A ``check`` with an ``inputs`` attribute (names) validates those
    #: inputs itself: generic validation then skips their choice lists (ComfyUI semantics).
    check: Callable[[dict[str, Any]], list[tuple[str, ...]]] | None = None
    #: The node pack (its canonical name) whose worker runs this node; ``""``: the core's workers.
    pack: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs_by_name", {p.name: p for p in self.inputs})

    def input(self, name: str) -> PortSpec | None:
        by_name: dict[str, PortSpec] = self.__dict__["_inputs_by_name"]
        return by_name.get(name)

    def output_index(self, ref: int | str) -> int:
        """Index of an output given by index or by name (name first, then type)."""
        if isinstance(ref, int):
            if 0 <= ref < len(self.outputs):
                return ref
            raise IndexError(f"{self.type} has {len(self.outputs)} outputs; index {ref} does not exist")
        for i, out in enumerate(self.outputs):
            if out.name == ref:
                return i
        for i, out in enumerate(self.outputs):
            if out.type == ref:
                return i
        names = ", ".join(o.name for o in self.outputs) or "none"
        raise KeyError(f"{self.type} has no output named {ref!r} (outputs: {names})")

    def to_json(self) -> dict[str, Any]:
        """The listing entry for this type (our equivalent of ComfyUI's ``/object_info``)."""
        return {
            "type": self.type,
            "display_name": self.display_name or self.type,
            "category": self.category,
            "description": self.description,
            "output_node": self.output_node,
            "version": self.version,
            "inputs": [p.to_json() for p in self.inputs],
            "outputs": [{"name": o.name, "type": o.type, "is_list": o.is_list} for o in self.outputs],
            **({"pack": self.pack} if self.pack else {}),
        }


_PORT_KEYS = {"min": "min", "max": "max", "step": "step", "tooltip": "tooltip", "display": "display",
              "multiline": "multiline", "forceInput": "force_input",
              "control_after_generate": "control_after_generate"}


def port_from_json(d: dict[str, Any]) -> PortSpec:
    """The inverse of ``PortSpec.to_json``."""
    extra = {ours: d[theirs] for theirs, ours in _PORT_KEYS.items() if theirs in d}
    if "choices" in d:
        extra["choices"] = tuple(d["choices"])
    if "shown_when" in d:
        extra["shown_when"] = (d["shown_when"][0], tuple(d["shown_when"][1]))
    return PortSpec(str(d["name"]), str(d["type"]), d.get("default", MISSING), bool(d.get("required", True)),
                    **extra)


def spec_from_json(d: dict[str, Any], **fields: Any) -> NodeSpec:
    """The inverse of ``NodeSpec.to_json`` (a listing entry back to a spec); ``fields`` set the
    parts a listing does not carry (``fn``, ``hidden``, ...)."""
    return NodeSpec(
        type=str(d["type"]), inputs=tuple(port_from_json(i) for i in d.get("inputs", [])),
        outputs=tuple(OutputSpec(str(o["name"]), str(o["type"]), bool(o.get("is_list", False)))
                      for o in d.get("outputs", [])),
        category=str(d.get("category", "")), display_name=str(d.get("display_name", "")),
        description=str(d.get("description", "")), output_node=bool(d.get("output_node", False)),
        version=str(d.get("version", "1")), pack=str(d.get("pack", "")), **fields)
