"""Conditioning nodes: text encoding and the edits ComfyUI offers on CONDITIONING values.

A CONDITIONING is a list of ``[embedding, options]`` pairs. Combine concatenates the lists (each
pair is evaluated on its own and the predictions averaged, by weight, per pixel); Concat joins
embeddings along the token axis (one prompt, longer); Average blends two embeddings; SetArea,
SetAreaPercentage, SetAreaStrength, SetMask and SetTimestepRange add options that the sampler
honours (``conds``); ZeroOut zeroes the embedding (and pooled output). Options are copied,
never edited in place: the input CONDITIONING stays valid for other nodes.
"""

from __future__ import annotations

import logging
from typing import Any

from .node_base import MAX_RESOLUTION, Heavy

_LOG = logging.getLogger(__name__)
_COND = ("CONDITIONING",)
_STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})


def set_values(conditioning: Any, values: dict[str, Any]) -> list[list[Any]]:
    """A copy of ``conditioning`` with ``values`` set in every entry's options."""
    return [[embedding, {**options, **values}] for embedding, options in _pairs(conditioning)]


def _pairs(conditioning: Any, name: str = "conditioning") -> list[tuple[Any, dict[str, Any]]]:
    if not isinstance(conditioning, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[1], dict) for p in conditioning):
        raise ValueError(f"input {name!r} is not a CONDITIONING (fix: connect a CLIPTextEncode or another "
                         "conditioning output)")
    return [(p[0], p[1]) for p in conditioning]


class CLIPTextEncode(Heavy):
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "clip": ("CLIP",)}}

    def encode(self, clip: Any, text: str) -> tuple[Any]:
        from .text import encode_text

        return (encode_text(clip, text),)


class CLIPTextEncodeSDXL(Heavy):
    """ComfyUI's CLIPTextEncodeSDXL: ``text_g`` through OpenCLIP-G, ``text_l`` through CLIP-L, and
    the size conditioning the SDXL UNet reads (``conds.sdxl_added``) in the options."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 0, "max": MAX_RESOLUTION}
        crop = {"default": 0, "min": 0, "max": MAX_RESOLUTION}
        text = ("STRING", {"multiline": True, "dynamicPrompts": True})
        return {"required": {"clip": ("CLIP",), "width": ("INT", size), "height": ("INT", size),
                             "crop_w": ("INT", crop), "crop_h": ("INT", crop), "target_width": ("INT", size),
                             "target_height": ("INT", size), "text_g": text, "text_l": text}}

    def encode(self, clip: Any, width: int, height: int, crop_w: int, crop_h: int, target_width: int,
               target_height: int, text_g: str, text_l: str) -> tuple[Any]:
        from .text import encode_sdxl

        size = {"width": width, "height": height, "crop_w": crop_w, "crop_h": crop_h,
                "target_width": target_width, "target_height": target_height}
        return (set_values(encode_sdxl(clip, text_g, text_l), size),)


class CLIPTextEncodeSDXLRefiner(Heavy):
    """ComfyUI's CLIPTextEncodeSDXLRefiner: the text through the refiner's OpenCLIP-G, with the
    aesthetic score and size the refiner UNet reads (``conds.refiner_added``) in the options."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 0, "max": MAX_RESOLUTION}
        return {"required": {"ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
                             "width": ("INT", size), "height": ("INT", size),
                             "text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)}}

    def encode(self, clip: Any, ascore: float, width: int, height: int, text: str) -> tuple[Any]:
        from .text import encode_text

        values = {"aesthetic_score": ascore, "width": width, "height": height}
        return (set_values(encode_text(clip, text), values),)


class _Edit(Heavy):
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply"


class ConditioningCombine(_Edit):
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_1": _COND, "conditioning_2": _COND}}

    def combine(self, conditioning_1: Any, conditioning_2: Any) -> tuple[Any]:
        return ([list(p) for p in _pairs(conditioning_1, "conditioning_1") + _pairs(conditioning_2, "conditioning_2")],)


class ConditioningAverage(_Edit):
    FUNCTION = "addWeighted"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_to": _COND, "conditioning_from": _COND,
                             "conditioning_to_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0,
                                                                    "step": 0.01})}}

    def addWeighted(self, conditioning_to: Any, conditioning_from: Any, conditioning_to_strength: float
                    ) -> tuple[Any]:
        import torch

        source = _pairs(conditioning_from, "conditioning_from")
        if len(source) > 1:
            _LOG.warning("ConditioningAverage: conditioning_from has %d entries; only the first is used", len(source))
        cond_from, pooled_from = source[0][0], source[0][1].get("pooled_output")
        w = conditioning_to_strength
        out = []
        for t1, options in _pairs(conditioning_to, "conditioning_to"):
            t0 = cond_from[:, :t1.shape[1]]
            if t0.shape[1] < t1.shape[1]:  # a shorter prompt is padded with zeros, as ComfyUI does
                t0 = torch.cat([t0, torch.zeros((1, t1.shape[1] - t0.shape[1], t1.shape[2]))], dim=1)
            new = dict(options)
            pooled_to = options.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                new["pooled_output"] = torch.mul(pooled_to, w) + torch.mul(pooled_from, 1.0 - w)
            elif pooled_from is not None:
                new["pooled_output"] = pooled_from
            out.append([torch.mul(t1, w) + torch.mul(t0, 1.0 - w), new])
        return (out,)


class ConditioningConcat(_Edit):
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_to": _COND, "conditioning_from": _COND}}

    def concat(self, conditioning_to: Any, conditioning_from: Any) -> tuple[Any]:
        import torch

        source = _pairs(conditioning_from, "conditioning_from")
        if len(source) > 1:
            _LOG.warning("ConditioningConcat: conditioning_from has %d entries; only the first is used", len(source))
        return ([[torch.cat((t1, source[0][0]), 1), dict(o)] for t1, o in _pairs(conditioning_to, "conditioning_to")],)


def _px(default: int, lo: int) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": lo, "max": MAX_RESOLUTION, "step": 8})


def _unit(default: float) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": 0, "max": 1.0, "step": 0.01})


class ConditioningSetArea(_Edit):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND, "width": _px(64, 64), "height": _px(64, 64), "x": _px(0, 0),
                             "y": _px(0, 0), "strength": _STRENGTH}}

    def apply(self, conditioning: Any, width: int, height: int, x: int, y: int, strength: float) -> tuple[Any]:
        area = (height // 8, width // 8, y // 8, x // 8)  # latent units (h, w, y, x)
        return (set_values(conditioning, {"area": area, "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaPercentage(_Edit):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND, "width": _unit(1.0), "height": _unit(1.0), "x": _unit(0),
                             "y": _unit(0), "strength": _STRENGTH}}

    def apply(self, conditioning: Any, width: float, height: float, x: float, y: float, strength: float
              ) -> tuple[Any]:
        area = ("percentage", height, width, y, x)
        return (set_values(conditioning, {"area": area, "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaStrength(_Edit):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND, "strength": _STRENGTH}}

    def apply(self, conditioning: Any, strength: float) -> tuple[Any]:
        return (set_values(conditioning, {"strength": strength}),)


class ConditioningSetMask(_Edit):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND, "mask": ("MASK",), "strength": _STRENGTH,
                             "set_cond_area": (["default", "mask bounds"],)}}

    def apply(self, conditioning: Any, mask: Any, strength: float, set_cond_area: str) -> tuple[Any]:
        import torch

        m = torch.as_tensor(mask, dtype=torch.float32)
        if m.ndim < 3:
            m = m.unsqueeze(0)
        if m.ndim != 3:
            raise ValueError(f"input 'mask' has shape {tuple(m.shape)}; a MASK is [batch, height, width] "
                             "(fix: connect a MASK output)")
        return (set_values(conditioning, {"mask": m, "set_area_to_bounds": set_cond_area != "default",
                                          "mask_strength": strength}),)


class ConditioningZeroOut(_Edit):
    CATEGORY = "advanced/conditioning"
    FUNCTION = "zero_out"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND}}

    def zero_out(self, conditioning: Any) -> tuple[Any]:
        import torch

        out = []
        for embedding, options in _pairs(conditioning):
            new = dict(options)
            if "pooled_output" in new:
                new["pooled_output"] = torch.zeros_like(new["pooled_output"])
            out.append([torch.zeros_like(embedding), new])
        return (out,)


class ConditioningSetTimestepRange(_Edit):
    CATEGORY = "advanced/conditioning"
    FUNCTION = "set_range"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        step = {"min": 0.0, "max": 1.0, "step": 0.001}
        return {"required": {"conditioning": _COND, "start": ("FLOAT", {"default": 0.0, **step}),
                             "end": ("FLOAT", {"default": 1.0, **step})}}

    def set_range(self, conditioning: Any, start: float, end: float) -> tuple[Any]:
        return (set_values(conditioning, {"start_percent": start, "end_percent": end}),)


_NODES: list[tuple[type, str]] = [
    (CLIPTextEncode, "CLIP Text Encode (Prompt)"), (CLIPTextEncodeSDXL, "CLIPTextEncodeSDXL"),
    (CLIPTextEncodeSDXLRefiner, "CLIPTextEncodeSDXLRefiner"),
    (ConditioningCombine, "Conditioning (Combine)"),
    (ConditioningAverage, "Conditioning (Average)"), (ConditioningConcat, "Conditioning (Concat)"),
    (ConditioningSetArea, "Conditioning (Set Area)"),
    (ConditioningSetAreaPercentage, "Conditioning (Set Area with Percentage)"),
    (ConditioningSetAreaStrength, "ConditioningSetAreaStrength"), (ConditioningSetMask, "Conditioning (Set Mask)"),
    (ConditioningZeroOut, "ConditioningZeroOut"), (ConditioningSetTimestepRange, "ConditioningSetTimestepRange"),
]

NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls, _ in _NODES}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: name for cls, name in _NODES}
