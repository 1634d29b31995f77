"""PreviewAny and ComfySwitchNode; the new nodes in ``/object_info``, in UI workflows and on real workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vortex_jupyter as vx
from vortex_jupyter.graph.formats import load_any, to_comfy_api
from vortex_jupyter.graph.validate import validate
from vortex_jupyter.nodes.registry import REGISTRY, NodeRegistry

from .test_animated import png_chunks

NEW_NODES = [
    "ImageScaleBy", "ImageScaleToTotalPixels", "ImageScaleToMaxDimension", "ImageBatch", "ImageFromBatch",
    "ImageCrop", "ImagePadForOutpaint", "GetImageSize", "ImageBlur", "ImageSharpen", "ImageBlend",
    "LoadImageMask", "ImageToMask", "MaskToImage", "InvertMask", "SolidMask", "GrowMask", "FeatherMask",
    "MaskComposite", "CropMask", "ThresholdMask", "ImageCompositeMasked", "SaveAnimatedWEBP",
    "SaveAnimatedPNG", "PreviewAny", "ComfySwitchNode",
]


@pytest.fixture(scope="module")
def registry():
    return NodeRegistry()


# ----------------------------------------------------------------------------- PreviewAny, switch


@pytest.mark.parametrize(("value", "text"), [
    ("a\nb", "a\nb"), (3, "3"), (2.5, "2.5"), (True, "True"), (None, "None"),
    ({"k": [1, 2]}, '{"k": [1, 2]}'), ([0.5, "x"], '[0.5, "x"]'),
])
def test_preview_any_shows_values_as_comfyui_does_and_outputs_the_text(registry, value, text):
    result = registry.get("PreviewAny").fn(source=value)
    assert result.ui == {"text": (text,)} and result.outputs == (text,)


def test_preview_any_falls_back_to_str_for_arrays_and_caps_huge_text(registry):
    result = registry.get("PreviewAny").fn(source=np.zeros((2, 2), np.float32))
    assert result.outputs == (str(np.zeros((2, 2), np.float32)),)
    big = registry.get("PreviewAny").fn(source="x" * 200_000).outputs[0]
    assert len(big) < 100_100 and big.endswith("(100000 more characters)")


@pytest.mark.parametrize(("switch", "connected", "want"), [
    (True, {"on_true": "T", "on_false": "F"}, "T"), (False, {"on_true": "T", "on_false": "F"}, "F"),
    (False, {"on_true": "T"}, "T"), (True, {"on_false": "F"}, "F"), (True, {"on_true": None, "on_false": "F"}, None),
])
def test_switch_picks_by_the_boolean_and_passes_a_lone_input_through(registry, switch, connected, want):
    assert registry.get("ComfySwitchNode").fn(switch=switch, **connected) == (want,)


def test_switch_with_nothing_connected_says_what_to_connect(registry):
    with pytest.raises(ValueError, match=r"neither on_false nor on_true is connected.*fix: connect"):
        registry.get("ComfySwitchNode").fn(switch=True)


# ----------------------------------------------------------------------------- object_info


def test_every_new_node_is_listed_in_object_info_without_torch():
    info = NodeRegistry().to_object_info()
    assert set(NEW_NODES) <= set(info)
    for name in NEW_NODES:
        assert info[name]["name"] == name and info[name]["python_module"].startswith("vortex_jupyter.nodes.builtin.")


# What ComfyUI declares (nodes.py, comfy_extras/nodes_mask.py, nodes_post_processing.py,
# nodes_images.py, nodes_logic.py): input order, types, defaults and ranges, outputs.
COMFY = {
    "ImagePadForOutpaint": ({"image": ["IMAGE"], "left": ["INT", 0, 0, 16384, 8], "top": ["INT", 0, 0, 16384, 8],
                             "right": ["INT", 0, 0, 16384, 8], "bottom": ["INT", 0, 0, 16384, 8],
                             "feathering": ["INT", 40, 0, 16384, 1]}, ["IMAGE", "MASK"], "image", "Pad Image for Outpainting"),
    "GrowMask": ({"mask": ["MASK"], "expand": ["INT", 0, -16384, 16384, 1], "tapered_corners": ["BOOLEAN", True]},
                 ["MASK"], "mask", "Grow Mask"),
    "ImageSharpen": ({"image": ["IMAGE"], "sharpen_radius": ["INT", 1, 1, 31, 1], "sigma": ["FLOAT", 1.0, 0.1, 10.0, 0.01],
                      "alpha": ["FLOAT", 1.0, 0.0, 5.0, 0.01]}, ["IMAGE"], "image/postprocessing", "Image Sharpen"),
    "ImageScaleToTotalPixels": ({"image": ["IMAGE"], "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic",
                                                                         "lanczos"]],
                                 "megapixels": ["FLOAT", 1.0, 0.01, 16.0, 0.01], "resolution_steps": ["INT", 1, 1, 256]},
                                ["IMAGE"], "image/upscaling", "Scale Image to Total Pixels"),
    "ImageCrop": ({"image": ["IMAGE"], "width": ["INT", 512, 1, 16384, 1], "height": ["INT", 512, 1, 16384, 1],
                   "x": ["INT", 0, 0, 16384, 1], "y": ["INT", 0, 0, 16384, 1]}, ["IMAGE"], "image/transform", "Crop Image"),
    "SaveAnimatedPNG": ({"images": ["IMAGE"], "filename_prefix": ["STRING", "ComfyUI"],
                         "fps": ["FLOAT", 6.0, 0.01, 1000.0, 0.01], "compress_level": ["INT", 4, 0, 9]},
                        [], "image/animation", "SaveAnimatedPNG"),
}


def _declared(entry):
    kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
    if isinstance(kind, list):
        return [kind]
    keys = ("default", "min", "max", "step")
    return [kind] + [opts[k] for k in keys if k in opts]


@pytest.mark.parametrize("name", sorted(COMFY))
def test_object_info_has_comfyuis_inputs_in_order_with_defaults_and_ranges(name):
    inputs, outputs, category, display = COMFY[name]
    info = REGISTRY.to_object_info()[name]
    assert info["input_order"]["required"] == list(inputs)
    assert {k: _declared(v) for k, v in info["input"]["required"].items()} == inputs
    assert (info["output"], info["category"], info["display_name"]) == (outputs, category, display)


def test_switch_and_preview_any_have_comfyuis_ports():
    info = REGISTRY.to_object_info()
    switch = info["ComfySwitchNode"]
    assert switch["input_order"] == {"required": ["switch"], "optional": ["on_false", "on_true"]}
    assert switch["output_name"] == ["output"] and switch["category"] == "logic"
    preview = info["PreviewAny"]
    assert preview["input"]["required"] == {"source": ["*"]} and preview["output_node"] is True
    assert preview["output"] == ["STRING"]


# ----------------------------------------------------------------------------- UI workflows


def _node(id_, type_, widgets, inputs=(), outputs=()):
    return {"id": id_, "type": type_, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": id_, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
            "properties": {"Node name for S&R": type_}, "widgets_values": widgets}


def ui_workflow():
    """A workflow as ComfyUI's frontend saves it (widget values in declaration order)."""
    nodes = [
        _node(1, "LoadImage", ["cat.png", "image"], outputs=[("IMAGE", "IMAGE", [1, 3]), ("MASK", "MASK", [2])]),
        _node(2, "ImageScaleToTotalPixels", ["lanczos", 0.5, 8], inputs=[("image", "IMAGE", 1)],
              outputs=[("IMAGE", "IMAGE", [4])]),
        _node(3, "GrowMask", [4, False], inputs=[("mask", "MASK", 2)], outputs=[("MASK", "MASK", [5])]),
        _node(4, "ImageCompositeMasked", [16, 8, True],
              inputs=[("destination", "IMAGE", 4), ("source", "IMAGE", 3), ("mask", "MASK", 5)],
              outputs=[("IMAGE", "IMAGE", [6])]),
        _node(5, "ComfySwitchNode", [True], inputs=[("on_false", "IMAGE", None), ("on_true", "IMAGE", 6)],
              outputs=[("output", "IMAGE", [7, 8])]),
        _node(6, "SaveAnimatedWEBP", ["clip", 12, False, 90, "slowest"], inputs=[("images", "IMAGE", 7)]),
        _node(7, "GetImageSize", [], inputs=[("image", "IMAGE", 8)], outputs=[("width", "INT", [9])]),
        _node(8, "PreviewAny", [None, None, None], inputs=[("source", "*", 9)], outputs=[("STRING", "STRING", None)]),
        # the frontend appends the upload button after all widgets: image, channel, upload
        _node(9, "LoadImageMask", ["cat.png", "red", "image"], outputs=[("MASK", "MASK", None)]),
    ]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 1, 3, 0, "MASK"], [3, 1, 0, 4, 1, "IMAGE"], [4, 2, 0, 4, 0, "IMAGE"],
             [5, 3, 0, 4, 2, "MASK"], [6, 4, 0, 5, 1, "IMAGE"], [7, 5, 0, 6, 0, "IMAGE"], [8, 5, 0, 7, 0, "IMAGE"],
             [9, 7, 0, 8, 0, "INT"]]
    return {"last_node_id": 9, "last_link_id": 9, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def test_a_ui_workflow_with_the_new_nodes_loads_with_the_right_params_and_links(tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(tmp_path))
    model = load_any(ui_workflow(), REGISTRY.lookup)
    params = {i: model.nodes[i].params for i in ("2", "3", "4", "5", "6", "9")}
    assert params == {
        "2": {"upscale_method": "lanczos", "megapixels": 0.5, "resolution_steps": 8},
        "3": {"expand": 4, "tapered_corners": False},
        "4": {"x": 16, "y": 8, "resize_source": True},
        "5": {"switch": True},
        "6": {"filename_prefix": "clip", "fps": 12, "lossless": False, "quality": 90, "method": "slowest"},
        "9": {"image": "cat.png", "channel": "red"},
    }
    edges = {(e.src, e.src_output, e.dst, e.dst_input) for e in model.edges()}
    assert {("1", 1, "3", "mask"), ("3", 0, "4", "mask"), ("4", 0, "5", "on_true"), ("7", 0, "8", "source")} <= edges
    assert validate(model, REGISTRY.lookup) == []
    api = to_comfy_api(model, REGISTRY.lookup)  # what ComfyUI's graphToPrompt queues for these nodes
    assert api["5"]["inputs"] == {"switch": True, "on_true": ["4", 0]}  # the unconnected branch is absent
    assert api["6"]["inputs"] == {"filename_prefix": "clip", "fps": 12, "lossless": False, "quality": 90,
                                  "method": "slowest", "images": ["5", 0]}
    assert api["8"]["inputs"] == {"source": ["7", 0]}  # PreviewAny's frontend-only widgets are not sent


# ----------------------------------------------------------------------------- real workers


@pytest.fixture
def worker_executor(tmp_path, monkeypatch):
    """A pool started after the folders are set, so its workers read and write them."""
    from vortex_jupyter.workers.executor import WorkerExecutor
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.supervisor import PoolConfig

    for name in ("input", "output"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"VORTEX_{name.upper()}_DIR", str(tmp_path / name))
    pool = WorkerPool(PoolConfig(preload=("numpy",), late_preload=(), devices=["cpu"], arena_bytes=64 * 2**20))
    yield WorkerExecutor(pool), tmp_path
    pool.close()


def test_a_graph_of_the_new_nodes_runs_on_worker_processes(worker_executor):
    ex, root = worker_executor
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "input" / "cat.png")
    g = vx.Graph()
    load = g.add("LoadImage", image="cat.png")
    big = g.add("ImageScaleBy", image=load.out(0), upscale_method="nearest-exact", scale_by=2.0)
    blur = g.add("ImageBlur", image=big.out(0), blur_radius=2, sigma=1.0)
    frames = g.add("ImageBatch", image1=big.out(0), image2=blur.out(0))
    size = g.add("GetImageSize", image=frames.out(0))
    text = g.add("PreviewAny", source=size.out(2))
    switch = g.add("ComfySwitchNode", switch=False, on_true=big.out(0), on_false=blur.out(0))
    g.add("SaveAnimatedPNG", images=frames.out(0), filename_prefix="anim/run", fps=5.0, compress_level=1)
    run = g.run(executor=ex)
    assert run.status == "ok", run.errors
    assert run.outputs[size.id] == (32, 24, 2) and run.outputs[text.id] == ("2",)
    want = np.repeat(np.repeat(pixels.astype(np.float32) / 255, 2, axis=0), 2, axis=1)  # nearest, exact 2x
    np.testing.assert_allclose(np.asarray(run.outputs[big.id][0])[0], want)
    np.testing.assert_array_equal(np.asarray(run.outputs[switch.id][0]), np.asarray(run.outputs[blur.id][0]))
    saved = root / "output" / "anim" / "run_00001_.png"
    with Image.open(saved) as img:
        assert img.n_frames == 2 and img.size == (32, 24)
    comf = dict(payload.split(b"\0", 1) for kind, payload in png_chunks(saved.read_bytes()) if kind == b"comf")
    prompt = json.loads(comf[b"prompt"])  # the run's API prompt, filled in by the engine and embedded
    assert prompt[switch.id]["class_type"] == "ComfySwitchNode"


def test_new_nodes_import_no_torch():
    import subprocess
    import sys

    code = ("import sys; from vortex_jupyter.nodes.builtin import NODE_CLASS_MAPPINGS as m; "
            "print(len(m) > 30, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout
    assert out.split() == ["True", "False"]
