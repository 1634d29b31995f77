"""Building images from parts: BatchImagesNode, ImageStitch, JoinImageWithAlpha and EmptyImage
(ComfyUI's ``nodes_post_processing.py``, ``nodes_images.py``, ``nodes_compositing.py``, ``nodes.py``).

ComfyUI's rules, kept exactly:

- BatchImagesNode joins its inputs ``images.image0``, ``images.image1``, ... (an Autogrow, see
  ``dynamic``) in slot order. An image with fewer channels gets ONE extra channel of 1.0 (RGB
  next to RGBA gets an opaque alpha); every image whose size differs from the first is resized
  to it (bilinear, center crop).
- ImageStitch puts ``image2`` to the right of / below / left of / above ``image1``. The shorter
  batch repeats its last image. With ``match_image_size`` image2 is scaled (lanczos) to image1's
  height (left/right) or width (up/down), its other side truncated to an int; without it the
  smaller image is padded, centered, with white (1.0) or black (0.0) -- and with 0.0 for the
  red/green/blue spacing colors, as ComfyUI does. Missing channels are filled with 1.0. An odd
  ``spacing_width`` is rounded up to even; the spacing strip is the color, opaque.
- JoinImageWithAlpha takes RGB from ``image`` and ``1 - alpha`` (bilinear-resized to the image)
  as the alpha channel, for ``min(len(image), len(alpha))`` images.
- EmptyImage fills ``[batch_size, height, width, 3]`` with the 0xRRGGBB ``color``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_image, as_mask
from .dynamic import collect, numbered
from .image import MAX_RESOLUTION
from .resample import resize_mask, upscale

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

_BATCH_SLOTS = numbered("image", 50)
_COLORS: dict[str, float | tuple[float, float, float]] = {
    "white": 1.0, "black": 0.0, "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


def _with_channels(image: np.ndarray, channels: int, count: int | None = None) -> np.ndarray:
    """``image`` with ``count`` (default: up to ``channels``) extra channels of 1.0."""
    extra = channels - image.shape[-1] if count is None else count
    return np.concatenate([image, np.ones((*image.shape[:-1], extra), np.float32)], axis=-1) if extra > 0 else image


class BatchImagesNode:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    DESCRIPTION = "Join images into one batch; each is resized (bilinear, center crop) to the first one's size."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        slots = {f"images.{name}": ("IMAGE",) for name in _BATCH_SLOTS}
        first = next(iter(slots))
        return {"required": {first: slots.pop(first)}, "optional": slots}

    def execute(self, **images: Any) -> tuple[np.ndarray]:
        given = collect(images, "images", _BATCH_SLOTS)
        if not given:
            raise ValueError("BatchImagesNode: no image is connected (fix: connect images to images.image0, ...)")
        batch = [as_image(value, "BatchImagesNode", f"images.{name}") for name, value in given]
        most = max(image.shape[-1] for image in batch)
        batch = [_with_channels(image, most, 1) if image.shape[-1] < most else image for image in batch]
        first = batch[0].shape
        out = []
        for (name, _), image in zip(given, batch):
            if image.shape[1:] != first[1:]:
                if image.shape[-1] != first[-1]:
                    raise ValueError(f"BatchImagesNode: images.{name} has {image.shape[-1]} channels and the first "
                                     f"image {first[-1]} (fix: give all images 3 or 4 channels)")
                image = upscale(image, first[2], first[1], "bilinear", "center")
            out.append(image)
        return (np.concatenate(out, axis=0),)


def _same_batch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shorter batch continued with copies of its last image (ComfyUI's ImageStitch)."""
    n = max(len(a), len(b))
    a = np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)]) if len(a) < n else a
    b = np.concatenate([b, np.repeat(b[-1:], n - len(b), axis=0)]) if len(b) < n else b
    return a, b


def _pad_to(image: np.ndarray, size: int, axis: int, value: float) -> np.ndarray:
    missing = size - image.shape[axis]
    if missing <= 0:
        return image
    widths = [(0, 0)] * image.ndim
    widths[axis] = (missing // 2, missing - missing // 2)
    return np.pad(image, widths, constant_values=value)


def _spacing(shape: tuple[int, ...], color: float | tuple[float, float, float]) -> np.ndarray:
    strip = np.zeros(shape, np.float32)
    channels = shape[-1]
    if isinstance(color, tuple):
        for i, c in enumerate(color[:channels]):
            strip[..., i] = c
    else:
        strip[..., :min(3, channels)] = color
    if channels == 4:
        strip[..., 3] = 1.0
    return strip


class ImageStitch:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stitch"
    DESCRIPTION = ("Stitches image2 to image1 in the specified direction.\nIf image2 is not provided, returns image1 "
                   "unchanged.\nOptional spacing can be added between images.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image1": ("IMAGE",), "direction": (["right", "down", "left", "up"], {"default": "right"}),
                             "match_image_size": ("BOOLEAN", {"default": True}),
                             "spacing_width": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 2}),
                             "spacing_color": (list(_COLORS), {"default": "white"})},
                "optional": {"image2": ("IMAGE",)}}

    def stitch(self, image1: Any, direction: str = "right", match_image_size: bool = True, spacing_width: int = 0,
               spacing_color: str = "white", image2: Any = None) -> tuple[np.ndarray]:
        first = as_image(image1, "ImageStitch", "image1")
        if image2 is None:
            return (first,)
        if direction not in ("right", "down", "left", "up") or spacing_color not in _COLORS:
            raise ValueError(f"ImageStitch: direction {direction!r} / spacing_color {spacing_color!r} is not one of "
                             f"the choices (fix: direction right/down/left/up, spacing_color one of {list(_COLORS)})")
        first, second = _same_batch(first, as_image(image2, "ImageStitch", "image2"))
        across = direction in ("left", "right")
        color = _COLORS[spacing_color]
        if match_image_size:
            second = _matched(first, second, across)
        else:  # pad the side that is not joined; tuple colors pad with 0.0, as ComfyUI does
            axis, value = (1 if across else 2), (color if isinstance(color, float) else 0.0)
            size = max(first.shape[axis], second.shape[axis])
            first, second = _pad_to(first, size, axis, value), _pad_to(second, size, axis, value)
        channels = max(first.shape[-1], second.shape[-1])
        parts = [_with_channels(first, channels), _with_channels(second, channels)]
        if direction in ("left", "up"):
            parts.reverse()
        if spacing_width > 0:
            width = spacing_width + spacing_width % 2
            side = max(first.shape[1 if across else 2], second.shape[1 if across else 2])
            shape = (len(first), side, width, channels) if across else (len(first), width, side, channels)
            parts.insert(1, _spacing(shape, color))
        return (np.concatenate(parts, axis=2 if across else 1),)


def _matched(first: np.ndarray, second: np.ndarray, across: bool) -> np.ndarray:
    h1, w1 = first.shape[1:3]
    h2, w2 = second.shape[1:3]
    aspect = w2 / h2
    width, height = (int(h1 * aspect), h1) if across else (w1, int(w1 / aspect))
    if width < 1 or height < 1:
        raise ValueError(f"ImageStitch: image2 ({w2}x{h2}) matched to image1 ({w1}x{h1}) would be {width}x{height} "
                         "(fix: turn match_image_size off, or use images of closer aspect ratios)")
    return upscale(second, width, height, "lanczos")


class JoinImageWithAlpha:
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    DESCRIPTION = "RGB of the image with 1 - alpha (resized to the image) as its alpha channel."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "alpha": ("MASK",)}}

    def execute(self, image: Any, alpha: Any) -> tuple[np.ndarray]:
        images = as_image(image, "JoinImageWithAlpha")
        masks = as_mask(alpha, "JoinImageWithAlpha", "alpha")
        n = min(len(images), len(masks))
        opacity = 1.0 - resize_mask(masks[:n], images.shape[2], images.shape[1])
        return (np.concatenate([images[:n, ..., :3], opacity[..., None]], axis=-1).astype(np.float32),)


class EmptyImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    DESCRIPTION = "A batch of images of one color (0xRRGGBB)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        side = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"width": ("INT", side), "height": ("INT", dict(side)),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                             "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"})}}

    def generate(self, width: int, height: int, batch_size: int = 1, color: int = 0) -> tuple[np.ndarray]:
        for name, value, hi in (("width", width, MAX_RESOLUTION), ("height", height, MAX_RESOLUTION),
                                ("batch_size", batch_size, 4096)):
            if not 1 <= value <= hi:
                raise ValueError(f"EmptyImage: {name} = {value} is out of range (fix: use 1..{hi})")
        if not 0 <= color <= 0xFFFFFF:
            raise ValueError(f"EmptyImage: color = {color} is not a 0xRRGGBB color (fix: use 0..16777215)")
        # ComfyUI divides in Python floats, then torch.full stores float32
        rgb = np.array([((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)], np.float32)
        return (np.broadcast_to(rgb, (batch_size, height, width, 3)).copy(),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "BatchImagesNode": BatchImagesNode,
    "ImageStitch": ImageStitch,
    "JoinImageWithAlpha": JoinImageWithAlpha,
    "EmptyImage": EmptyImage,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "BatchImagesNode": "Batch Images",
    "ImageStitch": "Stitch Images",
    "JoinImageWithAlpha": "Join Image with Alpha",
}
