"""Latent and VAE nodes, with ComfyUI's names, widgets (order, defaults, ranges) and semantics.

Empty latents, VAE decode/encode (plain, tiled, for inpainting), resizes, composites, blends,
batch edits and noise masks. The classes are torch-free; each ``FUNCTION`` imports its heavy
helper (``vae``, ``latent``, ``latent_ops``) when it runs, in a worker.

The LATENT contract (what these nodes produce; the sampler reads the optional keys):

- ``"samples"``: float32 CPU tensor ``[B, 4, H/8, W/8]``, in the sampler's scale (VAE latent
  times the VAE's scaling factor).
- ``"noise_mask"`` (optional): float32 CPU tensor ``[Bm, 1, h, w]``, 1 = denoise, 0 = keep.
  ``Bm`` may be 1 (one mask for the whole batch) or differ from ``B`` (the sampler tiles it
  to the batch, as ComfyUI); ``h, w`` are any resolution (SetLatentNoiseMask keeps the MASK's,
  VAEEncodeForInpaint gives pixel resolution): the sampler resizes it to the latent.
- ``"batch_index"`` (optional): list of ``B`` ints; entry ``i`` says which noise of a seeded
  batch latent ``i`` gets (ComfyUI draws noise for ``max(batch_index) + 1`` latents and takes
  these rows), so a latent picked out of a batch keeps its noise.
- ``"downscale_ratio_spacial"`` (EmptyLatentImage only): 8, as ComfyUI writes it.

Like ComfyUI, every node returns a shallow copy of its first LATENT input with ``samples``
replaced, so the optional keys travel through unless the node says otherwise:
LatentFromBatch slices ``noise_mask`` (unless it has one entry) and sets ``batch_index``;
RepeatLatentBatch repeats a multi-entry ``noise_mask`` and extends ``batch_index``; LatentBatch
concatenates ``batch_index`` (defaulting each side to ``0..len-1``) and keeps the first
input's ``noise_mask``; SetLatentNoiseMask and VAEEncodeForInpaint set ``noise_mask``.
"""

from __future__ import annotations

from typing import Any

from .node_base import MAX_RESOLUTION, Heavy

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
_LATENT = ("LATENT",)
_POS = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}


def _temporal(verb: str) -> dict[str, Any]:
    """VAEDecodeTiled/VAEEncodeTiled's video widgets (unused by image VAEs, kept for workflows)."""
    return {"temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                                      "tooltip": f"Only used for video VAEs: Amount of frames to {verb} at a time."}),
            "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                                         "tooltip": "Only used for video VAEs: Amount of frames to overlap."})}


class _Latent(Heavy):
    RETURN_TYPES = _LATENT


class EmptyLatentImage(_Latent):
    CATEGORY = "latent"
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"width": ("INT", size), "height": ("INT", size),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        import torch

        samples = torch.zeros([batch_size, 4, height // 8, width // 8], dtype=torch.float32)
        return ({"samples": samples, "downscale_ratio_spacial": 8},)


class VAEDecode(Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": _LATENT, "vae": ("VAE",)}}

    def decode(self, vae: Any, samples: dict[str, Any]) -> tuple[Any]:
        from .vae import vae_decode

        return (vae_decode(vae, samples),)


class VAEEncode(_Latent):
    CATEGORY = "latent"
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae: Any, pixels: Any) -> tuple[dict[str, Any]]:
        from .vae import vae_encode

        return (vae_encode(vae, pixels),)


class VAEDecodeTiled(Heavy):
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": _LATENT, "vae": ("VAE",),
                             "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 32}),
                             "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
                             **_temporal("decode")}}

    def decode(self, vae: Any, samples: dict[str, Any], tile_size: int, overlap: int = 64,
               temporal_size: int = 64, temporal_overlap: int = 8) -> tuple[Any]:
        from .vae import RATIO, vae_decode_tiled

        if tile_size < overlap * 4:  # ComfyUI caps the overlap at a quarter tile
            overlap = tile_size // 4
        return (vae_decode_tiled(vae, samples, tile_size // RATIO, overlap // RATIO),)


class VAEEncodeTiled(_Latent):
    CATEGORY = "_for_testing"
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",),
                             "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64}),
                             "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
                             **_temporal("encode")}}

    def encode(self, vae: Any, pixels: Any, tile_size: int, overlap: int,
               temporal_size: int = 64, temporal_overlap: int = 8) -> tuple[dict[str, Any]]:
        from .vae import vae_encode_tiled

        return (vae_encode_tiled(vae, pixels, tile_size, overlap),)


class VAEEncodeForInpaint(_Latent):
    CATEGORY = "latent/inpaint"
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    def encode(self, vae: Any, pixels: Any, mask: Any, grow_mask_by: int = 6) -> tuple[dict[str, Any]]:
        from .vae import vae_encode_for_inpaint

        return (vae_encode_for_inpaint(vae, pixels, mask, grow_mask_by),)


class LatentUpscale(_Latent):
    CATEGORY = "latent"
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"samples": _LATENT, "upscale_method": (UPSCALE_METHODS,),
                             "width": ("INT", size), "height": ("INT", size),
                             "crop": (["disabled", "center"],)}}

    def upscale(self, samples: dict[str, Any], upscale_method: str, width: int, height: int,
                crop: str) -> tuple[dict[str, Any]]:
        from .latent import latent_upscale

        return (latent_upscale(samples, upscale_method, width, height, crop),)


class LatentUpscaleBy(_Latent):
    CATEGORY = "latent"
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": _LATENT, "upscale_method": (UPSCALE_METHODS,),
                             "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, samples: dict[str, Any], upscale_method: str, scale_by: float) -> tuple[dict[str, Any]]:
        from .latent import latent_upscale_by

        return (latent_upscale_by(samples, upscale_method, scale_by),)


class LatentComposite(_Latent):
    CATEGORY = "latent"
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples_to": _LATENT, "samples_from": _LATENT,
                             "x": ("INT", _POS), "y": ("INT", _POS), "feather": ("INT", _POS)}}

    def composite(self, samples_to: dict[str, Any], samples_from: dict[str, Any], x: int, y: int,
                  feather: int = 0) -> tuple[dict[str, Any]]:
        from .latent_ops import composite

        return (composite(samples_to, samples_from, x, y, feather),)


class LatentCompositeMasked(_Latent):
    CATEGORY = "latent"
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"destination": _LATENT, "source": _LATENT, "x": ("INT", _POS), "y": ("INT", _POS),
                             "resize_source": ("BOOLEAN", {"default": False})},
                "optional": {"mask": ("MASK",)}}

    def composite(self, destination: dict[str, Any], source: dict[str, Any], x: int, y: int,
                  resize_source: bool, mask: Any = None) -> tuple[dict[str, Any]]:
        from .latent_ops import composite_masked

        return (composite_masked(destination, source, x, y, resize_source, mask),)


class LatentBlend(_Latent):
    CATEGORY = "_for_testing"
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples1": _LATENT, "samples2": _LATENT,
                             "blend_factor": ("FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01})}}

    def blend(self, samples1: dict[str, Any], samples2: dict[str, Any], blend_factor: float) -> tuple[dict[str, Any]]:
        from .latent_ops import blend

        return (blend(samples1, samples2, blend_factor),)


class LatentFromBatch(_Latent):
    CATEGORY = "latent/batch"
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": _LATENT,
                             "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
                             "length": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def frombatch(self, samples: dict[str, Any], batch_index: int, length: int) -> tuple[dict[str, Any]]:
        from .latent_ops import from_batch

        return (from_batch(samples, batch_index, length),)


class RepeatLatentBatch(_Latent):
    CATEGORY = "latent/batch"
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": _LATENT, "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def repeat(self, samples: dict[str, Any], amount: int) -> tuple[dict[str, Any]]:
        from .latent_ops import repeat_batch

        return (repeat_batch(samples, amount),)


class LatentBatch(_Latent):
    CATEGORY = "latent/batch"
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples1": _LATENT, "samples2": _LATENT}}

    def batch(self, samples1: dict[str, Any], samples2: dict[str, Any]) -> tuple[dict[str, Any]]:
        from .latent_ops import batch

        return (batch(samples1, samples2),)


class SetLatentNoiseMask(_Latent):
    CATEGORY = "latent/inpaint"
    FUNCTION = "set_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": _LATENT, "mask": ("MASK",)}}

    def set_mask(self, samples: dict[str, Any], mask: Any) -> tuple[dict[str, Any]]:
        from .latent_ops import set_noise_mask

        return (set_noise_mask(samples, mask),)


_CLASSES: tuple[type, ...] = (
    EmptyLatentImage, VAEDecode, VAEEncode, VAEDecodeTiled, VAEEncodeTiled, VAEEncodeForInpaint,
    LatentUpscale, LatentUpscaleBy, LatentComposite, LatentCompositeMasked, LatentBlend,
    LatentFromBatch, RepeatLatentBatch, LatentBatch, SetLatentNoiseMask,
)
NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls in _CLASSES}
#: ComfyUI's display names; LatentCompositeMasked and LatentBatch have none there either.
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "EmptyLatentImage": "Empty Latent Image",
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "VAEDecodeTiled": "VAE Decode (Tiled)",
    "VAEEncodeTiled": "VAE Encode (Tiled)",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
    "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By",
    "LatentComposite": "Latent Composite",
    "LatentBlend": "Latent Blend",
    "LatentFromBatch": "Latent From Batch",
    "RepeatLatentBatch": "Repeat Latent Batch",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
}
