"""Legacy group nodes (``extra.groupNodes``), expanded for execution as ComfyUI's frontend does
(``groupNode.ts``: ``GroupNodeConfig`` builds the group's widgets and slots, ``getInnerNodes``
the nodes that run). Group nodes are deprecated upstream in favour of subgraphs.

A definition ``extra.groupNodes[NAME]`` holds ``nodes`` (copies of the grouped nodes, in
execution order), ``links`` (``[src_index, src_slot, dst_index, dst_slot, ...]`` between them)
and ``external`` (``[index, slot, type]``: outputs also used outside). An instance has type
``workflow>NAME`` (``workflow/NAME`` before frontend 1.2.63). Its inner node ``i`` runs as
``"<instance id>:<i>"`` -- the id ComfyUI's prompt uses.

The instance's widgets are, node by node, each inner node's widget inputs in spec order (a
seed's control value after it, the values a node keeps beyond its spec such as LoadImage's
upload button after those), skipping widgets converted to inputs; the converted ones that no
inner link feeds come last. ``widgets_values[k]`` is the value of widget ``k``. Its input
slots are the inner inputs no inner link feeds (non-widget inputs node by node, then those
converted widgets), its outputs the inner outputs not used only inside (or named in
``external``), node by node. Inner Reroutes pass through; an inner PrimitiveNode feeds its
targets. A definition with a node type we lack is not expanded: the instance stays one node
that validation reports (VE-101, naming the missing types).
"""

from __future__ import annotations

from typing import Any

from ._common import lst, obj
from ._ui_common import KEY, PRIMITIVE, REROUTE, Lookup, as_dict, as_list, layout, slot_name, widget_ports

_PREFIXES = ("workflow>", "workflow/")
_SEEDS = ("seed", "noise_seed")
_VIRTUAL = (REROUTE, PRIMITIVE, "Note", "MarkdownNote")


def group_name(ntype: str) -> str | None:
    for prefix in _PREFIXES:
        if ntype.startswith(prefix):
            return ntype[len(prefix):]
    return None


class GroupDef:
    """One ``extra.groupNodes`` entry, with the slots and widgets its instances get."""

    def __init__(self, name: str, raw: dict[str, Any], lookup: Lookup) -> None:
        self.name, self.raw, self.lookup = name, raw, lookup
        self.nodes = [obj(n, f"extra.groupNodes.{name}.nodes[{i}]")
                      for i, n in enumerate(lst(raw.get("nodes", []), f"extra.groupNodes.{name}.nodes"))]
        self.links_to: dict[tuple[int, int], tuple[int, int]] = {}
        self.links_from: set[tuple[int, int]] = set()
        for link in as_list(raw.get("links")):
            if isinstance(link, list) and len(link) >= 4 and all(_index(x) for x in link[:4]):
                self.links_to[(link[2], link[3])] = (link[0], link[1])
                self.links_from.add((link[0], link[1]))
        self.external = {(e[0], e[1]) for e in as_list(raw.get("external"))
                         if isinstance(e, list) and len(e) >= 2 and all(_index(x) for x in e[:2])}
        self.missing = sorted({str(n.get("type")) for n in self.nodes
                               if n.get("type") not in _VIRTUAL and lookup(str(n.get("type"))) is None})
        self.widgets: list[tuple[int, str] | None] = []  # per group widget: (inner index, input) or a control
        self.inputs: list[tuple[int, str]] = []  # non-widget input slots, then converted widgets
        self.outputs: list[tuple[int, int]] = []
        if not self.missing:
            self._build()

    def _config(self, index: int, key: str, slot: Any) -> dict[str, Any]:
        return as_dict(as_dict(as_dict(as_dict(self.raw.get("config")).get(str(index))).get(key)).get(str(slot)))

    def _build(self) -> None:
        converted: list[tuple[int, str]] = []
        for i, node in enumerate(self.nodes):
            if node.get("type") == PRIMITIVE:  # a value widget and its control, when it feeds a node
                if any(src == i for src, _ in self.links_from):
                    self.widgets += [(i, "value"), None]
                continue
            spec = self.lookup(str(node.get("type")))
            if spec is None:
                continue  # a Reroute or a note: no widgets, no slots
            raw_inputs = [s for s in as_list(node.get("inputs")) if isinstance(s, dict)]
            slot_index = {slot_name(s): j for j, s in enumerate(raw_inputs)}
            conv = {slot_name(s) for s in raw_inputs if isinstance(s.get("widget"), dict)}
            ports = widget_ports(spec)
            for port in ports:
                if port.name in conv:
                    converted.append((i, port.name))
                    continue
                self.widgets.append((i, port.name))
                if getattr(port, "control_after_generate", False) or port.name in _SEEDS:
                    self.widgets.append(None)
            values = as_list(node.get("widgets_values"))
            self.widgets += [None] * max(0, len(values) - layout(ports, values).tail)
            for port in spec.inputs:
                j = slot_index.get(port.name)
                if getattr(port, "widget", False) or (j is not None and (i, j) in self.links_to):
                    continue
                if self._config(i, "input", port.name).get("visible") is not False:
                    self.inputs.append((i, port.name))
            self._outputs(i, len(spec.outputs))
        for i, name in converted:
            j = {slot_name(s): k for k, s in enumerate(as_list(self.nodes[i].get("inputs")))}.get(name)
            if j is None or (i, j) not in self.links_to:
                self.inputs.append((i, name))

    def _outputs(self, i: int, count: int) -> None:
        for slot in range(count):
            inside = (i, slot) in self.links_from and (i, slot) not in self.external
            visible = self._config(i, "output", slot).get("visible", not inside)
            if visible:
                self.outputs.append((i, slot))


class GroupExpander:
    """The reader's view of group nodes: which types are groups, and their expansion."""

    def __init__(self, d: dict[str, Any], lookup: Lookup) -> None:
        extra = d.get("extra")
        raw = as_dict(extra).get("groupNodes") if isinstance(extra, dict) else None
        self.lookup = lookup
        self.defs = {name: GroupDef(name, obj(value, f"extra.groupNodes.{name}"), lookup)
                     for name, value in as_dict(raw).items()}
        self.expanded: dict[str, tuple[GroupDef, dict[str, Any], Any]] = {}  # id -> def, raw, level

    def definition(self, ntype: str) -> GroupDef | None:
        name = group_name(ntype)
        return self.defs.get(name) if name is not None else None

    def is_group(self, ntype: str) -> bool:
        found = self.definition(ntype)
        return found is not None and not found.missing

    def missing_note(self, ntype: str) -> str | None:
        found = self.definition(ntype)
        if found is None or not found.missing:
            return None
        return f"a legacy group node whose definition uses node types we lack: {', '.join(found.missing)}"

    def expand(self, reader: Any, level: Any, nid: str, raw: dict[str, Any]) -> None:
        gdef = self.definition(str(raw["type"]))
        assert gdef is not None
        key = level.model_id(nid)
        self.expanded[key] = (gdef, raw, level)
        for i, node in enumerate(gdef.nodes):
            if node.get("type") in (REROUTE, "Note", "MarkdownNote"):
                continue
            extra = {"raw": node, "sub": {"group": gdef.name, "local": str(i), "top": key}}
            reader.model.add_node(str(node["type"]), id=f"{key}:{i}", title=_title(node), extra={KEY: extra})

    def connect(self, reader: Any) -> None:
        for key, (gdef, raw, level) in self.expanded.items():
            self._widgets(reader, key, gdef, raw)
            for (i, j), (src, src_slot) in gdef.links_to.items():
                name = self._input_name(gdef, i, j)
                found = self._inner_source(key, gdef, src, src_slot)
                if name is not None and found is not None and f"{key}:{i}" in reader.model.nodes:
                    self._link(reader, f"{key}:{i}", name, found)
            slots = [s for s in as_list(raw.get("inputs")) if isinstance(s, dict)]
            for (i, name), slot in zip(gdef.inputs, slots, strict=False):
                lid = slot.get("link")
                if isinstance(lid, int) and lid in level.links and f"{key}:{i}" in reader.model.nodes:
                    found = reader.resolve(level, lid)
                    if found is not None and found[0] == "edge":
                        self._link(reader, f"{key}:{i}", name, (found[1], found[2]), lid)

    def _widgets(self, reader: Any, key: str, gdef: GroupDef, raw: dict[str, Any]) -> None:
        values = as_list(raw.get("widgets_values"))
        for k, entry in enumerate(gdef.widgets):
            if entry is None or k >= len(values) or f"{key}:{entry[0]}" not in reader.model.nodes:
                continue
            node = reader.model.nodes[f"{key}:{entry[0]}"]
            node.params[entry[1]] = values[k]
            node.extra[KEY].setdefault("promoted", {})[entry[1]] = [key, k]

    @staticmethod
    def _input_name(gdef: GroupDef, i: int, j: int) -> str | None:
        slots = as_list(gdef.nodes[i].get("inputs")) if 0 <= i < len(gdef.nodes) else []
        found = slot_name(slots[j]) if 0 <= j < len(slots) and isinstance(slots[j], dict) else ""
        return found or None

    def _inner_source(self, key: str, gdef: GroupDef, src: int, slot: int) -> tuple[str, int] | None:
        seen: set[int] = set()
        while 0 <= src < len(gdef.nodes) and gdef.nodes[src].get("type") == REROUTE and src not in seen:
            seen.add(src)
            if (src, 0) not in gdef.links_to:
                return None
            src, slot = gdef.links_to[(src, 0)]
        return (f"{key}:{src}", slot) if 0 <= src < len(gdef.nodes) else None

    @staticmethod
    def _link(reader: Any, dst: str, name: str, src: tuple[str, int], lid: Any = None) -> None:
        reader.model.connect(src[0], src[1], dst, name, replace=False)
        reader.model.nodes[dst].extra[KEY].setdefault("link_ids", {})[name] = [lid, src[0], src[1]]

    def output_source(self, reader: Any, level: Any, nid: str, slot: int) -> tuple[Any, ...] | None:
        gdef, _, _ = self.expanded[level.model_id(nid)]
        if not 0 <= slot < len(gdef.outputs):
            return None
        i, inner_slot = gdef.outputs[slot]
        found = self._inner_source(level.model_id(nid), gdef, i, inner_slot)
        return None if found is None else ("edge", found[0], found[1])


def _index(x: Any) -> bool:
    """A node index or slot of a group definition's link (an int a file may hold)."""
    return type(x) is int and 0 <= x < 1 << 31


def _title(node: dict[str, Any]) -> str | None:
    title = node.get("title")
    return title if isinstance(title, str) else None
