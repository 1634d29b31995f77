"""Resizing nodes of ComfyUI's ``nodes_post_processing.py`` and ``nodes_images.py``:
ResizeImageMaskNode ("Resize Image/Mask") and ResizeAndPadImage.

ResizeImageMaskNode takes an IMAGE or a MASK (and gives back the same kind) and a
``resize_type`` -- a DynamicCombo: each choice has its own settings, named
``resize_type.<setting>`` as in ComfyUI's API prompts (see ``dynamic``):

================================  ===========================================================
``scale dimensions``              ``width`` x ``height``; 0 keeps the aspect ratio; ``crop``
``scale by multiplier``           ``round(side * multiplier)``
``scale longer dimension``        the longer side to ``longer_size``, aspect kept
``scale shorter dimension``       the shorter side to ``shorter_size``, aspect kept
``scale width`` / ``scale height``  one side, the other follows the aspect ratio
``scale total pixels``            ``megapixels`` (x 1024 x 1024), sides rounded to ``multiple``
``match size``                    the size of ``match`` (an image or mask), with ``crop``
``scale to multiple``             the smallest cover of the floor-multiples, center-cut
================================  ===========================================================

All resizing is ``resample.upscale`` (ComfyUI's ``common_upscale``), with ``scale_method``.

ResizeAndPadImage fits an image inside ``target_width`` x ``target_height`` (sides truncated,
as ComfyUI's ``int()``), centered on white or black.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arrays import as_image, as_mask
from .dynamic import option_inputs
from .image import MAX_RESOLUTION
from .resample import METHODS, upscale

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

_CROPS = ["disabled", "center"]
_SIDE = {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}
_CROP = (_CROPS, {"default": "center"})
_MULTIPLE = ("INT", {"default": 1, "min": 1, "max": MAX_RESOLUTION, "step": 1})

#: ComfyUI's resize types, in its order, with the settings each shows (in the frontend's order).
OPTIONS: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
    "scale dimensions": [("width", ("INT", _SIDE)), ("height", ("INT", _SIDE)), ("crop", _CROP)],
    "scale by multiplier": [("multiplier", ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}))],
    "scale longer dimension": [("longer_size", ("INT", _SIDE))],
    "scale shorter dimension": [("shorter_size", ("INT", _SIDE))],
    "scale width": [("width", ("INT", _SIDE))],
    "scale height": [("height", ("INT", _SIDE))],
    "scale total pixels": [("megapixels", ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01})),
                           ("multiple", _MULTIPLE)],
    "match size": [("match", ("IMAGE,MASK",)), ("crop", _CROP)],
    "scale to multiple": [("multiple", ("INT", {**_MULTIPLE[1], "default": 8}))],
}


def _resized(array: np.ndarray, width: int, height: int, method: str, crop: str = "disabled") -> np.ndarray:
    """``common_upscale`` of an image ``[B, H, W, C]`` or a mask ``[B, H, W]``."""
    if width < 1 or height < 1:
        raise ValueError(f"ResizeImageMaskNode: the target size {width}x{height} is empty "
                         "(fix: choose settings that give at least 1x1 pixels)")
    if array.ndim == 3:
        return upscale(array[..., None], width, height, method, crop)[..., 0]
    return upscale(array, width, height, method, crop)


def _as_image_or_mask(value: Any, name: str) -> np.ndarray:
    ndim = getattr(value, "ndim", None)
    if ndim is None:
        ndim = np.asarray(value).ndim
    return as_image(value, "ResizeImageMaskNode", name) if ndim == 4 else as_mask(value, "ResizeImageMaskNode", name)


def _keep_aspect(h: int, w: int, target: int, longer: bool) -> tuple[int, int]:
    """(width, height) with the longer (or shorter) side set to ``target``."""
    if (h > w) == longer and h != w:
        return round(w / h * target), target
    if h != w:
        return target, round(h / w * target)
    return target, target


def _dimensions(x: np.ndarray, width: int, height: int, method: str, crop: str = "disabled") -> np.ndarray:
    if width == 0 and height == 0:
        return x
    h, w = x.shape[1:3]
    if width == 0:
        width = max(1, round(w * height / h))
    elif height == 0:
        height = max(1, round(h * width / w))
    return _resized(x, width, height, method, crop)


def _to_multiple(x: np.ndarray, multiple: int, method: str) -> np.ndarray:
    """ComfyUI's ``scale_to_multiple_cover``: scale to cover the floor-multiples, cut the middle."""
    h, w = x.shape[1:3]
    tw, th = (w // multiple) * multiple, (h // multiple) * multiple
    if multiple <= 1 or tw == 0 or th == 0 or (tw, th) == (w, h):
        return x
    sw, sh = tw / w, th / h
    if sw >= sh:
        width, height = tw, max(math.ceil(h * sw), th)
    else:
        width, height = max(math.ceil(w * sh), tw), th
    out = _resized(x, width, height, method)
    x0, y0 = (width - tw) // 2, (height - th) // 2
    return out[:, y0:y0 + th, x0:x0 + tw]


def _total_pixels(x: np.ndarray, megapixels: float, multiple: int, method: str) -> np.ndarray:
    h, w = x.shape[1:3]
    scale = math.sqrt(int(megapixels * 1024 * 1024) / (w * h))
    width = max(1, round(w * scale / multiple)) * multiple
    height = max(1, round(h * scale / multiple)) * multiple
    return _resized(x, width, height, method)


class ResizeImageMaskNode:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE,MASK",)
    RETURN_NAMES = ("resized",)
    FUNCTION = "execute"
    DESCRIPTION = "Resize an image or mask using various scaling methods."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # UI files hold [resize_type, <the chosen option's settings>, scale_method]. Read in
        # declaration order, that fits "scale dimensions" (the most used) only, so scale_method
        # follows its three settings; shown_when places the rest (see ``dynamic``).
        settings = list(option_inputs("resize_type", OPTIONS).items())
        method = ("scale_method", (list(METHODS), {"default": "area"}))
        return {"required": {"input": ("IMAGE,MASK",), "resize_type": (list(OPTIONS),)},
                "optional": dict([*settings[:3], method, *settings[3:]])}

    def execute(self, input: Any, resize_type: str, scale_method: str = "area", **settings: Any) -> tuple[np.ndarray]:
        if resize_type not in OPTIONS:
            raise ValueError(f"ResizeImageMaskNode: resize_type {resize_type!r} is not one of {list(OPTIONS)} "
                             "(fix: pick one of them)")
        x = _as_image_or_mask(input, "input")
        s = {name: settings.get(f"resize_type.{name}", decl[1].get("default") if len(decl) > 1 else None)
             for name, decl in OPTIONS[resize_type]}
        return (self._resize(x, resize_type, s, scale_method),)

    def _resize(self, x: np.ndarray, kind: str, s: dict[str, Any], method: str) -> np.ndarray:
        h, w = x.shape[1:3]
        if kind == "scale by multiplier":
            return _resized(x, round(w * s["multiplier"]), round(h * s["multiplier"]), method)
        if kind == "scale dimensions":
            return _dimensions(x, s["width"], s["height"], method, s["crop"])
        if kind in ("scale longer dimension", "scale shorter dimension"):
            longer = kind == "scale longer dimension"
            return _resized(x, *_keep_aspect(h, w, s["longer_size" if longer else "shorter_size"], longer), method)
        if kind == "scale width":
            return _dimensions(x, s["width"], 0, method)
        if kind == "scale height":
            return _dimensions(x, 0, s["height"], method)
        if kind == "scale total pixels":
            return _total_pixels(x, s["megapixels"], s["multiple"], method)
        if kind == "match size":
            if s["match"] is None:
                raise ValueError("ResizeImageMaskNode: resize_type 'match size' needs the input "
                                 "'resize_type.match' (fix: connect the image or mask to match)")
            mh, mw = _as_image_or_mask(s["match"], "resize_type.match").shape[1:3]
            return _resized(x, mw, mh, method, s["crop"])
        return _to_multiple(x, s["multiple"], method)


class ResizeAndPadImage:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    DESCRIPTION = "Fit an image inside the target size, keeping its aspect ratio, and pad the rest."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        side = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"image": ("IMAGE",), "target_width": ("INT", side), "target_height": ("INT", dict(side)),
                             "padding_color": (["white", "black"],),
                             "interpolation": (["area", "bicubic", "nearest-exact", "bilinear", "lanczos"],)}}

    def execute(self, image: Any, target_width: int, target_height: int, padding_color: str = "white",
                interpolation: str = "area") -> tuple[np.ndarray]:
        batch = as_image(image, "ResizeAndPadImage")
        b, h, w, c = batch.shape
        scale = min(target_width / w, target_height / h)
        new_w, new_h = int(w * scale), int(h * scale)
        if new_w < 1 or new_h < 1:
            raise ValueError(f"ResizeAndPadImage: a {w}x{h} image fitted into {target_width}x{target_height} "
                             f"becomes {new_w}x{new_h} (fix: use a target closer to the image's aspect ratio)")
        resized = upscale(batch, new_w, new_h, interpolation)
        out = np.full((b, target_height, target_width, c), 0.0 if padding_color == "black" else 1.0, np.float32)
        y, x = (target_height - new_h) // 2, (target_width - new_w) // 2
        out[:, y:y + new_h, x:x + new_w] = resized
        return (out,)


NODE_CLASS_MAPPINGS: dict[str, type] = {"ResizeImageMaskNode": ResizeImageMaskNode, "ResizeAndPadImage": ResizeAndPadImage}
NODE_DISPLAY_NAME_MAPPINGS = {"ResizeImageMaskNode": "Resize Image/Mask", "ResizeAndPadImage": "Resize And Pad Image"}
