"""Post-processing nodes (ImageBlur, ImageSharpen, ImageBlend) in numpy, with ComfyUI's math.

From ``comfy_extras/nodes_post_processing.py`` (V3 schemas translated to ``INPUT_TYPES``):

- The Gaussian kernel of radius ``r`` samples ``exp(-x**2 / (2 * sigma**2))`` at
  ``x = linspace(-1, 1, 2r + 1)``: **sigma is relative to the radius**, not in pixels (so
  radius 10 with sigma 1 is a much wider blur than radius 2 with sigma 1). ComfyUI builds
  the 2-D kernel from ``sqrt(x**2 + y**2)``; it is the outer product of the 1-D kernel, so
  we blur along the width, then the height (float rounding apart, the same numbers).
- Borders are mirrored without repeating the edge (torch's ``"reflect"`` padding), which
  needs the radius to be smaller than the image; a larger radius is a ``ValueError`` here
  (torch raises inside ComfyUI).
- ImageSharpen's kernel is ``-10 * alpha * G`` with its centre raised so the kernel sums to
  1, i.e. ``(1 + 10 alpha) * image - 10 alpha * blur(image)``, clamped to [0, 1]. ImageBlur
  does not clamp.
- ImageBlend resizes ``image2`` to ``image1`` (bicubic, center crop) when their shapes
  differ, mixes ``image1 * (1 - f) + mode(image1, image2) * f`` and clamps to [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_image
from .resample import upscale

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "gaussian_blur", "gaussian_weights"]


def gaussian_weights(radius: int, sigma: float) -> np.ndarray:
    """The normalised 1-D kernel (``2 * radius + 1`` taps) whose outer product is ComfyUI's."""
    x = np.linspace(-1.0, 1.0, 2 * radius + 1)
    weights = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return (weights / weights.sum()).astype(np.float32)


def _correlate(padded: np.ndarray, weights: np.ndarray, axis: int, size: int) -> np.ndarray:
    out = np.zeros((*padded.shape[:axis], size, *padded.shape[axis + 1:]), np.float32)
    for k, weight in enumerate(weights):
        out += weight * np.take(padded, np.arange(k, k + size), axis=axis)
    return out


def gaussian_blur(images: np.ndarray, radius: int, sigma: float, node: str, field: str) -> np.ndarray:
    """``[B, H, W, C]`` blurred by ComfyUI's Gaussian with reflected borders."""
    height, width = images.shape[1:3]
    if radius >= min(height, width):
        raise ValueError(f"{node}: {field} {radius} needs an image larger than {radius} px on each side, "
                         f"but it is {width}x{height} (fix: set {field} below {min(height, width)})")
    weights = gaussian_weights(radius, sigma)
    padded = np.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    across = _correlate(padded, weights, 2, width)
    return _correlate(across, weights, 1, height)


class ImageBlur:
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"
    DESCRIPTION = "Gaussian blur; sigma is relative to the radius (1.0 spans the kernel)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",),
                             "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})}}

    def blur(self, image: Any, blur_radius: int, sigma: float) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageBlur")
        if blur_radius == 0:
            return (batch,)
        return (gaussian_blur(batch, blur_radius, sigma, "ImageBlur", "blur_radius"),)


class ImageSharpen:
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"
    DESCRIPTION = "Unsharp masking: (1 + 10 alpha) * image - 10 alpha * gaussian_blur(image), clamped."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",),
                             "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
                             "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01})}}

    def sharpen(self, image: Any, sharpen_radius: int, sigma: float, alpha: float) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageSharpen")
        if sharpen_radius == 0:
            return (batch,)
        blurred = gaussian_blur(batch, sharpen_radius, sigma, "ImageSharpen", "sharpen_radius")
        amount = np.float32(alpha * 10)
        return (np.clip((1 + amount) * batch - amount * blurred, 0.0, 1.0),)


def alpha_fix(destination: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make ``source`` have ``destination``'s channels (ComfyUI's ``image_alpha_fix``).

    An extra source channel is dropped; a missing one (RGB onto RGBA) becomes opaque alpha.
    (ComfyUI pads the destination in that case and then fails on the mismatch.)
    """
    if destination.shape[-1] < source.shape[-1]:
        return destination, source[..., :destination.shape[-1]]
    if destination.shape[-1] > source.shape[-1]:
        alpha = np.ones((*source.shape[:-1], destination.shape[-1] - source.shape[-1]), np.float32)
        return destination, np.concatenate([source, alpha], axis=-1)
    return destination, source


def _soft_light_g(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # torch.where evaluates sqrt of negatives too
        return np.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, np.sqrt(x))


def blend(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    """ImageBlend's blend modes (``a`` is image1, the base)."""
    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        return np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (_soft_light_g(a) - a))
    if mode == "difference":
        return a - b
    raise ValueError(f"ImageBlend: blend_mode {mode!r} is not one of {ImageBlend.modes} (fix: pick one of them)")


class ImageBlend:
    modes = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"
    DESCRIPTION = "Mix image2 into image1 with a blend mode; image2 is resized to image1 if needed."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",),
                             "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "blend_mode": (cls.modes,)}}

    def blend_images(self, image1: Any, image2: Any, blend_factor: float, blend_mode: str) -> tuple[np.ndarray]:
        base, top = alpha_fix(as_image(image1, "ImageBlend", "image1"), as_image(image2, "ImageBlend", "image2"))
        if base.shape != top.shape:
            top = upscale(top, base.shape[2], base.shape[1], "bicubic", "center")
        if base.shape[0] != top.shape[0] and 1 not in (base.shape[0], top.shape[0]):
            raise ValueError(f"ImageBlend: image1 has {base.shape[0]} images and image2 {top.shape[0]} "
                             "(fix: blend batches of the same size, or a single image2)")
        factor = np.float32(blend_factor)
        mixed = base * (1 - factor) + blend(base, top, blend_mode) * factor
        return (np.clip(mixed, 0.0, 1.0).astype(np.float32),)


NODE_CLASS_MAPPINGS: dict[str, type] = {"ImageBlend": ImageBlend, "ImageBlur": ImageBlur, "ImageSharpen": ImageSharpen}
NODE_DISPLAY_NAME_MAPPINGS = {"ImageBlend": "Image Blend", "ImageBlur": "Image Blur", "ImageSharpen": "Image Sharpen"}
