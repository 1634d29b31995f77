"""Canny edge detection, ComfyUI's ``Canny`` node (``comfy_extras/nodes_canny.py``) without kornia.

ComfyUI calls ``kornia.filters.canny(image, low_threshold, high_threshold)`` with kornia's
defaults and outputs the edge map on three channels. This module computes the same steps in
numpy, in float32 as torch does:

1. grayscale ``0.299 R + 0.587 G + 0.114 B`` (a 1-channel image is used as is);
2. a 5x5 Gaussian blur, sigma 1, separable (rows, then columns), reflected borders;
3. Sobel gradients (``[-1 0 1; -2 0 2; -1 0 1]`` and its transpose), replicated borders;
   magnitude ``sqrt(gx^2 + gy^2 + 1e-6)``;
4. non-maximum suppression: the gradient angle rounded to a multiple of 45 degrees picks the
   two neighbours across the edge; a pixel survives only if it is strictly larger than both
   (pixels outside the image count as 0, as kornia's zero-padded convolution does);
5. double threshold: strong ``> high_threshold``, weak ``> low_threshold``;
6. hysteresis: the strong pixels plus every weak pixel 8-connected to one through weak pixels.
   kornia grows the strong set one pixel per iteration until nothing changes; the fixed point
   is exactly those connected components, which we label directly (min-label propagation
   with pointer jumping), so long edges cost a few passes instead of one pass per pixel.

Differences from ComfyUI: an RGBA image is detected on its RGB channels (kornia raises on four
channels); ``low_threshold > high_threshold`` is a clear error (kornia raises too).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .arrays import as_image

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "canny_edges"]

_GRAY = (np.float32(0.299), np.float32(0.587), np.float32(0.114))
#: (dy, dx) of the neighbour in each of kornia's 8 directions (angle k * 45 degrees, y down).
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    x = np.arange(size, dtype=np.float32) - np.float32(size // 2)
    g = np.exp(-(x * x) / np.float32(2 * sigma * sigma)).astype(np.float32)
    return g / g.sum(dtype=np.float32)


def _correlate(x: np.ndarray, kernel: np.ndarray, axis: int, mode: Literal["reflect", "edge"]) -> np.ndarray:
    """1-D correlation of ``[B, H, W]`` along ``axis`` with ``mode`` padding (numpy's names)."""
    r = len(kernel) // 2
    widths = [(0, 0)] * 3
    widths[axis] = (r, r)
    padded = np.pad(x, widths, mode=mode)
    n = x.shape[axis]
    out = np.zeros_like(x)
    for i, k in enumerate(kernel):
        if k != 0:
            out += k * np.take(padded, np.arange(i, i + n), axis=axis)
    return out


def _shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``x[b, y + dy, x + dx]`` with 0 outside the image."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]
    return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def _suppressed(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    degrees = np.float32(180.0) * np.arctan2(gy, gx) / np.float32(np.pi)
    forward = np.round(degrees / np.float32(45.0)).astype(np.int64) % 8
    backward = (forward + 4) % 8
    differences = np.stack([magnitude - _shifted(magnitude, dy, dx) for dy, dx in _DIRECTIONS])
    ahead = np.take_along_axis(differences, forward[None], axis=0)[0]
    behind = np.take_along_axis(differences, backward[None], axis=0)[0]
    return magnitude * (np.minimum(ahead, behind) > 0)


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a ``[H, W]`` mask (background: ``mask.size``)."""
    h, w = mask.shape
    n = h * w
    labels = np.where(mask, np.arange(n).reshape(h, w), n)
    while True:
        padded = np.pad(labels, 1, constant_values=n)
        lowest = labels
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                lowest = np.minimum(lowest, padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w])
        flat = np.where(mask, lowest, n).ravel()
        while True:  # pointer jumping: follow each label to its own label until stable
            inside = flat < n
            jumped = flat.copy()
            jumped[inside] = flat[flat[inside]]
            if np.array_equal(jumped, flat):
                break
            flat = jumped
        new = flat.reshape(h, w)
        if np.array_equal(new, labels):
            return labels
        labels = new


def _hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    out = np.zeros_like(strong)
    for b in range(strong.shape[0]):
        if not weak[b].any():
            out[b] = strong[b]
            continue
        labels = _components(strong[b] | weak[b])
        anchored = np.zeros(labels.size + 1, bool)
        anchored[labels[strong[b]]] = True
        out[b] = anchored[labels] & (strong[b] | weak[b])
    return out


def canny_edges(gray: np.ndarray, low_threshold: float, high_threshold: float) -> np.ndarray:
    """kornia's ``canny(...)[1]`` of float32 ``[B, H, W]``: a ``[B, H, W]`` map of 0.0 / 1.0."""
    blurred = gray.astype(np.float32)
    kernel = _gaussian_kernel()
    blurred = _correlate(_correlate(blurred, kernel, 2, "reflect"), kernel, 1, "reflect")
    diff, smooth = np.array([-1, 0, 1], np.float32), np.array([1, 2, 1], np.float32)
    gx = _correlate(_correlate(blurred, diff, 2, "edge"), smooth, 1, "edge")
    gy = _correlate(_correlate(blurred, smooth, 2, "edge"), diff, 1, "edge")
    magnitude = np.sqrt(gx * gx + gy * gy + np.float32(1e-6))
    magnitude = _suppressed(magnitude, gx, gy)
    strong, weak = magnitude > high_threshold, magnitude > low_threshold
    return _hysteresis(strong, weak & ~strong).astype(np.float32)


def _gray(images: np.ndarray) -> np.ndarray:
    channels = images.shape[-1]
    if channels == 1:
        return images[..., 0]
    if channels in (3, 4):
        r, g, b = images[..., 0], images[..., 1], images[..., 2]
        return _GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b
    raise ValueError(f"Canny: input 'image' has {channels} channels (fix: connect an RGB or grayscale IMAGE)")


class Canny:
    CATEGORY = "image/preprocessors"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "detect_edge"
    DESCRIPTION = "Canny edges (white on black), as kornia computes them for ComfyUI."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        threshold = {"min": 0.01, "max": 0.99, "step": 0.01}
        return {"required": {"image": ("IMAGE",), "low_threshold": ("FLOAT", {"default": 0.4, **threshold}),
                             "high_threshold": ("FLOAT", {"default": 0.8, **threshold})}}

    def detect_edge(self, image: Any, low_threshold: float, high_threshold: float) -> tuple[np.ndarray]:
        images = as_image(image, "Canny")
        if low_threshold > high_threshold:
            raise ValueError(f"Canny: low_threshold {low_threshold} is above high_threshold {high_threshold} "
                             "(fix: make low_threshold at most high_threshold)")
        if min(images.shape[1:3]) < 3:
            raise ValueError(f"Canny: the image is {images.shape[2]}x{images.shape[1]}; the 5x5 blur needs at "
                             "least 3x3 pixels (fix: use a larger image)")
        edges = canny_edges(_gray(images), low_threshold, high_threshold)
        return (np.repeat(edges[..., None], 3, axis=-1),)


NODE_CLASS_MAPPINGS: dict[str, type] = {"Canny": Canny}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}  # ComfyUI gives Canny no display name
