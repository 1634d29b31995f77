"""Sampler nodes: KSampler, KSamplerAdvanced and ComfyUI's custom-sampling family.

The custom-sampling types are values that stay in the worker: SAMPLER (``sampling.Sampler``:
a solver and its options), NOISE (``sampling.RandomNoise`` / ``DisableNoise``), GUIDER
(``guiders.*``) and SIGMAS (a float32 CPU tensor, made by ``sigma_nodes``).
``SamplerCustomAdvanced(RandomNoise(s), CFGGuider(m, p, n, c), KSamplerSelect(x),
BasicScheduler(m, y, steps, d))`` gives KSampler(m, s, steps, c, x, y, p, n, d)'s latent bit
for bit (except dpm_2 / uni_pc, where KSampler alone drops the penultimate sigma, as in ComfyUI).
"""

from __future__ import annotations

from typing import Any

from .node_base import SEED_MAX, Heavy
from .samplers import COMFY_SAMPLERS, COMFY_SCHEDULERS, check_combination, check_sampler

_CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
_SEED = ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True})


def _sampler_inputs() -> dict[str, Any]:
    return {
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
        "cfg": _CFG,
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
    DESCRIPTION = "Denoises a latent with a model, prompts, a sampler and a schedule."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "seed": _SEED,
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
            "noise_seed": _SEED,
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


def _custom_outputs(latent: dict[str, Any], samples: Any, denoised: Any, model: Any
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(output, denoised_output), in the model's latent factors (``latent_format``)."""
    from . import latent_format

    out = {**latent, "samples": samples, latent_format.KEY: latent_format.of_model(model)}
    if denoised is None:
        return out, out
    return out, {**out, "samples": denoised}


class SamplerCustom(Heavy):
    CATEGORY = "sampling/custom_sampling"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",), "add_noise": ("BOOLEAN", {"default": True}), "noise_seed": _SEED,
            "cfg": _CFG, "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
            "sampler": ("SAMPLER",), "sigmas": ("SIGMAS",), "latent_image": ("LATENT",),
        }}

    def sample(self, model: Any, add_noise: bool, noise_seed: int, cfg: float, positive: Any, negative: Any,
               sampler: Any, sigmas: Any, latent_image: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        from .guiders import CFGGuider
        from .sampling import DisableNoise, RandomNoise, fix_empty_latent_channels, run

        latent_image = fix_empty_latent_channels(model, latent_image)
        noise = (RandomNoise(noise_seed) if add_noise else DisableNoise()).generate(latent_image)
        samples, denoised = run(CFGGuider(model, positive, negative, cfg), _sampler(sampler), sigmas, noise,
                                latent_image, noise_seed)
        return _custom_outputs(latent_image, samples, denoised, model)


def _sampler(value: Any) -> Any:
    if not hasattr(value, "solver"):
        raise ValueError(f"input 'sampler' is a {type(value).__name__}, not a SAMPLER "
                         "(fix: connect KSamplerSelect or another sampler node)")
    return value


class SamplerCustomAdvanced(Heavy):
    CATEGORY = "sampling/custom_sampling"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                             "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    def sample(self, noise: Any, guider: Any, sampler: Any, sigmas: Any, latent_image: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        from .sampling import fix_empty_latent_channels, run

        if not hasattr(noise, "generate") or not hasattr(guider, "bind"):
            raise ValueError("inputs 'noise' and 'guider' need a NOISE (RandomNoise, DisableNoise) and a GUIDER "
                             "(CFGGuider, BasicGuider, DualCFGGuider)")
        latent_image = fix_empty_latent_channels(guider.model, latent_image)
        samples, denoised = run(guider, _sampler(sampler), sigmas, noise.generate(latent_image), latent_image,
                                noise.seed)
        return _custom_outputs(latent_image, samples, denoised, guider.model)


class KSamplerSelect(Heavy):
    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sampler_name": (list(COMFY_SAMPLERS),)}}

    @classmethod
    def VALIDATE_INPUTS(cls, sampler_name: str) -> bool | str:
        return check_sampler(sampler_name) or True

    def get_sampler(self, sampler_name: str) -> tuple[Any]:
        from .sampling import Sampler

        return (Sampler(sampler_name),)


def _option_sampler(node_id: str, inputs: dict[str, Any], pick: Any, description: str = "") -> type:
    """A sampler node with option widgets (ComfyUI's SamplerEulerAncestral & co.)."""

    def get_sampler(self: Any, **options: Any) -> tuple[Any]:
        from .sampling import Sampler

        name, opts = pick(options)
        return (Sampler(name, opts),)

    return type(node_id, (Heavy,), {
        "CATEGORY": "sampling/custom_sampling/samplers", "RETURN_TYPES": ("SAMPLER",), "FUNCTION": "get_sampler",
        "DESCRIPTION": description, "INPUT_TYPES": classmethod(lambda cls: {"required": dict(inputs)}),
        "get_sampler": get_sampler, "__module__": __name__,
    })


def _f(default: float, lo: float = 0.0, hi: float = 100.0) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": 0.01, "round": False})


_DEVICE = (["gpu", "cpu"],)
_ETA_NOISE = {"eta": _f(1.0), "s_noise": _f(1.0)}


def _gpu(name: str, options: dict[str, Any], extra: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    suffix = "" if options["noise_device"] == "cpu" else "_gpu"
    return name + suffix, {k: options[k] for k in ("eta", "s_noise", *extra)}


SamplerEulerAncestral = _option_sampler(
    "SamplerEulerAncestral", _ETA_NOISE, lambda o: ("euler_ancestral", dict(o)))
SamplerEulerAncestralCFGPP = _option_sampler(
    "SamplerEulerAncestralCFGPP", {"eta": _f(1.0, 0.0, 1.0), "s_noise": _f(1.0, 0.0, 10.0)},
    lambda o: ("euler_ancestral_cfg_pp", dict(o)))
SamplerLMS = _option_sampler(
    "SamplerLMS", {"order": ("INT", {"default": 4, "min": 1, "max": 100})}, lambda o: ("lms", dict(o)))
SamplerDPMPP_2S_Ancestral = _option_sampler(
    "SamplerDPMPP_2S_Ancestral", _ETA_NOISE, lambda o: ("dpmpp_2s_ancestral", dict(o)))
SamplerDPMPP_3M_SDE = _option_sampler(
    "SamplerDPMPP_3M_SDE", {**_ETA_NOISE, "noise_device": _DEVICE}, lambda o: _gpu("dpmpp_3m_sde", o))
SamplerDPMPP_2M_SDE = _option_sampler(
    "SamplerDPMPP_2M_SDE", {"solver_type": (["midpoint", "heun"],), **_ETA_NOISE, "noise_device": _DEVICE},
    lambda o: _gpu("dpmpp_2m_sde", o, ("solver_type",)))
SamplerDPMPP_SDE = _option_sampler(
    "SamplerDPMPP_SDE", {**_ETA_NOISE, "r": _f(0.5), "noise_device": _DEVICE}, lambda o: _gpu("dpmpp_sde", o, ("r",)))
SamplerDPMAdaptative = _option_sampler(
    "SamplerDPMAdaptative",
    {"order": ("INT", {"default": 3, "min": 2, "max": 3}), "rtol": _f(0.05), "atol": _f(0.0078),
     "h_init": _f(0.05), "pcoeff": _f(0.0), "icoeff": _f(1.0), "dcoeff": _f(0.0), "accept_safety": _f(0.81),
     "eta": _f(0.0), "s_noise": _f(1.0)},
    lambda o: ("dpm_adaptive", dict(o)))


class RandomNoise(Heavy):
    CATEGORY = "sampling/custom_sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"noise_seed": _SEED}}

    def get_noise(self, noise_seed: int) -> tuple[Any]:
        from .sampling import RandomNoise as Noise

        return (Noise(noise_seed),)


class DisableNoise(Heavy):
    CATEGORY = "sampling/custom_sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    def get_noise(self) -> tuple[Any]:
        from .sampling import DisableNoise as Zero

        return (Zero(),)


class BasicGuider(Heavy):
    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    def get_guider(self, model: Any, conditioning: Any) -> tuple[Any]:
        from .guiders import BasicGuider as Guider

        return (Guider(model, positive=conditioning),)


class CFGGuider(Heavy):
    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "cfg": _CFG}}

    def get_guider(self, model: Any, positive: Any, negative: Any, cfg: float) -> tuple[Any]:
        from .guiders import CFGGuider as Guider

        return (Guider(model, positive, negative, cfg),)


class DualCFGGuider(Heavy):
    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "cond1": ("CONDITIONING",), "cond2": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "cfg_conds": _CFG, "cfg_cond2_negative": _CFG,
                             "style": (["regular", "nested"],)}}

    def get_guider(self, model: Any, cond1: Any, cond2: Any, negative: Any, cfg_conds: float,
                   cfg_cond2_negative: float, style: str = "regular") -> tuple[Any]:
        from .guiders import DualCFGGuider as Guider

        return (Guider(model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, nested=style == "nested"),)


class AddNoise(Heavy):
    CATEGORY = "_for_testing/custom_sampling/noise"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "add_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "noise": ("NOISE",), "sigmas": ("SIGMAS",),
                             "latent_image": ("LATENT",)}}

    def add_noise(self, model: Any, noise: Any, sigmas: Any, latent_image: dict[str, Any]) -> tuple[dict[str, Any]]:
        import torch

        if len(sigmas) == 0:
            return (latent_image,)
        from .model_sampling import ModelSampling

        ms = ModelSampling.from_config(model.scheduler_config)
        scale = torch.abs(sigmas[0] - sigmas[-1]) if len(sigmas) > 1 else sigmas[0]
        from . import latent_format

        target = latent_format.of_model(model)
        samples = torch.as_tensor(latent_format.samples_in(latent_image, target)).float()
        noisy = ms.noise_scaling(scale, noise.generate(latent_image), samples)
        return ({**latent_image, "samples": torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0),
                 latent_format.KEY: target},)


_NODES: list[tuple[type, str]] = [
    (KSampler, "KSampler"), (KSamplerAdvanced, "KSampler (Advanced)"),
    (SamplerCustom, "SamplerCustom"), (SamplerCustomAdvanced, "SamplerCustomAdvanced"),
    (KSamplerSelect, "KSamplerSelect"), (SamplerEulerAncestral, "SamplerEulerAncestral"),
    (SamplerEulerAncestralCFGPP, "SamplerEulerAncestralCFG++"), (SamplerLMS, "SamplerLMS"),
    (SamplerDPMPP_2S_Ancestral, "SamplerDPMPP_2S_Ancestral"), (SamplerDPMPP_3M_SDE, "SamplerDPMPP_3M_SDE"),
    (SamplerDPMPP_2M_SDE, "SamplerDPMPP_2M_SDE"), (SamplerDPMPP_SDE, "SamplerDPMPP_SDE"),
    (SamplerDPMAdaptative, "SamplerDPMAdaptative"), (RandomNoise, "RandomNoise"),
    (DisableNoise, "DisableNoise"), (BasicGuider, "Basic Guider"), (CFGGuider, "CFG Guider"),
    (DualCFGGuider, "Dual CFG Guider"), (AddNoise, "AddNoise"),
]

NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls, _ in _NODES}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: name for cls, name in _NODES}
