"""``resample.upscale`` reproduces ComfyUI's ``common_upscale``: torch's interpolate modes, Pillow's lanczos.

References: a per-pixel loop over each mode's definition (always), torch's own
``F.interpolate`` (when torch is importable; it is what ComfyUI calls), and Pillow for lanczos.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.nodes.builtin.resample import METHODS, center_crop, resize_mask, upscale

SIZES = [((7, 5), (13, 11)), ((16, 16), (8, 8)), ((10, 13), (3, 29)), ((64, 48), (17, 23)),
         ((3, 4), (1, 1)), ((1, 1), (5, 3)), ((9, 7), (9, 7))]


def images(h, w, c=3, b=2, seed=0):
    return np.random.default_rng(seed).random((b, h, w, c), dtype=np.float32)


def bilinear_reference(x, out_h, out_w):
    """Per output pixel, in float64: align_corners=False source coordinates clamped at 0."""
    b, h, w, c = x.shape
    out = np.zeros((b, out_h, out_w, c))
    for i in range(out_h):
        sy = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(math.floor(sy), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(math.floor(sx), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[:, i, j] = ((1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1])
                            + ly * ((1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]))
    return out


def area_reference(x, out_h, out_w):
    """Mean over [floor(i*in/out), ceil((i+1)*in/out)) in both directions."""
    b, h, w, c = x.shape
    out = np.zeros((b, out_h, out_w, c))
    for i in range(out_h):
        y0, y1 = (i * h) // out_h, -((-(i + 1) * h) // out_h)
        for j in range(out_w):
            x0, x1 = (j * w) // out_w, -((-(j + 1) * w) // out_w)
            out[:, i, j] = x[:, y0:y1, x0:x1].astype(np.float64).mean(axis=(1, 2))
    return out


def cubic_reference(x, out_h, out_w, a=-0.75):
    """Keys' cubic convolution with clamped taps, unclamped source coordinates."""
    def kernel(s):
        s = abs(s)
        if s <= 1:
            return ((a + 2) * s - (a + 3)) * s * s + 1
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a if s < 2 else 0.0

    def taps(n_in, n_out, i):
        src = (i + 0.5) * n_in / n_out - 0.5
        base = math.floor(src)
        return [(min(max(base - 1 + k, 0), n_in - 1), kernel(src - (base - 1 + k))) for k in range(4)]

    b, h, w, c = x.shape
    out = np.zeros((b, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = sum(wy * wx * x[:, yy, xx] for yy, wy in taps(h, out_h, i) for xx, wx in taps(w, out_w, j))
    return out


@pytest.mark.parametrize(("size", "target"), SIZES)
@pytest.mark.parametrize(("method", "reference"), [
    ("bilinear", bilinear_reference), ("area", area_reference), ("bicubic", cubic_reference)])
def test_each_mode_matches_its_per_pixel_definition(size, target, method, reference):
    x = images(*size)
    got = upscale(x, target[1], target[0], method)
    assert got.shape == (2, target[0], target[1], 3) and got.dtype == np.float32
    # float32 source coordinates (as torch's) vs exact ones: a few ulps of 64 in the weights
    np.testing.assert_allclose(got, reference(x, *target), atol=2e-5, rtol=0)


@pytest.mark.parametrize(("size", "target"), SIZES)
@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_each_mode_matches_torch_interpolate(size, target, method):
    torch = pytest.importorskip("torch")
    x = images(*size, c=4)
    want = torch.nn.functional.interpolate(torch.from_numpy(x).movedim(-1, 1), size=target, mode=method)
    got = upscale(x, target[1], target[0], method)
    tolerance = 0 if method == "nearest-exact" else 5e-7  # a few float32 ulps: torch fuses multiply-adds
    np.testing.assert_allclose(got, want.movedim(1, -1).numpy(), atol=tolerance, rtol=0)


def test_nearest_exact_picks_the_pixel_under_each_output_centre():
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
    # centres of 3 outputs over 5 inputs: 5/6, 15/6, 25/6 -> inputs 0, 2, 4
    assert upscale(x, 3, 1, "nearest-exact")[0, 0, :, 0].tolist() == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lanczos_goes_through_8_bit_pillow_like_comfyui(channels):
    x = images(9, 12, c=channels, b=1)
    got = upscale(x, 20, 7, "lanczos")
    pixels = np.clip(x[0] * 255.0, 0, 255).astype(np.uint8)
    plane = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)  # RGBA: Pillow premultiplies
    want = np.asarray(plane.resize((20, 7), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    assert got.shape == (1, 7, 20, channels)
    np.testing.assert_array_equal(got[0], want.reshape(7, 20, channels))
    assert np.all(np.round(got * 255) == got * 255)  # quantised to 1/255, as ComfyUI's lanczos is


def test_bicubic_is_not_clamped_and_lanczos_cannot_overshoot():
    step = np.zeros((1, 1, 8, 1), np.float32)
    step[..., 4:, :] = 1.0
    cubic = upscale(step, 32, 1, "bicubic")
    assert cubic.min() < 0 and cubic.max() > 1  # ComfyUI's common_upscale does not clamp either
    lanczos = upscale(step, 32, 1, "lanczos")
    assert lanczos.min() >= 0 and lanczos.max() <= 1


def test_center_crop_cuts_the_longer_side_symmetrically():
    x = np.arange(10, dtype=np.float32).reshape(1, 1, 10, 1).repeat(4, axis=1)
    cropped = center_crop(x, 4, 4)  # 10x4 -> square: round((10 - 4) / 2) = 3 from each side
    assert cropped.shape == (1, 4, 4, 1) and cropped[0, 0, :, 0].tolist() == [3, 4, 5, 6]
    assert upscale(x, 2, 2, "area", "center").shape == (1, 2, 2, 1)


def test_resize_mask_is_bilinear_on_the_mask_plane():
    mask = np.random.default_rng(3).random((2, 5, 6), dtype=np.float32)
    np.testing.assert_allclose(resize_mask(mask, 9, 4), bilinear_reference(mask[..., None], 4, 9)[..., 0], atol=1e-6)


@pytest.mark.parametrize(("method", "width", "height", "match"), [
    ("bogus", 4, 4, "'bogus' is not one of"), ("bilinear", 0, 4, "0x4 is empty")])
def test_bad_methods_and_empty_sizes_are_clear_errors(method, width, height, match):
    with pytest.raises(ValueError, match=match):
        upscale(images(4, 4), width, height, method)
    assert "lanczos" in METHODS
