"""The engine follows ComfyUI's node modes: muted and bypassed nodes do not run, consumers of a
bypassed node get what it passes through, and a mode change re-runs exactly what it affects."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import vortex_jupyter as vx
from vortex_jupyter.errors import ValidationError

_base = itertools.count(7_000_001, 1000)  # fresh values per graph: no cache hits across tests


def add_chain(n_bypassed: int) -> tuple[vx.Graph, list[vx.Node]]:
    """a (IntAdd a+b) -> m1 .. mN (IntAdd +100 each) -> c (IntAdd +1); m1..mN bypassed."""
    g = vx.Graph()
    a = g.add("IntAdd", a=next(_base), b=5)
    prev, mids = a, []
    for _ in range(n_bypassed):
        prev = g.add("IntAdd", a=prev.out(0), b=100)
        mids.append(prev)
    c = g.add("IntAdd", a=prev.out(0), b=1)
    for m in mids:
        g.model.set_mode(m.id, 4)
    return g, [a, *mids, c]


def test_a_bypassed_node_does_not_run_and_its_consumer_gets_the_passed_through_value() -> None:
    g, (a, m, c) = add_chain(1)
    run = g.run(executor="inline")
    assert run.outputs[c.id] == (a.params["a"] + 5 + 1,)
    assert run.stats == {"ran": 2, "cached": 0, "failed": 0}
    with pytest.raises(KeyError, match="not part of this run"):
        run.outputs[m.id]


def test_a_chain_of_two_bypassed_nodes_passes_the_value_through_both() -> None:
    g, (a, _m1, _m2, c) = add_chain(2)
    run = g.run(executor="inline")
    assert run.outputs[c.id] == (a.params["a"] + 6,)
    assert run.stats["ran"] == 2


def test_a_consumer_of_a_muted_node_is_a_validation_problem_and_nothing_runs() -> None:
    g, (_a, m, c) = add_chain(1)
    g.model.set_mode(m.id, 2)
    with pytest.raises(ValidationError) as info:
        g.run(executor="inline")
    [p] = info.value.problems
    assert (p.code, p.node, p.port) == ("VE-115", c.id, "a")
    assert f"un-mute node {m.id} or disconnect it" in p.hint


def test_a_muted_node_without_consumers_just_does_not_run() -> None:
    g, (a, m, c) = add_chain(1)
    g.model.set_mode(c.id, 2)
    g.model.set_mode(m.id, 0)
    run = g.run(executor="inline")
    assert run.stats == {"ran": 2, "cached": 0, "failed": 0}
    assert run.outputs[m.id] == (a.params["a"] + 105,)


def test_un_bypassing_reruns_exactly_the_node_and_what_it_feeds() -> None:
    g, (a, m, c) = add_chain(1)
    other = g.add("IntAdd", a=next(_base), b=2)
    g.run(executor="inline")
    g.model.set_mode(m.id, 0)
    run = g.run(executor="inline")
    assert run.outputs[c.id] == (a.params["a"] + 106,)
    assert run.stats == {"ran": 2, "cached": 2, "failed": 0}  # m and c ran; a and other cached
    g.model.set_mode(m.id, 4)  # back: c's old key, still in the cache
    run = g.run(executor="inline")
    assert run.stats == {"ran": 0, "cached": 3, "failed": 0} and run.outputs[c.id] == (a.params["a"] + 6,)
    assert other.id in g.nodes


def test_an_edit_above_a_bypassed_node_reaches_its_consumer() -> None:
    g, (a, _m, c) = add_chain(1)
    g.run(executor="inline")
    a.params["b"] = 6
    run = g.run(executor="inline")
    assert run.outputs[c.id] == (a.params["a"] + 7,) and run.stats["ran"] == 2


def test_relinking_into_a_bypassed_node_changes_what_its_consumer_gets() -> None:
    g, (_a, m, c) = add_chain(1)
    g.run(executor="inline")
    src = g.add("IntAdd", a=next(_base), b=0)
    g.connect(src, m, "a")
    run = g.run(executor="inline")
    assert run.outputs[c.id] == (src.params["a"] + 1,)


def _ui_workflow(base: int) -> dict[str, Any]:
    def node(nid: int, mode: int, widgets: list[int], link_in: int | None, link_out: int | None) -> dict[str, Any]:
        inputs = [] if link_in is None else [{"name": "a", "type": "INT", "link": link_in, "widget": {"name": "a"}}]
        return {"id": nid, "type": "IntAdd", "pos": [0, 0], "size": [200, 80], "flags": {}, "order": nid,
                "mode": mode, "inputs": inputs,
                "outputs": [{"name": "INT", "type": "INT", "links": [] if link_out is None else [link_out]}],
                "properties": {"Node name for S&R": "IntAdd"}, "widgets_values": widgets}
    return {"last_node_id": 3, "last_link_id": 2,
            "nodes": [node(1, 0, [base, 6], None, 1), node(2, 4, [0, 100], 1, 2), node(3, 0, [0, 1000], 2, None)],
            "links": [[1, 1, 0, 2, 0, "INT"], [2, 2, 0, 3, 0, "INT"]],
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def test_a_ui_workflow_with_a_bypassed_node_runs_like_comfyui() -> None:
    base = next(_base)
    wf = _ui_workflow(base)
    g = vx.load(wf)
    run = g.run(executor="inline")
    assert run.outputs["3"] == (base + 6 + 1000,)  # node 2's +100 is bypassed
    assert run.stats == {"ran": 2, "cached": 0, "failed": 0}
    assert g.to_comfy_ui() == wf
    assert set(g.to_comfy_api()) == {"1", "3"} and g.to_comfy_api()["3"]["inputs"]["a"] == ["1", 0]
