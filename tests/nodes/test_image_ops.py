"""Image sizing/batching/geometry nodes and the post-processing filters, run through their specs.

Each numerical check has an independent reference: a per-pixel loop over ComfyUI's
definition, or an invariant that only the right computation satisfies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.builtin.resample import upscale
from vortex_jupyter.nodes.registry import NodeRegistry


@pytest.fixture(scope="module")
def registry():
    return NodeRegistry()


def run(registry, type_, **kwargs):
    return registry.get(type_).fn(**kwargs)


def noise(b=1, h=12, w=10, c=3, seed=0):
    return np.random.default_rng(seed).random((b, h, w, c), dtype=np.float32)


# ----------------------------------------------------------------------------- scaling


def test_image_scale_by_rounds_each_side_and_resizes_like_common_upscale(registry):
    image = noise(h=10, w=7)
    (out,) = run(registry, "ImageScaleBy", image=image, upscale_method="bilinear", scale_by=1.5)
    assert out.shape == (1, 15, 10, 3)  # round(7 * 1.5) = round(10.5) = 10: Python's round, as ComfyUI
    np.testing.assert_array_equal(out, upscale(image, 10, 15, "bilinear"))


def test_image_scale_by_too_small_names_the_side_and_the_fix(registry):
    with pytest.raises(ValueError, match=r"ImageScaleBy: the resized width comes out as 0 px \(fix"):
        run(registry, "ImageScaleBy", image=noise(h=100, w=10), upscale_method="area", scale_by=0.01)


@pytest.mark.parametrize(("steps", "size"), [(1, (256, 1024)), (100, (300, 1000))])
def test_image_scale_to_total_pixels_hits_the_pixel_count_in_resolution_steps(registry, steps, size):
    # 256x64 = 16384 px to 0.25 * 2**20 = 262144 px: 16x the pixels, 4x each side
    image = noise(h=64, w=256)
    (out,) = run(registry, "ImageScaleToTotalPixels", image=image, upscale_method="nearest-exact",
                 megapixels=0.25, resolution_steps=steps)
    assert out.shape[1:3] == size  # steps 100: round(10.24) * 100, round(2.56) * 100


def test_image_scale_to_total_pixels_works_without_resolution_steps_like_older_workflows(registry):
    (out,) = run(registry, "ImageScaleToTotalPixels", image=noise(h=16, w=16), upscale_method="area", megapixels=0.01)
    side = round(16 * math.sqrt(0.01 * 2**20 / 256))
    assert out.shape == (1, side, side, 3) and side == 102


@pytest.mark.parametrize(("h", "w", "want"), [(20, 10, (64, 32)), (10, 20, (32, 64)), (9, 9, (64, 64))])
def test_image_scale_to_max_dimension_scales_the_longer_side(registry, h, w, want):
    (out,) = run(registry, "ImageScaleToMaxDimension", image=noise(h=h, w=w), upscale_method="lanczos", largest_size=64)
    assert out.shape[1:3] == want


# ----------------------------------------------------------------------------- batches, crops, pads


def test_image_batch_resizes_image2_with_bilinear_center_crop_and_adds_alpha(registry):
    first, second = noise(b=2, h=8, w=8, c=4), noise(b=1, h=8, w=16, c=3, seed=1)
    (out,) = run(registry, "ImageBatch", image1=first, image2=second)
    assert out.shape == (3, 8, 8, 4)
    np.testing.assert_array_equal(out[:2], first)
    padded = np.concatenate([second, np.ones((1, 8, 16, 1), np.float32)], axis=-1)  # opaque alpha
    np.testing.assert_array_equal(out[2:], upscale(padded[:, :, 4:12], 8, 8, "bilinear"))  # center crop


@pytest.mark.parametrize(("index", "length", "want"), [(1, 2, [1, 2]), (3, 5, [3]), (9, 1, [3]), (0, 4096, [0, 1, 2, 3])])
def test_image_from_batch_clamps_index_and_length_to_the_batch(registry, index, length, want):
    batch = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * np.ones((1, 2, 2, 3), np.float32)
    (out,) = run(registry, "ImageFromBatch", image=batch, batch_index=index, length=length)
    assert out[:, 0, 0, 0].tolist() == want


def test_image_crop_moves_the_origin_inside_and_cuts_at_the_edge(registry):
    image = noise(h=6, w=5)
    (out,) = run(registry, "ImageCrop", image=image, width=3, height=4, x=1, y=1)
    np.testing.assert_array_equal(out, image[:, 1:5, 1:4])
    (edge,) = run(registry, "ImageCrop", image=image, width=512, height=512, x=100, y=100)
    np.testing.assert_array_equal(edge, image[:, 5:, 4:])  # x, y clamped to the last pixel


def outpaint_reference(h, w, left, top, right, bottom, feathering):
    """ComfyUI's double loop, pixel by pixel."""
    mask = np.ones((h + top + bottom, w + left + right))
    inner = np.zeros((h, w))
    if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
        for i in range(h):
            for j in range(w):
                d = min(i if top else h, h - i if bottom else h, j if left else w, w - j if right else w)
                if d < feathering:
                    inner[i, j] = ((feathering - d) / feathering) ** 2
    mask[top:top + h, left:left + w] = inner
    return mask


@pytest.mark.parametrize("pads", [(8, 0, 16, 8, 4), (0, 8, 0, 0, 3), (8, 8, 8, 8, 0), (8, 8, 8, 8, 10)])
def test_pad_for_outpaint_fills_grey_and_feathers_the_mask_into_the_image(registry, pads):
    left, top, right, bottom, feathering = pads
    image = noise(b=2, h=12, w=10)
    out, mask = run(registry, "ImagePadForOutpaint", image=image, left=left, top=top, right=right,
                    bottom=bottom, feathering=feathering)
    assert out.shape == (2, 12 + top + bottom, 10 + left + right, 3)
    np.testing.assert_array_equal(out[:, top:top + 12, left:left + 10], image)
    border = np.ones(out.shape[1:3], bool)
    border[top:top + 12, left:left + 10] = False
    assert np.all(out[:, border] == 0.5)
    assert mask.shape == (1, *out.shape[1:3]) and mask.dtype == np.float32
    np.testing.assert_allclose(mask[0], outpaint_reference(12, 10, *pads), rtol=0, atol=1e-7)


class Progress(context.NodeContext):
    def __init__(self):
        self.texts = []

    def progress(self, value, total=None, text=None):
        self.texts.append(text)


def test_get_image_size_returns_width_height_batch_and_shows_them(registry):
    ctx = Progress()
    token = context.activate(ctx)
    try:
        assert run(registry, "GetImageSize", image=noise(b=3, h=5, w=7)) == (7, 5, 3)
    finally:
        context.deactivate(token)
    assert ctx.texts == ["width: 7, height: 5\n batch size: 3"]


def test_image_inputs_that_are_masks_name_the_node_the_input_and_the_fix(registry):
    with pytest.raises(ValueError, match=r"ImageCrop: input 'image' has shape \(4, 4\).*fix: connect an IMAGE"):
        run(registry, "ImageCrop", image=np.zeros((4, 4)), width=1, height=1, x=0, y=0)


# ----------------------------------------------------------------------------- filters


def blur_reference(image, radius, sigma):
    """ComfyUI's 2-D kernel (from sqrt(x^2 + y^2) on linspace(-1, 1)), reflect padding, per pixel."""
    grid = np.linspace(-1, 1, 2 * radius + 1)
    d = np.sqrt(grid[:, None] ** 2 + grid[None, :] ** 2)
    kernel = np.exp(-(d * d) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(image.astype(np.float64), ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.zeros(image.shape)
    for i in range(image.shape[1]):
        for j in range(image.shape[2]):
            window = padded[:, i:i + 2 * radius + 1, j:j + 2 * radius + 1]
            out[:, i, j] = np.einsum("bhwc,hw->bc", window, kernel)
    return out


@pytest.mark.parametrize(("radius", "sigma"), [(1, 1.0), (3, 0.5), (5, 2.0)])
def test_image_blur_matches_the_2d_gaussian_with_reflected_borders(registry, radius, sigma):
    image = noise(b=2, h=11, w=9)
    (out,) = run(registry, "ImageBlur", image=image, blur_radius=radius, sigma=sigma)
    np.testing.assert_allclose(out, blur_reference(image, radius, sigma), atol=2e-6, rtol=0)


def test_image_blur_sigma_is_relative_to_the_radius(registry):
    # one bright pixel: sigma 1 on radius 4 spreads over the kernel; a pixel-sigma of 1 would not
    image = np.zeros((1, 15, 15, 1), np.float32)
    image[0, 7, 7, 0] = 1.0
    (out,) = run(registry, "ImageBlur", image=image, blur_radius=4, sigma=1.0)
    row = out[0, 7, 3:12, 0]
    assert row[0] / row[4] == pytest.approx(math.exp(-0.5), rel=1e-5)  # at x = 1 (4 px away): e^(-1/2)


def test_image_sharpen_is_unsharp_masking_with_the_same_gaussian_and_clamps(registry):
    image = noise(h=10, w=12)
    (out,) = run(registry, "ImageSharpen", image=image, sharpen_radius=2, sigma=0.8, alpha=0.3)
    want = np.clip(4.0 * image - 3.0 * blur_reference(image, 2, 0.8), 0, 1)  # 1 + 10a, 10a
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=0)
    (flat,) = run(registry, "ImageSharpen", image=np.full((1, 6, 6, 3), 0.3, np.float32), sharpen_radius=1,
                  sigma=1.0, alpha=5.0)
    np.testing.assert_allclose(flat, 0.3, atol=1e-5)  # a flat image has nothing to sharpen


def test_a_radius_the_image_cannot_reflect_is_a_clear_error(registry):
    with pytest.raises(ValueError, match=r"ImageBlur: blur_radius 8 needs an image larger than 8 px.*fix: set blur_radius below 6"):
        run(registry, "ImageBlur", image=noise(h=6, w=20), blur_radius=8, sigma=1.0)


def blend_reference(a, b, mode):
    a, b = a.astype(np.float64), b.astype(np.float64)
    formulas = {
        "normal": lambda: b, "multiply": lambda: a * b, "screen": lambda: 1 - (1 - a) * (1 - b),
        "overlay": lambda: np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b)),
        "soft_light": lambda: np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a),
                                       a + (2 * b - 1) * (np.where(a <= 0.25, ((16 * a - 12) * a + 4) * a,
                                                                   np.sqrt(a)) - a)),
        "difference": lambda: a - b,
    }
    return formulas[mode]()


@pytest.mark.parametrize("mode", ["normal", "multiply", "screen", "overlay", "soft_light", "difference"])
def test_image_blend_mixes_each_mode_by_the_factor_and_clamps(registry, mode):
    a, b = noise(b=2, seed=1), noise(b=2, seed=2)
    (out,) = run(registry, "ImageBlend", image1=a, image2=b, blend_factor=0.7, blend_mode=mode)
    want = np.clip(a * 0.3 + blend_reference(a, b, mode) * 0.7, 0, 1)
    np.testing.assert_allclose(out, want, atol=1e-6, rtol=0)


def test_image_blend_resizes_image2_bicubic_center_and_fills_a_missing_alpha(registry):
    a, b = noise(h=8, w=8, c=4), noise(h=8, w=12, c=3, seed=3)
    (out,) = run(registry, "ImageBlend", image1=a, image2=b, blend_factor=1.0, blend_mode="normal")
    opaque = np.concatenate([b, np.ones((1, 8, 12, 1), np.float32)], axis=-1)
    np.testing.assert_allclose(out, np.clip(upscale(opaque, 8, 8, "bicubic", "center"), 0, 1), atol=1e-6)
