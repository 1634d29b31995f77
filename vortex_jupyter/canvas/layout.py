"""Place nodes that have no position of their own, so a canvas never opens on a pile.

Graphs built in Python (``g.add(...)``), ComfyUI API-format workflows and ``Graph.default()``
carry no positions: every node sits at (0, 0) and the canvas would draw them on top of each
other. Policy:

- A node is *unplaced* when another node has exactly the same position (two nodes put on
  the same spot by hand is vanishingly rare; the (0, 0) default is what collides).
- ``layout_unplaced`` lays the unplaced nodes out left to right by dependency depth
  (longest path from a source), one column per depth, rows ordered by the mean row of their
  neighbours (one barycentre sweep each way, enough for pipelines of a few dozen nodes);
  columns taller than ~sqrt(n) nodes wrap into sub-columns so big graphs stay roughly wide.
  With placed nodes present, the new block goes below them.
- ``place_new`` puts one node that was added on an occupied spot (e.g. ``g.add`` while a
  canvas is open) to the right of everything else.
- Sizes are estimated with the JS renderer's row geometry (``js/src/render/layout.ts``); the
  gaps leave room for the preview image that output nodes grow after a run.

Positions are written through ``GraphModel.set_layout`` (layout never affects cache keys), so
Python sees them and every view gets them through the doc.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from ..graph.model import GraphModel

# Twin of js/src/render/layout.ts (graph units).
TITLE_H, ROW_H, PAD, MIN_W, PREVIEW_H, MAX_AUTO_W = 26, 20, 6, 180, 140, 300
COL_GAP, ROW_GAP = 70, 48  # ROW_GAP: room for a two-line failure banner
Lookup = Callable[[str], Any]


def unplaced(model: GraphModel) -> list[str]:
    """Ids of nodes sharing their exact position with another node, in model order."""
    at: dict[tuple[float, float], list[str]] = defaultdict(list)
    for node in model.nodes.values():
        at[(float(node.pos[0]), float(node.pos[1]))].append(node.id)
    return [i for ids in at.values() if len(ids) > 1 for i in ids]


def node_size(node: Any, lookup: Lookup | None) -> tuple[float, float]:
    """Estimated (w, h) of a node as the canvas draws it, preview room included."""
    if node.size:
        return float(node.size[0]), float(node.size[1])
    spec = lookup(node.type) if lookup else None
    if spec is None:
        return MIN_W, TITLE_H + PAD * 2 + max(1, len(node.params)) * ROW_H
    links = sum(1 for p in spec.inputs if not p.widget)
    widgets = len(spec.inputs) - links
    h = TITLE_H + PAD * 2 + (max(links, len(spec.outputs)) + widgets) * ROW_H
    title = spec.display_name or node.type  # the JS titleWidth(): room for the full title
    w = max(MIN_W, min(MAX_AUTO_W, math.ceil(len(title) * 7.5) + 16))
    return w, h + (PREVIEW_H if getattr(spec, "output_node", False) else 0)


def _depths(model: GraphModel, ids: list[str]) -> dict[str, int]:
    """Longest-path depth from a source within ``ids`` (Kahn order, linear time).

    Nodes on a cycle never reach in-degree 0; they keep the depth their processed
    predecessors gave them, so a cycle cannot hang the layout.
    """
    inside = set(ids)
    succ: dict[str, list[str]] = defaultdict(list)
    indeg = dict.fromkeys(ids, 0)
    for edge in model.edges():
        if edge.src in inside and edge.dst in inside and edge.src != edge.dst:
            succ[edge.src].append(edge.dst)
            indeg[edge.dst] += 1
    depth = dict.fromkeys(ids, 0)
    ready = [i for i in ids if indeg[i] == 0]
    while ready:
        n = ready.pop()
        for m in succ[n]:
            depth[m] = max(depth[m], depth[n] + 1)
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return depth


def _order_columns(model: GraphModel, columns: list[list[str]]) -> None:
    """Reorder each column by the mean row of its neighbours in the previous/next column."""
    def sweep(cols: Iterable[list[str]], neighbours: Callable[[str], list[str]]) -> None:
        row: dict[str, float] = {}
        for col in cols:
            keys = {}
            for i, n in enumerate(col):
                rows = [row[m] for m in neighbours(n) if m in row]
                keys[n] = sum(rows) / len(rows) if rows else float(i)
            col.sort(key=keys.__getitem__)
            row.update({n: float(i) for i, n in enumerate(col)})

    sweep(columns, model.predecessors)
    sweep(reversed(columns), model.successors)  # sources follow the nodes they feed


def layout_unplaced(model: GraphModel, lookup: Lookup | None = None, *, origin: str | None = None) -> list[str]:
    """Lay out the unplaced nodes (see module doc); returns the ids moved."""
    ids = unplaced(model)
    if not ids:
        return []
    placed = [n for n in model.nodes.values() if n.id not in set(ids)]
    x0, y0 = 0.0, 0.0
    if placed:  # below what the user arranged
        x0 = min(n.pos[0] for n in placed)
        y0 = max(n.pos[1] + node_size(n, lookup)[1] for n in placed) + ROW_GAP * 2
    depth = _depths(model, ids)
    columns: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for i in ids:
        columns[depth[i]].append(i)
    _order_columns(model, columns)
    # A big graph with few depths would be a thin tall strip the fit view shrinks to a
    # sliver: cap a column at ~sqrt(n) rows (never fewer than 8) and wrap the rest into
    # sub-columns of the same depth, so links still run left to right.
    rows = max(8, math.ceil(math.sqrt(len(ids))))
    columns = [col[i:i + rows] for col in columns for i in range(0, len(col), rows)]
    x = x0
    for col in columns:
        y, width = y0, 0.0
        for i in col:
            w, h = node_size(model.nodes[i], lookup)
            model.set_layout(i, pos=(x, y), origin=origin)
            y, width = y + h + ROW_GAP, max(width, w)
        x += width + COL_GAP
    return ids


def place_new(model: GraphModel, node_id: str, lookup: Lookup | None = None, *, origin: str | None = None) -> bool:
    """Move ``node_id`` right of all other nodes if it shares its spot with one; True if moved."""
    node = model.nodes.get(node_id)
    if node is None:
        return False
    others = [n for n in model.nodes.values() if n.id != node_id]
    if not any(tuple(n.pos) == tuple(node.pos) for n in others):
        return False
    right = max(n.pos[0] + node_size(n, lookup)[0] for n in others)
    top = min(n.pos[1] for n in others)
    model.set_layout(node_id, pos=(right + COL_GAP, top), origin=origin)
    return True
