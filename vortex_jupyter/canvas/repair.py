"""Bring a shared graph doc back within its schema and invariants, in place.

Where no one can refuse an update — a document's room on the Jupyter server relays what a
client sends before anyone looks at it — the doc is repaired after the fact instead: a
node, edge or group that breaks the schema (``schema.py``) is fixed field by field where
that keeps the user's work (an unknown field dropped, a bad title removed, a bad position
reset to 0), or deleted when nothing sensible remains (no type, params not a map); an edge
into or out of a node that is gone is deleted, so concurrent "delete node" and "connect to
it" edits converge to a graph without a dangling edge. Two edges into one input cannot
happen: the ``edges`` map is keyed by ``dst:input``.

Repairs are ordinary edits (one transaction, origin ``"repair"``), so every replica sees
them; a repaired doc passes ``schema.check`` for what was touched. ``drop`` deletes all the
content some changes brought, for changes that took the doc over its size limit.

>>> from pycrdt import Doc, Map
>>> doc = Doc(); nodes = doc.get("nodes", type=Map); edges = doc.get("edges", type=Map)
>>> nodes["1"] = Map({"type": "Add", "x": 0, "y": float("nan"), "bogus": 1, "params": Map({"a": 1})})
>>> edges["1:a"] = {"src": "9", "src_output": 0, "dst": "1", "dst_input": "a"}
>>> repair(doc, everything(doc))
3
>>> sorted(nodes["1"].to_py().items()), len(edges)
([('params', {'a': 1.0}), ('type', 'Add'), ('x', 0.0), ('y', 0.0)], 0)
"""

from __future__ import annotations

import logging
from typing import Any

from pycrdt import Doc, Map

from .protocol import ROOT_EDGES, ROOT_GROUPS, ROOT_META, ROOT_NODES
from .schema import (
    MAX_COORD,
    MAX_ID,
    MAX_KEEP,
    MAX_PARAMS,
    MAX_TITLE,
    NODE_FIELDS,
    SchemaViolation,
    Touched,
    _check_id,
    _check_scalar,
    check_edge,
    check_group,
    check_mode,
    check_node,
)

log = logging.getLogger(__name__)
REPAIR_ORIGIN = "repair"


def everything(doc: Doc) -> Touched:
    """A ``Touched`` naming every node, edge and group of ``doc`` (a full check)."""
    return Touched(nodes=set(doc.get(ROOT_NODES, type=Map).keys()),
                   edges=set(doc.get(ROOT_EDGES, type=Map).keys()), groups=True)


def repair(doc: Doc, touched: Touched) -> int:
    """Fix what ``touched`` names in ``doc`` (plus every edge whose node is gone); returns
    the number of fixes made (0: the doc was fine, nothing was written)."""
    nodes = doc.get(ROOT_NODES, type=Map)
    edges = doc.get(ROOT_EDGES, type=Map)
    groups = doc.get(ROOT_GROUPS, type=Map)
    fixes: list[tuple[str, Any, str]] = []
    for node_id in touched.node_ids():
        if node_id in nodes:
            fixes += _node_fixes(node_id, nodes[node_id])
    node_ids = set(nodes.keys())
    gone = bool(touched.nodes) or any(f[0] == "del-node" for f in fixes)
    deleted = {f[1] for f in fixes if f[0] == "del-node"}
    for key in (edges.keys() if gone else touched.edges):
        if key not in edges:
            continue
        value = edges[key]
        try:
            check_edge(key, value)
        except SchemaViolation as exc:
            fixes.append(("del-edge", key, str(exc)))
            continue
        if value["src"] not in node_ids or value["dst"] not in node_ids or {value["src"], value["dst"]} & deleted:
            fixes.append(("del-edge", key, "an end of the edge is not a node"))
    if touched.groups:
        for gid in list(groups.keys()):
            try:
                check_group(gid, groups[gid])
            except SchemaViolation as exc:
                fixes.append(("del-group", gid, str(exc)))
    if not fixes:
        return 0
    with doc.transaction(origin=REPAIR_ORIGIN):
        for fix in fixes:
            _apply(nodes, edges, groups, fix)
    log.warning("repaired %d part(s) of a shared graph that broke its schema: %s", len(fixes),
                "; ".join(str(f[-1]) for f in fixes[:5]))
    return len(fixes)


def drop(doc: Doc, touched: Touched, why: str) -> int:
    """Delete the content that changes (``touched``) brought: the nodes they added or replaced
    (and their edges), the params they set, the titles and kept data they wrote, the groups
    and ``meta`` keys they changed. For changes that took a shared doc over its size limit
    (``limits.py``): the room already holds them, so they cannot be refused, only undone.
    Returns the number of parts deleted."""
    nodes, edges = doc.get(ROOT_NODES, type=Map), doc.get(ROOT_EDGES, type=Map)
    groups, meta = doc.get(ROOT_GROUPS, type=Map), doc.get(ROOT_META, type=Map)
    gone = {n for n in touched.nodes if n in nodes}
    fixes: list[tuple[str, Any, str]] = [("del-node", n, why) for n in sorted(gone)]
    fixes += [("del-edge", k, why) for k, v in edges.items()
              if k in touched.edges or (isinstance(v, dict) and {v.get("src"), v.get("dst")} & gone)]
    for node_id, names in touched.fields.items():
        fixes += [("del-field", (node_id, f), why) for f in sorted(names & _DROPPED_FIELDS) if node_id not in gone]
    for node_id, names in touched.params.items():
        fixes += [("del-param", (node_id, p), why) for p in sorted(names) if node_id not in gone]
    fixes += [("del-group", g, why) for g in sorted(touched.group_ids) if g in groups]
    deleted = 0
    with doc.transaction(origin=REPAIR_ORIGIN):
        for fix in fixes:
            deleted += _apply(nodes, edges, groups, fix)
        for key in sorted(touched.meta_keys):
            if key in meta:
                del meta[key]
                deleted += 1
    if deleted:
        log.warning("dropped %d part(s) of a shared graph: %s", deleted, why)
    return deleted


#: the optional node fields a dropped change's content may be in (mode and size are numbers)
_DROPPED_FIELDS = {"title", "keep"}


def _node_fixes(node_id: str, node: Any) -> list[tuple[str, Any, str]]:
    try:
        check_node(node_id, node)
        return []
    except SchemaViolation as exc:
        why = str(exc)
    if (not isinstance(node, Map) or not isinstance(node.get("type"), str) or not 0 < len(node["type"]) <= MAX_ID
            or not isinstance(node.get("params"), Map) or not 0 < len(node_id) <= MAX_ID):
        return [("del-node", node_id, why)]
    fixes: list[tuple[str, Any, str]] = []
    for key, value in node.items():
        if key in ("x", "y"):
            if not _finite(value):
                fixes.append(("set-field", (node_id, key, 0.0), why))
        elif key not in _OPTIONAL_OK or not _OPTIONAL_OK[key](value):
            fixes.append(("del-field", (node_id, key), why))
    for key in ("x", "y"):
        if key not in node:
            fixes.append(("set-field", (node_id, key, 0.0), why))
    params = node["params"]
    for n, (name, value) in enumerate(params.items()):
        if n >= MAX_PARAMS or not _param_ok(name, value):
            fixes.append(("del-param", (node_id, name), why))
    return fixes or [("del-node", node_id, why)]


def _apply(nodes: Map, edges: Map, groups: Map, fix: tuple[str, Any, str]) -> int:
    """Make one fix; 1 if it changed the doc, else 0."""
    kind, what = fix[0], fix[1]
    roots = {"del-node": nodes, "del-edge": edges, "del-group": groups}
    if kind in roots:
        if what not in roots[kind]:
            return 0
        del roots[kind][what]
        return 1
    node = nodes.get(what[0])
    if not isinstance(node, Map):
        return 0
    if kind == "set-field":
        node[what[1]] = what[2]
    elif kind == "del-field" and what[1] in node:
        del node[what[1]]
    elif kind == "del-param" and isinstance(node.get("params"), Map) and what[1] in node["params"]:
        del node["params"][what[1]]
    else:
        return 0
    return 1


def _short_str(limit: int) -> Any:
    return lambda value: isinstance(value, str) and len(value) <= limit


def _finite(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and value == value and abs(value) <= MAX_COORD)


def _mode_ok(value: Any) -> bool:
    try:
        check_mode(value, "mode")
        return True
    except SchemaViolation:
        return False


#: optional node fields (and ``type``/``params``, checked before) -> is the value acceptable
_OPTIONAL_OK: dict[str, Any] = {
    "type": lambda value: True, "params": lambda value: True,
    "w": lambda value: _finite(value), "h": lambda value: _finite(value),
    "title": _short_str(MAX_TITLE), "keep": _short_str(MAX_KEEP), "mode": lambda value: _mode_ok(value),
}
assert set(_OPTIONAL_OK) | {"x", "y"} == NODE_FIELDS


def _param_ok(name: Any, value: Any) -> bool:
    try:
        _check_id(name, "param")
        _check_scalar(value, "param")
        return True
    except SchemaViolation:
        return False
