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
from collections import Counter, defaultdict
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


class Extents:
    """Which spots the nodes take and the right/top edge of them all, kept current from the
    model's changes (``on_change``), so placing a node added from Python is O(1) instead of a
    walk over every node (adding 2,000 nodes one by one with a canvas open was quadratic).

    The edges are recomputed lazily, only after the node defining one moved inwards or left.
    """

    def __init__(self, model: GraphModel, lookup: Lookup | None = None) -> None:
        self.model, self.lookup = model, lookup
        self._box: dict[str, tuple[tuple[float, float], float]] = {}  # id -> (pos, right edge)
        self._spots: Counter[tuple[float, float]] = Counter()
        self._rights: Counter[float] = Counter()  # how many nodes end at each right edge
        self._tops: Counter[float] = Counter()
        self._right, self._top, self._stale = -math.inf, math.inf, False
        for node_id in model.nodes:
            self._add(node_id)

    def on_change(self, change: Any) -> None:
        kind, node_id = change.kind, change.node
        if kind == "node_added" or kind == "layout":
            self._remove(node_id)
            self._add(node_id)
        elif kind == "node_removed":
            self._remove(node_id)

    def shares_spot(self, node_id: str) -> bool:
        box = self._box.get(node_id)
        return box is not None and self._spots[box[0]] > 1

    def edges(self, without: str | None = None) -> tuple[float, float] | None:
        """(right edge, top) of all nodes but ``without``; None when there are none."""
        box = self._box.get(without) if without is not None else None
        if box is not None:
            self._remove(without)  # type: ignore[arg-type]
        if self._stale:
            self._right = max(self._rights, default=-math.inf)
            self._top = min(self._tops, default=math.inf)
            self._stale = False
        found = (self._right, self._top) if self._box else None
        if box is not None:
            self._add(without)  # type: ignore[arg-type]
        return found

    def _add(self, node_id: str | None) -> None:
        node = self.model.nodes.get(node_id)  # type: ignore[arg-type]
        if node is None:
            return
        pos = (float(node.pos[0]), float(node.pos[1]))
        right = pos[0] + node_size(node, self.lookup)[0]
        self._box[node.id] = (pos, right)
        self._spots[pos] += 1
        self._rights[right] += 1
        self._tops[pos[1]] += 1
        if not self._stale:
            self._right, self._top = max(self._right, right), min(self._top, pos[1])

    def _remove(self, node_id: str | None) -> None:
        box = self._box.pop(node_id, None)  # type: ignore[arg-type]
        if box is None:
            return
        pos, right = box
        _take(self._spots, pos)
        # an edge goes stale only when the last node on it leaves
        if not _take(self._rights, right) and right >= self._right:
            self._stale = True
        if not _take(self._tops, pos[1]) and pos[1] <= self._top:
            self._stale = True


def _take(counts: Counter[Any], key: Any) -> int:
    """Count one ``key`` out of ``counts``; returns how many are left."""
    left = counts[key] - 1
    if left > 0:
        counts[key] = left
    else:
        del counts[key]
    return left


def place_new(model: GraphModel, node_id: str, lookup: Lookup | None = None, *, origin: str | None = None,
              extents: Extents | None = None) -> bool:
    """Move ``node_id`` right of all other nodes if it shares its spot with one; True if moved.

    ``extents``: an ``Extents`` kept current from the model's changes (it must have seen the
    addition of ``node_id``); without it every node is looked at.
    """
    node = model.nodes.get(node_id)
    if node is None:
        return False
    ext = extents if extents is not None else Extents(model, lookup)
    if not ext.shares_spot(node_id):
        return False
    edges = ext.edges(without=node_id)
    assert edges is not None  # another node shares the spot
    right, top = edges
    model.set_layout(node_id, pos=(right + COL_GAP, top), origin=origin)
    return True
