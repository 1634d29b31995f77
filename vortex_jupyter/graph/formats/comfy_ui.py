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
     "definitions": {"subgraphs": [...]}, "config": {}, "extra": {"ds": {...}}, "version": 0.4}

Reading (this module) gives the flat graph ComfyUI's frontend executes:

- ``widgets_values`` map onto the spec's widget inputs in order (``_ui_common.layout``: seed
  control values, legacy booleans); a linked widget input ("converted to input") keeps its
  stale value in the file only, so ``params`` never hold a value a link overrides. KSampler's
  pre-2023 ``sample_`` sampler names lose that prefix, as the frontend's loader does.
- Unknown node types keep their ``widgets_values`` in the file data (validation: VE-101).
- Frontend-only nodes: Reroutes are passed through (direct edges) but kept, with their links,
  for writing; Notes/MarkdownNotes are kept as they are; a PrimitiveNode becomes a node of
  type ``PrimitiveNode`` with param ``value`` linked to the widgets it feeds (the API export
  folds it into them as ``graphToPrompt`` does). Its mode never stops it: the frontend applies
  a primitive's value whatever its mode.
- Subgraphs are expanded (``subgraphs``), legacy group nodes too (``groupnodes``).
- Muted (mode 2) and bypassed (mode 4) nodes keep their mode (``GraphModel.modes``).
- Everything else is kept for an exact round trip: each node's raw data in
  ``NodeData.extra["comfy_ui"]["raw"]``, the top level, the link table and the node order in
  ``model.extra["comfy_ui"]``. Writing lives in ``_ui_write``.
"""

from __future__ import annotations

from typing import Any

from ..model import GraphModel
from ._common import fail, gc_paused, integer, lst, name, node_id, obj, opt_title, pair
from ._ui_common import (
    FRONTEND_NOTES,
    KEY,
    PRIMITIVE,
    REROUTE,
    Lookup,
    link_table,
    parse_link,
)
from ._ui_widgets import map_widgets
from ._ui_write import to_comfy_ui
from .groupnodes import GroupExpander
from .subgraphs import MAX_EXPANDED, Instance, Level, definitions, extent, instance_slots, output_link

__all__ = ["FRONTEND_NOTES", "from_comfy_ui", "to_comfy_ui"]

_SKIP_MODES = (2, 4)
Source = tuple[str, int]


def from_comfy_ui(d: Any, lookup: Lookup) -> GraphModel:
    """Read a UI-format workflow. Raises ``FormatError`` naming the bad field."""
    with gc_paused():
        return _Reader(obj(d, "(top level)"), lookup).read()


#: Vertical gap between the top graph and each expanded subgraph's band on the canvas.
_BAND_GAP = 120.0


class _Reader:
    def __init__(self, d: dict[str, Any], lookup: Lookup) -> None:
        self.d = d
        self.lookup = lookup
        self.model = GraphModel()
        self.defs = definitions(d)
        self.groups = GroupExpander(d, lookup)
        self.levels: list[Level] = []
        self.instances: dict[str, Instance] = {}
        self.copies: list[tuple[str, str, str, str]] = []  # fan-out of an inner promoted widget

    def read(self) -> GraphModel:
        links, form = link_table(self.d.get("links", []), "links")
        raw_nodes = lst(self.d.get("nodes", []), "nodes")
        #: where the next expanded subgraph's contents go: a band below the top graph
        self.band_y = extent(raw_nodes)[3] + _BAND_GAP
        top = Level("", "", {}, links)
        order = self._add_level(top, raw_nodes, [])
        used = self._connect_all()
        for node in self.model.nodes.values():
            map_widgets(self.model, node, self.lookup)
        self._copy_fanout()
        meta: dict[str, Any] = {
            "keys": list(self.d), "top": {k: v for k, v in self.d.items() if k not in ("nodes", "links", "groups")},
            "links": list(links.values()), "order": order,
            "unused_links": sorted(set(links) - used.get("", set())),
            "instances": {**{k: self._instance_record(i) for k, i in self.instances.items()},
                          **{k: self._group_record(k) for k in self.groups.expanded}},
            "expanded": self._expanded(),
        }
        if form != "list":
            meta["links_form"] = form
        self.model.extra[KEY] = meta
        for i, group in enumerate(lst(self.d.get("groups", []), "groups")):
            self.model.groups.append(dict(obj(group, f"groups[{i}]")))
        return self.model

    def _instance_record(self, inst: Instance) -> dict[str, Any]:
        record: dict[str, Any] = {"def": inst.definition.id, "container": inst.container, "local": inst.local}
        if inst.container is None:  # where each output comes from, to write links out of it back
            record["outputs"] = [self._output_source(inst, k) for k in range(len(inst.definition.outputs))]
        return record

    def _group_record(self, key: str) -> dict[str, Any]:
        gdef, _, level = self.groups.expanded[key]
        outputs = []
        for k in range(len(gdef.outputs)):
            found = self.groups.output_source(self, level, key, k)
            outputs.append([found[1], found[2]] if found is not None else None)
        return {"group": gdef.name, "container": None, "local": key, "outputs": outputs}

    def _output_source(self, inst: Instance, slot: int) -> list[Any] | None:
        lid = output_link(inst.definition, slot)
        found = self.resolve(inst.inner, lid) if lid is not None else None
        return [found[1], found[2]] if found is not None and found[0] == "edge" else None

    def _expanded(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for mid, node in self.model.nodes.items():
            sub = node.extra[KEY].get("sub")
            if sub is not None:
                out.setdefault(sub["top"], []).append(mid)
        return out

    # ---- nodes -------------------------------------------------------------------------------
    def _add_level(self, level: Level, raw_nodes: list[Any], stack: list[str]) -> list[Any]:
        """Classify and add the nodes of one graph; returns the top-level order entries."""
        self.levels.append(level)
        order: list[Any] = []
        for i, raw in enumerate(raw_nodes):
            path = f"{level.where}nodes[{i}]"
            raw = _checked_node(raw, path)
            nid = node_id(raw.get("id"), f"{path}.id")
            if nid in level.nodes and level.prefix == "":
                fail(f"{path}.id", f"node id {nid} is used twice", "give every node its own id")
            level.nodes[nid] = raw
            level.paths[nid] = path
            kind = self._kind(raw, level)
            level.kinds[nid] = kind
            if kind == "model":
                self._add_model_node(level, nid, raw, path, stack)
                order.append({"node": level.model_id(nid)})
            elif kind == "instance":
                self._expand(level, nid, raw, stack)
                order.append({"raw": raw, "kind": kind, "id": level.model_id(nid)})
            elif kind == "group":
                self.groups.expand(self, level, nid, raw)
                order.append({"raw": raw, "kind": kind, "id": level.model_id(nid)})
            else:
                order.append({"raw": raw, "kind": kind})
        return order

    def _kind(self, raw: dict[str, Any], level: Level) -> str:
        ntype = raw["type"]
        if ntype in FRONTEND_NOTES:
            return "note"
        if ntype == REROUTE:
            return "reroute"
        if ntype in self.defs:
            # ComfyUI runs nothing inside a muted/bypassed instance, but only at the top level
            return "model" if level.prefix == "" and raw.get("mode") in _SKIP_MODES else "instance"
        if level.prefix == "" and self.groups.is_group(ntype) and raw.get("mode") not in _SKIP_MODES:
            return "group"  # the frontend refuses group nodes inside subgraphs
        return "model"

    def _add_model_node(self, level: Level, nid: str, raw: dict[str, Any], path: str, stack: list[str]) -> None:
        if len(self.model.nodes) >= MAX_EXPANDED:
            fail(path, f"the workflow expands to more than {MAX_EXPANDED} nodes", "flatten its subgraphs")
        extra: dict[str, Any] = {"raw": raw}
        note = self.groups.missing_note(raw["type"])
        if raw["type"] in self.defs:  # a muted/bypassed top-level instance, kept whole
            note = (f"an instance of subgraph {self.defs[raw['type']].raw.get('name', raw['type'])!r} that was "
                    "muted or bypassed when the file was read, so its contents were not expanded; "
                    "read the file again after enabling it")
        if note is not None:
            extra["unexpanded"] = note
        if level.instance is not None:
            extra["sub"] = {"def": level.instance.definition.id, "local": nid, "top": level.prefix.split(":")[0]}
            if level.offset != (0.0, 0.0):
                extra["sub"]["offset"] = list(level.offset)
        size = raw.get("size")
        mid = level.model_id(nid)
        x, y = pair(raw.get("pos", (0, 0)), f"{path}.pos")
        self.model.add_node(
            raw["type"], id=mid, pos=(x + level.offset[0], y + level.offset[1]),
            size=None if size is None else pair(size, f"{path}.size"),
            title=opt_title(raw.get("title"), f"{path}.title"), extra={KEY: extra},
        )
        if raw["type"] == PRIMITIVE:
            self.model.modes.pop(mid, None)  # see the module docstring: a primitive always applies

    def _expand(self, level: Level, nid: str, raw: dict[str, Any], stack: list[str]) -> None:
        definition = self.defs[raw["type"]]
        if definition.id in stack:
            chain = " -> ".join([*stack, definition.id])
            fail(f"{level.where}nodes", f"subgraph {definition.id!r} contains itself ({chain})",
                 "remove the instance that nests a subgraph inside itself")
        key = level.model_id(nid)
        inner = Level(key + ":", definition.where + ".", {}, definition.links, offset=self._band(level, raw, definition))
        container = level.instance.definition.id if level.instance is not None else None
        inst = Instance(key, raw, definition, level, inner, container, nid, instance_slots(raw))
        inner.instance = inst
        level.children[nid] = inst
        self.instances[key] = inst
        self._add_level(inner, list(definition.raw.get("nodes") or []), [*stack, definition.id])

    def _band(self, level: Level, raw: dict[str, Any], definition: Any) -> tuple[float, float]:
        """Where an instance's contents go on the canvas: below everything laid out so far, from
        the top-level instance's x, so expanded subgraphs never cover the top graph or each other."""
        instance_x = extent([raw])[0] + level.offset[0]  # where the instance node itself is drawn
        lo_x, lo_y, _, hi_y = extent(definition.raw.get("nodes"))
        offset = (instance_x - lo_x, self.band_y - lo_y)
        self.band_y += (hi_y - lo_y) + _BAND_GAP
        return offset

    # ---- links -------------------------------------------------------------------------------
    def _connect_all(self) -> dict[str, set[int]]:
        used: dict[str, set[int]] = {}
        for level in self.levels:
            for nid, kind in level.kinds.items():
                if kind == "model":
                    self._connect_node(level, nid, used)
                elif kind == "group":
                    used.setdefault(level.prefix, set()).update(
                        s["link"] for s in level.nodes[nid].get("inputs") or () if isinstance(s.get("link"), int))
        self.groups.connect(self)
        return used

    def _connect_node(self, level: Level, nid: str, used: dict[str, set[int]]) -> None:
        raw = level.nodes[nid]
        mid = level.model_id(nid)
        link_ids: dict[str, list[Any]] = {}
        for j, slot in enumerate(raw.get("inputs") or []):
            lid = slot.get("link")
            if lid is None:
                continue
            path = f"{level.paths[nid]}.inputs[{j}]"
            lid = integer(lid, f"{path}.link")
            if lid not in level.links:
                fail(f"{path}.link", f"link {lid} is not in \"links\"", "remove the link id or add the link")
            used.setdefault(level.prefix, set()).add(lid)
            input_name = _linked_name(slot, path)
            found = self.resolve(level, lid)
            if found is None:  # linked to nothing in the end: kept, to be written back as it was
                link_ids[input_name] = [lid, None, None]
                continue
            if found[0] == "edge":
                link_ids[input_name] = [lid, found[1], found[2]]
                self.model.connect(found[1], found[2], mid, input_name, replace=False)
            else:
                self._promoted(mid, input_name, found)
        if link_ids:
            self.model.nodes[mid].extra[KEY]["link_ids"] = link_ids

    def _promoted(self, mid: str, input_name: str, found: tuple[Any, ...]) -> None:
        """An input fed by an instance's promoted widget (see ``subgraphs``)."""
        kept = self.model.nodes[mid].extra[KEY].setdefault("promoted", {})
        if found[0] == "value":
            kept[input_name] = found[2]  # [instance key, index]: written back there
            self.model.nodes[mid].params[input_name] = found[1]
        elif (found[1], found[2]) != (mid, input_name):
            kept[input_name] = None  # a copy of the first target's value: not written back
            self.copies.append((mid, input_name, found[1], found[2]))

    def _copy_fanout(self) -> None:
        for mid, input_name, src, src_input in self.copies:
            params = self.model.nodes[src].params if src in self.model.nodes else {}
            if src_input in params:
                self.model.nodes[mid].params[input_name] = params[src_input]

    def resolve(self, level: Level, lid: int) -> tuple[Any, ...] | None:
        """Where link ``lid`` of ``level`` really comes from: ``("edge", node, output)``,
        ``("value", v, [instance, index])`` (a promoted widget), ``("param", node, input)``
        (the value of another inner widget), or None (nothing feeds it)."""
        seen: set[tuple[str, int]] = set()
        while (level.prefix, lid) not in seen:
            seen.add((level.prefix, lid))
            link = level.parsed.get(lid)
            if link is None:
                link = level.parsed[lid] = parse_link(level.links[lid], f"{level.where}links[id={lid}]")
            _, src, slot, _, _, _ = link
            step = self._step(level, src, slot)
            if step is None or step[0] != "follow":
                return step
            level, lid = step[1], step[2]
        return None  # a loop of reroutes / subgraph boundaries feeds nothing

    def _step(self, level: Level, src: str, slot: int) -> tuple[Any, ...] | None:
        inst = level.instance
        if inst is not None and src == inst.definition.io_in:
            return self._from_instance_input(inst, slot)
        kind = level.kinds.get(src)
        if kind == "reroute":
            inputs = level.nodes[src].get("inputs") or []
            upstream = inputs[0].get("link") if inputs else None
            ok = isinstance(upstream, int) and upstream in level.links
            return ("follow", level, upstream) if ok else None
        if kind == "instance":
            child = level.children[src]
            inner_lid = output_link(child.definition, slot)
            return ("follow", child.inner, inner_lid) if inner_lid is not None else None
        if kind == "group":
            return self.groups.output_source(self, level, src, slot)
        return ("edge", level.model_id(src), slot)  # a model node, or a missing one (VE-107)

    def _from_instance_input(self, inst: Instance, index: int) -> tuple[Any, ...] | None:
        slot = inst.input_slot(index)
        lid = slot.get("link") if slot is not None else None
        if isinstance(lid, int) and lid in inst.outer.links:
            return ("follow", inst.outer, lid)
        return _promoted_source(inst, index)


def _promoted_source(inst: Instance, index: int) -> tuple[Any, ...] | None:
    from .subgraphs import first_widget_target, promoted_values

    port = inst.definition.inputs[index] if 0 <= index < len(inst.definition.inputs) else {}
    target = first_widget_target(inst.definition, port)
    if target is None:
        return None  # no widget: the input is left out, as the frontend does
    positions = promoted_values(inst)
    name_ = str(port.get("name"))
    if positions is not None and name_ in positions:
        values = inst.raw["widgets_values"]
        return ("value", values[positions[name_]], [inst.key, positions[name_]])
    kind = inst.inner.kinds.get(target[0])
    if kind == "instance":  # the first target is a nested instance: its own promoted widget
        child = inst.inner.children[target[0]]
        names = [str(p.get("name")) for p in child.definition.inputs]
        return _promoted_source(child, names.index(target[1])) if target[1] in names else None
    return ("param", inst.inner.model_id(target[0]), target[1])


def _linked_name(slot: dict[str, Any], path: str) -> str:
    """The input name of a linked slot: its widget's name (a converted widget), else its name."""
    widget = slot.get("widget")
    if isinstance(widget, dict) and "name" in widget:
        return name(widget["name"], f"{path}.widget.name")
    return name(slot.get("name"), f"{path}.name")


def _checked_node(raw: Any, path: str) -> dict[str, Any]:
    raw = obj(raw, path)
    node_id(raw.get("id"), f"{path}.id")
    name(raw.get("type"), f"{path}.type")
    for key in ("inputs", "outputs"):
        for j, slot in enumerate(lst(raw.get(key) or [], f"{path}.{key}")):
            obj(slot, f"{path}.{key}[{j}]")
    if "widgets_values" in raw and not isinstance(raw["widgets_values"], (list, dict)):
        fail(f"{path}.widgets_values", f"expected a list, got {raw['widgets_values']!r}"[:200])
    return raw


