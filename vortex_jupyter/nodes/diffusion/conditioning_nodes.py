"""Conditioning nodes: CLIPTextEncode (ComfyUI's names, inputs and widget order)."""

from __future__ import annotations

from typing import Any

from .node_base import Heavy


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


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "CLIPTextEncode": CLIPTextEncode,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
}
