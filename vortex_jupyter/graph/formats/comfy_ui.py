"""ComfyUI's UI ("workflow") format: what the ComfyUI editor saves and embeds in PNGs.

::

    {"last_node_id": 9, "last_link_id": 9,
     "nodes": [{"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262],
                "flags": {}, "order": 4, "mode": 0,
                "inputs": [{"name": "model", "type": "MODEL", "link": 1}, ...],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
                "properties": {"Node name for S&R": "KSampler"},
                "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]}],
     "links": [[1, 4, 0, 3, 0, "MODEL"], ...],        # [id, src, src_slot, dst, dst_slot, type]
     "groups": [{"title": ..., "bounding": [x, y, w, h], "color": ..., "font_size": 24}],
     "config": {}, "extra": {"ds": {...}}, "version": 0.4}

Reading (this module):
- ``widgets_values`` are positional. They map onto the spec's widget inputs in order, as
  ComfyUI's frontend does; after a port with ``control_after_generate`` (seeds) comes one extra
  UI value ("fixed", "increment", "decrement", "randomize") which is kept in the node's extra,
  not in params. Values beyond the known widgets (e.g. LoadImage's upload button) are kept too.
- A widget input that is linked ("converted to input") keeps its stale widget value in extra;
  the link is what counts, so ``params`` never holds a value that the link overrides.
- Unknown node types keep their raw ``widgets_values`` (validation reports VE-101).
- Frontend-only nodes: "Reroute" chains are collapsed into direct links; "Note" and
  "MarkdownNote" are kept raw in ``model.extra`` and written back at their place.
- Everything else the format holds (flags, order, mode, properties, colors, raw input/output
  slot lists, link ids, top-level config/extra/version, links no input uses) goes into
  ``NodeData.extra["comfy_ui"]`` / ``model.extra["comfy_ui"]``, so UI -> graph -> UI is lossless
  (reroutes aside). Writing lives in ``_ui_write``.
- Muted (mode 2) and bypassed (mode 4) nodes keep their mode in the raw node data (written
  back unchanged); ``GraphModel.modes`` indexes it, and the engine skips them as ComfyUI does
  (bypassed ones pass their inputs through; see ``graph/modes.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import GraphModel
from ._common import fail, integer, lst, name, node_id, obj, opt_title, pair
from ._ui_write import CONTROL_VALUES, KEY, to_comfy_ui

__all__ = ["CONTROL_VALUES", "FRONTEND_NOTES", "from_comfy_ui", "to_comfy_ui"]

FRONTEND_NOTES = ("Note", "MarkdownNote")
REROUTE = "Reroute"
_MODELED = ("id", "type", "pos", "size", "title", "widgets_values")
_LINK_KEYS = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")

Lookup = Callable[[str], Any]
Link = tuple[int, str, int, str, int, Any]  # id, src, src_slot, dst, dst_slot, type


def from_comfy_ui(d: Any, lookup: Lookup) -> GraphModel:
    """Read a UI-format workflow. Raises ``FormatError`` naming the bad field."""
    d = obj(d, "(top level)")
    raw_nodes = lst(d.get("nodes", []), "nodes")
    links, links_form = _links(d.get("links", []))
    model = GraphModel()
    meta: dict[str, Any] = {"top": {k: v for k, v in d.items() if k not in ("nodes", "links", "groups")}}
    if links_form != "list":
        meta["links_form"] = links_form
    notes: list[dict[str, Any]] = []
    reroutes: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        path = f"nodes[{i}]"
        raw = obj(raw, path)
        nid = node_id(raw.get("id"), f"{path}.id")
        ntype = name(raw.get("type"), f"{path}.type")
        if nid in seen:
            fail(f"{path}.id", f"node id {nid} is used twice", "give every node its own id")
        seen.add(nid)
        for key in ("inputs", "outputs"):
            for j, slot in enumerate(lst(raw.get(key) or [], f"{path}.{key}")):
                obj(slot, f"{path}.{key}[{j}]")
        if ntype in FRONTEND_NOTES:
            notes.append({"index": i, "node": raw})
        elif ntype == REROUTE:
            reroutes[nid] = raw
        else:
            _add_node(model, raw, nid, ntype, path)
    used = _connect(model, raw_nodes, links, reroutes, lookup)
    meta["orphan_links"] = [link_raw for lid, link_raw in links.items() if lid not in used]
    meta["notes"] = notes
    model.extra[KEY] = meta
    for i, group in enumerate(lst(d.get("groups", []), "groups")):
        model.groups.append(dict(obj(group, f"groups[{i}]")))
    for node in model.nodes.values():
        _map_widgets(model, node.id, lookup)
    return model


def _links(value: Any) -> tuple[dict[int, Any], str]:
    """The link table by id (raw entries), and its form: "list" (``[id, ...]``) or "object"."""
    table: dict[int, Any] = {}
    form = "list"
    for i, raw in enumerate(lst(value, "links")):
        path = f"links[{i}]"
        if isinstance(raw, dict):
            form = "object"
            lid = integer(raw.get("id"), f"{path}.id")
        elif isinstance(raw, list) and len(raw) >= 5:
            lid = integer(raw[0], f"{path}[0]")
        else:
            fail(path, f"expected [id, src, src_slot, dst, dst_slot, type], got {raw!r}"[:200])
        if lid in table:
            fail(path, f"link id {lid} is used twice")
        table[lid] = raw
    return table, form


def _link(raw: Any, path: str) -> Link:
    if isinstance(raw, dict):
        values = [raw.get(k) for k in _LINK_KEYS]
        names = [f"{path}.{k}" for k in _LINK_KEYS]
    else:
        values = [*raw[:5], raw[5] if len(raw) > 5 else None]
        names = [f"{path}[{i}]" for i in range(6)]
    return (integer(values[0], names[0]), node_id(values[1], names[1]), integer(values[2], names[2], hi=1 << 31),
            node_id(values[3], names[3]), integer(values[4], names[4], hi=1 << 31), values[5])


def _add_node(model: GraphModel, raw: dict[str, Any], nid: str, ntype: str, path: str) -> None:
    size = raw.get("size")
    kept = {k: v for k, v in raw.items() if k not in _MODELED}
    extra: dict[str, Any] = {"raw": kept}
    if isinstance(size, dict):
        extra["size_form"] = "object"
    if isinstance(raw.get("pos"), dict):
        extra["pos_form"] = "object"
    if "widgets_values" in raw:
        values = raw["widgets_values"]
        if not isinstance(values, (list, dict)):
            fail(f"{path}.widgets_values", f"expected a list, got {values!r}"[:200])
        extra["widgets_values"] = values  # replaced by the mapping when the spec is known
    else:
        extra["no_widgets_values"] = True
    model.add_node(
        ntype,
        id=nid,
        pos=pair(raw.get("pos", (0, 0)), f"{path}.pos"),
        size=None if size is None else pair(size, f"{path}.size"),
        title=opt_title(raw.get("title"), f"{path}.title"),
        extra={KEY: extra},
    )


def _input_name(slot: dict[str, Any], path: str) -> str:
    widget = slot.get("widget")
    if isinstance(widget, dict) and isinstance(widget.get("name"), str):
        return name(widget["name"], f"{path}.widget.name")
    return name(slot.get("name"), f"{path}.name", empty=True)


def _connect(
    model: GraphModel, raw_nodes: list[Any], links: dict[int, Any], reroutes: dict[str, dict[str, Any]],
    lookup: Lookup,
) -> set[int]:
    """Edges from the node input slots (the link table gives each link's source). Returns the
    link ids used, so unused ones can be kept for a lossless round trip."""
    used: set[int] = set()
    for i, raw in enumerate(raw_nodes):
        nid = str(raw["id"])
        if nid not in model.nodes:
            continue  # notes and reroutes have no edges of their own
        link_ids: dict[str, list[Any]] = {}
        for j, slot in enumerate(raw.get("inputs") or []):
            path = f"nodes[{i}].inputs[{j}]"
            lid = slot.get("link")
            if lid is None:
                continue
            lid = integer(lid, f"{path}.link")
            if lid not in links:
                fail(f"{path}.link", f"link {lid} is not in \"links\"", "remove the link id or add the link")
            input_name = _input_name(slot, path)
            used.add(lid)
            src = _resolve(lid, links, reroutes, used)
            if src is not None:
                # the id is reused on writing only while the same source feeds this input
                link_ids[input_name] = [lid, src[0], src[1]]
                model.connect(src[0], src[1], nid, input_name, replace=False)
        if link_ids:
            model.nodes[nid].extra[KEY]["link_ids"] = link_ids
    return used


def _resolve(lid: int, links: dict[int, Any], reroutes: dict[str, dict[str, Any]], used: set[int]) -> tuple[str, int] | None:
    """The real source of a link, following Reroute nodes back (iteratively; loops end it)."""
    seen: set[str] = set()
    while True:
        _, src, src_slot, _, _, _ = _link(links[lid], f"links[id={lid}]")
        if src not in reroutes:
            return src, src_slot
        if src in seen:
            return None
        seen.add(src)
        inputs = reroutes[src].get("inputs") or []
        upstream = inputs[0].get("link") if inputs else None  # slots were checked to be objects
        if not isinstance(upstream, int) or upstream not in links:
            return None  # a reroute fed by nothing: the input ends up unconnected
        used.add(upstream)
        lid = upstream


def _map_widgets(model: GraphModel, nid: str, lookup: Lookup) -> None:
    """Spread ``widgets_values`` over the spec's widget inputs (see the module docstring)."""
    node = model.nodes[nid]
    extra = node.extra[KEY]
    spec = lookup(node.type)
    values = extra.get("widgets_values")
    if spec is None or values is None:
        return
    del extra["widgets_values"]
    linked = model.inputs_of(nid)
    ports = [p for p in spec.inputs if getattr(p, "widget", False)]
    got: dict[str, Any] = {}
    if isinstance(values, dict):  # some custom nodes save widgets by name
        got = {p.name: values[p.name] for p in ports if p.name in values}
        extra["widgets_dict"] = {k: v for k, v in values.items() if k not in got}
    else:
        got = _positional(ports, values, extra)
    for port_name, value in got.items():
        if port_name in linked:
            extra.setdefault("linked_widgets", {})[port_name] = value
        else:
            node.params[port_name] = value


def _positional(ports: list[Any], values: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, Any] = {}
    i = 0
    for port in ports:
        if i >= len(values):
            break
        got[port.name] = values[i]
        i += 1
        if getattr(port, "control_after_generate", False) and i < len(values) and _is_control(values[i]):
            extra.setdefault("control", {})[port.name] = values[i]
            i += 1
    if i < len(values):
        extra["widgets_tail"] = values[i:]
    return got


def _is_control(value: Any) -> bool:
    return isinstance(value, str) and value in CONTROL_VALUES
