"""The template nodes that need no model (Math Expression, Save Image (Advanced), Resize Image/Mask,
...): ComfyUI's declarations in ``/object_info``, official templates loading onto the right
inputs, a UI workflow with dynamic (``group.name``) inputs, and a graph run on real workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vortex_jupyter as vx
from vortex_jupyter.graph.formats import _ui_common, load_any, to_comfy_api
from vortex_jupyter.graph.validate import validate
from vortex_jupyter.nodes.registry import REGISTRY, NodeRegistry

from .test_utility import worker_executor  # noqa: F401  (the fixture: a pool on temp folders)

RESIZE_TYPES = ["scale dimensions", "scale by multiplier", "scale longer dimension", "scale shorter dimension",
                "scale width", "scale height", "scale total pixels", "match size", "scale to multiple"]
METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
SIDE = [512, 0, 16384, 1]
TEXT = ["STRING", "", None, None, None]

#: What ComfyUI declares (comfy_extras/nodes_images.py, nodes_post_processing.py, nodes_math.py,
#: nodes_resolution.py, nodes_logic.py, nodes_string.py, nodes_text.py, nodes_mask.py,
#: nodes_compositing.py, nodes_canny.py, nodes_image_compare.py, nodes.py): required and optional
#: inputs in order as [type or choices, default, min, max, step] (trailing Nones dropped),
#: outputs, output names, category, display name. Dynamic inputs are flattened to the names
#: ComfyUI's API prompts use (``values.a``, ``images.image0``, ``format.bit_depth``).
COMFY = {
    "SaveImageAdvanced": (
        {"images": ["IMAGE"], "filename_prefix": ["STRING", "ComfyUI"], "format": [["png", "exr", "avif"], "png"],
         "format.bit_depth": [["8-bit", "16-bit", "32-bit float", "auto", "8-bit YUV420", "10-bit YUV420"], "8-bit"],
         "format.input_color_space": [["sRGB", "HDR", "linear", "HDR PQ"], "sRGB"]},
        {"format.crf": ["INT", 18, 1, 63], "format.save_mode": [["still images", "animated"], "still images"],
         "format.save_mode.fps": ["FLOAT", 6.0, 0.01, 1000.0, 0.01], "format.save_mode.loop_count": ["INT", 0, 0, 1000]},
        ["IMAGE"], ["images"], "image", "Save Image (Advanced)"),
    "ImageCompare": ({}, {"image_a": ["IMAGE"], "image_b": ["IMAGE"], "compare_view": ["IMAGECOMPARE"]},
                     [], [], "image", "Image Compare"),
    "BatchImagesNode": ({"images.image0": ["IMAGE"]}, {f"images.image{i}": ["IMAGE"] for i in range(1, 50)},
                        ["IMAGE"], ["IMAGE"], "image/batch", "Batch Images"),
    "ComfyMathExpression": ({"expression": ["STRING", "a + b"]},
                            {f"values.{c}": ["FLOAT,INT,BOOLEAN"] for c in "abcdefghijklmnopqrstuvwxyz"},
                            ["FLOAT", "INT", "BOOLEAN"], ["FLOAT", "INT", "BOOL"], "utilities", "Math Expression"),
    "ResizeImageMaskNode": (
        {"input": ["IMAGE,MASK"], "resize_type": [RESIZE_TYPES, "scale dimensions"]},
        {"resize_type.width": ["INT", *SIDE], "resize_type.height": ["INT", *SIDE],
         "resize_type.crop": [["disabled", "center"], "center"], "scale_method": [METHODS, "area"],
         "resize_type.multiplier": ["FLOAT", 1.0, 0.01, 8.0, 0.01], "resize_type.longer_size": ["INT", *SIDE],
         "resize_type.shorter_size": ["INT", *SIDE], "resize_type.megapixels": ["FLOAT", 1.0, 0.01, 16.0, 0.01],
         "resize_type.multiple": ["INT", 1, 1, 16384, 1], "resize_type.match": ["IMAGE,MASK"]},
        ["IMAGE,MASK"], ["resized"], "image/transform", "Resize Image/Mask"),
    "ResolutionSelector": (
        {"aspect_ratio": [["1:1 (Square)", "3:2 (Photo)", "4:3 (Standard)", "16:9 (Widescreen)", "21:9 (Ultrawide)",
                           "2:3 (Portrait Photo)", "3:4 (Portrait Standard)", "9:16 (Portrait Widescreen)"],
                          "1:1 (Square)"],
         "megapixels": ["FLOAT", 1.0, 0.1, 16.0, 0.1], "multiple": ["INT", 8, 8, 128, 4]},
        {}, ["INT", "INT"], ["width", "height"], "utilities", "Resolution Selector"),
    "SaveText": ({"text": ["STRING"], "filename_prefix": ["STRING", "ComfyUI"], "format": [["txt", "md", "json"], "txt"]},
                 {}, ["STRING"], ["text"], "text", "Save Text"),
    "ImageStitch": ({"image1": ["IMAGE"], "direction": [["right", "down", "left", "up"], "right"],
                     "match_image_size": ["BOOLEAN", True], "spacing_width": ["INT", 0, 0, 1024, 2],
                     "spacing_color": [["white", "black", "red", "green", "blue"], "white"]},
                    {"image2": ["IMAGE"]}, ["IMAGE"], ["IMAGE"], "image/transform", "Stitch Images"),
    "MaskPreview": ({"mask": ["MASK"]}, {}, [], [], "mask", "Preview Mask"),
    "JoinImageWithAlpha": ({"image": ["IMAGE"], "alpha": ["MASK"]}, {}, ["IMAGE"], ["IMAGE"], "mask/compositing",
                           "Join Image with Alpha"),
    "ResizeAndPadImage": ({"image": ["IMAGE"], "target_width": ["INT", 512, 1, 16384, 1],
                           "target_height": ["INT", 512, 1, 16384, 1], "padding_color": [["white", "black"], "white"],
                           "interpolation": [["area", "bicubic", "nearest-exact", "bilinear", "lanczos"], "area"]},
                          {}, ["IMAGE"], ["IMAGE"], "image/transform", "Resize And Pad Image"),
    "EmptyImage": ({"width": ["INT", 512, 1, 16384, 1], "height": ["INT", 512, 1, 16384, 1],
                    "batch_size": ["INT", 1, 1, 4096], "color": ["INT", 0, 0, 0xFFFFFF, 1]},
                   {}, ["IMAGE"], ["IMAGE"], "image", "EmptyImage"),
    "RegexReplace": ({"string": TEXT[:2], "regex_pattern": TEXT[:2], "replace": TEXT[:2]},
                     {"case_insensitive": ["BOOLEAN", True], "multiline": ["BOOLEAN", False],
                      "dotall": ["BOOLEAN", False], "count": ["INT", 0, 0, 100]},
                     ["STRING"], ["STRING"], "text", "Replace Text (Regex)"),
    "RegexExtract": ({"string": TEXT[:2], "regex_pattern": TEXT[:2],
                      "mode": [["First Match", "All Matches", "First Group", "All Groups"], "First Match"],
                      "case_insensitive": ["BOOLEAN", True], "multiline": ["BOOLEAN", False],
                      "dotall": ["BOOLEAN", False], "group_index": ["INT", 1, 0, 100]},
                     {}, ["STRING"], ["STRING"], "text", "Extract Text"),
    "JsonExtractString": ({"json_string": TEXT[:2], "key": TEXT[:2]}, {}, ["STRING"], ["STRING"], "text",
                          "Extract Text from JSON"),
    "Canny": ({"image": ["IMAGE"], "low_threshold": ["FLOAT", 0.4, 0.01, 0.99, 0.01],
               "high_threshold": ["FLOAT", 0.8, 0.01, 0.99, 0.01]}, {}, ["IMAGE"], ["IMAGE"], "image/preprocessors",
              "Canny"),
    "CustomCombo": ({"choice": [[]]}, None, ["STRING", "INT"], ["STRING", "INDEX"], "utilities", "Custom Combo"),
}


def _declared(entry: list) -> list:
    kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
    values = [kind] + [opts.get(k) for k in ("default", "min", "max", "step")]
    while values[-1] is None and len(values) > 1:
        values.pop()
    return values


@pytest.mark.parametrize("name", sorted(COMFY))
def test_object_info_has_comfyuis_declaration(name):
    required, optional, outputs, names, category, display = COMFY[name]
    info = NodeRegistry().to_object_info()[name]
    assert {k: _declared(v) for k, v in info["input"]["required"].items()} == required
    assert info["input_order"]["required"] == list(required)
    if optional is not None:  # CustomCombo's optional inputs are the frontend's widgets (below)
        assert {k: _declared(v) for k, v in info["input"].get("optional", {}).items()} == optional
        assert info["input_order"].get("optional", []) == list(optional)
    assert (info["output"], info["output_name"], info["category"], info["display_name"]) == \
        (outputs, names, category, display)
    assert info["python_module"].startswith("vortex_jupyter.nodes.builtin.")


def test_output_nodes_and_hidden_inputs_are_comfyuis():
    info = REGISTRY.to_object_info()
    assert {n for n in COMFY if info[n]["output_node"]} == {"SaveImageAdvanced", "ImageCompare", "SaveText",
                                                           "MaskPreview"}
    assert info["SaveImageAdvanced"]["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["SaveText"]["input"]["required"]["text"][1]["forceInput"] is True
    combo = info["CustomCombo"]["input_order"]["optional"]  # the frontend's index and option widgets
    assert combo[:3] == ["index", "option1", "option2"] and len(combo) == 33


# ----------------------------------------------------------------------------- official templates


def _templates() -> Path:
    import comfyui_workflow_templates_json as corpus

    return Path(corpus.__file__).parent / "templates"


def _nodes(data: dict) -> list[tuple[str, dict]]:
    """(expanded id, raw node) of the top level and of subgraph instances (ComfyUI's "inst:inner")."""
    out = [(str(n["id"]), n) for n in data["nodes"]]
    subgraphs = {s["id"]: s for s in data.get("definitions", {}).get("subgraphs", [])}
    for inst in data["nodes"]:
        for inner in subgraphs.get(inst["type"], {}).get("nodes", []):
            out.append((f"{inst['id']}:{inner['id']}", inner))
    return out


#: Whether the UI reader places DynamicCombo settings after their combo (``shown_when``; proposed
#: for graph/formats). Without it our static widget order fits ResizeImageMaskNode's "scale
#: dimensions" only (module docstring of nodes/builtin/dynamic.py).
DYNAMIC_LAYOUT = hasattr(_ui_common, "ui_order")


def _beyond_reach(raw: dict, named: dict) -> bool:
    if raw["type"] != "ResizeImageMaskNode":
        return False
    if named.get("resize_type") == "scale total pixels" and "resize_type.multiple" not in named:
        return True  # saved before ComfyUI added "multiple": positions no longer fit any layout
    return not DYNAMIC_LAYOUT and named.get("resize_type") != "scale dimensions"


def test_template_widgets_land_on_comfyuis_input_names_for_the_new_nodes():
    """Newer templates also save each widget by name (``widgets_values_named``): every value we
    read must be the named one, and every named value must be read."""
    checked, limited = 0, 0
    for path in sorted(_templates().glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "nodes" not in data:
            continue
        model = None
        for nid, raw in _nodes(data):
            named = raw.get("widgets_values_named")
            if raw.get("type") not in COMFY or not isinstance(named, dict) or list(named.values()) != raw.get(
                    "widgets_values"):
                continue
            if _beyond_reach(raw, named):
                limited += 1
                continue
            model = model or load_any(data, REGISTRY.lookup)
            node = model.nodes.get(nid)
            if node is None:  # inside a muted instance kept whole, or a nested subgraph
                continue
            linked = set(model.inputs_of(nid))
            for key, value in named.items():
                if key not in linked:
                    assert node.params.get(key, "<missing>") == value, f"{path.name} {nid} {key}"
                    checked += 1
    assert checked > 600 and limited == (1 if DYNAMIC_LAYOUT else 12)  # real evidence, limits counted


def test_a_template_of_stitched_images_loads_validates_and_exports_comfyuis_api(tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(tmp_path))
    for i in range(1, 5):
        Image.new("RGB", (4, 3)).save(tmp_path / f"angle_{i}.png")
    model = load_any(json.loads((_templates() / "utility_image_stitch.json").read_text()), REGISTRY.lookup)
    assert model.nodes["16"].params == {"direction": "right", "match_image_size": True, "spacing_width": 0,
                                        "spacing_color": "white"}
    assert model.nodes["21"].params == {"resize_type": "scale dimensions", "resize_type.width": 2048,
                                        "resize_type.height": 2048, "resize_type.crop": "center",
                                        "scale_method": "lanczos"}
    assert validate(model, REGISTRY.lookup) == []
    api = to_comfy_api(model, REGISTRY.lookup)
    assert api["21"]["inputs"] == {"input": ["18", 0], "resize_type": "scale dimensions", "resize_type.width": 2048,
                                   "resize_type.height": 2048, "resize_type.crop": "center", "scale_method": "lanczos"}
    assert api["16"]["inputs"] == {"image1": ["12", 0], "direction": "right", "match_image_size": True,
                                   "spacing_width": 0, "spacing_color": "white", "image2": ["13", 0]}


# ----------------------------------------------------------------------------- dynamic inputs in a UI file


def _node(id_, type_, widgets, inputs=(), outputs=()):
    return {"id": id_, "type": type_, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": id_, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
            "properties": {"Node name for S&R": type_}, "widgets_values": widgets}


def dynamic_workflow() -> dict:
    """As ComfyUI's frontend saves these nodes: Autogrow slots named "values.a", "images.image0"."""
    nodes = [
        _node(1, "ResolutionSelector", ["16:9 (Widescreen)", 0.4, 32],
              outputs=[("width", "INT", [1]), ("height", "INT", [2])]),
        _node(2, "ComfyMathExpression", ["max(((a + 15) // 16) * 16, b)"],
              inputs=[("values.a", "FLOAT,INT,BOOLEAN", 1), ("values.b", "FLOAT,INT,BOOLEAN", 2),
                      ("values.c", "FLOAT,INT,BOOLEAN", None)],
              outputs=[("FLOAT", "FLOAT", None), ("INT", "INT", [3]), ("BOOL", "BOOLEAN", None)]),
        _node(3, "EmptyImage", [512, 288, 1, 0xFF0000], inputs=[("width", "INT", 3)], outputs=[("IMAGE", "IMAGE", [4, 5])]),
        _node(4, "BatchImagesNode", [], inputs=[("images.image0", "IMAGE", 4), ("images.image1", "IMAGE", 5),
                                                ("images.image2", "IMAGE", None)], outputs=[("IMAGE", "IMAGE", [6])]),
        _node(5, "SaveImageAdvanced", ["grid/%batch_num%", "png", "16-bit", "sRGB"], inputs=[("images", "IMAGE", 6)],
              outputs=[("images", "IMAGE", None)]),
        _node(6, "CustomCombo", ["9:16", 1, "16:9", "9:16", ""], outputs=[("STRING", "STRING", None),
                                                                    ("INDEX", "INT", None)]),
    ]
    links = [[1, 1, 0, 2, 0, "INT"], [2, 1, 1, 2, 1, "INT"], [3, 2, 1, 3, 0, "INT"], [4, 3, 0, 4, 0, "IMAGE"],
             [5, 3, 0, 4, 1, "IMAGE"], [6, 4, 0, 5, 0, "IMAGE"]]
    return {"last_node_id": 6, "last_link_id": 6, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def test_dynamic_inputs_load_and_export_under_comfyuis_dotted_names():
    model = load_any(dynamic_workflow(), REGISTRY.lookup)
    edges = {(e.src, e.src_output, e.dst, e.dst_input) for e in model.edges()}
    assert {("1", 0, "2", "values.a"), ("1", 1, "2", "values.b"), ("3", 0, "4", "images.image1")} <= edges
    assert model.nodes["5"].params == {"filename_prefix": "grid/%batch_num%", "format": "png",
                                       "format.bit_depth": "16-bit", "format.input_color_space": "sRGB"}
    assert model.nodes["6"].params == {"choice": "9:16", "index": 1, "option1": "16:9", "option2": "9:16",
                                       "option3": ""}
    assert validate(model, REGISTRY.lookup) == []
    api = to_comfy_api(model, REGISTRY.lookup)
    assert api["2"]["inputs"] == {"expression": "max(((a + 15) // 16) * 16, b)", "values.a": ["1", 0],
                                  "values.b": ["1", 1]}
    assert api["4"]["inputs"] == {"images.image0": ["3", 0], "images.image1": ["3", 0]}
    assert api["5"]["inputs"] == {"images": ["4", 0], "filename_prefix": "grid/%batch_num%", "format": "png",
                                  "format.bit_depth": "16-bit", "format.input_color_space": "sRGB"}
    assert api["6"]["inputs"] == {"choice": "9:16", "index": 1, "option1": "16:9", "option2": "9:16", "option3": ""}


def test_validation_catches_what_these_nodes_cannot_take():
    bad = dynamic_workflow()
    bad["nodes"][4]["widgets_values"] = ["x", "exr", "32-bit float", "linear"]
    problems = validate(load_any(bad, REGISTRY.lookup), REGISTRY.lookup)
    assert [(p.code, p.node) for p in problems] == [("VE-116", "5")]
    assert "format 'exr' cannot be saved by vortex yet" in problems[0].message


# ----------------------------------------------------------------------------- real workers


def test_a_graph_of_these_nodes_runs_on_worker_processes(worker_executor):  # noqa: F811
    ex, root = worker_executor
    g = vx.Graph()
    size = g.add("ResolutionSelector", aspect_ratio="4:3 (Standard)", megapixels=0.1, multiple=8)
    width = g.add("ComfyMathExpression", expression="a // 4", **{"values.a": size.out(0)})
    red = g.add("EmptyImage", width=width.out(1), height=40, batch_size=1, color=0xFF0000)
    blue = g.add("EmptyImage", width=24, height=20, batch_size=2, color=0x0000FF)
    stitched = g.add("ImageStitch", image1=red.out(0), direction="right", match_image_size=True, spacing_width=2,
                     spacing_color="black", image2=blue.out(0))
    small = g.add("ResizeImageMaskNode", input=stitched.out(0), resize_type="scale by multiplier",
                  scale_method="nearest-exact", **{"resize_type.multiplier": 0.5})
    edges = g.add("Canny", image=small.out(0), low_threshold=0.1, high_threshold=0.3)
    batch = g.add("BatchImagesNode", **{"images.image0": small.out(0), "images.image1": edges.out(0)})
    g.add("SaveImageAdvanced", images=batch.out(0), filename_prefix="run/stitch", format="png",
          **{"format.bit_depth": "8-bit", "format.input_color_space": "sRGB"})
    answer = g.add("RegexReplace", string='```json\n{"w": 1}\n```', regex_pattern=r"^```json\n|\n```$", replace="")
    key = g.add("JsonExtractString", json_string=answer.out(0), key="w")
    g.add("SaveText", text=key.out(0), filename_prefix="run/answer", format="txt")
    run = g.run(executor=ex)
    assert run.status == "ok", run.errors
    # 0.1 MP at 4:3: sqrt(104857.6 / 12) = 93.5 -> 376 x 280; 376 // 4 = 94
    assert run.outputs[size.id] == (376, 280) and run.outputs[width.id] == (94.0, 94, True)
    # 94 x 40 red, 2 black, then blue matched to height 40 (48 wide): 144 x 40, halved: 72 x 20, 2 frames
    assert np.asarray(run.outputs[small.id][0]).shape == (2, 20, 72, 3)
    saved = sorted(p.name for p in (root / "output" / "run").iterdir())
    assert saved == ["answer_00001.txt", *[f"stitch_{i:05}.png" for i in range(1, 5)]]
    assert (root / "output" / "run" / "answer_00001.txt").read_text() == "1"
    with Image.open(root / "output" / "run" / "stitch_00001.png") as img:
        pixels = np.asarray(img)
        assert img.size == (72, 20) and tuple(pixels[10, 5]) == (255, 0, 0) and tuple(pixels[10, 60]) == (0, 0, 255)
        assert json.loads(img.text["prompt"])[width.id]["class_type"] == "ComfyMathExpression"


# ----------------------------------------------------------------------------- DynamicCombo settings


def test_dynamic_combo_settings_say_which_options_show_them():
    resize = {p.name: p.shown_when for p in REGISTRY.lookup("ResizeImageMaskNode").inputs}
    assert resize["resize_type.width"] == ("resize_type", ("scale dimensions", "scale width"))
    assert resize["resize_type.multiple"] == ("resize_type", ("scale total pixels", "scale to multiple"))
    assert resize["scale_method"] is None and resize["resize_type"] is None
    save = {p.name: p.shown_when for p in REGISTRY.lookup("SaveImageAdvanced").inputs}
    assert save["format.save_mode.fps"] == ("format.save_mode", ("animated",))  # nested: avif's save mode
    entry = REGISTRY.to_object_info()["SaveImageAdvanced"]["input"]["optional"]["format.crf"][1]
    assert entry["shown_when"] == ["format", ["avif"]]


def test_a_malformed_shown_when_is_a_definition_error_with_a_fix():
    from vortex_jupyter.errors import NodeDefinitionError

    class Bad:
        RETURN_TYPES = ()
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"mode.size": ("INT", {"shown_when": "mode"})}}

        def run(self, **kwargs):
            return ()

    with pytest.raises(NodeDefinitionError) as caught:
        NodeRegistry(builtins=False).register_comfy_class("Bad", Bad)
    assert "shown_when='mode'" in str(caught.value) and "[combo input name" in str(caught.value)
