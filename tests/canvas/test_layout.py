"""Nodes without positions are laid out before a canvas shows them (canvas/layout.py)."""

from __future__ import annotations

from itertools import combinations

import pytest

import vortex_jupyter as vx
from vortex_jupyter.canvas import layout
from vortex_jupyter.canvas.session import session_for
from vortex_jupyter.nodes.registry import REGISTRY


def boxes(g: vx.Graph) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for node_id, node in g.model.nodes.items():
        w, h = layout.node_size(node, REGISTRY.lookup)
        out[node_id] = (node.pos[0], node.pos[1], w, h)
    return out


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_the_default_graph_opens_laid_out_left_to_right_with_no_overlapping_nodes() -> None:
    g = vx.Graph.default()
    assert len({n.pos for n in g.model.nodes.values()}) == 1  # it ships without positions
    session_for(g)  # what displaying it (g / g.canvas()) does first
    b = boxes(g)
    assert not [(x, y) for x, y in combinations(b, 2) if overlap(b[x], b[y])]
    for edge in g.model.edges():  # data flows left to right
        assert b[edge.src][0] < b[edge.dst][0], edge
    doc = session_for(g).doc.nodes
    assert {k: (doc[k]["x"], doc[k]["y"]) for k in b} == {k: (v[0], v[1]) for k, v in b.items()}


def test_nodes_the_user_placed_stay_and_the_unplaced_pile_goes_below_them() -> None:
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    g.nodes[a.id].pos = (100, 50)
    piled = [g.add("IntAdd", a=1, b=2), g.add("PrimitiveString", value="x")]
    assert layout.unplaced(g.model) == [n.id for n in piled]
    moved = layout.layout_unplaced(g.model, REGISTRY.lookup)
    assert moved == [n.id for n in piled]
    assert g.nodes[a.id].pos == (100.0, 50.0)
    b = boxes(g)
    assert all(b[n.id][1] >= 50 + b[a.id][3] for n in piled)
    assert not [(x, y) for x, y in combinations(b, 2) if overlap(b[x], b[y])]


def test_a_node_added_from_python_while_a_canvas_is_open_lands_beside_the_graph() -> None:
    g = vx.Graph()
    g.add("IntAdd", a=1, b=2)
    session = session_for(g)
    late = g.add("IntAdd", a=3, b=4)  # default position (0, 0): on top of the first node
    b = boxes(g)
    assert not [(x, y) for x, y in combinations(b, 2) if overlap(b[x], b[y])]
    assert session.doc.nodes[late.id]["x"] == b[late.id][0] > 0


def test_graphs_with_positions_are_left_alone_and_cycles_do_not_hang_the_layout() -> None:
    g = vx.Graph()
    for i in range(3):
        g.add("IntAdd", id=f"n{i}", a=1, b=2).pos = (i * 300, 0)
    assert layout.layout_unplaced(g.model, REGISTRY.lookup) == []
    loop = vx.Graph()
    loop.add("IntAdd", id="x")
    loop.add("IntAdd", id="y")
    loop.model.connect("x", 0, "y", "a")
    loop.model.connect("y", 0, "x", "a")
    assert sorted(layout.layout_unplaced(loop.model, REGISTRY.lookup)) == ["x", "y"]
    assert loop.nodes["x"].pos != loop.nodes["y"].pos


def test_a_big_generated_graph_is_laid_out_wide_rather_than_as_a_thin_strip() -> None:
    g = vx.Graph()
    ids = [g.add("IntAdd").id for _ in range(400)]  # 400 sources: one depth
    for i in range(1, 40):
        g.model.connect(ids[i - 1], 0, ids[i], "a")
    layout.layout_unplaced(g.model, REGISTRY.lookup)
    b = boxes(g)
    width = max(x + w for x, _, w, _ in b.values()) - min(x for x, *_ in b.values())
    height = max(y + h for _, y, _, h in b.values()) - min(y for _, y, *_ in b.values())
    assert height < 3 * width, (width, height)  # was 400 nodes in one 50,000-unit column
    assert len({v[:2] for v in b.values()}) == 400


def test_extents_kept_from_changes_place_nodes_exactly_where_a_full_walk_would() -> None:
    # nodes added, moved (inwards too, so the edges go stale) and removed in a seeded order
    import random

    from vortex_jupyter.graph.model import GraphModel

    rng = random.Random(7)
    model = GraphModel()
    ext = layout.Extents(model, REGISTRY.lookup)
    model.add_listener(ext.on_change)
    types = ["IntAdd", "PrimitiveString", "SaveImage", "KSampler"]
    for step in range(300):
        ids = list(model.nodes)
        action = rng.random()
        if ids and action < 0.3:
            model.set_layout(rng.choice(ids), pos=(rng.choice([0, 50, rng.uniform(-500, 500)]), rng.uniform(-300, 300)))
        elif ids and action < 0.4:
            model.remove_node(rng.choice(ids))
        else:
            new = model.add_node(rng.choice(types), {})
            others = [n for n in model.nodes.values() if n.id != new]
            want = None
            if any(tuple(n.pos) == tuple(model.nodes[new].pos) for n in others):
                want = (max(n.pos[0] + layout.node_size(n, REGISTRY.lookup)[0] for n in others) + layout.COL_GAP,
                        min(n.pos[1] for n in others))
            moved = layout.place_new(model, new, REGISTRY.lookup, extents=ext)
            assert moved == (want is not None), step
            if want is not None:
                assert tuple(model.nodes[new].pos) == pytest.approx(want), step


def test_adding_thousands_of_nodes_with_a_canvas_open_costs_linear_work() -> None:
    # each g.add used to walk every node to place the new one (2,000 adds took ~10 s)
    calls = 0

    def counting(type_name: str):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return REGISTRY.lookup(type_name)

    g = vx.Graph()
    g.add("IntAdd", a=1, b=2)
    session = session_for(g)
    session._lookup = counting
    session._extents.lookup = counting
    for i in range(1500):
        g.add("PrimitiveInt", value=i)
    assert calls <= 5 * 1500, calls
    positions = {tuple(n.pos) for n in g.model.nodes.values()}
    assert len(positions) == len(g.model.nodes)  # nobody left on a pile
