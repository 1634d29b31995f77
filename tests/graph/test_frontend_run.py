"""Workflows that use frontend-only features run in the engine (in-process executor, real
built-in node functions) and compute what ComfyUI computes from the prompt its frontend sends:
each result is checked against a direct evaluation of ``to_comfy_api``'s prompt."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime
from typing import Any

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.formats import from_comfy_ui, to_comfy_api
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.registry import REGISTRY
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec

from .conftest import load_json

_INT_ADD = REGISTRY.lookup("IntAdd")
assert _INT_ADD is not None
#: The test files' "Add" is ComfyUI-shaped (a, b): run it with the built-in IntAdd.
SPECS: dict[str, NodeSpec] = {
    "Add": dataclasses.replace(_INT_ADD, type="Add"),
    "PrimitiveInt": REGISTRY.lookup("PrimitiveInt"),  # type: ignore[dict-item]
    "PrimitiveNode": REGISTRY.lookup("PrimitiveNode"),  # type: ignore[dict-item]
}


def run(model: GraphModel, lookup: Any) -> dict[str, Any]:
    ex = InProcessExecutor()
    state = Engine(model, lookup).run(ex, cache=OutputCache(ex))
    assert state.status == "ok", state.errors
    return {n: state.output(n)[0] for n in state.node_keys if n not in model.modes}


def evaluate(prompt: dict[str, Any]) -> dict[str, Any]:
    """What ComfyUI's backend computes from ``prompt`` for Add / PrimitiveInt nodes."""
    out: dict[str, Any] = {}

    def value(v: Any) -> Any:
        return get(v[0]) if isinstance(v, list) else v

    def get(nid: str) -> Any:
        if nid not in out:
            node = prompt[nid]
            args = {k: value(v) for k, v in node["inputs"].items()}
            out[nid] = args["value"] if node["class_type"] == "PrimitiveInt" else args["a"] + args["b"]
        return out[nid]

    for nid in prompt:
        get(nid)
    return out


def test_expanded_subgraphs_compute_what_comfyuis_prompt_computes() -> None:
    m = from_comfy_ui(load_json("subgraph_workflow.json"), SPECS.get)
    results = run(m, SPECS.get)
    expected = evaluate(to_comfy_api(m, SPECS.get))
    assert results == expected
    assert expected["30"] == (5 + 7) * 2 + 100 and expected["14:2"] == 8  # worked by hand too


def test_primitive_node_feeds_every_target_when_run_and_after_a_python_edit() -> None:
    wf = load_json("primitive_workflow.json")
    # keep the seed primitive and two Adds it feeds through converted widgets a and b
    wf["nodes"] = [wf["nodes"][0], *[{**copy.deepcopy(wf["nodes"][i]), "type": "Add", "widgets_values": [0, 0],
                                      "inputs": [{"name": "a", "type": "INT", "widget": {"name": "a"}, "link": i},
                                                 {"name": "b", "type": "INT", "widget": {"name": "b"}, "link": None}]}
                                     for i in (1, 2)]]
    wf["links"] = [[1, 5, 0, 1, 0, "INT"], [2, 5, 0, 2, 0, "INT"]]
    m = from_comfy_ui(wf, SPECS.get)
    assert run(m, SPECS.get) == {"5": 777, "1": 777, "2": 777}
    assert to_comfy_api(m, SPECS.get)["1"]["inputs"] == {"a": 777, "b": 0}
    m.set_param("5", "value", 3)
    assert run(m, SPECS.get) == {"5": 3, "1": 3, "2": 3}


def _save_spec() -> NodeSpec:
    """A save node that returns the prefix it received (the engine does not know it is fake)."""
    return NodeSpec("SaveImage", (PortSpec("filename_prefix", "STRING", default="ComfyUI"),),
                    (OutputSpec("STRING", "STRING"),), fn=lambda filename_prefix: (filename_prefix,),
                    output_node=True, display_name="Save Image")


def test_save_nodes_receive_their_prefix_substituted_at_run_time() -> None:
    specs = {**SPECS, "SaveImage": _save_spec()}
    m = GraphModel()
    m.add_node("PrimitiveInt", {"value": 42}, id="p", title="Answer")
    m.add_node("SaveImage", {"filename_prefix": "%date:yyyy%/%Answer.value%_%PrimitiveInt.value%"}, id="s")
    year = datetime.now().year
    assert run(m, specs.get)["s"] == f"{year}/42_42"
    assert to_comfy_api(m, specs.get)["s"]["inputs"]["filename_prefix"] == f"{year}/42_42"


def test_a_primitive_feeding_a_save_prefix_is_substituted_at_run_time_too() -> None:
    specs = {**SPECS, "SaveImage": _save_spec()}
    m = GraphModel()
    m.add_node("PrimitiveNode", {"value": "out_%date:yyyy%"}, id="p")
    m.add_node("SaveImage", {}, id="s")
    m.connect("p", 0, "s", "filename_prefix")
    expected = f"out_{datetime.now().year}"
    assert run(m, specs.get)["s"] == expected == to_comfy_api(m, specs.get)["s"]["inputs"]["filename_prefix"]
