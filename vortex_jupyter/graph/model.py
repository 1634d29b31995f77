"""The graph as pure data: nodes, edges, params, canvas fields. No I/O, no node specs.

Responsibilities:
- hold nodes (``NodeData``) and edges (``Edge``) with O(1) lookups in both directions;
- be the ONE place graph state is mutated, through methods that notify listeners with a
  ``Change`` (the engine re-hashes exactly what changed; the canvas mirrors it into the Y doc);
- represent broken graphs too (edges from missing nodes, two edges into one input), so that
  validation can report them instead of loaders silently dropping them.

Edges are addressed ``(src, src_output) -> (dst, dst_input)``; ``src_output`` is an index.
Node ids are strings. Types are names only: what a type means lives in ``vortex_jupyter.nodes``.

>>> g = GraphModel()
>>> a = g.add_node("Add", {"a": 1, "b": 2})
>>> b = g.add_node("Add", {"b": 5})
>>> g.connect(a, 0, b, "a").dst
'2'
>>> sorted(g.nodes)
['1', '2']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal[
    "node_added",
    "node_removed",
    "param_set",
    "param_deleted",
    "edge_added",
    "edge_removed",
    "layout",  # pos / size / title / extra: never affects cache keys
    "meta",  # groups / graph extra
    "mode",  # a node muted / bypassed / made active again: changes what consumers receive
]

#: Where a node's ComfyUI mode lives: ``extra["comfy_ui"]["raw"]["mode"]`` (0 always, 2 muted,
#: 4 bypassed), the place the UI format keeps it for lossless round trips.
MODE_KEY = "comfy_ui"


def _mode_in(extra: dict[str, Any]) -> int:
    kept = extra.get(MODE_KEY)
    raw = kept.get("raw") if isinstance(kept, dict) else None
    mode = raw.get("mode") if isinstance(raw, dict) else None
    return mode if type(mode) is int else 0


@dataclass(slots=True)
class NodeData:
    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    pos: tuple[float, float] = (0.0, 0.0)
    size: tuple[float, float] | None = None
    title: str | None = None
    #: Format-specific data kept for lossless round trips (ComfyUI UI: color, mode, flags ...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    src_output: int
    dst: str
    dst_input: str


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    node: str | None = None
    #: param name for param changes, the Edge for edge changes, the field name for layout.
    detail: Any = None
    #: True when the change came from a remote replica (canvas), so mirrors don't echo it.
    origin: str | None = None


Listener = Callable[[Change], None]


class GraphModel:
    """Mutable graph state. Read freely; mutate only through the methods."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeData] = {}
        # dst -> input name -> edges (normally one; more only in broken graphs)
        self._in: dict[str, dict[str, list[Edge]]] = {}
        # src -> edges leaving it (src may be missing: a dangling edge)
        self._out: dict[str, list[Edge]] = {}
        self.groups: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self._listeners: list[Listener] = []
        self._next_id = 1
        #: node id -> its ComfyUI mode, for nodes whose mode is not 0 (kept by the methods, so
        #: "no muted or bypassed node" is an O(1) test on the engine's hot paths).
        self.modes: dict[str, int] = {}

    # ---- listeners -------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        self._listeners.remove(fn)

    def _emit(self, change: Change) -> None:
        for fn in self._listeners:
            fn(change)

    # ---- reads -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def edges(self) -> Iterator[Edge]:
        for by_input in self._in.values():
            for edges in by_input.values():
                yield from edges

    def inputs_of(self, node_id: str) -> Mapping[str, list[Edge]]:
        """Edges into ``node_id`` by input name."""
        return self._in.get(node_id, {})

    def outputs_of(self, node_id: str) -> list[Edge]:
        """Edges leaving ``node_id``."""
        return self._out.get(node_id, [])

    def successors(self, node_id: str) -> list[str]:
        return [e.dst for e in self._out.get(node_id, ())]

    def predecessors(self, node_id: str) -> list[str]:
        return [e.src for edges in self._in.get(node_id, {}).values() for e in edges]

    def new_id(self) -> str:
        while str(self._next_id) in self.nodes:
            self._next_id += 1
        return str(self._next_id)

    # ---- node mutations ----------------------------------------------------------------
    def add_node(
        self,
        type: str,
        params: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        pos: tuple[float, float] = (0.0, 0.0),
        size: tuple[float, float] | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> str:
        node_id = self.new_id() if id is None else str(id)
        if node_id in self.nodes:
            raise KeyError(f"node id {node_id!r} already exists; pick another id or omit it")
        self.nodes[node_id] = NodeData(
            node_id, type, dict(params or {}), (float(pos[0]), float(pos[1])), size, title, dict(extra or {})
        )
        if extra and (mode := _mode_in(extra)):
            self.modes[node_id] = mode
        self._emit(Change("node_added", node_id, origin=origin))
        return node_id

    def remove_node(self, node_id: str, *, origin: str | None = None) -> None:
        self._require(node_id)
        for edges in list(self._in.get(node_id, {}).values()):
            for e in list(edges):
                self._drop_edge(e, origin)
        for e in list(self._out.get(node_id, ())):
            self._drop_edge(e, origin)
        del self.nodes[node_id]
        self._in.pop(node_id, None)
        self._out.pop(node_id, None)
        self.modes.pop(node_id, None)
        self._emit(Change("node_removed", node_id, origin=origin))

    def set_param(self, node_id: str, name: str, value: Any, *, origin: str | None = None) -> None:
        params = self._require(node_id).params
        if name in params and type(params[name]) is type(value) and params[name] == value:
            return  # no-op edits must not invalidate caches
        params[name] = value
        self._emit(Change("param_set", node_id, name, origin))

    def delete_param(self, node_id: str, name: str, *, origin: str | None = None) -> None:
        params = self._require(node_id).params
        if name in params:
            del params[name]
            self._emit(Change("param_deleted", node_id, name, origin))

    def set_layout(
        self,
        node_id: str,
        *,
        pos: tuple[float, float] | None = None,
        size: tuple[float, float] | None = None,
        title: str | None = None,
        origin: str | None = None,
    ) -> None:
        node = self._require(node_id)
        if pos is not None:
            node.pos = (float(pos[0]), float(pos[1]))
            self._emit(Change("layout", node_id, "pos", origin))
        if size is not None:
            node.size = (float(size[0]), float(size[1]))
            self._emit(Change("layout", node_id, "size", origin))
        if title is not None:
            node.title = title or None
            self._emit(Change("layout", node_id, "title", origin))

    def set_extra(self, node_id: str, extra: dict[str, Any], *, origin: str | None = None) -> None:
        """Replace the node's format data (``NodeData.extra``). The mode stays what it is
        (``set_mode`` changes it) and is written into the new data where the UI format keeps it."""
        node = self._require(node_id)
        if node.extra == extra:
            return
        node.extra = dict(extra)
        mode = self.modes.get(node_id, 0)
        if _mode_in(node.extra) != mode and (mode or MODE_KEY in node.extra):
            kept = node.extra.get(MODE_KEY)
            kept = dict(kept) if isinstance(kept, dict) else {}
            raw = kept.get("raw")
            kept["raw"] = {**(raw if isinstance(raw, dict) else {}), "mode": mode}
            node.extra[MODE_KEY] = kept
        self._emit(Change("layout", node_id, "extra", origin))

    def mode(self, node_id: str) -> int:
        """The node's ComfyUI mode: 0 always (the default), 2 muted, 4 bypassed."""
        return self.modes.get(node_id, 0)

    def set_mode(self, node_id: str, mode: int, *, origin: str | None = None) -> None:
        """Set the ComfyUI mode (0 always, 2 muted, 4 bypassed); stored where the UI format
        keeps it. The nested dicts are copied, not edited, so copies of the model stay apart."""
        node = self._require(node_id)
        if type(mode) is not int:
            raise TypeError(f"mode of node {node_id!r} must be an int (0 always, 2 muted, 4 bypassed), got {mode!r}")
        if self.modes.get(node_id, 0) == mode:
            return
        kept = node.extra.get(MODE_KEY)
        kept = dict(kept) if isinstance(kept, dict) else {}
        raw = kept.get("raw")
        kept["raw"] = {**(raw if isinstance(raw, dict) else {}), "mode": mode}
        node.extra = {**node.extra, MODE_KEY: kept}
        if mode:
            self.modes[node_id] = mode
        else:
            self.modes.pop(node_id, None)
        self._emit(Change("mode", node_id, mode, origin))

    def touch_meta(self, *, origin: str | None = None) -> None:
        """Call after editing ``groups`` or ``extra`` in place."""
        self._emit(Change("meta", None, None, origin))

    # ---- edge mutations ----------------------------------------------------------------
    def connect(
        self,
        src: str,
        src_output: int,
        dst: str,
        dst_input: str,
        *,
        replace: bool = True,
        origin: str | None = None,
    ) -> Edge:
        """Link ``src``'s output to ``dst``'s input.

        With ``replace`` (the editor's behaviour) an existing edge into that input is removed
        first. Loaders pass ``replace=False`` so a broken file stays broken for validation.
        ``src`` may be missing (a dangling edge, reported by validation); ``dst`` may not.
        """
        self._require(dst)
        edge = Edge(str(src), int(src_output), str(dst), str(dst_input))
        slot = self._in.setdefault(edge.dst, {}).setdefault(edge.dst_input, [])
        if replace:
            for old in list(slot):
                self._drop_edge(old, origin)
            slot = self._in.setdefault(edge.dst, {}).setdefault(edge.dst_input, [])
        slot.append(edge)
        self._out.setdefault(edge.src, []).append(edge)
        self._emit(Change("edge_added", edge.dst, edge, origin))
        return edge

    def disconnect(self, dst: str, dst_input: str, *, origin: str | None = None) -> list[Edge]:
        """Remove every edge into ``dst.dst_input``; returns them."""
        edges = list(self._in.get(dst, {}).get(dst_input, ()))
        for e in edges:
            self._drop_edge(e, origin)
        return edges

    def remove_edge(self, edge: Edge, *, origin: str | None = None) -> None:
        self._drop_edge(edge, origin)

    def _drop_edge(self, edge: Edge, origin: str | None) -> None:
        by_input = self._in.get(edge.dst, {})
        slot = by_input.get(edge.dst_input, [])
        if edge not in slot:
            raise KeyError(f"no edge {edge}")
        slot.remove(edge)
        if not slot:
            del by_input[edge.dst_input]
        self._out[edge.src].remove(edge)
        if not self._out[edge.src] and edge.src not in self.nodes:
            del self._out[edge.src]
        self._emit(Change("edge_removed", edge.dst, edge, origin))

    def _require(self, node_id: str) -> NodeData:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"no node with id {node_id!r} in this graph") from None

    # ---- copies ------------------------------------------------------------------------
    def copy(self) -> GraphModel:
        """A deep-enough copy (params dicts copied; values shared) without listeners."""
        out = GraphModel()
        for n in self.nodes.values():
            out.nodes[n.id] = NodeData(n.id, n.type, dict(n.params), n.pos, n.size, n.title, dict(n.extra))
        for e in self.edges():
            out._in.setdefault(e.dst, {}).setdefault(e.dst_input, []).append(e)
            out._out.setdefault(e.src, []).append(e)
        out.groups = [dict(g) for g in self.groups]
        out.extra = dict(self.extra)
        out._next_id = self._next_id
        out.modes = dict(self.modes)
        return out
