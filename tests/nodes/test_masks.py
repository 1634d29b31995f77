"""Mask nodes and ImageCompositeMasked: ComfyUI's semantics, checked against per-pixel references."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.errors import PathError
from vortex_jupyter.nodes.builtin.resample import resize_mask, upscale
from vortex_jupyter.nodes.registry import NodeRegistry


@pytest.fixture(scope="module")
def registry():
    return NodeRegistry()


@pytest.fixture
def input_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(tmp_path))
    return tmp_path


def run(registry, type_, **kwargs):
    return registry.get(type_).fn(**kwargs)


def noise(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ----------------------------------------------------------------------------- loading and conversion


def test_load_image_mask_takes_one_channel_and_inverts_alpha(registry, input_dir):
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba = np.dstack([np.full((3, 4), 51, np.uint8), np.full((3, 4), 102, np.uint8),
                      np.full((3, 4), 153, np.uint8), np.full((3, 4), 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel
    Image.fromarray(rgba, "RGBA").save(input_dir / "m.png")
    (alpha,) = run(registry, "LoadImageMask", image="m.png", channel="alpha")
    assert alpha.shape == (1, 3, 4) and alpha[0, 0, 0] == 1.0 and alpha[0, 1, 1] == 0.0
    (green,) = run(registry, "LoadImageMask", image="m.png", channel="green")
    np.testing.assert_allclose(green, 0.4)  # 102 / 255


def test_load_image_mask_of_an_rgb_file_has_an_empty_alpha_mask(registry, input_dir):
    Image.new("RGB", (5, 2), (255, 0, 0)).save(input_dir / "rgb.jpg")
    (alpha,) = run(registry, "LoadImageMask", image="rgb.jpg", channel="alpha")
    (red,) = run(registry, "LoadImageMask", image="rgb.jpg", channel="red")
    assert alpha.shape == (1, 2, 5) and not alpha.any()  # RGBA conversion makes it opaque
    assert red.min() > 0.98


def test_load_image_mask_lists_the_input_folder_and_rejects_missing_or_escaping_names(registry, input_dir):
    Image.new("L", (2, 2)).save(input_dir / "a.png")
    spec = registry.get("LoadImageMask")
    assert [p.name for p in spec.inputs] == ["image", "channel"]
    assert spec.inputs[0].display == "image_upload" and "a.png" in spec.inputs[0].choices
    assert spec.check({"image": "nope.png", "channel": "alpha"})[0][1].startswith("image file 'nope.png' not found")
    with pytest.raises(PathError):
        run(registry, "LoadImageMask", image="../a.png", channel="alpha")


def test_image_to_mask_and_back(registry):
    image = noise(2, 3, 4, 4)
    (mask,) = run(registry, "ImageToMask", image=image, channel="blue")
    np.testing.assert_array_equal(mask, image[..., 2])
    (alpha,) = run(registry, "ImageToMask", image=image, channel="alpha")
    np.testing.assert_array_equal(alpha, image[..., 3])
    (back,) = run(registry, "MaskToImage", mask=mask)
    assert back.shape == (2, 3, 4, 3) and all(np.array_equal(back[..., c], mask) for c in range(3))


def test_image_to_mask_alpha_of_an_rgb_image_says_there_is_none(registry):
    with pytest.raises(ValueError, match=r"ImageToMask: channel 'alpha' does not exist in an image with 3 channels"):
        run(registry, "ImageToMask", image=noise(1, 2, 2, 3), channel="alpha")


def test_masks_without_a_batch_axis_are_accepted_as_comfyui_reshapes_them(registry):
    (out,) = run(registry, "InvertMask", mask=np.full((3, 2), 0.25, np.float32))
    assert out.shape == (1, 3, 2) and np.all(out == 0.75)
    with pytest.raises(ValueError, match=r"InvertMask: input 'mask' has shape \(2, 3, 4, 5\).*fix"):
        run(registry, "InvertMask", mask=np.zeros((2, 3, 4, 5)))


def test_solid_crop_and_threshold(registry):
    (solid,) = run(registry, "SolidMask", value=0.25, width=5, height=3)
    assert solid.shape == (1, 3, 5) and solid.dtype == np.float32 and np.all(solid == 0.25)
    mask = noise(2, 6, 7)
    (crop,) = run(registry, "CropMask", mask=mask, x=2, y=1, width=3, height=10)
    np.testing.assert_array_equal(crop, mask[:, 1:, 2:5])
    (binary,) = run(registry, "ThresholdMask", mask=mask, value=0.5)
    np.testing.assert_array_equal(binary, (mask > 0.5).astype(np.float32))


# ----------------------------------------------------------------------------- morphology and feathering


@pytest.mark.parametrize("tapered", [True, False])
@pytest.mark.parametrize("expand", [3, -2, 0])
def test_grow_mask_is_scipys_grey_morphology_repeated(registry, expand, tapered):
    ndimage = pytest.importorskip("scipy.ndimage")
    mask = (noise(2, 12, 11) > 0.8).astype(np.float32) * noise(2, 12, 11, seed=1)
    (out,) = run(registry, "GrowMask", mask=mask, expand=expand, tapered_corners=tapered)
    c = 0 if tapered else 1
    footprint = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    for m, got in zip(mask, out):
        want = m
        for _ in range(abs(expand)):  # what ComfyUI calls
            op = ndimage.grey_erosion if expand < 0 else ndimage.grey_dilation
            want = op(want, footprint=footprint)
        np.testing.assert_array_equal(got, want)


def test_grow_mask_tapered_grows_a_diamond_and_square_grows_a_square(registry):
    dot = np.zeros((1, 9, 9), np.float32)
    dot[0, 4, 4] = 1.0
    (diamond,) = run(registry, "GrowMask", mask=dot, expand=2, tapered_corners=True)
    (square,) = run(registry, "GrowMask", mask=dot, expand=2, tapered_corners=False)
    yy, xx = np.mgrid[:9, :9]
    np.testing.assert_array_equal(diamond[0], (abs(yy - 4) + abs(xx - 4) <= 2).astype(np.float32))
    np.testing.assert_array_equal(square[0], ((abs(yy - 4) <= 2) & (abs(xx - 4) <= 2)).astype(np.float32))


def test_feather_mask_ramps_each_edge_with_comfyuis_first_column_quirk(registry):
    ones = np.ones((1, 4, 8), np.float32)
    (left,) = run(registry, "FeatherMask", mask=ones, left=4, top=0, right=0, bottom=0)
    assert left[0, 0].tolist() == [0.25, 0.5, 0.75, 1, 1, 1, 1, 1]
    # ComfyUI ramps the right edge with output[:, :, -x] for x in range(right): x = 0 is column 0
    # (times 1/4), then the last column gets 2/4, the one before 3/4, then 4/4.
    (right,) = run(registry, "FeatherMask", mask=ones, left=0, top=0, right=4, bottom=0)
    assert right[0, 0].tolist() == [0.25, 1, 1, 1, 1, 1, 0.75, 0.5]
    (both,) = run(registry, "FeatherMask", mask=ones, left=2, top=2, right=0, bottom=0)
    assert both[0, 0, 0] == 0.25 and both[0, 1, 1] == 1.0 and both[0, 0, 1] == 0.5  # factors multiply


# ----------------------------------------------------------------------------- compositing


def mask_composite_reference(dest, src, x, y, op):
    out = dest.astype(np.float64).copy()
    for b in range(dest.shape[0]):
        for i in range(dest.shape[1]):
            for j in range(dest.shape[2]):
                si, sj = i - y, j - x
                if 0 <= si < src.shape[1] and 0 <= sj < src.shape[2]:
                    d, s = dest[b, i, j], src[min(b, src.shape[0] - 1), si, sj]
                    bits = (round(d) != 0, round(s) != 0)
                    out[b, i, j] = {"multiply": d * s, "add": d + s, "subtract": d - s, "and": bits[0] and bits[1],
                                    "or": bits[0] or bits[1], "xor": bits[0] != bits[1]}[op]
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("op", ["multiply", "add", "subtract", "and", "or", "xor"])
@pytest.mark.parametrize(("x", "y"), [(0, 0), (3, 2), (6, 5)])
def test_mask_composite_combines_the_overlap_and_clamps(registry, op, x, y):
    dest, src = noise(2, 7, 8), noise(1, 4, 4, seed=5)
    (out,) = run(registry, "MaskComposite", destination=dest, source=src, x=x, y=y, operation=op)
    np.testing.assert_allclose(out, mask_composite_reference(dest, src, x, y, op), atol=1e-7)


def composite_reference(dest, src, x, y, weight):
    """Per pixel: inside the pasted rectangle, w * source + (1 - w) * destination."""
    out = dest.astype(np.float64).copy()
    for i in range(dest.shape[1]):
        for j in range(dest.shape[2]):
            si, sj = i - y, j - x
            if 0 <= si < src.shape[1] and 0 <= sj < src.shape[2]:
                w = weight[:, si, sj, None]
                out[:, i, j] = w * src[:, si, sj] + (1 - w) * dest[:, i, j]
    return out


def test_image_composite_masked_pastes_with_the_mask_and_clips_at_the_border(registry):
    dest, src, mask = noise(2, 10, 12, 3), noise(2, 5, 6, 3, seed=1), noise(2, 5, 6, seed=2)
    (out,) = run(registry, "ImageCompositeMasked", destination=dest, source=src, x=9, y=7,
                 resize_source=False, mask=mask)
    np.testing.assert_allclose(out, composite_reference(dest, src, 9, 7, mask), atol=1e-6)
    (plain,) = run(registry, "ImageCompositeMasked", destination=dest, source=src, x=1, y=2, resize_source=False)
    np.testing.assert_allclose(plain, composite_reference(dest, src, 1, 2, np.ones((2, 5, 6))), atol=1e-7)


def test_image_composite_masked_resizes_mask_to_source_and_source_to_destination(registry):
    dest, src, mask = noise(1, 8, 8, 3), noise(1, 4, 4, 3, seed=1), noise(1, 3, 5, seed=2)
    (out,) = run(registry, "ImageCompositeMasked", destination=dest, source=src, x=0, y=0,
                 resize_source=True, mask=mask)
    big = upscale(src, 8, 8, "bilinear")
    np.testing.assert_allclose(out, composite_reference(dest, big, 0, 0, resize_mask(mask, 8, 8)), atol=1e-6)


def test_image_composite_masked_repeats_a_single_source_over_the_batch_and_adds_alpha(registry):
    dest, src = noise(3, 4, 4, 4), noise(1, 2, 2, 3, seed=1)
    (out,) = run(registry, "ImageCompositeMasked", destination=dest, source=src, x=0, y=0, resize_source=False)
    assert out.shape == (3, 4, 4, 4)
    for b in range(3):
        np.testing.assert_allclose(out[b, :2, :2, :3], src[0])
        assert np.all(out[b, :2, :2, 3] == 1.0)  # RGB onto RGBA: the pasted part is opaque
    np.testing.assert_array_equal(out[:, 2:], dest[:, 2:])
