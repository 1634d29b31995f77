"""Graph versions: what changed between two graphs, and putting an old version back in place.

``diff(old, new)`` lists the differences in words (nodes added/removed/retyped, params,
links); ``restore(model, doc)`` edits a live ``GraphModel`` until it equals ``doc`` (a native
document, e.g. a recorded run's graph) with ordinary model edits, so a canvas showing it, its
collaborators and the engine's cache keys follow as they do for any edit (nodes that did not
change keep their cached outputs).
"""

from __future__ import annotations

from typing import Any

__all__ = ["diff", "restore"]


def _model(doc_or_model: Any) -> Any:
    if hasattr(doc_or_model, "nodes") and hasattr(doc_or_model, "edges"):
        return doc_or_model
    if hasattr(doc_or_model, "model"):  # a vx.Graph
        return doc_or_model.model
    from ..graph.formats import from_native

    return from_native(doc_or_model)


def _edges(model: Any) -> set[tuple[str, int, str, str]]:
    return {(e.src, e.src_output, e.dst, e.dst_input) for e in model.edges()}


def diff(old: Any, new: Any) -> list[str]:
    """The differences from ``old`` to ``new`` (graphs, models or native documents), in words."""
    a, b = _model(old), _model(new)
    out: list[str] = []
    for nid in sorted(set(a.nodes) - set(b.nodes), key=_order):
        out.append(f"removed node {nid} ({a.nodes[nid].type})")
    for nid in sorted(set(b.nodes) - set(a.nodes), key=_order):
        out.append(f"added node {nid} ({b.nodes[nid].type})")
    for nid in sorted(set(a.nodes) & set(b.nodes), key=_order):
        x, y = a.nodes[nid], b.nodes[nid]
        if x.type != y.type:
            out.append(f"node {nid}: type {x.type} -> {y.type}")
            continue
        for name in sorted(set(x.params) | set(y.params)):
            if name not in y.params:
                out.append(f"node {nid} ({x.type}): {name} {x.params[name]!r} removed")
            elif name not in x.params:
                out.append(f"node {nid} ({x.type}): {name} set to {y.params[name]!r}")
            elif x.params[name] != y.params[name] or type(x.params[name]) is not type(y.params[name]):
                out.append(f"node {nid} ({x.type}): {name} {x.params[name]!r} -> {y.params[name]!r}")
        if a.modes.get(nid) != b.modes.get(nid):
            out.append(f"node {nid} ({x.type}): mode {a.modes.get(nid, 0)} -> {b.modes.get(nid, 0)}")
    ea, eb = _edges(a), _edges(b)
    for e in sorted(ea - eb):
        out.append(f"removed link {e[0]}.{e[1]} -> {e[2]}.{e[3]}")
    for e in sorted(eb - ea):
        out.append(f"added link {e[0]}.{e[1]} -> {e[2]}.{e[3]}")
    return out


def _order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def restore(model: Any, doc: Any, *, origin: str | None = None) -> int:
    """Edit ``model`` until it equals ``doc``; returns how many edits that took."""
    target = _model(doc)
    edits = 0
    for e in [e for e in model.edges() if (e.src, e.src_output, e.dst, e.dst_input) not in _edges(target)]:
        model.remove_edge(e, origin=origin)
        edits += 1
    for nid in [n for n in model.nodes if n not in target.nodes or model.nodes[n].type != target.nodes[n].type]:
        model.remove_node(nid, origin=origin)
        edits += 1
    for nid, want in target.nodes.items():
        have = model.nodes.get(nid)
        if have is None:
            model.add_node(want.type, dict(want.params), id=nid, pos=want.pos, size=want.size, title=want.title,
                           extra=dict(want.extra), origin=origin)
            edits += 1
            continue
        for name in [p for p in have.params if p not in want.params]:
            model.delete_param(nid, name, origin=origin)
            edits += 1
        for name, value in want.params.items():
            if name not in have.params or have.params[name] != value or type(have.params[name]) is not type(value):
                model.set_param(nid, name, value, origin=origin)
                edits += 1
        if have.pos != want.pos or have.size != want.size or have.title != want.title:
            model.set_layout(nid, pos=want.pos, size=want.size, title=want.title or "", origin=origin)
            edits += 1
        if model.modes.get(nid, 0) != target.modes.get(nid, 0):
            model.set_mode(nid, target.modes.get(nid, 0), origin=origin)
            edits += 1
    present = _edges(model)
    for e in target.edges():
        if (e.src, e.src_output, e.dst, e.dst_input) not in present:
            model.connect(e.src, e.src_output, e.dst, e.dst_input, replace=False, origin=origin)
            edits += 1
    return edits
