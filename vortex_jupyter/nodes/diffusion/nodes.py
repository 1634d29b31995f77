"""The diffusion nodes, as ComfyUI-style classes with ComfyUI's names, inputs and widget order.

Importing this module must not import torch: the registry imports it to list node types in
the kernel. Each ``FUNCTION`` imports the heavy modules (``ops``, ``sampling``, ``loaders``)
when it runs, which happens in a worker. ``VORTEX_HEAVY = True`` tells the worker pool these
nodes need torch/diffusers.

Widget order matters: ComfyUI UI workflows store widget values positionally
(``widgets_values``), so every ``INPUT_TYPES`` dict lists inputs in ComfyUI's order.
Value conventions: IMAGE = numpy float32 ``[B,H,W,C]`` in [0, 1]; LATENT = ``{"samples":
torch tensor [B,4,h,w]}`` on the CPU; CONDITIONING = ``[[tensor, {"pooled_output": ...}]]``;
MODEL/CLIP/VAE = handles from ``loaders`` (they stay in the worker).
"""

from __future__ import annotations

from typing import Any

from ...errors import ModelError
from .samplers import COMFY_SAMPLERS, COMFY_SCHEDULERS, check_combination

MAX_RESOLUTION = 16384
_SEED_MAX = 0xFFFF_FFFF_FFFF_FFFF


def _ckpt_names() -> list[str]:
    from .listing import checkpoint_names

    return checkpoint_names()


def _lora_names() -> list[str]:
    from .listing import lora_names

    return lora_names()


def _verdict(check: Any, name: str) -> bool | str:
    """VALIDATE_INPUTS' answer from a torch-free check that raises ModelError."""
    try:
        check(name)
    except ModelError as exc:
        return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return True


class _Heavy:
    VORTEX_HEAVY = True


class CheckpointLoaderSimple(_Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    DESCRIPTION = "Loads a diffusion model checkpoint ('vortex-tiny' is the built-in tiny model)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (_ckpt_names(), {"tooltip": "The checkpoint to load."})}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_ckpt_names())  # new files in the models folder re-read INPUT_TYPES

    @classmethod
    def VALIDATE_INPUTS(cls, ckpt_name: str) -> bool | str:
        # Any file in the models folder or a hub id may be named, not only the listed ones; a
        # missing file is reported now rather than after the run started.
        from .loaders import check_checkpoint_name

        return _verdict(check_checkpoint_name, ckpt_name)

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any]:
        from .loaders import load_checkpoint

        return load_checkpoint(ckpt_name)


class CLIPTextEncode(_Heavy):
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "clip": ("CLIP",)}}

    def encode(self, clip: Any, text: str) -> tuple[Any]:
        from .ops import encode_text

        return (encode_text(clip, text),)


class EmptyLatentImage(_Heavy):
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


def _sampler_inputs() -> dict[str, Any]:
    return {
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
        "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
        "sampler_name": (list(COMFY_SAMPLERS),),
        "scheduler": (list(COMFY_SCHEDULERS),),
        "positive": ("CONDITIONING",),
        "negative": ("CONDITIONING",),
        "latent_image": ("LATENT",),
    }


def _validate_sampler(sampler_name: str, scheduler: str) -> bool | str:
    return check_combination(sampler_name, scheduler) or True


class KSampler(_Heavy):
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": _SEED_MAX, "control_after_generate": True}),
            **_sampler_inputs(),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, sampler_name: str, scheduler: str) -> bool | str:
        return _validate_sampler(sampler_name, scheduler)

    def sample(self, model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: Any, negative: Any, latent_image: dict[str, Any], denoise: float = 1.0
               ) -> tuple[dict[str, Any]]:
        from .sampling import SampleSettings, sample

        settings = SampleSettings(seed, steps, cfg, sampler_name, scheduler, denoise=denoise)
        return (sample(model, positive, negative, latent_image, settings),)


class KSamplerAdvanced(_Heavy):
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "add_noise": (["enable", "disable"],),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": _SEED_MAX, "control_after_generate": True}),
            **_sampler_inputs(),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "return_with_leftover_noise": (["disable", "enable"],),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, sampler_name: str, scheduler: str) -> bool | str:
        return _validate_sampler(sampler_name, scheduler)

    def sample(self, model: Any, add_noise: str, noise_seed: int, steps: int, cfg: float,
               sampler_name: str, scheduler: str, positive: Any, negative: Any,
               latent_image: dict[str, Any], start_at_step: int, end_at_step: int,
               return_with_leftover_noise: str) -> tuple[dict[str, Any]]:
        from .sampling import SampleSettings, sample

        settings = SampleSettings(
            noise_seed, steps, cfg, sampler_name, scheduler, add_noise=add_noise == "enable",
            start_at_step=start_at_step, end_at_step=end_at_step,
            force_full_denoise=return_with_leftover_noise != "enable")
        return (sample(model, positive, negative, latent_image, settings),)


class VAEDecode(_Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}

    def decode(self, vae: Any, samples: dict[str, Any]) -> tuple[Any]:
        from .ops import vae_decode

        return (vae_decode(vae, samples),)


class VAEEncode(_Heavy):
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae: Any, pixels: Any) -> tuple[dict[str, Any]]:
        from .ops import vae_encode

        return (vae_encode(vae, pixels),)


UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


class LatentUpscale(_Heavy):
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
        from .ops import latent_upscale

        return (latent_upscale(samples, upscale_method, width, height, crop),)


class LoraLoader(_Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP")
    FUNCTION = "load_lora"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        strength = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "lora_name": (_lora_names(),),
                             "strength_model": ("FLOAT", strength), "strength_clip": ("FLOAT", strength)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_lora_names())

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name: str) -> bool | str:
        from .loaders import lora_path  # any file under <models>/loras may be named

        return _verdict(lora_path, lora_name)

    def load_lora(self, model: Any, clip: Any, lora_name: str, strength_model: float,
                  strength_clip: float) -> tuple[Any, Any]:
        from .ops import load_lora

        return load_lora(model, clip, lora_name, strength_model, strength_clip)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "CLIPTextEncode": CLIPTextEncode,
    "EmptyLatentImage": EmptyLatentImage,
    "KSampler": KSampler,
    "KSamplerAdvanced": KSamplerAdvanced,
    "VAEDecode": VAEDecode,
    "VAEEncode": VAEEncode,
    "LatentUpscale": LatentUpscale,
    "LoraLoader": LoraLoader,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "EmptyLatentImage": "Empty Latent Image",
    "KSampler": "KSampler",
    "KSamplerAdvanced": "KSampler (Advanced)",
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "LatentUpscale": "Upscale Latent",
    "LoraLoader": "Load LoRA",
}
