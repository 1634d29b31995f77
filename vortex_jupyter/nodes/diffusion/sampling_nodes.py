"""Sampler nodes: KSampler and KSamplerAdvanced (ComfyUI's names, inputs and widget order)."""

from __future__ import annotations

from typing import Any

from .node_base import SEED_MAX, Heavy
from .samplers import COMFY_SAMPLERS, COMFY_SCHEDULERS, check_combination


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


class KSampler(Heavy):
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
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


class KSamplerAdvanced(Heavy):
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "add_noise": (["enable", "disable"],),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
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


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "KSampler": KSampler,
    "KSamplerAdvanced": KSamplerAdvanced,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "KSampler": "KSampler",
    "KSamplerAdvanced": "KSampler (Advanced)",
}
