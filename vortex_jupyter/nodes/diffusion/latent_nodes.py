"""Latent and VAE nodes: EmptyLatentImage, VAEDecode, VAEEncode, LatentUpscale."""

from __future__ import annotations

from typing import Any

from .node_base import MAX_RESOLUTION, Heavy


class EmptyLatentImage(Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"width": ("INT", {"default": 512, **size}),
                             "height": ("INT", {"default": 512, **size}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        import torch

        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class VAEDecode(Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}

    def decode(self, vae: Any, samples: dict[str, Any]) -> tuple[Any]:
        from .vae import vae_decode

        return (vae_decode(vae, samples),)


class VAEEncode(Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae: Any, pixels: Any) -> tuple[dict[str, Any]]:
        from .vae import vae_encode

        return (vae_encode(vae, pixels),)


UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


class LatentUpscale(Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"samples": ("LATENT",), "upscale_method": (UPSCALE_METHODS,),
                             "width": ("INT", size), "height": ("INT", size),
                             "crop": (["disabled", "center"],)}}

    def upscale(self, samples: dict[str, Any], upscale_method: str, width: int, height: int,
                crop: str) -> tuple[dict[str, Any]]:
        from .latent import latent_upscale

        return (latent_upscale(samples, upscale_method, width, height, crop),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "EmptyLatentImage": EmptyLatentImage,
    "VAEDecode": VAEDecode,
    "VAEEncode": VAEEncode,
    "LatentUpscale": LatentUpscale,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "EmptyLatentImage": "Empty Latent Image",
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "LatentUpscale": "Upscale Latent",
}
