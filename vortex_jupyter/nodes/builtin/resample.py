"""``comfy.utils.common_upscale`` in numpy: the resize every ComfyUI image node uses.

ComfyUI resizes with ``torch.nn.functional.interpolate`` (modes "nearest-exact", "bilinear",
"bicubic", both with ``align_corners=False`` and no antialiasing, and "area", which is
``adaptive_avg_pool2d``), and "lanczos" with Pillow on 8-bit images. This module reproduces
each definition, so a workflow gives the pixels ComfyUI gives:

- the source coordinate of output pixel ``i`` is ``(i + 0.5) * in / out - 0.5`` (float32,
  as torch computes it); "bilinear" clamps it at 0, "bicubic" does not and reads clamped
  taps with Keys' kernel (``A = -0.75``); "nearest-exact" reads ``floor((i + 0.5) * in / out)``;
- "area" averages the window ``[floor(i * in / out), ceil((i + 1) * in / out))``;
- "lanczos" goes through uint8 (clip, then truncate) and back, so it quantises to 1/255, and
  Pillow premultiplies alpha for RGBA, exactly as ``comfy.utils.lanczos`` does;
- no mode clamps its result: bicubic and lanczos may overshoot [0, 1] (lanczos cannot, uint8).

Every mode is separable, so the 2-D resize is a 1-D resize along the width, then the height,
in float32. Results match torch to float rounding (tests compare against torch itself).

``center_crop`` is ``common_upscale``'s ``crop="center"``: cut the sides (or top and bottom)
to the target aspect ratio before resizing.

>>> upscale(np.ones((1, 2, 2, 3), np.float32), 4, 4, "bilinear", "disabled").shape
(1, 4, 4, 3)
"""

from __future__ import annotations

import numpy as np

__all__ = ["METHODS", "center_crop", "resize_mask", "upscale"]

#: The methods of ComfyUI's ImageScale, in its order.
METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
_A = np.float32(-0.75)  # torch's bicubic constant (Keys' kernel with a = -0.75)


def _source_coords(n_in: int, n_out: int) -> np.ndarray:
    scale = np.float64(np.float32(n_in) / np.float32(n_out))  # torch: a float32 scale ...
    # ... and the coordinate computed in one rounding (fused multiply-add), then float32
    return ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)


def _linear(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = x.shape[axis]
    src = np.maximum(_source_coords(n_in, n_out), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    l0 = np.float32(1) - l1
    shape = [1] * x.ndim
    shape[axis] = n_out
    return np.take(x, i0, axis) * l0.reshape(shape) + np.take(x, i1, axis) * l1.reshape(shape)


def _fused(a: np.ndarray | np.float32, b: np.ndarray, c: np.float32) -> np.ndarray:
    """``a * b + c`` rounded once to float32, as a fused multiply-add."""
    return (np.float64(a) * b.astype(np.float64) + np.float64(c)).astype(np.float32)


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    def near(s: np.ndarray) -> np.ndarray:  # |s| <= 1
        return ((_A + 2) * s - (_A + 3)) * s * s + 1

    def far(s: np.ndarray) -> np.ndarray:  # 1 < |s| < 2
        # torch's compiled kernel fuses the first two steps of Horner's scheme (measured
        # against torch 2.x on x86: this order gives its coefficients bit for bit)
        return _fused(_fused(_A, s, -5 * _A), s, 8 * _A) * s - 4 * _A

    one = np.float32(1)
    return [far(t + one), near(t), near(one - t), far(one - t + one)]


def _cubic(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = x.shape[axis]
    src = _source_coords(n_in, n_out)
    base = np.floor(src)
    t = (src - base).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n_out
    out = np.zeros((*x.shape[:axis], n_out, *x.shape[axis + 1:]), dtype=np.float32)
    for k, weight in enumerate(_cubic_weights(t)):
        taps = np.clip(base.astype(np.int64) - 1 + k, 0, n_in - 1)
        out += np.take(x, taps, axis) * weight.reshape(shape)
    return out


def _area(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = x.shape[axis]
    i = np.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)  # ceil
    padded = [(0, 0)] * x.ndim
    padded[axis] = (1, 0)
    sums = np.pad(np.cumsum(x, axis=axis, dtype=np.float64), padded)
    shape = [1] * x.ndim
    shape[axis] = n_out
    window = np.take(sums, end, axis) - np.take(sums, start, axis)
    return (window / (end - start).reshape(shape)).astype(np.float32)


def _nearest_exact(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = x.shape[axis]
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    # torch: floorf((i + 0.5) * scale) - the product in double, rounded to float, then floored
    src = ((np.arange(n_out) + 0.5) * scale).astype(np.float32)
    return np.take(x, np.minimum(np.floor(src).astype(np.int64), n_in - 1), axis)


_SEPARABLE = {"nearest-exact": _nearest_exact, "bilinear": _linear, "bicubic": _cubic, "area": _area}


def _lanczos(images: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    out = []
    for image in images:
        pixels = np.clip(image * 255.0, 0, 255).astype(np.uint8)
        plane = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        resized = np.asarray(plane.resize((width, height), resample=Image.Resampling.LANCZOS), dtype=np.float32)
        out.append((resized / np.float32(255.0)).reshape(height, width, -1))
    return np.stack(out)


def center_crop(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """Crop ``[B, H, W, C]`` to the aspect ratio of ``width`` x ``height`` (ComfyUI's arithmetic)."""
    old_h, old_w = images.shape[1:3]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return images[:, y:old_h - y, x:old_w - x, :]


def upscale(images: np.ndarray, width: int, height: int, method: str, crop: str = "disabled") -> np.ndarray:
    """Resize float32 ``[B, H, W, C]`` to ``height`` x ``width`` like ``common_upscale``."""
    if method not in METHODS:
        raise ValueError(f"upscale_method {method!r} is not one of {list(METHODS)} (fix: pick one of them)")
    if width < 1 or height < 1:
        raise ValueError(f"the target size {width}x{height} is empty (fix: use a width and height of at least 1)")
    if crop == "center":
        images = center_crop(images, width, height)
    if method == "lanczos":
        return _lanczos(images, width, height)
    resize = _SEPARABLE[method]
    return resize(resize(images.astype(np.float32, copy=False), 2, width), 1, height)


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """``F.interpolate(mask[:, None], size=(height, width), mode="bilinear")`` of ``[B, H, W]``."""
    return upscale(mask[..., None], width, height, "bilinear")[..., 0]
