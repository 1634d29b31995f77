"""Muted and bypassed nodes: pass-through resolution, the model's mode index and API export."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vortex_jupyter.graph.formats import from_comfy_ui, to_comfy_api, to_comfy_ui
from vortex_jupyter.graph.model import Change, GraphModel
from vortex_jupyter.graph.modes import resolve, skipped

from .conftest import lookup


def chain(modes: dict[str, int]) -> GraphModel:
    """p (PrimitiveInt) -> b1 (Add) -> b2 (Add) -> c (Add)."""
    g = GraphModel()
    g.add_node("PrimitiveInt", {"value": 3}, id="p")
    for n in ("b1", "b2", "c"):
        g.add_node("Add", {"b": 1}, id=n)
    g.connect("p", 0, "b1", "a")
    g.connect("b1", 0, "b2", "a")
    g.connect("b2", 0, "c", "a")
    for n, mode in modes.items():
        g.set_mode(n, mode)
    return g


def test_a_bypassed_node_resolves_to_what_feeds_its_input_of_the_same_type() -> None:
    g = chain({"b2": 4})
    assert resolve(g, lookup, "b2", 0) == ("b1", 0)
    assert resolve(g, lookup, "b1", 0) == ("b1", 0)  # active: itself
    assert skipped(g) == {"b2"}


def test_a_chain_of_two_bypassed_nodes_is_followed_to_the_first_active_source() -> None:
    assert resolve(chain({"b1": 4, "b2": 4}), lookup, "b2", 0) == ("p", 0)


def test_bypass_prefers_a_linked_input_and_gives_none_without_one() -> None:
    g = chain({"b1": 4})
    g.disconnect("b1", "a")
    assert resolve(g, lookup, "b1", 0) is None  # "b" is an INT too, but not linked
    g.connect("p", 0, "b1", "b")
    assert resolve(g, lookup, "b1", 0) == ("p", 0)


def test_set_mode_indexes_the_mode_emits_a_mode_change_and_keeps_copies_apart() -> None:
    g = chain({})
    seen: list[Change] = []
    g.add_listener(seen.append)
    before = g.copy()
    g.set_mode("b1", 4)
    g.set_mode("b1", 4)  # no-op: no second change
    assert [(c.kind, c.node, c.detail) for c in seen] == [("mode", "b1", 4)]
    assert g.mode("b1") == 4 and g.nodes["b1"].extra["comfy_ui"]["raw"]["mode"] == 4
    assert before.modes == {} and "comfy_ui" not in before.nodes["b1"].extra
    assert g.copy().modes == {"b1": 4}
    g.set_mode("b1", 0)
    assert g.modes == {} and seen[-1].detail == 0
    g.remove_node("b2")
    with pytest.raises(TypeError, match="must be an int"):
        g.set_mode("c", "bypass")  # type: ignore[arg-type]


def test_api_export_omits_muted_and_bypassed_nodes_and_rewires_around_bypassed_ones() -> None:
    prompt = to_comfy_api(chain({"b1": 4, "b2": 4}), lookup)
    assert set(prompt) == {"p", "c"}
    assert prompt["c"]["inputs"]["a"] == ["p", 0]
    prompt = to_comfy_api(chain({"b2": 2}), lookup)
    assert set(prompt) == {"p", "b1", "c"}
    assert "a" not in prompt["c"]["inputs"]  # fed by a muted node: no value, as in ComfyUI


def _set_modes(wf: dict[str, Any], modes: dict[str, int]) -> dict[str, Any]:
    wf = copy.deepcopy(wf)
    for raw in wf["nodes"]:
        raw["mode"] = modes.get(str(raw["id"]), 0)
    return wf


def test_ui_workflow_modes_round_trip_and_shape_the_api_export(default_workflow: dict) -> None:
    wf = _set_modes(default_workflow, {"7": 2})
    model = from_comfy_ui(wf, lookup)
    assert model.modes == {"7": 2}
    assert to_comfy_ui(model, lookup) == wf
    prompt = to_comfy_api(model, lookup)
    assert "7" not in prompt and "negative" not in prompt["3"]["inputs"]
