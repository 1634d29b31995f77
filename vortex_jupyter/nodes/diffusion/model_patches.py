"""MODEL patches: a new ``ModelHandle`` that samples differently, the input left as it was.

ComfyUI's patch nodes clone the ModelPatcher and add an object patch or a model option; here a
patch is ``dataclasses.replace`` of the handle with a new scheduler config or a new ``options``
dict, sharing the UNet component (the weights are not copied):

- ``model_sampling_discrete`` (ModelSamplingDiscrete): ``prediction_type`` and zero terminal
  SNR in a copy of the scheduler config, read by ``ModelSampling.from_config`` everywhere a
  MODEL is sampled (KSampler, BasicScheduler, the guiders);
- ``rescale_cfg`` (RescaleCFG): a ``sampler_cfg_function`` that rescales the CFG result's
  standard deviation towards the positive prediction's, computed on v-predictions as ComfyUI
  does (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps Are Flawed").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from .components import ModelHandle
from .model_sampling import ModelSampling, patch_config

CfgFunction = Callable[[dict[str, Any]], torch.Tensor]


def _model(model: Any) -> ModelHandle:
    if not isinstance(model, ModelHandle):
        raise ValueError(f"input 'model' is a {type(model).__name__}, not a MODEL "
                         "(fix: connect a checkpoint or UNET loader's MODEL output)")
    return model


def model_sampling_discrete(model: Any, sampling: str, zsnr: bool) -> ModelHandle:
    handle = _model(model)
    config = patch_config(handle.scheduler_config, sampling, zsnr)
    ModelSampling.from_config(config)  # fail here, at the patch node, on a schedule we cannot build
    return replace(handle, scheduler_config=config)


def rescale_cfg_function(multiplier: float) -> CfgFunction:
    """ComfyUI's RescaleCFG ``sampler_cfg_function`` (``args``: noise predictions, see
    ``guiders.cfg_function``); returns the noise prediction of the rescaled result."""

    def rescale(args: dict[str, Any]) -> torch.Tensor:
        x = args["input"]
        scale = float(args["cond_scale"])
        sigma = torch.as_tensor(args["sigma"], dtype=x.dtype, device=x.device)
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        norm = (sigma ** 2 + 1.0) ** 0.5
        scaled = x / (sigma ** 2 + 1.0)
        # The model's denoised estimates, rewritten as v-predictions.
        v_cond = (scaled - (x - args["cond"])) * norm / sigma
        v_uncond = (scaled - (x - args["uncond"])) * norm / sigma
        v_cfg = v_uncond + scale * (v_cond - v_uncond)
        dims = tuple(range(1, x.ndim))
        ratio = torch.std(v_cond, dim=dims, keepdim=True) / torch.std(v_cfg, dim=dims, keepdim=True)
        v_final = multiplier * (v_cfg * ratio) + (1.0 - multiplier) * v_cfg
        return x - (scaled - v_final * sigma / norm)

    return rescale


def rescale_cfg(model: Any, multiplier: float) -> ModelHandle:
    handle = _model(model)
    options = {**handle.options, "sampler_cfg_function": rescale_cfg_function(float(multiplier))}
    return replace(handle, options=options)
