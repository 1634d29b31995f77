"""SIGMAS nodes: schedules (BasicScheduler, KarrasScheduler, ...) and edits (SplitSigmas, ...).

A SIGMAS value is a float32 CPU tensor of descending noise levels, normally ending in 0; the
formulas are ComfyUI's (``schedules``). BasicScheduler with ``denoise < 1`` computes
``int(steps / denoise)`` steps and keeps the last ``steps``, as KSampler does.
"""

from __future__ import annotations

from typing import Any

from .node_base import Heavy
from .samplers import COMFY_SCHEDULERS

_CATEGORY = "sampling/custom_sampling/schedulers"
_SIGMA_CATEGORY = "sampling/custom_sampling/sigmas"
_STEPS = ("INT", {"default": 20, "min": 1, "max": 10000})
_DENOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})


def _f(default: float, lo: float, hi: float, step: float = 0.01) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "round": False})


_SIGMA_MAX = _f(14.614642, 0.0, 5000.0)
_SIGMA_MIN = _f(0.0291675, 0.0, 5000.0)


def _ms(model: Any) -> Any:
    from .model_sampling import ModelSampling

    if not hasattr(model, "scheduler_config"):
        raise ValueError(f"input 'model' is a {type(model).__name__}, not a MODEL (fix: connect a model loader)")
    return ModelSampling.from_config(model.scheduler_config)


def _sigmas(value: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim != 1:
        raise ValueError("input 'sigmas' is not a SIGMAS tensor (fix: connect a scheduler node such as "
                         "BasicScheduler)")
    return value


class _SigmaNode(Heavy):
    CATEGORY = _CATEGORY
    RETURN_TYPES: tuple[str, ...] = ("SIGMAS",)
    FUNCTION = "get_sigmas"


class BasicScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "scheduler": (list(COMFY_SCHEDULERS),), "steps": _STEPS,
                             "denoise": _DENOISE}}

    def get_sigmas(self, model: Any, scheduler: str, steps: int, denoise: float) -> tuple[Any]:
        from .schedules import basic_scheduler

        return (basic_scheduler(_ms(model), scheduler, steps, denoise),)


class KarrasScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "rho": _f(7.0, 0.0, 100.0)}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[Any]:
        from .schedules import karras

        return (karras(steps, sigma_min, sigma_max, rho),)


class ExponentialScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float) -> tuple[Any]:
        from .schedules import exponential

        return (exponential(steps, sigma_min, sigma_max),)


class PolyexponentialScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "rho": _f(1.0, 0.0, 100.0)}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[Any]:
        from .schedules import polyexponential

        return (polyexponential(steps, sigma_min, sigma_max, rho),)


class LaplaceScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "mu": _f(0.0, -10.0, 10.0, 0.1), "beta": _f(0.5, 0.0, 10.0, 0.1)}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, mu: float, beta: float) -> tuple[Any]:
        from .schedules import laplace

        return (laplace(steps, sigma_min, sigma_max, mu, beta),)


class VPScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": _STEPS, "beta_d": _f(19.9, 0.0, 5000.0), "beta_min": _f(0.1, 0.0, 5000.0),
                             "eps_s": _f(0.001, 0.0, 1.0, 0.0001)}}

    def get_sigmas(self, steps: int, beta_d: float, beta_min: float, eps_s: float) -> tuple[Any]:
        from .schedules import vp

        return (vp(steps, beta_d, beta_min, eps_s),)


class BetaSamplingScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "steps": _STEPS, "alpha": _f(0.6, 0.0, 50.0),
                             "beta": _f(0.6, 0.0, 50.0)}}

    def get_sigmas(self, model: Any, steps: int, alpha: float, beta: float) -> tuple[Any]:
        from .schedules import beta as beta_schedule

        return (beta_schedule(_ms(model), steps, alpha, beta),)


class SDTurboScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "denoise": _DENOISE}}

    def get_sigmas(self, model: Any, steps: int, denoise: float) -> tuple[Any]:
        from .schedules import sd_turbo

        return (sd_turbo(_ms(model), steps, denoise),)


class AlignYourStepsScheduler(_SigmaNode):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model_type": (["SD1", "SDXL", "SVD"],),
                             "steps": ("INT", {"default": 10, "min": 1, "max": 10000}), "denoise": _DENOISE}}

    def get_sigmas(self, model_type: str, steps: int, denoise: float) -> tuple[Any]:
        from .schedules import align_your_steps

        return (align_your_steps(model_type, steps, denoise),)


class ManualSigmas(_SigmaNode):
    CATEGORY = "_for_testing/custom_sampling"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("STRING", {"default": "1, 0.5", "multiline": False})}}

    def get_sigmas(self, sigmas: str) -> tuple[Any]:
        import re

        import torch

        # ComfyUI takes every number it finds in the text, whatever separates them
        found = [float(v) for v in re.findall(r"[-+]?(?:\d*\.*\d+)", sigmas)]
        return (torch.tensor(found, dtype=torch.float32),)


class SplitSigmas(_SigmaNode):
    CATEGORY = _SIGMA_CATEGORY
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("SIGMAS",), "step": ("INT", {"default": 0, "min": 0, "max": 10000})}}

    def get_sigmas(self, sigmas: Any, step: int) -> tuple[Any, Any]:
        sigmas = _sigmas(sigmas)
        return sigmas[:step + 1], sigmas[step:]


class SplitSigmasDenoise(_SigmaNode):
    CATEGORY = _SIGMA_CATEGORY
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("SIGMAS",), "denoise": _DENOISE}}

    def get_sigmas(self, sigmas: Any, denoise: float) -> tuple[Any, Any]:
        sigmas = _sigmas(sigmas)
        total = round(max(sigmas.shape[-1] - 1, 0) * denoise)
        return sigmas[:-total], sigmas[-(total + 1):]


class FlipSigmas(_SigmaNode):
    CATEGORY = _SIGMA_CATEGORY

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("SIGMAS",)}}

    def get_sigmas(self, sigmas: Any) -> tuple[Any]:
        sigmas = _sigmas(sigmas)
        if len(sigmas) == 0:
            return (sigmas,)
        flipped = sigmas.flip(0)
        if flipped[0] == 0:  # a run cannot start at sigma 0 (log-sigma solvers divide by it)
            flipped[0] = 0.0001
        return (flipped,)


class SetFirstSigma(_SigmaNode):
    CATEGORY = _SIGMA_CATEGORY

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("SIGMAS",), "sigma": _f(136.0, 0.0, 20000.0, 0.001)}}

    def get_sigmas(self, sigmas: Any, sigma: float) -> tuple[Any]:
        out = _sigmas(sigmas).clone()
        out[0] = sigma
        return (out,)


class SamplingPercentToSigma(Heavy):
    CATEGORY = _SIGMA_CATEGORY
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("sigma_value",)
    FUNCTION = "get_sigma"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",),
                             "sampling_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.0001}),
                             "return_actual_sigma": ("BOOLEAN", {"default": False})}}

    def get_sigma(self, model: Any, sampling_percent: float, return_actual_sigma: bool) -> tuple[float]:
        ms = _ms(model)
        value = ms.percent_to_sigma(sampling_percent)
        if return_actual_sigma and sampling_percent in (0.0, 1.0):
            value = float(ms.sigma_max if sampling_percent == 0.0 else ms.sigma_min)
        return (value,)


_NODES = [BasicScheduler, KarrasScheduler, ExponentialScheduler, PolyexponentialScheduler, LaplaceScheduler,
          VPScheduler, BetaSamplingScheduler, SDTurboScheduler, AlignYourStepsScheduler, ManualSigmas,
          SplitSigmas, SplitSigmasDenoise, FlipSigmas, SetFirstSigma, SamplingPercentToSigma]

NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: cls.__name__ for cls in _NODES}
