"""Writing expanded subgraphs (and legacy group nodes) back into their original structure.

Policy (the flat model is what runs; the file keeps ComfyUI's structure where possible):

- An instance is written back as the instance node it was, with its definition, while it is
  *intact*: every node it expanded to still exists, the links into them are the ones loaded,
  and every link out of them leaves through one of the instance's outputs. Otherwise (a node
  removed, an input rewired, a new link from an inner node) the instance is *flattened*: its
  expanded nodes are written as top-level nodes with fresh ids, linked directly -- the graph
  that runs is the same, only the grouping is gone. Its definition stays in ``definitions``.
- Params of expanded nodes are written where they came from: a value given by an instance's
  promoted widget goes to that instance's ``widgets_values``; the others go to the inner
  node's ``widgets_values`` in the *definition*. A definition is shared by all its instances,
  as in ComfyUI, where editing inside a subgraph edits every instance: when instances were
  edited to different values, the first instance in file order wins.
- Nothing is copied unless something changed: an unedited workflow is written back as loaded.
"""

from __future__ import annotations

import copy
from typing import Any

from ..model import Edge, GraphModel, NodeData
from ._ui_common import KEY, Lookup, as_dict, as_list
from ._ui_widgets import MISSING, widgets_out


def sub_of(node: NodeData) -> dict[str, Any]:
    return as_dict(as_dict(node.extra.get(KEY)).get("sub"))


def top_of(node: NodeData) -> str | None:
    top = sub_of(node).get("top")
    return top if isinstance(top, str) else None


def expanded_by_top(model: GraphModel) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mid, node in model.nodes.items():
        top = top_of(node)
        if top is not None:
            out.setdefault(top, []).append(mid)
    return out


def instance_outputs(meta: dict[str, Any], key: str) -> list[Any]:
    return as_list(as_dict(as_dict(meta.get("instances")).get(key)).get("outputs"))


def output_slot(meta: dict[str, Any], key: str, edge: Edge) -> int | None:
    """Which output of instance ``key`` exposes ``edge``'s source, if any."""
    for k, source in enumerate(instance_outputs(meta, key)):
        if source == [edge.src, edge.src_output]:
            return k
    return None


def intact(model: GraphModel, meta: dict[str, Any], keys: set[str]) -> set[str]:
    """The top-level instances that can be written back as they were (module docstring)."""
    by_top = expanded_by_top(model)
    loaded = as_dict(meta.get("expanded"))
    out = set()
    for key in keys:
        members = by_top.get(key, [])
        if sorted(members) == sorted(as_list(loaded.get(key))) and _unchanged(model, meta, key, members):
            out.add(key)
    return out


def _unchanged(model: GraphModel, meta: dict[str, Any], key: str, members: list[str]) -> bool:
    inside = set(members)
    for mid in members:
        node = model.nodes[mid]
        kept = {k: v for k, v in as_dict(as_dict(node.extra.get(KEY)).get("link_ids")).items()
                if as_list(v)[1:2] != [None]}
        linked = model.inputs_of(mid)
        if set(linked) != set(kept):
            return False
        for name, edges in linked.items():
            if len(edges) != 1 or as_list(kept.get(name))[1:] != [edges[0].src, edges[0].src_output]:
                return False
        for e in model.outputs_of(mid):
            if e.dst not in inside and output_slot(meta, key, e) is None:
                return False
    return True


class DefinitionPatcher:
    """Collects what expanded nodes of intact instances write into definitions and instance
    nodes; ``definitions()`` gives the patched ``definitions`` object (a copy only if needed)."""

    def __init__(self, model: GraphModel, lookup: Lookup, meta: dict[str, Any], keep: set[str]) -> None:
        self.model, self.lookup, self.meta, self.keep = model, lookup, meta, keep
        defs = as_dict(as_dict(meta.get("top")).get("definitions"))
        self.originals = {(str(as_dict(sub).get("id")), str(as_dict(n).get("id"))): n
                          for sub in as_list(defs.get("subgraphs")) for n in as_list(as_dict(sub).get("nodes"))
                          if isinstance(n, dict)}
        self.inner: dict[tuple[str, str], dict[str, Any]] = {}  # (definition, local id) -> changed fields
        self.promoted: dict[tuple[str, int], Any] = {}  # (instance key, index) -> value

    def collect(self) -> None:
        for node in self.model.nodes.values():
            top = top_of(node)
            if top is None or top not in self.keep:
                continue
            self._collect_promoted(node)
            sub = sub_of(node)
            where = (str(sub.get("def")), str(sub.get("local")))
            if "def" not in sub or where in self.inner:
                continue  # a group node's inner node, or a later instance of the definition
            raw = as_dict(as_dict(node.extra.get(KEY)).get("raw"))
            changed = _changed_fields(node, as_dict(self.originals.get(where)))
            values = widgets_out(self.model, node, self.lookup(node.type))
            if values is not MISSING and values is not raw.get("widgets_values"):
                changed["widgets_values"] = values
            if changed:
                self.inner[where] = changed

    def _collect_promoted(self, node: NodeData) -> None:
        for name, place in as_dict(as_dict(node.extra.get(KEY)).get("promoted")).items():
            ok = isinstance(place, list) and len(place) == 2 and isinstance(place[1], int)
            if ok and name in node.params and (place[0], place[1]) not in self.promoted:
                self.promoted[(str(place[0]), place[1])] = node.params[name]

    def instance_values(self, key: str, raw: dict[str, Any]) -> Any:
        """The ``widgets_values`` of instance (or group node) ``key`` with promoted edits."""
        values = raw.get("widgets_values")
        if not isinstance(values, list):
            return values
        out = values
        for (inst, index), value in self.promoted.items():
            if inst == key and 0 <= index < len(values) and not _same(values[index], value):
                out = list(out) if out is values else out
                out[index] = value
        return out

    def definitions(self, original: Any) -> Any:
        changes: dict[tuple[str, str], dict[str, Any]] = dict(self.inner)
        nested: dict[tuple[str, str], list[str]] = {}
        for key, record in as_dict(self.meta.get("instances")).items():
            if ":" in key and key.split(":")[0] in self.keep:
                where = (str(as_dict(record).get("container")), str(as_dict(record).get("local")))
                nested.setdefault(where, []).append(key)
        if not isinstance(original, dict) or not (changes or (self.promoted and nested)):
            return original
        out = copy.deepcopy(original)
        changed = False
        for sub in as_list(out.get("subgraphs")):
            for node in as_list(as_dict(sub).get("nodes")):
                if not isinstance(node, dict):
                    continue
                where = (str(as_dict(sub).get("id")), str(node.get("id")))
                new = dict(changes.get(where, {}))
                for key in nested.get(where, ()) if not new else ():
                    candidate = self.instance_values(key, node)
                    if candidate is not node.get("widgets_values"):
                        new["widgets_values"] = candidate
                        break
                if new:
                    node.update(new)
                    changed = True
        return out if changed else original


def _changed_fields(node: NodeData, raw: dict[str, Any]) -> dict[str, Any]:
    """Title, mode and position edits of an inner node against its definition's ``raw``."""
    from ._ui_write import _pair

    if not raw:
        return {}
    out: dict[str, Any] = {}
    mode = as_dict(as_dict(node.extra.get(KEY)).get("raw")).get("mode", 0)
    if mode != raw.get("mode", 0):
        out["mode"] = mode
    if node.title != raw.get("title") and not (node.title is None and "title" not in raw):
        out["title"] = node.title
    for key, value in (("pos", _definition_pos(node, raw.get("pos"))), ("size", node.size)):
        if value is not None and key in raw and _pair(value, raw[key]) is not raw[key]:
            out[key] = _pair(value, raw[key])
    return out


def _definition_pos(node: NodeData, raw_pos: Any) -> tuple[float, float]:
    """The node's position in its definition's own coordinates. The reader drew it at
    ``raw + offset`` (a band below the top graph): unmoved, that is the raw position exactly
    (recomputed the reader's way, since ``(x + dx) - dx`` need not be ``x`` in floats)."""
    from ...errors import FormatError
    from ._common import pair

    offset = as_list(as_dict(as_dict(node.extra.get(KEY)).get("sub")).get("offset")) or [0, 0]
    try:
        x, y = pair(raw_pos, "pos")
    except FormatError:  # a definition without a usable pos: the model's is all there is
        return node.pos[0] - offset[0], node.pos[1] - offset[1]
    if (x + offset[0], y + offset[1]) == node.pos:
        return x, y
    return node.pos[0] - offset[0], node.pos[1] - offset[1]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
