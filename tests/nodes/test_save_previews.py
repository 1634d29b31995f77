"""SaveImageAdvanced writes the PNGs ComfyUI writes (8 and 16 bits, workflow in tEXt right after
IHDR); ImageCompare and MaskPreview return ComfyUI's "ui" data; ResolutionSelector and CustomCombo
compute ComfyUI's values."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.graph.formats.png import graph_from_png
from vortex_jupyter.nodes.builtin.previews import ImageCompare, MaskPreview
from vortex_jupyter.nodes.builtin.save_advanced import SaveImageAdvanced
from vortex_jupyter.nodes.builtin.values import ASPECT_RATIOS, CustomCombo, ResolutionSelector
from vortex_jupyter.nodes.registry import REGISTRY

from .test_animated import png_chunks

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 3, "batch_size": 1, "color": 0}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage", "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0,
                       "mode": 0, "properties": {}, "widgets_values": [4, 3, 1, 0]}],
            "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4, "last_node_id": 1, "last_link_id": 0}


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name in ("output", "temp"):
        monkeypatch.setenv(f"VORTEX_{name.upper()}_DIR", str(tmp_path / name))
    return tmp_path


def save(images, prefix="ComfyUI", bit_depth="8-bit", **extra):
    return SaveImageAdvanced().execute(images, prefix, "png", prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW},
                                       **{"format.bit_depth": bit_depth, "format.input_color_space": "sRGB"}, **extra)


def decode_png(data: bytes) -> tuple[dict, np.ndarray]:
    """An independent reader for what we write: IHDR fields, and the samples of filter-0 rows."""
    chunks = png_chunks(data)
    width, height, depth, color = int.from_bytes(chunks[0][1][:4], "big"), int.from_bytes(chunks[0][1][4:8], "big"), \
        chunks[0][1][8], chunks[0][1][9]
    channels = {0: 1, 2: 3, 6: 4}[color]
    raw = np.frombuffer(zlib.decompress(b"".join(p for t, p in chunks if t == b"IDAT")), np.uint8)
    rows = raw.reshape(height, -1)
    assert (rows[:, 0] == 0).all()  # no filter: the samples follow as they are
    samples = rows[:, 1:].copy().view(">u2" if depth == 16 else np.uint8).reshape(height, width, channels)
    return {"depth": depth, "color": color}, samples


def test_8_bit_pngs_hold_comfyuis_truncated_pixels_and_load_back_as_the_graph(folders):
    images = np.random.default_rng(0).random((2, 3, 4, 3), dtype=np.float32)
    images[0, 0, 0] = [-0.5, 1.5, 0.99999]  # clamped, then truncated
    result = save(images, "shots/run_%batch_num%")
    assert result["ui"]["images"] == [{"filename": "run_0_00001.png", "subfolder": "shots", "type": "output"},
                                      {"filename": "run_1_00002.png", "subfolder": "shots", "type": "output"}]
    np.testing.assert_array_equal(result["result"][0], images)  # the images pass through
    for i, entry in enumerate(result["ui"]["images"]):
        path = folders / "output" / "shots" / entry["filename"]
        with Image.open(path) as img:
            assert img.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(img), np.floor(np.clip(images[i] * 255, 0, 255)).astype(np.uint8))
        data = path.read_bytes()
        kinds = [t for t, _ in png_chunks(data)]
        assert kinds[:3] == [b"IHDR", b"tEXt", b"tEXt"]  # right after the header, as ComfyUI puts them
        texts = dict(p.split(b"\0", 1) for t, p in png_chunks(data) if t == b"tEXt")
        assert json.loads(texts[b"prompt"]) == PROMPT and json.loads(texts[b"workflow"]) == WORKFLOW
        assert graph_from_png(data, REGISTRY.lookup).nodes["1"].params["color"] == 0


def test_16_bit_pngs_keep_65535_levels_in_gray_rgb_and_rgba(folders):
    rng = np.random.default_rng(1)
    for channels, color in ((1, 0), (3, 2), (4, 6)):
        images = rng.random((1, 5, 6, channels), dtype=np.float32)
        entry = save(images, f"deep{channels}", "16-bit")["ui"]["images"][0]
        data = (folders / "output" / entry["filename"]).read_bytes()
        header, samples = decode_png(data)
        expected = np.floor(np.clip(images[0] * np.float32(65535), 0, 65535)).astype(np.uint16)
        assert header == {"depth": 16, "color": color}
        np.testing.assert_array_equal(samples, expected)
        with Image.open(folders / "output" / entry["filename"]) as img:  # Pillow reads 16-bit gray as is,
            pixels = np.asarray(img)  # and 16-bit color as its high bytes
        np.testing.assert_array_equal(pixels, expected[..., 0] if channels == 1 else (expected >> 8).astype(np.uint8))


def test_saving_never_overwrites_and_stays_inside_the_output_folder(folders):
    image = np.zeros((1, 2, 2, 3), np.float32)
    names = [save(image, "same")["ui"]["images"][0]["filename"] for _ in range(3)]
    assert names == ["same_00001.png", "same_00002.png", "same_00003.png"]
    with pytest.raises(ValueError, match="unsafe file name"):
        save(image, "../outside")


@pytest.mark.parametrize(("params", "problem"), [
    ({"format": "exr", "format.bit_depth": "32-bit float"}, "format 'exr' cannot be saved by vortex yet"),
    ({"format": "avif", "format.bit_depth": "auto"}, "format 'avif' cannot be saved"),
    ({"format": "png", "format.bit_depth": "32-bit float"}, "format.bit_depth '32-bit float' is not a png choice"),
    ({"format": "png", "format.input_color_space": "HDR"}, "format.input_color_space 'HDR' is not a png choice"),
])
def test_formats_we_cannot_write_are_refused_at_validation(params, problem):
    spec = REGISTRY.lookup("SaveImageAdvanced")
    assert any(problem in message for _, message, _ in spec.check(params))
    with pytest.raises(ValueError, match=problem):
        SaveImageAdvanced().execute(np.zeros((1, 2, 2, 3), np.float32), "x", params.pop("format"), **params)


def test_a_two_channel_image_is_refused(folders):
    with pytest.raises(ValueError, match="images have 2 channels"):
        save(np.zeros((1, 2, 2, 2), np.float32))


# ----------------------------------------------------------------------------- previews


def test_image_compare_returns_comfyuis_a_and_b_lists_of_temp_files(folders):
    a, b = np.full((2, 3, 4, 3), 0.5, np.float32), np.ones((1, 3, 4, 3), np.float32)
    ui = ImageCompare().execute(image_a=a, image_b=b)["ui"]
    assert set(ui) == {"a_images", "b_images"} and len(ui["a_images"]) == 2 and len(ui["b_images"]) == 1
    for entry, prefix in ((ui["a_images"][0], "comfy.compare.a_temp_"), (ui["b_images"][0], "comfy.compare.b_temp_")):
        assert entry["type"] == "temp" and entry["subfolder"] == "" and entry["filename"].startswith(prefix)
        assert (folders / "temp" / entry["filename"]).is_file()
    assert ImageCompare().execute(image_b=b)["ui"]["a_images"] == []


def test_mask_preview_shows_the_mask_as_gray_with_the_workflow(folders):
    mask = np.array([[[0.0, 0.5], [1.0, 0.25]]], np.float32)
    ui = MaskPreview().execute(mask, prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})["ui"]
    assert ui["animated"] == (False,) and len(ui["images"]) == 1 and ui["images"][0]["type"] == "temp"
    path = folders / "temp" / ui["images"][0]["filename"]
    with Image.open(path) as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img)[..., 1], [[0, 127], [255, 63]])
        assert json.loads(img.text["workflow"]) == WORKFLOW


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(("aspect", "megapixels", "multiple", "size"), [
    ("1:1 (Square)", 1.0, 8, (1024, 1024)),
    ("16:9 (Widescreen)", 1.0, 8, (1368, 768)),  # sqrt(2^20 / 144) = 85.33: 1365.3 -> 1368, 768
    ("16:9 (Widescreen)", 0.4, 32, (864, 480)),  # 53.97: 863.5 -> 27 * 32, 485.7 -> 15 * 32
    ("9:16 (Portrait Widescreen)", 1.0, 8, (768, 1368)),
])
def test_resolution_selector_sizes(aspect, megapixels, multiple, size):
    assert ResolutionSelector().execute(aspect, megapixels, multiple) == size


@pytest.mark.parametrize("aspect", list(ASPECT_RATIOS))
@pytest.mark.parametrize(("megapixels", "multiple"), [(0.5, 8), (1.3, 16), (2.0, 64)])
def test_resolution_selector_keeps_ratio_area_and_multiple(aspect, megapixels, multiple):
    width, height = ResolutionSelector().execute(aspect, megapixels, multiple)
    ratio = ASPECT_RATIOS[aspect][0] / ASPECT_RATIOS[aspect][1]
    assert width % multiple == 0 and height % multiple == 0
    # each side is rounded by at most multiple / 2, so width - ratio * height by at most that much
    assert abs(width - ratio * height) <= multiple / 2 * (1 + ratio)
    assert abs(math.sqrt(width * height) - math.sqrt(megapixels) * 1024) <= multiple


def test_custom_combo_outputs_the_choice_and_its_index_among_the_options():
    options = {"option1": "16:9", "option2": "9:16", "option3": ""}
    assert CustomCombo().execute("9:16", 0, **options) == ("9:16", 1)  # the frontend's index, not a stale one
    assert CustomCombo().execute("4:3", 0, **options) == ("4:3", -1)
    assert CustomCombo().execute("anything", 3) == ("anything", 3)  # no options given: the index as sent
    spec = REGISTRY.lookup("CustomCombo")
    assert spec.check({"choice": "not listed anywhere"}) == []  # the user's options: nothing to check
