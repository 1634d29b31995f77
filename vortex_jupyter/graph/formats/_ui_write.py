"""Writing ComfyUI's UI ("workflow") format; the reader and the format are described in
``comfy_ui``.

Policy: what was kept is untrusted (a native file may carry anything in ``extra``): every
kept piece is shape-checked where it is used and ignored if malformed, falling back to what
the spec says. Otherwise: start from what the reader kept (``NodeData.extra["comfy_ui"]``, ``model.extra
["comfy_ui"]``) and overlay what the model says now: positions, sizes, titles, params and the
links. Link ids are kept where the same input is still linked; new links get fresh ids after
``last_link_id``. Nodes made in Python (nothing kept) get slots built from their spec. Node ids
that are not integers (``g.add(..., id="x")``) get fresh integer ids, as the format needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import ValidationError
from ..model import Edge, GraphModel, NodeData
from ._common import GROUP_BOX, group_box

KEY = "comfy_ui"
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
#: The control value written for seeds of nodes that never had one (reproducible runs).
DEFAULT_CONTROL = "fixed"
#: Ids must stay exact in JavaScript numbers, which the ComfyUI frontend uses.
MAX_ID = 1 << 53
_MODELED = ("id", "type", "pos", "size", "title", "widgets_values", "inputs", "outputs")

Lookup = Callable[[str], Any]


def to_comfy_ui(model: GraphModel, lookup: Lookup) -> dict[str, Any]:
    """The model as a UI-format workflow (a dict ready for ``json.dumps``)."""
    meta = _dict(model.extra.get(KEY))
    top = _dict(meta.get("top"))
    notes = [n for n in _list(meta.get("notes")) if _is_note(n)]
    orphans = [o for o in _list(meta.get("orphan_links")) if _readable_link(o)]
    ids = _int_ids(model, [n["node"].get("id") for n in notes])
    lids = _link_ids(model, orphans, top)
    order = _order(model)
    nodes: list[Any] = []
    slots: dict[str, dict[str, int]] = {}
    for node in model.nodes.values():
        entry, slots[node.id] = _node(model, node, ids, lids, lookup, order)
        nodes.append(entry)
    for note in sorted(notes, key=lambda n: n["index"]):
        nodes.insert(min(note["index"], len(nodes)), note["node"])
    links = _links_out(model, ids, lids, slots, lookup, meta.get("links_form") == "object")
    links = sorted([*links, *orphans], key=_link_sort_key)
    out: dict[str, Any] = {
        "last_node_id": max([_as_int(top.get("last_node_id")), *ids.values()], default=0),
        "last_link_id": max([_as_int(top.get("last_link_id")), *lids.values()], default=0),
        "nodes": nodes,
        "links": links,
        "groups": _groups_out(model.groups),
        "config": top.get("config", {}),
        "extra": top.get("extra", {}),
        "version": top.get("version", 0.4),
    }
    out.update((k, v) for k, v in top.items() if k not in out)
    return out


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


def _readable_link(raw: Any) -> bool:
    """Whether a kept link table entry would load again (garbage in a native file's extra is dropped)."""
    from ...errors import FormatError
    from .comfy_ui import _link

    if not isinstance(raw, (list, dict)) or (isinstance(raw, list) and len(raw) < 5):
        return False
    try:
        _link(raw, "links")
    except FormatError:
        return False
    return True


def _is_note(kept: Any) -> bool:
    """A kept frontend-only note that is still writable (read back by ``from_comfy_ui``)."""
    if not isinstance(kept, dict) or not isinstance(kept.get("index"), int):
        return False
    node = kept.get("node")
    if not isinstance(node, dict) or node.get("type") not in ("Note", "MarkdownNote"):
        return False
    return _as_int(node.get("id")) > 0 and _as_int(node.get("id")) == node.get("id")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _slots(value: Any) -> list[dict[str, Any]] | None:
    """A kept input/output slot list, or None when there is none or it is malformed."""
    if isinstance(value, list) and all(isinstance(s, dict) for s in value):
        return [dict(s) for s in value]
    return None


def _kept(node: NodeData) -> dict[str, Any]:
    return _dict(node.extra.get(KEY))


def _as_int(value: Any) -> int:
    """An id-like int, else 0 (garbage, bools and ids the format cannot hold count as absent)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_ID
    return value if ok else 0


def _link_sort_key(link: Any) -> int:
    if isinstance(link, dict):
        return _as_int(link.get("id"))
    return _as_int(link[0]) if isinstance(link, list) and link else 0


def _int_ids(model: GraphModel, reserved: list[Any]) -> dict[str, int]:
    """Integer ids for the nodes (and dangling link sources): numeric ids are kept."""
    wanted = list(model.nodes) + [e.src for e in model.edges() if e.src not in model.nodes]
    ids: dict[str, int] = {}
    taken = {r for r in reserved if isinstance(r, int)}
    for nid in wanted:
        if nid not in ids and nid.isdigit() and str(int(nid)) == nid and 0 < int(nid) < MAX_ID and int(nid) not in taken:
            ids[nid] = int(nid)
            taken.add(ids[nid])
    counter = max(taken, default=0)
    for nid in wanted:
        if nid not in ids:
            counter += 1
            ids[nid] = counter
    return ids


def _link_ids(model: GraphModel, orphans: list[Any], top: dict[str, Any]) -> dict[Edge, int]:
    """A link id per edge: the one it was loaded with if still free, else a fresh one."""
    taken = {_link_sort_key(o) for o in orphans}
    lids: dict[Edge, int] = {}
    fresh: list[Edge] = []
    for node in model.nodes.values():
        kept = _dict(_kept(node).get("link_ids"))
        for input_name, edges in model.inputs_of(node.id).items():
            lid = _kept_link_id(kept.get(input_name), edges[0])
            if lid is not None and lid not in taken:
                lids[edges[0]] = lid
                taken.add(lid)
            else:
                fresh.append(edges[0])  # a UI input holds one link: extra edges (VE-109) are dropped
    counter = max([_as_int(top.get("last_link_id")), *taken], default=0)
    for edge in fresh:
        counter += 1
        lids[edge] = counter
    return lids


def _kept_link_id(kept: Any, edge: Edge) -> int | None:
    """The loaded link id of an input (``[id, src, src_slot]``), if that link still feeds it."""
    if isinstance(kept, list) and len(kept) == 3 and kept[1:] == [edge.src, edge.src_output]:
        return _as_int(kept[0]) or None
    return None


def _order(model: GraphModel) -> dict[str, int]:
    from ..topology import topo_order

    try:
        return {nid: i for i, nid in enumerate(topo_order(model))}
    except ValidationError:  # a cycle: any order will do for the editor
        return {nid: i for i, nid in enumerate(model.nodes)}


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _pair(value: tuple[float, float], form: str | None) -> Any:
    a, b = _num(value[0]), _num(value[1])
    return {"0": a, "1": b} if form == "object" else [a, b]


def _node(
    model: GraphModel, node: NodeData, ids: dict[str, int], lids: dict[Edge, int], lookup: Lookup,
    order: dict[str, int],
) -> tuple[dict[str, Any], dict[str, int]]:
    kept = _kept(node)
    raw = dict(_dict(kept.get("raw")))
    spec = lookup(node.type)
    inputs, slot_of = _inputs(model, node, raw, spec, lids)
    entry: dict[str, Any] = {"id": ids[node.id], "type": node.type, "pos": _pair(node.pos, kept.get("pos_form"))}
    if node.size is not None:
        entry["size"] = _pair(node.size, kept.get("size_form"))
    entry["flags"] = raw.pop("flags", {})  # kept values are written back as they came
    entry["order"] = raw.pop("order", order.get(node.id, 0))
    entry["mode"] = raw.pop("mode", 0)
    if inputs or "inputs" in raw or not kept:
        entry["inputs"] = inputs
    raw.pop("inputs", None)
    outputs = _outputs(model, node, raw.pop("outputs", None), spec, lids)
    if outputs is not None:
        entry["outputs"] = outputs
    if node.title is not None:
        entry["title"] = node.title
    entry["properties"] = raw.pop("properties", {"Node name for S&R": node.type})
    widgets = _widgets(model, node, kept, spec)
    if widgets or not kept.get("no_widgets_values"):
        entry["widgets_values"] = widgets
    # kept keys never override what the model says (a native file's extra may hold anything)
    entry.update((k, v) for k, v in raw.items() if k not in entry and k not in _MODELED)
    return entry, slot_of


def _slot_name(slot: dict[str, Any]) -> str:
    widget = slot.get("widget")
    if isinstance(widget, dict) and isinstance(widget.get("name"), str):
        return widget["name"]
    return str(slot.get("name", ""))


def _inputs(
    model: GraphModel, node: NodeData, raw: dict[str, Any], spec: Any, lids: dict[Edge, int]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    linked = model.inputs_of(node.id)
    kept_slots = _slots(raw.get("inputs"))
    if kept_slots is not None:
        slots = kept_slots
    else:
        slots = [{"name": p.name, "type": p.type, "link": None} for p in (spec.inputs if spec else ())
                 if not getattr(p, "widget", False)]
    names = [_slot_name(s) for s in slots]
    for name in linked:
        if name not in names:
            port = spec.input(name) if spec is not None else None
            slot: dict[str, Any] = {"name": name, "type": getattr(port, "type", "*"), "link": None}
            if getattr(port, "widget", False):
                slot["widget"] = {"name": name}
            slots.append(slot)
            names.append(name)
    for slot, name in zip(slots, names):
        edges = linked.get(name)
        slot["link"] = lids.get(edges[0]) if edges else None
    return slots, {name: i for i, name in enumerate(names)}


def _outputs(
    model: GraphModel, node: NodeData, raw: Any, spec: Any, lids: dict[Edge, int]
) -> list[dict[str, Any]] | None:
    kept_slots = _slots(raw)
    if kept_slots is None and spec is None:
        return None
    if kept_slots is not None:
        slots = kept_slots
    else:
        slots = [{"name": o.name, "type": o.type, "links": [], "slot_index": i} for i, o in enumerate(spec.outputs)]
    by_slot: dict[int, list[int]] = {}
    for e in model.outputs_of(node.id):
        if e in lids:
            by_slot.setdefault(e.src_output, []).append(lids[e])
    for i, slot in enumerate(slots):
        found = sorted(by_slot.get(i, []))
        slot["links"] = found or (None if slot.get("links") is None and kept_slots is not None else [])
    return slots


def _widgets(model: GraphModel, node: NodeData, kept: dict[str, Any], spec: Any) -> Any:
    if isinstance(kept.get("widgets_values"), (list, dict)):  # unknown type at load: written back as it came
        return kept["widgets_values"]
    if spec is None:
        return list(node.params.values())
    ports = [p for p in spec.inputs if getattr(p, "widget", False)]
    stale = _dict(kept.get("linked_widgets"))
    if isinstance(kept.get("widgets_dict"), dict):
        out = dict(kept["widgets_dict"])
        out.update((p.name, _widget_value(p, node, stale)) for p in ports)
        return out
    values: list[Any] = []
    control = _dict(kept.get("control"))
    for p in ports:
        values.append(_widget_value(p, node, stale))
        if getattr(p, "control_after_generate", False):
            values.append(control.get(p.name, DEFAULT_CONTROL))
    return values + _list(kept.get("widgets_tail"))


def _widget_value(port: Any, node: NodeData, stale: dict[str, Any]) -> Any:
    if port.name in node.params:
        return node.params[port.name]
    if port.name in stale:
        return stale[port.name]
    return port.default if getattr(port, "has_default", False) else None


def _links_out(
    model: GraphModel, ids: dict[str, int], lids: dict[Edge, int], slots: dict[str, dict[str, int]],
    lookup: Lookup, as_objects: bool,
) -> list[Any]:
    out: list[Any] = []
    for edge, lid in lids.items():
        row = [lid, ids[edge.src], edge.src_output, ids[edge.dst], slots[edge.dst][edge.dst_input],
               _link_type(model, edge, lookup)]
        out.append(dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), row))
                   if as_objects else row)
    return out


def _link_type(model: GraphModel, edge: Edge, lookup: Lookup) -> Any:
    src = model.nodes.get(edge.src)
    if src is None:
        return "*"
    raw_outputs = _slots(_dict(_kept(src).get("raw")).get("outputs"))
    if raw_outputs is not None and 0 <= edge.src_output < len(raw_outputs):
        return raw_outputs[edge.src_output].get("type", "*")
    spec = lookup(src.type)
    if spec is not None and 0 <= edge.src_output < len(spec.outputs):
        return spec.outputs[edge.src_output].type
    return "*"
