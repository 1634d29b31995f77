"""Writing ComfyUI's UI ("workflow") format; the reader and the format are described in
``comfy_ui``.

Policy: start from what the reader kept (each node's raw data, the top level, the link table,
the node order) and overlay what the model says now: positions, sizes, titles, modes, params
and links. What was not edited is written back exactly as it was read -- same keys, same key
order, same values -- so a UI file round-trips byte for byte (``json.dumps``) unless edited.
Kept data is untrusted (a native file may carry anything in ``extra``): every piece is
shape-checked where it is used and ignored if malformed, falling back to the spec.

Node ids that are not integers (``g.add(..., id="x")``, nodes of a flattened subgraph) get
fresh integer ids after ``last_node_id``; links are planned by ``_ui_links``; expanded
subgraphs and group nodes are written back by ``_ui_subgraph_write``.
"""

from __future__ import annotations

from typing import Any

from ...errors import ValidationError
from ..model import Edge, GraphModel, NodeData
from ._common import GROUP_BOX, gc_paused, group_box
from ._ui_common import KEY, MAX_ID, PRIMITIVE, Lookup, as_dict, as_id, as_list, slot_name, slots
from ._ui_links import LinkPlanner, Origin, is_reroute, output_links
from ._ui_subgraph_write import DefinitionPatcher, intact, output_slot, top_of
from ._ui_widgets import MISSING, widgets_out

_TOP_ORDER = ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version")
_NODE_ORDER = ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "title",
               "properties", "widgets_values")
_RAW_KINDS = ("note", "reroute", "instance", "group")

Entry = tuple[str, Any]  # ("model", model id) or ("raw", (raw node, kind, instance key))


def to_comfy_ui(model: GraphModel, lookup: Lookup) -> dict[str, Any]:
    """The model as a UI-format workflow (a dict ready for ``json.dumps``)."""
    with gc_paused():
        return _Writer(model, lookup).write()


class _Writer:
    def __init__(self, model: GraphModel, lookup: Lookup) -> None:
        self.model, self.lookup = model, lookup
        self.meta = as_dict(model.extra.get(KEY))
        self.top = as_dict(self.meta.get("top"))
        kept = {str(as_dict(e).get("id")) for e in as_list(self.meta.get("order"))
                if as_dict(e).get("kind") in ("instance", "group")}
        self.keep = intact(model, self.meta, kept)
        self.tops = {mid: top_of(node) for mid, node in model.nodes.items()}
        self.raw_ids: dict[str, int] = {}
        self._topo: dict[str, int] | None = None
        self.entries = self._entries()
        self.ids = self._ids()
        self.links = LinkPlanner(model, lookup, self.meta, self.ids, self._origin)
        self.patcher = DefinitionPatcher(model, lookup, self.meta, self.keep)

    def write(self) -> dict[str, Any]:
        self.patcher.collect()
        for kind, payload in self.entries:
            if kind == "raw":
                self.links.written.add(as_id(payload[0].get("id")))
                if is_reroute(payload[0]):
                    self.links.reroutes[as_id(payload[0].get("id"))] = payload[0]
        self.links.written |= {self.ids[mid] for kind, mid in self.entries if kind == "model"}
        shapes = {mid: self._input_slots(mid) for kind, mid in self.entries if kind == "model"}
        inputs = {mid: self._plan_inputs(mid, s) for mid, s in shapes.items()}
        raw_inputs = {id(p[0]): [self.links.raw_input(s.get("link")) for s in p[0].get("inputs") or []]
                      for kind, p in self.entries if kind == "raw" and p[1] != "note"}
        self.links.keep_unused()
        outgoing = self.links.by_origin()
        self.known = self.links.known()
        nodes = [self._model_entry(p, inputs[p], outgoing) if kind == "model"
                 else self._raw_entry(p, raw_inputs.get(id(p[0])), outgoing) for kind, p in self.entries]
        return self._top(nodes)

    # ---- which nodes, in which order, with which ids ----------------------------------------
    def _entries(self) -> list[Entry]:
        out: list[Entry] = []
        done: set[str] = set()
        for entry in as_list(self.meta.get("order")):
            entry = as_dict(entry)
            mid, raw, kind = entry.get("node"), entry.get("raw"), entry.get("kind")
            if isinstance(mid, str) and mid in self.model.nodes and self.tops[mid] is None:
                out.append(("model", mid))
                done.add(mid)
            elif isinstance(raw, dict) and kind in _RAW_KINDS and as_id(raw.get("id")):
                key = str(entry.get("id"))
                if kind in ("note", "reroute") or key in self.keep:
                    out.append(("raw", (raw, kind, key)))
                    self.raw_ids[key] = as_id(raw.get("id"))
                else:  # a flattened instance: its nodes take its place
                    flat = [m for m, top in self.tops.items() if top == key and m not in done]
                    out += [("model", m) for m in flat]
                    done.update(flat)
        for mid, top in self.tops.items():
            if mid not in done and top not in self.keep:
                out.append(("model", mid))  # new nodes, and those of flattened instances
        return out

    def _ids(self) -> dict[str, int]:
        reserved = {as_id(p[0].get("id")) for kind, p in self.entries if kind == "raw"}
        wanted = [mid for kind, mid in self.entries if kind == "model"]
        wanted += [e.src for e in self.model.edges() if e.src not in self.model.nodes]
        ids: dict[str, int] = {}
        for mid in wanted:
            if mid.isdigit() and str(int(mid)) == mid and 0 < int(mid) < MAX_ID and int(mid) not in reserved:
                ids.setdefault(mid, int(mid))
                reserved.add(int(mid))
        counter = max([as_id(self.top.get("last_node_id")), *reserved], default=0)
        self.last_node = as_id(self.top.get("last_node_id"))
        for mid in wanted:
            if mid not in ids:
                counter += 1
                ids[mid] = self.last_node = counter
        return ids

    def _origin(self, edge: Edge) -> Origin | None:
        """Where a link from ``edge``'s source starts in the file."""
        top = self.tops.get(edge.src)
        if top is not None and top in self.keep:
            slot = output_slot(self.meta, top, edge)
            return None if slot is None or top not in self.raw_ids else (self.raw_ids[top], slot)
        return (self.ids[edge.src], edge.src_output) if edge.src in self.ids else None

    # ---- model nodes -------------------------------------------------------------------------
    def _kept(self, mid: str) -> tuple[NodeData, dict[str, Any], dict[str, Any]]:
        node = self.model.nodes[mid]
        kept = as_dict(node.extra.get(KEY))
        return node, kept, as_dict(kept.get("raw"))

    def _input_slots(self, mid: str) -> list[dict[str, Any]]:
        node, _, raw = self._kept(mid)
        spec = self.lookup(node.type)
        linked = self.model.inputs_of(mid)
        found = slots(raw.get("inputs"))
        if found is None:  # a file node without "inputs" gets slots only for what is linked now
            ports = spec.inputs if spec is not None and "type" not in raw and node.type != PRIMITIVE else ()
            found = [{"name": p.name, "type": p.type, "link": None} for p in ports if not getattr(p, "widget", False)]
        names = [slot_name(s) for s in found]
        for name in linked:
            if name not in names:
                port = spec.input(name) if spec is not None else None
                slot: dict[str, Any] = {"name": name, "type": getattr(port, "type", "*"), "link": None}
                if getattr(port, "widget", False):
                    slot["widget"] = {"name": name}
                found.append(slot)
                names.append(name)
        return found

    def _plan_inputs(self, mid: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        linked = self.model.inputs_of(mid)
        top_level = self.tops[mid] is None
        unresolved = as_dict(as_dict(self.model.nodes[mid].extra.get(KEY)).get("link_ids"))
        for i, slot in enumerate(found):
            edges = linked.get(slot_name(slot))
            if edges:
                lid = self.links.model_input(mid, slot_name(slot), edges[0], i, top_level)
            else:  # a link that fed nothing at load (e.g. an empty subgraph output) stays
                kept = as_list(unresolved.get(slot_name(slot)))
                lid = self.links.raw_input(kept[0]) if top_level and kept[1:] == [None, None] else None
            if slot.get("link") != lid:
                slot["link"] = lid
        return found

    def _model_entry(self, mid: str, inputs: list[dict[str, Any]], outgoing: dict[Origin, list[int]]) -> Any:
        node, _, raw = self._kept(mid)
        spec = self.lookup(node.type)
        loaded = "type" in raw
        iid = self.ids[mid]
        fields: dict[str, Any] = {"id": iid, "type": node.type, "pos": _pair(node.pos, raw.get("pos"))}
        if node.size is not None:
            fields["size"] = _pair(node.size, raw.get("size"))
        if not loaded:
            defaults = {"flags": {}, "order": self._order().get(mid, 0), "mode": 0}
            fields.update((k, v) for k, v in defaults.items() if k not in raw)
        if inputs or "inputs" in raw or not loaded:
            fields["inputs"] = inputs if inputs != raw.get("inputs") else raw["inputs"]
        outputs = self._outputs(node, raw, spec, iid, outgoing)
        if outputs is not None:
            fields["outputs"] = outputs
        if node.title is not None:
            fields["title"] = node.title
        if not loaded:
            fields["properties"] = {"Node name for S&R": node.type}
        values = widgets_out(self.model, node, spec, flat=self.tops[mid] is not None)
        if values is not MISSING:
            fields["widgets_values"] = values if values != raw.get("widgets_values") else raw["widgets_values"]
        return _merge(raw, fields, loaded)

    def _outputs(self, node: NodeData, raw: dict[str, Any], spec: Any, iid: int,
                 outgoing: dict[Origin, list[int]]) -> list[dict[str, Any]] | None:
        kept = slots(raw.get("outputs"))
        if kept is None:
            if (spec is None or "type" in raw) and not self.model.outputs_of(node.id):
                return None  # a file node without "outputs" gets none while nothing links out
            kept = [{"name": o.name, "type": o.type, "links": None, "slot_index": i}
                    for i, o in enumerate(spec.outputs if spec else ())]
            fresh = True
        else:
            fresh = False
        for i, slot in enumerate(kept):
            found = outgoing.get((iid, i), [])
            slot["links"] = (found or []) if fresh else output_links(slot.get("links"), found, self.known)
        return kept if fresh or kept != raw.get("outputs") else raw["outputs"]

    def _order(self) -> dict[str, int]:
        if self._topo is None:
            from ..topology import topo_order

            try:
                self._topo = {nid: i for i, nid in enumerate(topo_order(self.model))}
            except ValidationError:  # a cycle: any order will do for the editor
                self._topo = {nid: i for i, nid in enumerate(self.model.nodes)}
        return self._topo

    # ---- kept raw nodes (notes, reroutes, instances, group nodes) -----------------------------
    def _raw_entry(self, payload: tuple[dict[str, Any], str, str], links: list[int | None] | None,
                   outgoing: dict[Origin, list[int]]) -> Any:
        raw, kind, key = payload
        if kind == "note":
            return raw
        out = dict(raw)
        ins = slots(raw.get("inputs")) or []
        for slot, lid in zip(ins, links or [None] * len(ins)):
            slot["link"] = lid
        if ins != raw.get("inputs") and "inputs" in raw:
            out["inputs"] = ins
        outs = slots(raw.get("outputs")) or []
        for i, slot in enumerate(outs):
            slot["links"] = output_links(slot.get("links"), outgoing.get((as_id(raw.get("id")), i), []), self.known)
        if outs != raw.get("outputs") and "outputs" in raw:
            out["outputs"] = outs
        if kind in ("instance", "group"):
            values = self.patcher.instance_values(key, raw)
            if values is not raw.get("widgets_values"):
                out["widgets_values"] = values
        return out if out != raw else raw

    # ---- the top level -----------------------------------------------------------------------
    def _top(self, nodes: list[Any]) -> dict[str, Any]:
        table = self.links.table()
        values: dict[str, Any] = {
            # raised by fresh ids only: a file whose counters lag behind its ids keeps them
            "last_node_id": self.last_node if self.meta else max(self.ids.values(), default=0),
            "last_link_id": max([self.links.last, *self.links.fresh]),
            "nodes": nodes, "links": table, "groups": _groups_out(self.model.groups),
            "config": self.top.get("config", {}), "extra": self.top.get("extra", {}),
            "version": self.top.get("version", 0.4),
        }
        if "definitions" in self.top:
            values["definitions"] = self.patcher.definitions(self.top["definitions"])
        keys = [k for k in as_list(self.meta.get("keys")) if isinstance(k, str)] or list(_TOP_ORDER)
        out: dict[str, Any] = {}
        for key in [*keys, *_TOP_ORDER, *self.top]:
            if key not in out and (key in values or key in self.top):
                out[key] = values[key] if key in values else self.top[key]
        return out


def _merge(raw: dict[str, Any], fields: dict[str, Any], loaded: bool) -> dict[str, Any]:
    """``fields`` laid out in the raw node's key order (new keys in the usual order); keys of
    ``raw`` the model does not hold are kept."""
    out: dict[str, Any] = {}
    modeled = {"id", "type", "pos", "size", "title", "inputs", "outputs", "widgets_values"}
    order = list(raw) if loaded else [*_NODE_ORDER, *raw]
    for key in order:
        if key in fields:
            out[key] = fields[key]
        elif key in raw and key not in modeled:
            out[key] = raw[key]
    for key in _NODE_ORDER:
        if key in fields and key not in out:
            out[key] = fields[key]
    return out


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _pair(value: tuple[float, float], raw: Any) -> Any:
    """``[x, y]`` in the form the file had: a list, or ComfyUI's ``{"0": x, "1": y, ...}``."""
    if isinstance(raw, dict) and "0" in raw and "1" in raw:
        if _close(raw["0"], value[0]) and _close(raw["1"], value[1]):
            return raw
        return {**raw, "0": _num(value[0]), "1": _num(value[1])}
    if isinstance(raw, list) and len(raw) == 2 and _close(raw[0], value[0]) and _close(raw[1], value[1]):
        return raw
    return [_num(value[0]), _num(value[1])]


def _close(raw: Any, value: float) -> bool:
    return isinstance(raw, (int, float)) and not isinstance(raw, bool) and float(raw) == value


def _groups_out(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups as ComfyUI reads them: ``bounding`` [x, y, w, h] (a group made on the canvas or
    in Python may hold x/y/w/h) and an int ``id`` (string ids get fresh numbers)."""
    taken = {g["id"] for g in groups if type(g.get("id")) is int}
    fresh = (i for i in range(1, len(groups) + len(taken) + 2) if i not in taken)
    out = []
    for g in groups:
        group = {k: v for k, v in g.items() if k not in GROUP_BOX}
        if any(k in g for k in GROUP_BOX) or "bounding" not in group:  # loaded ones stay as read
            group["bounding"] = group_box(g)
        if "id" in group and type(group["id"]) is not int:
            group["id"] = next(fresh)
        out.append(group)
    return out
