"""Subgraphs of ComfyUI's UI format, expanded for execution as ComfyUI's frontend does.

A workflow may carry ``definitions.subgraphs``: each definition has an ``id`` (a UUID), its own
``nodes`` and ``links`` (object form), an ``inputNode`` and ``outputNode`` (ids -10 and -20)
and ``inputs``/``outputs`` lists. A node whose ``type`` is a definition's id is an *instance*:
its input slots are the definition's inputs (matched by name: newer frontends leave unlinked
widget inputs out of the slot list), its output slots the definition's outputs.

Expansion (``ExecutableNodeDTO`` / ``SubgraphNode.getInnerNodes`` in the frontend):

- every node inside instance ``37`` becomes a node of the flat graph with id ``"37:8"``
  (``"37:12:8"`` for instance 12 nested in 37) -- the ids ComfyUI's API prompt uses;
- a link from the definition's input node resolves to what feeds the instance's input of that
  name; an unlinked instance input gives its *promoted widget* value instead (below), or
  nothing; a link from an instance's output resolves to the inner source of that output;
  Reroutes on the way are passed through. Resolution is iterative and stops at loops;
- promoted widgets: a definition input whose first link (in ``linkIds`` order) reaching a
  widget slot of an inner node gets a widget on the instance. Their values are the instance's
  ``widgets_values`` in definition-input order (checked against ``widgets_values_named`` over
  the whole templates corpus); newer frontends leave that list empty and show the inner
  node's own widget instead, so then the first target's own value is used for every target;
- a *top-level* instance that is muted (mode 2) or bypassed (mode 4) is not expanded: its
  contents do not run (frontend PR #8494) and it stays one node whose recorded slot types let
  a bypass pass through. ComfyUI ignores the mode of nested instances (a known upstream bug,
  Comfy-Org/ComfyUI#10713); so do we.

What is needed to write the structure back is kept: each expanded node records its definition
and local id (``NodeData.extra["comfy_ui"]["sub"]``), and ``model.extra["comfy_ui"]
["instances"]`` the instances; the writer (``_ui_subgraph_write``) documents the edit policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._common import fail, lst, name, node_id, obj
from ._ui_common import as_list, link_table, parse_link, slot_name

#: Most nodes a workflow may expand to (nested instances multiply).
MAX_EXPANDED = 500_000


@dataclass
class Definition:
    id: str
    raw: dict[str, Any]
    where: str
    nodes: dict[str, dict[str, Any]]
    links: dict[int, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    io_in: str
    io_out: str
    #: input name -> (inner node, input) of its first widget target, or None (made on first use)
    targets: dict[str, tuple[str, str] | None] = field(default_factory=dict)


@dataclass
class Level:
    """One graph being read: the top graph, or a definition inside one instance."""

    prefix: str  # "" at the top, "37:" inside instance 37
    where: str  # JSON path of this graph, for messages
    nodes: dict[str, dict[str, Any]]
    links: dict[int, Any]
    instance: Instance | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # local id -> JSON path of the node
    parsed: dict[int, Any] = field(default_factory=dict)  # link id -> its parse_link, made once
    children: dict[str, Instance] = field(default_factory=dict)
    #: Added to the positions of this level's nodes: an instance's contents are laid out in a
    #: free band below the top graph (see ``comfy_ui``), not over it; the writer subtracts it.
    offset: tuple[float, float] = (0.0, 0.0)

    def model_id(self, local: str) -> str:
        return self.prefix + local


@dataclass
class Instance:
    key: str  # the instance's flat id: "37", "37:12"
    raw: dict[str, Any]
    definition: Definition
    outer: Level
    inner: Level
    container: str | None  # the definition holding the instance node (None: the top graph)
    local: str
    slot_of: dict[str, int] = field(default_factory=dict)  # input name -> raw slot index

    def input_slot(self, index: int) -> dict[str, Any] | None:
        """The instance's slot for the definition's input ``index`` (matched by name)."""
        inputs = self.definition.inputs
        if not 0 <= index < len(inputs):
            return None
        at = self.slot_of.get(str(inputs[index].get("name")))
        raw_inputs = self.raw.get("inputs") or []
        return raw_inputs[at] if at is not None else None


def definitions(d: dict[str, Any]) -> dict[str, Definition]:
    """The subgraph definitions of a workflow, shape-checked."""
    defs = d.get("definitions")
    if defs is None:
        return {}
    raw_list = obj(defs, "definitions").get("subgraphs", [])
    out: dict[str, Definition] = {}
    for i, raw in enumerate(lst(raw_list, "definitions.subgraphs")):
        where = f"definitions.subgraphs[{i}]"
        definition = _definition(obj(raw, where), where)
        if definition.id in out:
            fail(f"{where}.id", f"subgraph id {definition.id!r} is defined twice")
        out[definition.id] = definition
    return out


def _definition(raw: dict[str, Any], where: str) -> Definition:
    sid = name(raw.get("id"), f"{where}.id")
    nodes: dict[str, dict[str, Any]] = {}
    for j, node in enumerate(lst(raw.get("nodes", []), f"{where}.nodes")):
        path = f"{where}.nodes[{j}]"
        node = obj(node, path)
        nid = node_id(node.get("id"), f"{path}.id")
        name(node.get("type"), f"{path}.type")
        if nid in nodes:
            fail(f"{path}.id", f"node id {nid} is used twice in subgraph {sid!r}")
        nodes[nid] = node
    links, _form = link_table(raw.get("links", []), f"{where}.links")
    ports = {key: [obj(p, f"{where}.{key}[{k}]") for k, p in enumerate(lst(raw.get(key, []), f"{where}.{key}"))]
             for key in ("inputs", "outputs")}
    io_in = _io_id(raw.get("inputNode"), f"{where}.inputNode", "-10")
    io_out = _io_id(raw.get("outputNode"), f"{where}.outputNode", "-20")
    return Definition(sid, raw, where, nodes, links, ports["inputs"], ports["outputs"], io_in, io_out)


def _io_id(value: Any, path: str, default: str) -> str:
    if value is None:
        return default
    raw = obj(value, path).get("id")
    return default if raw is None else node_id(raw, f"{path}.id")


def instance_slots(raw: dict[str, Any]) -> dict[str, int]:
    """Input name -> slot index of an instance node's (already shape-checked) slots."""
    return {slot_name(s): i for i, s in enumerate(raw.get("inputs") or [])}


def output_link(definition: Definition, slot: int) -> int | None:
    """The inner link feeding the definition's output ``slot`` (the first that exists)."""
    if not 0 <= slot < len(definition.outputs):
        return None
    for lid in as_list(definition.outputs[slot].get("linkIds")):
        if isinstance(lid, int) and lid in definition.links:
            return lid
    return None


def widget_inputs(definition: Definition) -> list[str]:
    """Names of the definition's inputs that get a promoted widget on their instances: those
    with a link to a widget slot of an inner node (``SubgraphNode._internalConfigureAfterSlots``)."""
    out = []
    for port in definition.inputs:
        if first_widget_target(definition, port) is not None:
            out.append(str(port.get("name")))
    return out


def first_widget_target(definition: Definition, port: dict[str, Any]) -> tuple[str, str] | None:
    """(inner node local id, input name) of the first widget slot a definition input feeds."""
    key = str(port.get("name"))
    if key not in definition.targets:
        definition.targets[key] = _first_widget_target(definition, port)
    return definition.targets[key]


def _first_widget_target(definition: Definition, port: dict[str, Any]) -> tuple[str, str] | None:
    for lid in as_list(port.get("linkIds")):
        raw = definition.links.get(lid) if isinstance(lid, int) else None
        if raw is None:
            continue
        _, _, _, dst, dst_slot, _ = parse_link(raw, f"{definition.where}.links[id={lid}]")
        node = definition.nodes.get(dst)
        inputs = (node or {}).get("inputs") or []
        slot = inputs[dst_slot] if 0 <= dst_slot < len(inputs) else None
        if isinstance(slot, dict) and isinstance(slot.get("widget"), dict):
            return dst, slot_name(slot)
    return None


def promoted_values(inst: Instance) -> dict[str, int] | None:
    """Input name -> index into the instance's ``widgets_values`` of its promoted widgets, or
    None when the instance keeps no values (newer frontends: the inner widgets hold them)."""
    names = widget_inputs(inst.definition)
    values = inst.raw.get("widgets_values")
    if not isinstance(values, list) or not values:
        return None
    if len(values) == len(names):
        return {n: i for i, n in enumerate(names)}
    proxies = (inst.raw.get("properties") or {}).get("proxyWidgets")
    if isinstance(proxies, list) and len(proxies) == len(values):
        # widgets_values[i] belongs to proxyWidgets[i]; "-1" marks a promoted definition input
        return {str(p[1]): i for i, p in enumerate(proxies)
                if isinstance(p, list) and len(p) == 2 and str(p[0]) == "-1" and p[1] in names}
    return None


def extent(raw_nodes: Any) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) of a graph's nodes (``pos`` + ``size``; malformed ones skipped)."""
    boxes = []
    for raw in raw_nodes if isinstance(raw_nodes, list) else ():
        if not isinstance(raw, dict):
            continue
        pos, size = _xy(raw.get("pos")), _xy(raw.get("size")) or (0.0, 0.0)
        if pos is not None:
            boxes.append((pos[0], pos[1], pos[0] + size[0], pos[1] + size[1]))
    if not boxes:
        return (0.0, 0.0, 0.0, 0.0)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _xy(value: Any) -> tuple[float, float] | None:
    if isinstance(value, dict):
        value = [value.get("0"), value.get("1")]
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value[:2]):
        return float(value[0]), float(value[1])
    return None
