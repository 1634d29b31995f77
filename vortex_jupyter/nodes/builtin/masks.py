"""Mask nodes and masked compositing, as ComfyUI's ``nodes.py`` and ``comfy_extras/nodes_mask.py``.

MASK is float32 ``[B, H, W]``; every node first reshapes its mask input to that (ComfyUI's
``mask.reshape((-1, H, W))``), so ``[H, W]`` masks from older nodes work too. Semantics
kept exactly, quirks included (each is commented where it happens):

- LoadImageMask reads the first frame, converts to RGBA and takes one channel; "alpha" is
  inverted (transparent = 1), as LoadImage's mask is.
- GrowMask dilates (``expand > 0``) or erodes (``< 0``) ``|expand|`` times with a 3x3 cross
  (``tapered_corners``) or square; the border repeats the edge pixel (scipy's grey
  morphology, which ComfyUI calls, reflects at the border, which for a 3x3 window is the same).
- FeatherMask multiplies the first ``left`` columns by ``(x + 1) / left`` etc. ComfyUI indexes
  the right and bottom ramps with ``-x``, so x = 0 hits the *first* column/row: reproduced.
- MaskComposite places ``source`` at (x, y) and combines the overlap; and/or/xor round to 0/1
  first; the result is clamped to [0, 1].
- ImageCompositeMasked pastes ``source`` at (x, y), weighted by ``mask`` (resized bilinearly to
  the source), optionally resizing the source to the destination first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import ImageOps

from .arrays import as_image, as_mask, repeat_to_batch
from .filters import alpha_fix
from .image import MAX_RESOLUTION, LoadImage, open_input_image
from .resample import resize_mask, upscale

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "composite", "grow"]

_XY = ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1})
_SIZE = ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1})


class _MaskNode:
    CATEGORY = "mask"
    RETURN_TYPES: tuple[str, ...] = ("MASK",)


class LoadImageMask(LoadImage):
    _color_channels = ["alpha", "red", "green", "blue"]
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)  # type: ignore[assignment]
    FUNCTION = "load_image"
    DESCRIPTION = "Load one channel of an image from the input folder as a mask (alpha is inverted)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        required = super().INPUT_TYPES()["required"]
        return {"required": {**required, "channel": (cls._color_channels,)}}

    def load_image(self, image: str, channel: str = "alpha") -> tuple[np.ndarray]:  # type: ignore[override]
        # the file as LoadImage opens it (no symlink below the input root); the first frame only, as ComfyUI
        with open_input_image("LoadImageMask", image) as opened:
            frame = ImageOps.exif_transpose(opened)
            if frame.getbands() != ("R", "G", "B", "A"):
                if frame.mode == "I" or frame.mode.startswith("I;16"):
                    frame = frame.convert("I").point(lambda v: v * (1 / 255))  # 16-bit: ComfyUI's /255
                frame = frame.convert("RGBA")
            band = channel[:1].upper()
            mask = np.asarray(frame.getchannel(band), dtype=np.float32) / np.float32(255.0)
        return ((1.0 - mask if band == "A" else mask)[None],)


class ImageToMask(_MaskNode):
    channels = ["red", "green", "blue", "alpha"]
    FUNCTION = "image_to_mask"
    DESCRIPTION = "One channel of an image as a mask."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "channel": (cls.channels,)}}

    def image_to_mask(self, image: Any, channel: str) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageToMask")
        index = self.channels.index(channel)
        if index >= batch.shape[-1]:
            raise ValueError(f"ImageToMask: channel {channel!r} does not exist in an image with "
                             f"{batch.shape[-1]} channels (fix: pick red, green or blue, or load the image with alpha)")
        return (batch[..., index].copy(),)


class MaskToImage(_MaskNode):
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"
    DESCRIPTION = "A mask as a grey RGB image."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask: Any) -> tuple[np.ndarray]:
        return (np.repeat(as_mask(mask, "MaskToImage")[..., None], 3, axis=-1),)


class InvertMask(_MaskNode):
    FUNCTION = "invert"
    DESCRIPTION = "1 - mask."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask: Any) -> tuple[np.ndarray]:
        return (1.0 - as_mask(mask, "InvertMask"),)


class SolidMask(_MaskNode):
    FUNCTION = "solid"
    DESCRIPTION = "A width x height mask filled with one value."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "width": _SIZE, "height": _SIZE}}

    def solid(self, value: float, width: int, height: int) -> tuple[np.ndarray]:
        return (np.full((1, height, width), value, np.float32),)


class ThresholdMask(_MaskNode):
    FUNCTION = "image_to_mask"
    DESCRIPTION = "1 where the mask is above `value`, else 0."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",),
                             "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def image_to_mask(self, mask: Any, value: float) -> tuple[np.ndarray]:
        return ((as_mask(mask, "ThresholdMask") > value).astype(np.float32),)


class CropMask(_MaskNode):
    FUNCTION = "crop"
    DESCRIPTION = "Cut a width x height rectangle at (x, y) out of the mask."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",), "x": _XY, "y": _XY, "width": _SIZE, "height": _SIZE}}

    def crop(self, mask: Any, x: int, y: int, width: int, height: int) -> tuple[np.ndarray]:
        return (as_mask(mask, "CropMask")[:, y:y + height, x:x + width].copy(),)


def grow(mask: np.ndarray, expand: int, tapered_corners: bool) -> np.ndarray:
    """``|expand|`` steps of 3x3 grey dilation (or erosion if negative), edge pixels repeated."""
    pick = np.maximum if expand > 0 else np.minimum
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if not (tapered_corners and dy and dx)]  # tapered: a cross, no diagonals
    out = mask
    for _ in range(abs(expand)):
        padded = np.pad(out, ((0, 0), (1, 1), (1, 1)), mode="edge")
        height, width = out.shape[1:]
        grown = out.copy()
        for dy, dx in offsets:
            grown = pick(grown, padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width])
        if np.array_equal(grown, out):
            break  # a fixed point: further steps change nothing (e.g. an all-ones mask)
        out = grown
    return out.astype(np.float32, copy=False)


class GrowMask(_MaskNode):
    FUNCTION = "expand_mask"
    DESCRIPTION = "Dilate (expand > 0) or erode (expand < 0) a mask by whole pixels."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",),
                             "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
                             "tapered_corners": ("BOOLEAN", {"default": True})}}

    def expand_mask(self, mask: Any, expand: int, tapered_corners: bool) -> tuple[np.ndarray]:
        return (grow(as_mask(mask, "GrowMask"), expand, tapered_corners),)


class FeatherMask(_MaskNode):
    FUNCTION = "feather"
    DESCRIPTION = "Fade the mask linearly towards each edge over the given number of pixels."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",), "left": _XY, "top": _XY, "right": _XY, "bottom": _XY}}

    def feather(self, mask: Any, left: int, top: int, right: int, bottom: int) -> tuple[np.ndarray]:
        out = as_mask(mask, "FeatherMask").copy()
        height, width = out.shape[1:]
        left, right, top, bottom = min(left, width), min(right, width), min(top, height), min(bottom, height)
        # Same multiplications in the same order as ComfyUI (float32 in place); its right and
        # bottom ramps index with -x, so x = 0 scales column/row 0 and the last one gets 2/n.
        for x in range(left):
            out[:, :, x] *= np.float32((x + 1.0) / left)
        for x in range(right):
            out[:, :, -x] *= np.float32((x + 1) / right)
        for y in range(top):
            out[:, y, :] *= np.float32((y + 1) / top)
        for y in range(bottom):
            out[:, -y, :] *= np.float32((y + 1) / bottom)
        return (out,)


_OPERATIONS = {
    "multiply": lambda d, s: d * s,
    "add": lambda d, s: d + s,
    "subtract": lambda d, s: d - s,
    "and": lambda d, s: (np.round(d) != 0) & (np.round(s) != 0),
    "or": lambda d, s: (np.round(d) != 0) | (np.round(s) != 0),
    "xor": lambda d, s: (np.round(d) != 0) ^ (np.round(s) != 0),
}


class MaskComposite(_MaskNode):
    FUNCTION = "combine"
    DESCRIPTION = "Combine source into destination at (x, y): multiply, add, subtract, and, or, xor."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"destination": ("MASK",), "source": ("MASK",), "x": _XY, "y": _XY,
                             "operation": (list(_OPERATIONS),)}}

    def combine(self, destination: Any, source: Any, x: int, y: int, operation: str) -> tuple[np.ndarray]:
        out = as_mask(destination, "MaskComposite", "destination").copy()
        src = as_mask(source, "MaskComposite", "source")
        if src.shape[0] not in (1, out.shape[0]):
            raise ValueError(f"MaskComposite: destination has {out.shape[0]} masks and source {src.shape[0]} "
                             "(fix: combine batches of the same size, or a single source mask)")
        right, bottom = min(x + src.shape[2], out.shape[2]), min(y + src.shape[1], out.shape[1])
        src = src[:, :max(bottom - y, 0), :max(right - x, 0)]
        out[:, y:bottom, x:right] = _OPERATIONS[operation](out[:, y:bottom, x:right], src)
        return (np.clip(out, 0.0, 1.0),)


def composite(destination: np.ndarray, source: np.ndarray, x: int, y: int, mask: np.ndarray | None,
              resize_source: bool) -> np.ndarray:
    """ComfyUI's ``composite`` (multiplier 1) on ``[B, H, W, C]``: ``source`` pasted at (x, y) >= 0.

    The source is cut or tiled to the destination's batch, the mask resized (bilinear) to the
    source and tiled likewise; what falls outside the destination is dropped.
    """
    if resize_source:
        source = upscale(source, destination.shape[2], destination.shape[1], "bilinear")
    source = repeat_to_batch(source, destination.shape[0])
    batch, src_h, src_w = source.shape[:3]
    x, y = min(x, destination.shape[2]), min(y, destination.shape[1])
    if mask is None:
        weight = np.ones_like(source)
    else:
        weight = repeat_to_batch(resize_mask(mask, src_w, src_h), batch)[..., None]
    visible_w, visible_h = destination.shape[2] - x, destination.shape[1] - y
    weight, part = weight[:, :visible_h, :visible_w], source[:, :visible_h, :visible_w]
    out = destination.copy()
    region = out[:, y:y + src_h, x:x + src_w]
    out[:, y:y + src_h, x:x + src_w] = weight * part + (1 - weight) * region
    return out


class ImageCompositeMasked:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"
    DESCRIPTION = "Paste source onto destination at (x, y), weighted by an optional mask."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"destination": ("IMAGE",), "source": ("IMAGE",), "x": _XY, "y": _XY,
                             "resize_source": ("BOOLEAN", {"default": False})},
                "optional": {"mask": ("MASK",)}}

    def composite(self, destination: Any, source: Any, x: int, y: int, resize_source: bool,
                  mask: Any = None) -> tuple[np.ndarray]:
        node = "ImageCompositeMasked"
        if x < 0 or y < 0:
            raise ValueError(f"{node}: x={x}, y={y}; offsets must be >= 0 (fix: move the source inside)")
        dest, src = alpha_fix(as_image(destination, node, "destination"), as_image(source, node, "source"))
        weights = None if mask is None else as_mask(mask, node)
        return (composite(dest, src, x, y, weights, resize_source),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LoadImageMask": LoadImageMask,
    "ImageToMask": ImageToMask,
    "MaskToImage": MaskToImage,
    "InvertMask": InvertMask,
    "SolidMask": SolidMask,
    "GrowMask": GrowMask,
    "FeatherMask": FeatherMask,
    "MaskComposite": MaskComposite,
    "CropMask": CropMask,
    "ThresholdMask": ThresholdMask,
    "ImageCompositeMasked": ImageCompositeMasked,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadImageMask": "Load Image (as Mask)",
    "ImageToMask": "Convert Image to Mask",
    "MaskToImage": "Convert Mask to Image",
    "InvertMask": "Invert Mask",
    "SolidMask": "Solid Mask",
    "GrowMask": "Grow Mask",
    "FeatherMask": "Feather Mask",
    "MaskComposite": "Mask Composite",
    "CropMask": "Crop Mask",
    "ThresholdMask": "Threshold Mask",
    "ImageCompositeMasked": "Image Composite Masked",
}
