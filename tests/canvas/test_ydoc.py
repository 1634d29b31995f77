"""The model <-> doc binding on its own: schema of the mirror, batching, groups, no echo."""

from __future__ import annotations

import json

from pycrdt import Doc, Map

from vortex_jupyter.canvas.sync import Relay
from vortex_jupyter.canvas.ydoc import GraphDoc
from vortex_jupyter.graph.model import Change, GraphModel

from .conftest import Replica, lookup


def test_the_mirror_follows_the_canvas_schema(binding: GraphDoc) -> None:
    binding.model.set_layout("1", size=(200.0, 90.0), title="first")
    assert binding.nodes.to_py()["1"] == {
        "type": "Add", "x": 10.0, "y": 20.0, "w": 200.0, "h": 90.0, "title": "first",
        "params": {"a": 1.0, "b": 2.0},
    }
    assert binding.edges.to_py() == {"2:a": {"src": "1", "src_output": 0.0, "dst": "2", "dst_input": "a"}}
    assert binding.meta.to_py() == {"schema": 1.0}


def test_python_only_values_stay_in_the_kernel(binding: GraphDoc) -> None:
    model = binding.model
    model.set_param("1", "a", object())  # not JSON: never mirrored
    model.set_param("1", "b", float("nan"))
    assert binding.nodes["1"]["params"].to_py() == {}
    model.set_param("1", "b", 3)
    assert binding.nodes["1"]["params"].to_py() == {"b": 3.0}


def test_a_batch_of_python_edits_is_one_update(binding: GraphDoc) -> None:
    updates: list[bytes] = []
    binding.subscribe(lambda update, sender: updates.append(update))
    with binding.batch():
        for i in range(10):
            binding.model.add_node("Add", {"a": i})
    assert len(updates) == 1
    replica = Doc()
    replica.apply_update(binding.snapshot())
    assert len(replica.get("nodes", type=Map)) == 12


def test_remote_edits_are_not_echoed_back_into_the_doc(binding: GraphDoc) -> None:
    relay = Relay(binding)
    view = Replica(relay, "A")
    view.connect()
    updates: list[object] = []
    binding.subscribe(lambda update, sender: updates.append(sender))
    view.nodes["1"]["params"]["a"] = 8
    assert updates == ["A"]  # the applied update itself; the model change made no second one


def test_groups_travel_both_ways(model: GraphModel) -> None:
    binding = GraphDoc(model, lookup=lookup)
    model.groups.append({"title": "inputs", "bounding": [0, 0, 400, 300], "color": "#335"})
    model.touch_meta()
    doc_groups = binding.groups.to_py()
    kept = json.loads(doc_groups["g0"].pop("keep"))
    assert doc_groups == {"g0": {"title": "inputs", "x": 0.0, "y": 0.0, "w": 400.0, "h": 300.0, "color": "#335"}}
    assert kept == model.groups[0]  # the group as the model holds it (exact file round trips)
    view = Replica(Relay(binding), "A")
    view.connect()
    seen: list[Change] = []
    model.add_listener(seen.append)
    view.doc.get("groups", type=Map)["gx"] = {"title": "more", "x": 1, "y": 2, "w": 3, "h": 4}
    assert [(c.kind, c.origin) for c in seen] == [("meta", "canvas")]
    # a group from the file keeps its shape (no id added); one drawn on the canvas gets its id
    assert [(g.get("id"), g["title"]) for g in model.groups] == [(None, "inputs"), ("gx", "more")]


def test_a_node_retyped_in_a_view_is_replaced_in_the_model(model: GraphModel, views: tuple[Replica, Replica]) -> None:
    a, _ = views
    seen: list[Change] = []
    model.add_listener(seen.append)
    a.nodes["2"]["type"] = "Text"
    assert model.nodes["2"].type == "Text" and model.nodes["2"].params == {"b": 5}
    assert [c.kind for c in seen] == ["edge_removed", "node_removed", "node_added", "edge_added"]
    assert [(e.src, e.dst, e.dst_input) for e in model.edges()] == [("1", "2", "a")]  # as the doc has it


def test_groups_edited_on_the_canvas_export_to_comfyui_as_it_reads_them(model: GraphModel) -> None:
    # ComfyUI places a group by its "bounding" and numbers it with an int id
    from vortex_jupyter.graph.formats import comfy_ui

    model.groups.append({"id": 7, "title": "loaded", "bounding": [10, 20, 300, 200], "font_size": 30, "flags": {}})
    model.touch_meta()
    binding = GraphDoc(model, lookup=lookup)
    view = Replica(Relay(binding), "A")
    view.connect()
    groups = view.doc.get("groups", type=Map)
    groups["7"] = {**groups["7"], "x": 50.0}  # moved on the canvas
    groups["new-group"] = {"title": "made here", "x": 1, "y": 2, "w": 3, "h": 4, "color": "#a1309b"}
    loaded, made = model.groups
    assert loaded == {"id": 7, "title": "loaded", "bounding": [50.0, 20.0, 300.0, 200.0], "font_size": 30, "flags": {}}
    assert made["bounding"] == [1.0, 2.0, 3.0, 4.0] and made["color"] == "#a1309b"
    from vortex_jupyter.nodes.registry import REGISTRY

    out = comfy_ui.to_comfy_ui(model, REGISTRY.lookup)["groups"]
    assert [(g["id"], g["title"], g["bounding"]) for g in out] == [
        (7, "loaded", [50.0, 20.0, 300.0, 200.0]), (1, "made here", [1.0, 2.0, 3.0, 4.0])]
    assert all(not ({"x", "y", "w", "h"} & set(g)) for g in out)
