"""UI files read the way ComfyUI's frontend reads them, and API prompts made the way its
``graphToPrompt`` makes them, on small workflows written from the published format: legacy
seed controls, PrimitiveNodes, text substitution, upload pseudo-inputs, bypassed unknown
nodes, object-form positions, NaN literals and unknown node types.

Each expected prompt is what the frontend sends, worked out from its source: widget values
by name, links as ``[id, slot]``, frontend-only nodes gone, ``_meta.title`` the node's title.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from vortex_jupyter.graph.formats import (
    from_comfy_api,
    from_comfy_ui,
    load_any,
    loads,
    to_comfy_api,
    to_comfy_ui,
)
from vortex_jupyter.graph.validate import validate

from .conftest import load_json, lookup

NOW = datetime(2031, 1, 2, 3, 4, 5)


def sampler(seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, denoise: float,
            title: str = "KSampler") -> dict[str, Any]:
    inputs = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name, "scheduler": scheduler,
              "denoise": denoise}
    return {"inputs": inputs, "class_type": "KSampler", "_meta": {"title": title}}


def same_text(a: Any, b: Any) -> bool:
    return json.dumps(a) == json.dumps(b)  # key order and int/float kinds included


# ---- legacy boolean seed control -----------------------------------------------------------------
def test_legacy_boolean_seed_controls_keep_every_later_widget_in_place() -> None:
    wf = load_json("legacy_seed_workflow.json")
    m = from_comfy_ui(copy.deepcopy(wf), lookup)
    assert to_comfy_api(m, lookup) == {
        # true = "randomize", false = "fixed": a control value, so steps is 20 (not true) and
        # cfg 8; KSampler's pre-2023 "sample_euler" is read as "euler", as the frontend does
        "1": sampler(8566257, 20, 8, "euler", "normal", 1),
        "2": sampler(42, 30, 6.5, "dpmpp_2m", "karras", 0.6),
    }
    assert validate(m, lookup) == [] or all(p.code == "VE-102" for p in validate(m, lookup))


def test_legacy_seed_controls_are_written_back_as_the_file_had_them() -> None:
    wf = load_json("legacy_seed_workflow.json")
    m = from_comfy_ui(copy.deepcopy(wf), lookup)
    assert same_text(to_comfy_ui(m, lookup), wf)  # ComfyUI reads true/false; nothing to convert
    m.set_param("1", "steps", 25)
    out = {n["id"]: n for n in to_comfy_ui(m, lookup)["nodes"]}
    assert out[1]["widgets_values"] == [8566257, True, 25, 8, "sample_euler", "normal", 1]
    assert from_comfy_ui(to_comfy_ui(m, lookup), lookup).nodes["1"].params["steps"] == 25


# ---- PrimitiveNode --------------------------------------------------------------------------------
def test_primitive_node_is_folded_into_every_widget_it_feeds() -> None:
    m = from_comfy_ui(load_json("primitive_workflow.json"), lookup)
    api = to_comfy_api(m, lookup, now=NOW)
    assert api == {
        "1": sampler(777, 20, 8, "euler", "normal", 1),  # not the stale seeds 1 and 2 of the targets
        "2": sampler(777, 25, 7, "euler", "karras", 0.5),
        # property on: the primitive's value is substituted before it lands in the widget
        "7": {"inputs": {"filename_prefix": "run_2031"}, "class_type": "SaveImage", "_meta": {"title": "Save Image"}},
        # property off, and muted: a primitive applies its value whatever its mode, and the
        # save node substitutes its own prefix
        "9": {"inputs": {"filename_prefix": "x_01"}, "class_type": "SaveImage", "_meta": {"title": "Save Image"}},
    }


def test_primitive_node_is_one_value_in_python_and_kept_on_ui_export() -> None:
    wf = load_json("primitive_workflow.json")
    m = from_comfy_ui(copy.deepcopy(wf), lookup)
    assert m.nodes["5"].type == "PrimitiveNode" and m.nodes["5"].params == {"value": 777}
    assert "seed" not in m.nodes["1"].params  # the link decides, as for any converted widget
    assert "8" in m.nodes and m.modes.get("8") is None  # muted in the file, applied anyway
    assert same_text(to_comfy_ui(m, lookup), wf)
    m.set_param("5", "value", 99)
    api = to_comfy_api(m, lookup, now=NOW)
    assert api["1"]["inputs"]["seed"] == api["2"]["inputs"]["seed"] == 99
    written = {n["id"]: n for n in to_comfy_ui(m, lookup)["nodes"]}
    assert written[5]["widgets_values"] == [99, "increment"] and written[1]["inputs"][4]["link"] == 1


def test_primitive_value_is_validated_like_any_param() -> None:
    wf = load_json("primitive_workflow.json")
    wf["nodes"][0]["widgets_values"][0] = float("nan")
    problems = validate(from_comfy_ui(wf, lookup), lookup)
    assert ("VE-106", "5", "value") in {(p.code, p.node, p.port) for p in problems}


# ---- text substitution -----------------------------------------------------------------------------
def _substitution_graph(prefix: str) -> dict[str, Any]:
    wf = load_json("default_workflow.json")
    save = next(n for n in wf["nodes"] if n["type"] == "SaveImage")
    save["widgets_values"] = [prefix]
    return wf


def test_text_substitution_fills_dates_and_widget_values_as_the_frontend_does() -> None:
    cases = {
        "%date:yyyy-MM-dd%": "2031-01-02",
        "%date:yy_M_d_h_m_s%": "31_1_2_3_4_5",
        "%date:hh-mm-ss%": "03-04-05",
        "%date:yyyy.MM.dd%": "2031",  # the frontend splits at dots first: only "yyyy" is formatted
        "%date:yyyy.MM%": "%date:yyyy.MM%",  # two parts: read as node "date:yyyy", widget "MM"
        "%KSampler.seed%_%KSampler.cfg%": "156680208700286_8",  # by "Node name for S&R"
        "%Empty Latent Image.width%x%EmptyLatentImage.height%": "512x512",  # by title (default title)
        "%CLIPTextEncode.text%": "text, watermark",  # the first match in the file's node order
        "%width%-%Nope.seed%-%KSampler.nope%-%%": "%width%-%Nope.seed%-%KSampler.nope%-%%",  # left as written
    }
    for prefix, expected in cases.items():
        m = from_comfy_ui(_substitution_graph(prefix), lookup)
        assert to_comfy_api(m, lookup, now=NOW)["9"]["inputs"]["filename_prefix"] == expected, prefix


def test_text_substitution_makes_substituted_values_safe_in_file_names() -> None:
    m = from_comfy_ui(_substitution_graph("%Negative.text%"), lookup)
    m.set_layout("7", title="Negative")
    m.set_param("7", "text", 'a/b\\c:d*e?f"g<h>i|j\tk')
    assert to_comfy_api(m, lookup, now=NOW)["9"]["inputs"]["filename_prefix"] == "a_b_c_d_e_f_g_h_i_j_k"
    m.set_param("7", "text", "unchanged %date:yyyy% in a prompt")  # only save prefixes are substituted
    assert to_comfy_api(m, lookup, now=NOW)["7"]["inputs"]["text"] == "unchanged %date:yyyy% in a prompt"


def test_text_substitution_reads_floats_and_booleans_as_javascript_prints_them() -> None:
    from vortex_jupyter.graph.textsub import js_text

    assert [js_text(v) for v in (8.0, 0.5, 1e21, 1e-7, 0.00001, True, None, [1, 2.0])] == \
        ["8", "0.5", "1e+21", "1e-7", "0.00001", "true", "", "1,2"]


# ---- upload pseudo-inputs in API files --------------------------------------------------------------
def _img2img_prompt(upload_key: str) -> dict[str, Any]:
    """ComfyUI's "Save (API)" of its img2img example (shape as ComfyUI writes it)."""
    return {
        "1": {"inputs": {"image": "example.png", upload_key: "image"}, "class_type": "LoadImage",
              "_meta": {"title": "Load Image"}},
        "2": {"inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}, "class_type": "CheckpointLoaderSimple",
              "_meta": {"title": "Load Checkpoint"}},
        "3": {"inputs": {"pixels": ["1", 0], "vae": ["2", 2]}, "class_type": "VAEEncode",
              "_meta": {"title": "VAE Encode"}},
        "4": {"inputs": {"text": "a watercolor fox", "clip": ["2", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)"}},
        "5": {"inputs": {"text": "blurry", "clip": ["2", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)"}},
        "6": {"inputs": {"seed": 280823642470253, "steps": 20, "cfg": 8, "sampler_name": "dpmpp_2m",
                         "scheduler": "normal", "denoise": 0.87, "model": ["2", 0], "positive": ["4", 0],
                         "negative": ["5", 0], "latent_image": ["3", 0]}, "class_type": "KSampler",
              "_meta": {"title": "KSampler"}},
        "7": {"inputs": {"samples": ["6", 0], "vae": ["2", 2]}, "class_type": "VAEDecode",
              "_meta": {"title": "VAE Decode"}},
        "8": {"inputs": {"filename_prefix": "ComfyUI", "images": ["7", 0]}, "class_type": "SaveImage",
              "_meta": {"title": "Save Image"}},
    }


def test_comfyuis_own_img2img_api_prompt_validates_with_its_upload_inputs() -> None:
    from vortex_jupyter.nodes.registry import REGISTRY

    for key in ("upload", "choose file to upload"):
        prompt = _img2img_prompt(key)
        m = from_comfy_api(copy.deepcopy(prompt), REGISTRY.lookup)
        assert key not in m.nodes["1"].params
        problems = validate(m, REGISTRY.lookup)
        # only what this machine lacks may be reported: the checkpoint and the input image
        assert {(p.node, p.port) for p in problems} <= {("1", "image"), ("2", "ckpt_name")}, problems
        assert to_comfy_api(m, REGISTRY.lookup) == prompt  # written back as it came


# ---- bypassed nodes of unknown types ----------------------------------------------------------------
def test_bypassed_unknown_node_passes_through_by_the_slot_types_of_the_file() -> None:
    wf = load_json("rich_workflow.json")
    upscaler = next(n for n in wf["nodes"] if n["id"] == 20)  # "MyCustomUpscaler": IMAGE -> IMAGE
    upscaler["mode"] = 4
    upscaler["outputs"][0]["links"] = [50]
    save = next(n for n in wf["nodes"] if n["id"] == 9)
    save["inputs"][0]["link"] = 50
    wf["links"] = [link for link in wf["links"] if link[0] != 13] + [[50, 20, 0, 9, 0, "IMAGE"]]
    m = from_comfy_ui(wf, lookup)
    assert to_comfy_api(m, lookup)["9"]["inputs"]["images"] == ["8", 0]  # VAEDecode's, through the bypass
    assert not [p for p in validate(m, lookup) if p.code in ("VE-101", "VE-115")]


# ---- positions and sizes written as objects ---------------------------------------------------------
def test_object_positions_with_more_keys_load_and_keep_their_form() -> None:
    wf = load_json("default_workflow.json")
    node = wf["nodes"][0]
    node["pos"] = {"0": 1620, "1": 98, "2": 0, "3": 0}
    node["size"] = {"0": 315, "1": 106.5}
    m = from_comfy_ui(copy.deepcopy(wf), lookup)
    nid = str(node["id"])
    assert m.nodes[nid].pos == (1620.0, 98.0) and m.nodes[nid].size == (315.0, 106.5)
    assert same_text(to_comfy_ui(m, lookup), wf)
    m.set_layout(nid, pos=(10, 20.5))
    moved = next(n for n in to_comfy_ui(m, lookup)["nodes"] if n["id"] == node["id"])
    assert moved["pos"] == {"0": 10, "1": 20.5, "2": 0, "3": 0} and moved["size"] == {"0": 315, "1": 106.5}


# ---- NaN and Infinity -----------------------------------------------------------------------------
def test_nan_and_infinity_load_and_are_reported_on_their_node_and_input() -> None:
    text = json.dumps(load_json("default_workflow.json")).replace("[156680208700286, \"randomize\", 20, 8,",
                                                                  "[156680208700286, \"randomize\", 20, NaN,")
    assert "NaN" in text
    m = load_any(text, lookup)
    problems = [p for p in validate(m, lookup) if p.code == "VE-106"]
    assert [(p.node, p.port) for p in problems] == [("3", "cfg")] and "nan" in problems[0].message
    api = loads('{"1": {"class_type": "EmptyLatentImage", "inputs": {"width": Infinity, "height": 512}}}')
    problems = validate(from_comfy_api(api), lookup)
    assert [(p.code, p.node, p.port) for p in problems] == [("VE-106", "1", "width")]


# ---- unknown node types -----------------------------------------------------------------------------
def test_unknown_nodes_keep_their_values_through_both_exports_and_say_what_they_are() -> None:
    wf = load_json("rich_workflow.json")
    custom = next(n for n in wf["nodes"] if n["id"] == 20)
    custom["widgets_values_named"] = {"scale": 2, "method": "lanczos", "tile": [64, 64]}
    core = {"id": 21, "type": "Hunyuan3Dv2Conditioning", "pos": [0, 0], "size": [200, 60], "flags": {}, "order": 13,
            "mode": 0, "properties": {"cnr_id": "comfy-core", "ver": "0.3.40"}, "widgets_values": []}
    wf["nodes"].append(core)
    m = from_comfy_ui(copy.deepcopy(wf), lookup)
    messages = {p.node: p.message for p in validate(m, lookup) if p.code == "VE-101"}
    assert messages["20"].endswith("a custom node from pack 'my-upscalers' (version 1.2.0)")
    assert messages["21"].endswith("a ComfyUI core node we do not implement yet")
    assert same_text(to_comfy_ui(m, lookup), wf)
    assert to_comfy_api(m, lookup)["20"]["inputs"] == {
        "image": ["8", 0], "scale": 2, "method": "lanczos", "tile": {"__value__": [64, 64]}}
    api = {"1": {"class_type": "MyNode", "inputs": {"x": [5, 6], "y": "z"}},
           "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}, "_meta": {"title": "Up"}}}
    m = from_comfy_api(copy.deepcopy(api), lookup)
    assert to_comfy_api(m, lookup) == api  # a bare list stays bare: it came so
    messages = {p.node: p.message for p in validate(m, lookup)}
    assert messages["1"].endswith("a custom node from an unknown pack")
    assert messages["2"].endswith("a ComfyUI core node we do not implement yet")


def test_a_primitive_value_is_judged_by_each_widget_it_feeds() -> None:
    wf = load_json("primitive_workflow.json")
    wf["nodes"][0]["widgets_values"][0] = -5  # KSampler seeds start at 0
    problems = [p for p in validate(from_comfy_ui(copy.deepcopy(wf), lookup), lookup) if p.code == "VE-105"]
    assert sorted((p.node, p.port) for p in problems) == [("5", "value"), ("5", "value")]
    assert {"of node '1'" in p.message or "of node '2'" in p.message for p in problems} == {True}
    wf["nodes"][0]["widgets_values"][0] = "many"
    codes = {p.code for p in validate(from_comfy_ui(wf, lookup), lookup) if p.node == "5"}
    assert codes == {"VE-104"}
