"""ComfyUI API and UI formats, read and written, against workflows written from the published
formats (the classic default txt2img graph, and one with reroutes, notes, groups, a converted
seed widget, a bypassed node and an unknown custom node)."""

from __future__ import annotations

import copy
import json
from typing import Any

from vortex_jupyter.graph.formats import (
    detect,
    from_comfy_api,
    from_comfy_ui,
    from_native,
    load_any,
    to_comfy_api,
    to_comfy_ui,
    to_native,
)
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import validate

from .conftest import lookup


def edges(model: GraphModel) -> set[tuple[str, int, str, str]]:
    return {(e.src, e.src_output, e.dst, e.dst_input) for e in model.edges()}


# ---- API format -----------------------------------------------------------------------------
def test_api_prompt_loads_links_params_and_titles(default_prompt: dict) -> None:
    m = from_comfy_api(default_prompt)
    assert m.nodes["3"].type == "KSampler"
    assert m.nodes["3"].params == {"seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler",
                                   "scheduler": "normal", "denoise": 1}
    assert ("4", 1, "6", "clip") in edges(m) and ("3", 0, "8", "samples") in edges(m)
    assert len(list(m.edges())) == 9
    assert m.nodes["4"].title == "Load Checkpoint"
    assert validate(m, lookup) == []


def test_api_round_trip_is_lossless(default_prompt: dict) -> None:
    original = copy.deepcopy(default_prompt)
    assert to_comfy_api(from_comfy_api(default_prompt), lookup) == original
    assert to_comfy_api(from_comfy_api(default_prompt)) == original  # no specs needed either


def test_api_keeps_unknown_node_keys_and_a_missing_meta() -> None:
    prompt = {"1": {"class_type": "Add", "inputs": {"a": 1, "b": 0}, "is_changed": ["abc"]},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 2}, "_meta": {"title": "Two", "note": "x"}}}
    assert to_comfy_api(from_comfy_api(copy.deepcopy(prompt)), lookup) == prompt


def test_api_upload_button_input_of_comfyui_exports_is_kept_aside_not_a_param() -> None:
    # ComfyUI's "Save (API)" writes LoadImage's upload button as an input; its backend ignores it
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "cat.png", "upload": "image"},
                    "_meta": {"title": "Load Image"}}}
    model = from_comfy_api(copy.deepcopy(prompt), lookup)
    assert model.nodes["1"].params == {"image": "cat.png"}
    assert validate(model, lookup) == []  # not VE-112 "no input named 'upload'"
    assert to_comfy_api(model, lookup) == prompt  # and written back: still lossless
    # a node whose spec really has an input named "upload" keeps it as a param
    spec = type("Spec", (), {"input": staticmethod(lambda n: object() if n == "upload" else None)})()
    custom = from_comfy_api({"1": {"class_type": "Uploader", "inputs": {"upload": "x"}}}, lambda t: spec)
    assert custom.nodes["1"].params == {"upload": "x"}


def test_api_two_element_lists_are_links_only_when_they_name_a_node_in_the_file() -> None:
    prompt = {
        "1": {"class_type": "Passthrough", "inputs": {"value": [640, 480]}},          # no node "640"
        "2": {"class_type": "Passthrough", "inputs": {"value": ["portrait", 3]}},     # no node "portrait"
        "3": {"class_type": "Passthrough", "inputs": {"value": ["1", 0]}},            # node "1": a link
        "4": {"class_type": "Passthrough", "inputs": {"value": [1, 0]}},              # int id of node "1": a link
        "5": {"class_type": "Passthrough", "inputs": {"value": ["1", 0, 2]}},         # 3 elements: a value
        "6": {"class_type": "Passthrough", "inputs": {"value": ["1", True]}},         # bool index: a value
    }
    m = from_comfy_api(prompt)
    assert m.nodes["1"].params == {"value": [640, 480]}
    assert m.nodes["2"].params == {"value": ["portrait", 3]}
    assert edges(m) == {("1", 0, "3", "value"), ("1", 0, "4", "value")}
    assert m.nodes["5"].params == {"value": ["1", 0, 2]} and m.nodes["6"].params == {"value": ["1", True]}


def test_api_output_fills_required_defaults_and_display_names() -> None:
    g = GraphModel()
    g.add_node("EmptyLatentImage", {"width": 64}, id="lat")
    out = to_comfy_api(g, lookup)
    assert out == {"lat": {"inputs": {"width": 64, "height": 512, "batch_size": 1}, "class_type": "EmptyLatentImage",
                           "_meta": {"title": "Empty Latent Image"}}}


# ---- UI format: the default workflow ----------------------------------------------------------
def test_ui_default_workflow_maps_widgets_values_onto_names(default_workflow: dict) -> None:
    m = from_comfy_ui(default_workflow, lookup)
    ks = m.nodes["3"]
    # [seed, control_after_generate, steps, cfg, sampler_name, scheduler, denoise]
    assert ks.params == {"seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler",
                         "scheduler": "normal", "denoise": 1}
    assert "control_after_generate" not in ks.params  # the control is the file's, not a param
    assert m.nodes["5"].params == {"width": 512, "height": 512, "batch_size": 1}
    assert m.nodes["7"].params == {"text": "text, watermark"}
    assert m.nodes["3"].pos == (863.0, 186.0) and m.nodes["3"].size == (315.0, 262.0)
    assert ("5", 0, "3", "latent_image") in edges(m) and ("4", 1, "7", "clip") in edges(m)


def test_ui_round_trip_is_lossless(default_workflow: dict) -> None:
    original = copy.deepcopy(default_workflow)
    assert to_comfy_ui(from_comfy_ui(default_workflow, lookup), lookup) == original


def test_ui_and_api_files_of_the_same_graph_agree(default_workflow: dict, default_prompt: dict) -> None:
    from_ui = from_comfy_ui(default_workflow, lookup)
    assert to_comfy_api(from_ui, lookup) == default_prompt
    from_api = from_comfy_api(default_prompt)
    assert edges(from_api) == edges(from_ui)
    assert {k: n.params for k, n in from_api.nodes.items()} == {k: n.params for k, n in from_ui.nodes.items()}


def test_ui_survives_json_and_native_round_trips(default_workflow: dict) -> None:
    original = copy.deepcopy(default_workflow)
    native = json.loads(json.dumps(to_native(from_comfy_ui(default_workflow, lookup))))
    assert to_comfy_ui(from_native(native), lookup) == original


def test_ui_edits_in_the_model_show_up_in_the_file(default_workflow: dict) -> None:
    m = from_comfy_ui(default_workflow, lookup)
    m.set_param("3", "steps", 30)
    m.set_layout("3", pos=(900.5, 200), title="My sampler")
    m.remove_node("7")
    m.add_node("CLIPTextEncode", {"text": "ugly"}, id="neg")
    m.connect("4", 1, "neg", "clip")
    m.connect("neg", 0, "3", "negative")
    out = to_comfy_ui(m, lookup)
    nodes = {n["id"]: n for n in out["nodes"]}
    assert nodes[3]["widgets_values"] == [156680208700286, "randomize", 30, 8, "euler", "normal", 1]
    assert nodes[3]["pos"] == [900.5, 200] and nodes[3]["title"] == "My sampler"
    new_id = max(nodes)
    assert new_id == 10 and out["last_node_id"] == 10
    assert nodes[new_id]["widgets_values"] == ["ugly"] and nodes[new_id]["inputs"][0]["name"] == "clip"
    links = {link[0]: link for link in out["links"]}
    assert 5 not in links and 6 not in links  # links of the removed node are gone
    assert {tuple(links[i][1:]) for i in (10, 11)} == {(4, 1, 10, 0, "CLIP"), (10, 0, 3, 2, "CONDITIONING")}
    assert out["last_link_id"] == 11
    assert to_comfy_ui(from_comfy_ui(out, lookup), lookup) == out


def test_ui_from_a_python_built_graph_has_slots_from_the_specs() -> None:
    g = GraphModel()
    g.add_node("PrimitiveInt", {"value": 3}, id="p")
    g.add_node("KSampler", {"steps": 5}, id="k")
    g.connect("p", 0, "k", "seed")
    out = to_comfy_ui(g, lookup)
    k = next(n for n in out["nodes"] if n["type"] == "KSampler")
    assert [s["name"] for s in k["inputs"]] == ["model", "positive", "negative", "latent_image", "seed"]
    assert k["inputs"][-1]["widget"] == {"name": "seed"} and k["inputs"][-1]["link"] == 1
    assert k["widgets_values"][:3] == [0, "fixed", 5]  # seed default, control, steps
    back = from_comfy_ui(out, lookup)
    assert back.nodes["2"].params["steps"] == 5 and ("1", 0, "2", "seed") in edges(back)


# ---- UI format: frontend-only nodes, converted widgets, unknown types --------------------------
def test_ui_reroutes_collapse_into_direct_links(rich_workflow: dict) -> None:
    m = from_comfy_ui(rich_workflow, lookup)
    assert "12" not in m.nodes
    assert ("8", 0, "9", "images") in edges(m)
    assert all(e.src != "12" for e in m.edges())


def test_ui_notes_are_kept_and_written_back_in_place(rich_workflow: dict) -> None:
    m = from_comfy_ui(rich_workflow, lookup)
    assert "15" not in m.nodes and "16" not in m.nodes
    out = to_comfy_ui(m, lookup)
    by_id = {n["id"]: n for n in out["nodes"]}
    assert by_id[15] == rich_workflow["nodes"][1] and out["nodes"][1]["id"] == 15
    assert by_id[16]["widgets_values"] == ["## Tips\n- `cfg` around 7 works well"]


def test_ui_converted_widget_takes_the_link_and_keeps_the_stale_value(rich_workflow: dict) -> None:
    m = from_comfy_ui(rich_workflow, lookup)
    ks = m.nodes["3"]
    assert "seed" not in ks.params and ("10", 0, "3", "seed") in edges(m)
    assert ks.params["steps"] == 25 and ks.params["denoise"] == 0.75
    out = {n["id"]: n for n in to_comfy_ui(m, lookup)["nodes"]}
    assert out[3]["widgets_values"] == [777, "increment", 25, 7.5, "dpmpp_2m", "karras", 0.75]
    assert out[3]["inputs"][4] == {"name": "seed", "type": "INT", "link": 12, "widget": {"name": "seed"}}
    assert to_comfy_api(m, lookup)["3"]["inputs"]["seed"] == ["10", 0]


def test_ui_unknown_node_keeps_raw_widgets_and_is_reported(rich_workflow: dict) -> None:
    m = from_comfy_ui(rich_workflow, lookup)
    assert m.nodes["20"].params == {}  # no spec: nothing to name the values with
    problems = validate(m, lookup)
    assert [(p.code, p.node) for p in problems] == [("VE-101", "20")]
    out = {n["id"]: n for n in to_comfy_ui(m, lookup)["nodes"]}
    assert out[20] == next(n for n in rich_workflow["nodes"] if n["id"] == 20)


def test_ui_keeps_everything_else_the_format_holds(rich_workflow: dict) -> None:
    out = to_comfy_ui(from_comfy_ui(copy.deepcopy(rich_workflow), lookup), lookup)
    original = {n["id"]: n for n in rich_workflow["nodes"]}
    written = {n["id"]: n for n in out["nodes"]}
    assert out == rich_workflow and list(out) == list(rich_workflow)  # the reroute too, in place
    for nid in original:
        assert list(written[nid]) == list(original[nid]), nid  # every node keeps its key order
    assert written[4]["pos"] == {"0": 26, "1": 474} and written[4]["color"] == "#322"
    assert written[11]["mode"] == 4 and written[11]["widgets_values"] == ["example.png", "image"]
    assert out["groups"] == rich_workflow["groups"]
    assert out["extra"] == rich_workflow["extra"] and out["last_link_id"] == 99
    assert [99, 5, 0, 7, 0, "LATENT"] in out["links"]  # a link no input uses is kept too
    assert written[9]["inputs"][0]["link"] == 13 and written[8]["outputs"][0]["links"] == [9, 14]
    assert written[12]["inputs"][0]["link"] == 9  # the reroute between them is written back


def test_ui_reading_is_stable_after_the_first_load(rich_workflow: dict) -> None:
    once = to_comfy_ui(from_comfy_ui(rich_workflow, lookup), lookup)
    assert to_comfy_ui(from_comfy_ui(copy.deepcopy(once), lookup), lookup) == once


def test_ui_object_form_links_of_newer_frontends_are_read_and_written_back(default_workflow: dict) -> None:
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    default_workflow["links"] = [dict(zip(keys, link)) for link in default_workflow["links"]]
    original = copy.deepcopy(default_workflow)
    m = from_comfy_ui(default_workflow, lookup)
    assert ("4", 2, "8", "vae") in edges(m)
    assert to_comfy_ui(m, lookup) == original


def test_ui_widgets_saved_by_name_are_mapped_by_name() -> None:
    ui: dict[str, Any] = {"last_node_id": 1, "last_link_id": 0, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": "Scale", "pos": [0, 0], "widgets_values": {"x": 2.5, "enabled": False, "legacy": 1}}]}
    m = from_comfy_ui(copy.deepcopy(ui), lookup)
    assert m.nodes["1"].params == {"x": 2.5, "enabled": False}
    assert to_comfy_ui(m, lookup)["nodes"][0]["widgets_values"] == {"x": 2.5, "enabled": False, "label": "",
                                                                    "legacy": 1}


# ---- detection --------------------------------------------------------------------------------
def test_detect_and_load_any_tell_the_formats_apart(default_workflow: dict, default_prompt: dict) -> None:
    native = to_native(from_comfy_api(default_prompt))
    assert detect(native) == "native" and detect(default_prompt) == "comfy_api"
    assert detect(default_workflow) == "comfy_ui"
    for data in (native, default_prompt, default_workflow, json.dumps(default_workflow)):
        m = load_any(data, lookup)
        assert edges(m) == edges(from_comfy_api(default_prompt))


def test_ui_muted_and_bypassed_nodes_load_silently_with_their_modes_indexed(default_workflow: dict) -> None:
    import warnings

    wf = copy.deepcopy(default_workflow)
    modes = {"7": 2, "8": 4}  # ComfyUI leaves these out of the prompt; so does vortex now
    for raw in wf["nodes"]:
        raw["mode"] = modes.get(str(raw["id"]), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = from_comfy_ui(wf, lookup)
    assert {"7", "8"} <= set(model.nodes)
    assert model.modes == {"7": 2, "8": 4}
    assert to_comfy_ui(model, lookup) == wf  # the modes are written back unchanged
