"""The SD3 / Flux / AuraFlow nodes: flow-matching model sampling, the 16-channel empty latent,
and the text encoders' own nodes (ComfyUI's names, inputs, widget order and defaults).

- ModelSamplingSD3 / ModelSamplingAuraFlow: a MODEL sampled as a flow model with ``shift``
  (timestep multiplier 1000 / 1); ModelSamplingFlux: Flux's shift ``mu`` from ``max_shift``,
  ``base_shift`` and the image size (``flow_sampling.flux_mu``). Each returns a patched copy.
- EmptySD3LatentImage: zeros ``[B, 16, H/8, W/8]`` (SD3 and Flux latents).
- CLIPTextEncodeSD3 (CLIP-L, OpenCLIP-G and T5 texts, ``empty_padding``), CLIPTextEncodeFlux
  (CLIP-L and T5 texts, ``guidance``), FluxGuidance (sets the guidance a Flux dev model reads).

Torch-free at import; each ``FUNCTION`` imports the heavy modules in the worker.
"""

from __future__ import annotations

from typing import Any

from .conditioning_nodes import set_values
from .node_base import MAX_RESOLUTION, Heavy

_SHIFT = {"min": 0.0, "max": 100.0, "step": 0.01}
_TEXT = ("STRING", {"multiline": True, "dynamicPrompts": True})
_GUIDANCE = ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})


def _patched(model: Any, kind: str, shift: float, multiplier: float | None = None) -> Any:
    from dataclasses import replace

    from .components import ModelHandle
    from .flow_sampling import flow_config

    if not isinstance(model, ModelHandle):
        raise ValueError(f"input 'model' is a {type(model).__name__}, not a MODEL "
                         "(fix: connect a checkpoint or UNET loader's MODEL output)")
    return replace(model, scheduler_config=flow_config(kind, shift, multiplier))


class ModelSamplingSD3(Heavy):
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "shift": ("FLOAT", {"default": 3.0, **_SHIFT})}}

    def patch(self, model: Any, shift: float, multiplier: float = 1000) -> tuple[Any]:
        return (_patched(model, "sd3", shift, multiplier),)


class ModelSamplingAuraFlow(ModelSamplingSD3):
    FUNCTION = "patch_aura"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "shift": ("FLOAT", {"default": 1.73, **_SHIFT})}}

    def patch_aura(self, model: Any, shift: float) -> tuple[Any]:
        return (_patched(model, "auraflow", shift, 1.0),)


class ModelSamplingFlux(Heavy):
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"model": ("MODEL",), "max_shift": ("FLOAT", {"default": 1.15, **_SHIFT}),
                             "base_shift": ("FLOAT", {"default": 0.5, **_SHIFT}),
                             "width": ("INT", size), "height": ("INT", size)}}

    def patch(self, model: Any, max_shift: float, base_shift: float, width: int, height: int) -> tuple[Any]:
        from .flow_sampling import flux_mu

        return (_patched(model, "flux", flux_mu(width, height, max_shift, base_shift)),)


class EmptySD3LatentImage(Heavy):
    CATEGORY = "latent/sd3"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}
        return {"required": {"width": ("INT", size), "height": ("INT", size),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        import torch

        return ({"samples": torch.zeros([batch_size, 16, height // 8, width // 8], dtype=torch.float32)},)


class CLIPTextEncodeSD3(Heavy):
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip": ("CLIP",), "clip_l": _TEXT, "clip_g": _TEXT, "t5xxl": _TEXT,
                             "empty_padding": (["none", "empty_prompt"],)}}

    def encode(self, clip: Any, clip_l: str, clip_g: str, t5xxl: str, empty_padding: str) -> tuple[Any]:
        from .text import encode_sd3

        if getattr(clip, "kind", "") != "sd3":
            raise ValueError("CLIPTextEncodeSD3 needs an SD3 CLIP (CLIP-L, OpenCLIP-G, T5) (fix: connect the CLIP "
                             "of an SD3 checkpoint or a TripleCLIPLoader)")
        return (encode_sd3(clip, clip_l, clip_g, t5xxl, drop_empty=empty_padding == "none"),)


class CLIPTextEncodeFlux(Heavy):
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip": ("CLIP",), "clip_l": _TEXT, "t5xxl": _TEXT, "guidance": _GUIDANCE}}

    def encode(self, clip: Any, clip_l: str, t5xxl: str, guidance: float) -> tuple[Any]:
        from .text import encode_flux

        if getattr(clip, "kind", "") != "flux":
            raise ValueError("CLIPTextEncodeFlux needs a Flux CLIP (CLIP-L and T5) (fix: connect the CLIP of a "
                             "Flux checkpoint or a DualCLIPLoader with type 'flux')")
        return (encode_flux(clip, clip_l, t5xxl, guidance),)


class FluxGuidance(Heavy):
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",), "guidance": _GUIDANCE}}

    def append(self, conditioning: Any, guidance: float) -> tuple[Any]:
        return (set_values(conditioning, {"guidance": float(guidance)}),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ModelSamplingSD3": ModelSamplingSD3,
    "ModelSamplingAuraFlow": ModelSamplingAuraFlow,
    "ModelSamplingFlux": ModelSamplingFlux,
    "EmptySD3LatentImage": EmptySD3LatentImage,
    "CLIPTextEncodeSD3": CLIPTextEncodeSD3,
    "CLIPTextEncodeFlux": CLIPTextEncodeFlux,
    "FluxGuidance": FluxGuidance,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
