"""What ComfyUI's frontend sends for a graph at queue time: PrimitiveNode values folded into the
widgets they feed, and text substitution (``textsub``) applied. Used by the API export
(``formats.comfy_api``) and by the engine when it builds a task (the value substituted here is
the value the node receives).

Policy for a PrimitiveNode in the engine, where it runs as a pass-through node: its value is
substituted when its "Run widget replace on values" property is on, or when it feeds a save
node's ``filename_prefix`` (the frontend substitutes that widget again after the primitive
wrote it); all its targets then get the substituted value.

>>> from datetime import datetime
>>> from vortex_jupyter.graph.model import GraphModel
>>> g = GraphModel(); _ = g.add_node("SaveImage", {"filename_prefix": "%date:yy%_x"}, id="1")
>>> QueueView(g, lambda t: None, datetime(2031, 1, 2)).params("1", g.nodes["1"].params)
{'filename_prefix': '31_x'}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .model import GraphModel, NodeData
from .textsub import MISSING, PREFIX, PRIMITIVE, PRIMITIVE_REPLACE, SAVE_TYPES, substitute

Lookup = Callable[[str], Any]
_KEY = "comfy_ui"


def _raw(node: NodeData) -> dict[str, Any]:
    kept = node.extra.get(_KEY)
    raw = kept.get("raw") if isinstance(kept, dict) else None
    return raw if isinstance(raw, dict) else {}


def _properties(node: NodeData) -> dict[str, Any]:
    props = _raw(node).get("properties")
    return props if isinstance(props, dict) else {}


def _is_top(node: NodeData) -> bool:
    kept = node.extra.get(_KEY)
    return not (isinstance(kept, dict) and "sub" in kept)


class QueueView:
    def __init__(self, model: GraphModel, lookup: Lookup, now: datetime | None = None) -> None:
        self.model, self.lookup = model, lookup
        self.now = now or datetime.now()
        self._named: list[tuple[Any, str, NodeData]] | None = None

    # ---- PrimitiveNode -------------------------------------------------------------------------
    def primitive(self, node_id: str) -> NodeData | None:
        node = self.model.nodes.get(node_id)
        return node if node is not None and node.type == PRIMITIVE else None

    def primitive_value(self, node: NodeData) -> Any:
        """A primitive's value as it lands in the widgets it feeds."""
        value = node.params.get("value")
        if value and isinstance(value, str) and _properties(node).get(PRIMITIVE_REPLACE) is True:
            return substitute(value, self.resolve, self.now)
        return value

    # ---- params --------------------------------------------------------------------------------
    def value(self, node: NodeData, name: str, value: Any) -> Any:
        """Input ``name`` of ``node`` as sent: a save node's prefix substituted."""
        if name == PREFIX and node.type in SAVE_TYPES and isinstance(value, str) and "%" in value:
            return substitute(value, self.resolve, self.now)
        return value

    def params(self, node_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """The engine's hook: ``params`` (what a task gets) with substitutions applied; the same
        dict when nothing changes."""
        node = self.model.nodes[node_id]
        if node.type == PRIMITIVE:
            value = params.get("value")
            if isinstance(value, str) and "%" in value and self._substitutes_primitive(node):
                return {**params, "value": substitute(value, self.resolve, self.now)}
            return params
        prefix = params.get(PREFIX)
        new = self.value(node, PREFIX, prefix)
        return params if new is prefix else {**params, PREFIX: new}

    def _substitutes_primitive(self, node: NodeData) -> bool:
        if _properties(node).get(PRIMITIVE_REPLACE) is True:
            return True
        return any(e.dst_input == PREFIX and self.model.nodes[e.dst].type in SAVE_TYPES
                   for e in self.model.outputs_of(node.id) if e.dst in self.model.nodes)

    # ---- %Node.widget% -------------------------------------------------------------------------
    def resolve(self, name: str, widget: str) -> Any:
        if self._named is None:
            self._named = [(self._sr_name(n), self._title(n), n) for n in self.model.nodes.values() if _is_top(n)]
        node = next((n for sr, _, n in self._named if sr == name), None)
        if node is None:
            node = next((n for _, title, n in self._named if title == name), None)
        return MISSING if node is None else self._widget(node, widget)

    def _sr_name(self, node: NodeData) -> Any:
        props = _properties(node)
        if "Node name for S&R" in props:
            return props["Node name for S&R"]
        return None if node.type in SAVE_TYPES else node.type  # the frontend adds it to the others

    def _title(self, node: NodeData) -> str:
        if node.title is not None:
            return node.title
        spec = self.lookup(node.type)
        return str(getattr(spec, "display_name", "") or node.type)

    def _widget(self, node: NodeData, name: str) -> Any:
        spec = self.lookup(node.type)
        port = spec.input(name) if spec is not None else None
        if port is None or not getattr(port, "widget", False):
            return MISSING
        edges = self.model.inputs_of(node.id).get(name)
        if edges:
            src = self.primitive(edges[0].src)
            if src is not None:
                return self.primitive_value(src)  # applied to the widget before serialising
            return self._stale(node, spec, name)
        if name in node.params:
            return node.params[name]
        return port.default if getattr(port, "has_default", False) else MISSING

    def _stale(self, node: NodeData, spec: Any, name: str) -> Any:
        from .formats._ui_widgets import loaded

        values = _raw(node).get("widgets_values")
        return loaded(node.type, spec, values).get(name, MISSING)
