"""Image sizing, batching and geometry nodes, as ComfyUI declares and computes them.

ComfyUI's ``nodes.py`` (ImageScaleBy, ImageBatch, ImagePadForOutpaint) and
``comfy_extras/nodes_images.py`` / ``nodes_post_processing.py`` (ImageCrop, ImageFromBatch,
GetImageSize, ImageScaleToMaxDimension, ImageScaleToTotalPixels; V3 schemas translated to
``INPUT_TYPES``): same type names, display names, categories, inputs in widget order,
defaults and ranges. Every resize goes through ``resample.upscale`` (``common_upscale``).

Out-of-range offsets are clamped the way ComfyUI clamps them (ImageCrop moves ``x``/``y``
inside the image; ImageFromBatch shortens ``length``). A size that would come out empty
(``scale_by`` so small that a side rounds to 0) is a ``ValueError`` naming the input and the
fix, where ComfyUI fails inside torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import context
from .arrays import as_image
from .image import MAX_RESOLUTION
from .resample import METHODS, upscale

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]


def _size(value: int, name: str, node: str) -> int:
    if value < 1:
        raise ValueError(f"{node}: the resized {name} comes out as {value} px (fix: scale by more, "
                         "or start from a larger image)")
    return value


class ImageScaleBy:
    upscale_methods = list(METHODS)
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = "Resize images by a factor (each side rounded to whole pixels)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.upscale_methods,),
                             "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, image: Any, upscale_method: str, scale_by: float) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageScaleBy")
        width = _size(round(batch.shape[2] * scale_by), "width", "ImageScaleBy")
        height = _size(round(batch.shape[1] * scale_by), "height", "ImageScaleBy")
        return (upscale(batch, width, height, upscale_method),)


class ImageScaleToTotalPixels:
    upscale_methods = list(METHODS)
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = "Resize images to about `megapixels` x 1024 x 1024 pixels, keeping the aspect ratio."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "image": ("IMAGE",), "upscale_method": (cls.upscale_methods,),
            "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}),
            "resolution_steps": ("INT", {"default": 1, "min": 1, "max": 256}),
        }}

    def upscale(self, image: Any, upscale_method: str, megapixels: float,
                resolution_steps: int = 1) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageScaleToTotalPixels")
        height, width = batch.shape[1:3]
        scale_by = math.sqrt(megapixels * 1024 * 1024 / (width * height))
        # ComfyUI rounds each side to a multiple of resolution_steps (1: whole pixels)
        new_w = round(width * scale_by / resolution_steps) * resolution_steps
        new_h = round(height * scale_by / resolution_steps) * resolution_steps
        node = "ImageScaleToTotalPixels"
        return (upscale(batch, _size(new_w, "width", node), _size(new_h, "height", node), upscale_method),)


class ImageScaleToMaxDimension:
    # ComfyUI lists "bilinear" twice in this node's choices; kept, so saved workflows match.
    upscale_methods = ["area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic"]
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = "Resize images so that the longer side is `largest_size`, keeping the aspect ratio."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.upscale_methods,),
                             "largest_size": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def upscale(self, image: Any, upscale_method: str, largest_size: int) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageScaleToMaxDimension")
        height, width = batch.shape[1:3]
        if height > width:
            width, height = round(width / height * largest_size), largest_size
        elif width > height:
            width, height = largest_size, round(height / width * largest_size)
        else:
            width = height = largest_size
        node = "ImageScaleToMaxDimension"
        return (upscale(batch, _size(width, "width", node), _size(height, "height", node), upscale_method),)


def _pad_alpha(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image, np.ones((*image.shape[:3], 1), np.float32)], axis=-1)


class ImageBatch:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    DESCRIPTION = "Join two image batches; image2 is resized (bilinear, center crop) to image1's size."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1: Any, image2: Any) -> tuple[np.ndarray]:
        first, second = as_image(image1, "ImageBatch", "image1"), as_image(image2, "ImageBatch", "image2")
        # ComfyUI adds one opaque alpha channel to the image with fewer channels (RGB + RGBA)
        if first.shape[-1] != second.shape[-1]:
            if first.shape[-1] > second.shape[-1]:
                second = _pad_alpha(second)
            else:
                first = _pad_alpha(first)
        if first.shape[-1] != second.shape[-1]:
            raise ValueError(f"ImageBatch: image1 has {first.shape[-1]} channels and image2 {second.shape[-1]} "
                             "(fix: batch images that are both RGB or RGBA)")
        if first.shape[1:] != second.shape[1:]:
            second = upscale(second, first.shape[2], first.shape[1], "bilinear", "center")
        return (np.concatenate([first, second], axis=0),)


class ImageFromBatch:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "frombatch"
    DESCRIPTION = "Take `length` images starting at `batch_index` (both clamped to the batch)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",),
                             "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095}),
                             "length": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def frombatch(self, image: Any, batch_index: int, length: int) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageFromBatch")
        start = min(batch.shape[0] - 1, batch_index)
        length = min(batch.shape[0] - start, length)
        return (batch[start:start + length].copy(),)


class ImageCrop:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"
    DESCRIPTION = "Cut a width x height rectangle at (x, y); x and y are moved inside the image."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        def size(default: int, lo: int) -> tuple[str, dict[str, int]]:
            return ("INT", {"default": default, "min": lo, "max": MAX_RESOLUTION, "step": 1})

        return {"required": {"image": ("IMAGE",), "width": size(512, 1), "height": size(512, 1),
                             "x": size(0, 0), "y": size(0, 0)}}

    def crop(self, image: Any, width: int, height: int, x: int, y: int) -> tuple[np.ndarray]:
        batch = as_image(image, "ImageCrop")
        x, y = min(x, batch.shape[2] - 1), min(y, batch.shape[1] - 1)
        return (batch[:, y:y + height, x:x + width, :].copy(),)


def outpaint_mask(height: int, width: int, pads: tuple[int, int, int, int], feathering: int) -> np.ndarray:
    """ImagePadForOutpaint's ``[1, H', W']`` mask: 1 in the new border, a squared ramp inside.

    Inside the old image a pixel at distance ``d`` from a padded side (sides not padded do not
    count) gets ``((feathering - d) / feathering) ** 2`` when ``d < feathering``; ComfyUI
    feathers only if ``2 * feathering`` is smaller than both sides.
    """
    left, top, right, bottom = pads
    inner = np.zeros((height, width), np.float32)
    if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
        i, j = np.arange(height)[:, None], np.arange(width)[None, :]
        d = np.minimum.reduce(np.broadcast_arrays(
            i if top else np.full_like(i, height), height - i if bottom else np.full_like(i, height),
            j if left else np.full_like(j, width), width - j if right else np.full_like(j, width)))
        ramp = (feathering - d) / feathering
        inner = np.where(d < feathering, ramp * ramp, 0.0).astype(np.float32)
    mask = np.ones((height + top + bottom, width + left + right), np.float32)
    mask[top:top + height, left:left + width] = inner
    return mask[None]


class ImagePadForOutpaint:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"
    DESCRIPTION = "Add borders of grey (0.5) for outpainting; MASK marks them, feathered into the image."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        pad = ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8})
        return {"required": {"image": ("IMAGE",), "left": pad, "top": pad, "right": pad, "bottom": pad,
                             "feathering": ("INT", {"default": 40, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def expand_image(self, image: Any, left: int, top: int, right: int, bottom: int,
                     feathering: int) -> tuple[np.ndarray, np.ndarray]:
        batch = as_image(image, "ImagePadForOutpaint")
        b, h, w, c = batch.shape
        out = np.full((b, h + top + bottom, w + left + right, c), 0.5, np.float32)
        out[:, top:top + h, left:left + w, :] = batch
        return out, outpaint_mask(h, w, (left, top, right, bottom), feathering)


class GetImageSize:
    CATEGORY = "image"
    RETURN_TYPES = ("INT", "INT", "INT")
    RETURN_NAMES = ("width", "height", "batch_size")
    FUNCTION = "get_size"
    DESCRIPTION = "The width, height and batch size of an image (also shown on the node)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    def get_size(self, image: Any, unique_id: Any = None) -> tuple[int, int, int]:
        batch, height, width = as_image(image, "GetImageSize").shape[:3]
        # ComfyUI shows this text on the node (send_progress_text); ours goes with progress
        context.current().progress(1, 1, text=f"width: {width}, height: {height}\n batch size: {batch}")
        return width, height, batch


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ImageScaleBy": ImageScaleBy,
    "ImageScaleToTotalPixels": ImageScaleToTotalPixels,
    "ImageScaleToMaxDimension": ImageScaleToMaxDimension,
    "ImageBatch": ImageBatch,
    "ImageFromBatch": ImageFromBatch,
    "ImageCrop": ImageCrop,
    "ImagePadForOutpaint": ImagePadForOutpaint,
    "GetImageSize": GetImageSize,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageScaleBy": "Upscale Image By",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
    "ImageBatch": "Batch Images",
    "ImageCrop": "Crop Image",
    "ImagePadForOutpaint": "Pad Image for Outpainting",
    "GetImageSize": "Get Image Size",
}
