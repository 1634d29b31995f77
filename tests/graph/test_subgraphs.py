"""Subgraphs and legacy group nodes: expanded for execution with ComfyUI's ids and links, kept
on UI export, edits written back where they belong.

``subgraph_workflow.json``: a PrimitiveInt (1) feeds two instances (10, 11) of subgraph S
("Inner sum": Add(1) -> a nested instance 20 of T); T ("Double") is Add(2) with both inputs
from one subgraph input. Instance 10 feeds Add 30. A muted (12), a bypassed (13) and a
widget-only (14) instance of T sit beside them. ``groupnode_workflow.json``: a legacy group
node (5, ``workflow>Pair``: PrimitiveInt -> Add) feeding Add 9.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from vortex_jupyter.graph.formats import from_comfy_ui, to_comfy_api, to_comfy_ui
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import validate

from .conftest import load_json, lookup


def add(a: Any, b: Any) -> dict[str, Any]:
    return {"inputs": {"a": a, "b": b}, "class_type": "Add", "_meta": {"title": "Add"}}


def prim(value: int) -> dict[str, Any]:
    return {"inputs": {"value": value}, "class_type": "PrimitiveInt", "_meta": {"title": "Int"}}


def same_text(a: Any, b: Any) -> bool:
    return json.dumps(a) == json.dumps(b)


def load(name: str) -> tuple[dict[str, Any], GraphModel]:
    wf = load_json(name)
    return wf, from_comfy_ui(copy.deepcopy(wf), lookup)


# ---- subgraphs: expansion ------------------------------------------------------------------------
def test_subgraph_instances_expand_to_comfyuis_prompt_ids_and_links() -> None:
    _, m = load("subgraph_workflow.json")
    assert to_comfy_api(m, lookup) == {
        "1": prim(5),
        "10:1": add(["1", 0], 7),  # a from the instance's link, b from its promoted widget
        "10:20:2": add(["10:1", 0], ["10:1", 0]),  # nested: one subgraph input feeds both
        "11:1": add(["1", 0], 9),  # a second instance of the same definition, its own widget
        "11:20:2": add(["11:1", 0], ["11:1", 0]),
        "30": add(["10:20:2", 0], 100),  # the instance's output resolves to the nested node
        "31": add(["1", 0], 1),  # bypassed instance 13: its INT input passes through
        "14:2": add(4, 4),  # no link, no instance values: the inner widget's value for both
    }  # muted instance 12 runs nothing (its contents are not expanded)


def test_expanded_graph_is_flat_and_valid() -> None:
    _, m = load("subgraph_workflow.json")
    assert sorted(m.nodes) == ["1", "10:1", "10:20:2", "11:1", "11:20:2", "12", "13", "14:2", "30", "31"]
    assert m.modes == {"12": 2, "13": 4}
    assert validate(m, lookup) == []  # the muted/bypassed instances' unknown types are moot


def test_instance_values_left_to_the_inner_widgets_by_newer_frontends_are_read_there() -> None:
    wf = load_json("subgraph_workflow.json")
    inst = next(n for n in wf["nodes"] if n["id"] == 10)
    inst["widgets_values"] = []
    inst["properties"] = {"proxyWidgets": [["-1", "b"]]}
    api = to_comfy_api(from_comfy_ui(wf, lookup), lookup)
    assert api["10:1"] == add(["1", 0], 3)  # Add(1)'s own b


def test_a_subgraph_containing_itself_is_a_format_error_naming_it() -> None:
    import pytest

    from vortex_jupyter.errors import FormatError

    wf = load_json("subgraph_workflow.json")
    inner_t = wf["definitions"]["subgraphs"][1]
    inner_t["nodes"].append({"id": 9, "type": inner_t["id"], "pos": [0, 0], "mode": 0})
    with pytest.raises(FormatError, match="contains itself"):
        from_comfy_ui(wf, lookup)


# ---- subgraphs: writing back ------------------------------------------------------------------
def test_subgraph_workflow_round_trips_exactly() -> None:
    wf, m = load("subgraph_workflow.json")
    assert same_text(to_comfy_ui(m, lookup), wf)


def test_promoted_widget_edits_go_to_their_instance_only() -> None:
    wf, m = load("subgraph_workflow.json")
    m.set_param("10:1", "b", 8)
    out = to_comfy_ui(m, lookup)
    by_id = {n["id"]: n for n in out["nodes"]}
    assert by_id[10]["widgets_values"] == [0, 8] and by_id[11]["widgets_values"] == [0, 9]
    assert out["definitions"] == wf["definitions"]
    api = to_comfy_api(from_comfy_ui(out, lookup), lookup)
    assert api["10:1"] == add(["1", 0], 8) and api["11:1"] == add(["1", 0], 9)


def test_inner_widget_edits_go_to_the_shared_definition() -> None:
    wf, m = load("subgraph_workflow.json")
    m.set_param("14:2", "a", 6)  # instance 14 shows Add(2)'s own value
    out = to_comfy_ui(m, lookup)
    definition_t = out["definitions"]["subgraphs"][1]
    assert definition_t["nodes"][0]["widgets_values"] == [6, 0]
    assert wf["definitions"]["subgraphs"][1]["nodes"][0]["widgets_values"] == [4, 0]  # the input is not touched
    assert to_comfy_api(from_comfy_ui(out, lookup), lookup)["14:2"] == add(6, 6)


def test_structural_edits_inside_an_instance_flatten_it_and_keep_what_runs() -> None:
    _, m = load("subgraph_workflow.json")
    m.connect("1", 0, "10:20:2", "b")  # a link the instance cannot express
    before = to_comfy_api(m, lookup)
    out = to_comfy_ui(m, lookup)
    types = [n["type"] for n in out["nodes"]]
    assert 10 not in [n["id"] for n in out["nodes"]] and types.count("Add") == 4  # 10:1, 10:20:2, 30, 31
    again = from_comfy_ui(out, lookup)
    after = to_comfy_api(again, lookup)
    assert "11:1" in after and not any(k.startswith("10:") for k in after)  # instance 11 kept
    assert _canonical(after) == _canonical(before)


def _canonical(api: dict[str, Any]) -> list[str]:
    """The prompt with node ids replaced by each node's own canonical text (ids differ after a
    flatten, the graph must not)."""
    names: dict[str, str] = {}

    def name(nid: str) -> str:
        if nid not in names:
            node = api[nid]
            inputs = {k: (["<" + name(v[0]) + ">", v[1]] if isinstance(v, list) else v)
                      for k, v in sorted(node["inputs"].items())}
            names[nid] = json.dumps([node["class_type"], inputs], sort_keys=True)
        return names[nid]

    return sorted(name(nid) for nid in api)


# ---- legacy group nodes ---------------------------------------------------------------------------
def test_group_node_expands_with_index_ids_and_its_widget_values() -> None:
    _, m = load("groupnode_workflow.json")
    assert to_comfy_api(m, lookup) == {
        "5:0": prim(3),  # the group's widgets: [value, control] of node 0, then b of node 1
        "5:1": add(["5:0", 0], 4),  # a is a converted widget fed inside the group: no widget
        "9": add(["5:1", 0], 10),
    }


def test_group_node_round_trips_and_takes_edits_into_its_widgets() -> None:
    wf, m = load("groupnode_workflow.json")
    assert same_text(to_comfy_ui(m, lookup), wf)
    m.set_param("5:1", "b", 6)
    out = to_comfy_ui(m, lookup)
    assert out["nodes"][0]["widgets_values"] == [3, "fixed", 6]
    assert out["extra"] == wf["extra"]  # the definition is untouched
    assert to_comfy_api(from_comfy_ui(out, lookup), lookup)["5:1"] == add(["5:0", 0], 6)


def test_group_node_with_a_type_we_lack_stays_one_node_and_says_why() -> None:
    wf = load_json("groupnode_workflow.json")
    wf["extra"]["groupNodes"]["Pair"]["nodes"][1]["type"] = "MysteryAdd"
    m = from_comfy_ui(wf, lookup)
    assert sorted(m.nodes) == ["5", "9"]
    problem = next(p for p in validate(m, lookup) if p.code == "VE-101")
    assert problem.node == "5" and "MysteryAdd" in problem.message


def test_mode_title_and_position_edits_of_inner_nodes_go_to_the_definition() -> None:
    _, m = load("subgraph_workflow.json")
    m.set_mode("10:1", 4)
    dx, dy = m.nodes["10:1"].extra["comfy_ui"]["sub"]["offset"]  # where the reader laid it out
    m.set_layout("10:1", title="Inner add", pos=(5 + dx, 6 + dy))
    out = to_comfy_ui(m, lookup)
    inner = out["definitions"]["subgraphs"][0]["nodes"][0]
    assert (inner["mode"], inner["title"], inner["pos"]) == (4, "Inner add", [5, 6])
    again = from_comfy_ui(out, lookup)
    assert again.modes["11:1"] == 4 and again.nodes["11:1"].title == "Inner add"  # shared, as in ComfyUI
    assert to_comfy_api(again, lookup)["10:20:2"] == add(["1", 0], ["1", 0])  # bypassed: a passes through


def test_an_enabled_placeholder_of_a_muted_instance_says_to_read_the_file_again() -> None:
    _, m = load("subgraph_workflow.json")
    m.set_mode("12", 0)
    problem = next(p for p in validate(m, lookup) if p.node == "12")
    assert problem.code == "VE-101" and "'Double'" in problem.message and "read the file again" in problem.message


def test_expanded_subgraphs_are_laid_out_below_the_top_graph_without_overlaps() -> None:
    raw, m = load("subgraph_workflow.json")

    def box(nid: str) -> tuple[float, float, float, float]:
        n = m.nodes[nid]
        w, h = n.size or (0.0, 0.0)
        return n.pos[0], n.pos[1], n.pos[0] + w, n.pos[1] + h

    top = [nid for nid in m.nodes if ":" not in nid]
    inner = [nid for nid in m.nodes if ":" in nid]
    assert inner and top
    bottom = max(box(nid)[3] for nid in top)
    assert all(box(nid)[1] > bottom for nid in inner)  # the canvas shows them under the graph
    bands: dict[str, list[float]] = {}
    for nid in inner:
        key = nid.rsplit(":", 1)[0]
        lo, hi = bands.get(key, [float("inf"), -float("inf")])
        bands[key] = [min(lo, box(nid)[1]), max(hi, box(nid)[3])]
    spans = sorted(bands.values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # one band per instance, no overlap
    assert json.dumps(to_comfy_ui(m, lookup)) == json.dumps(raw)  # and the file still round-trips
