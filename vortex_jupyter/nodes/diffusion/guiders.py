"""GUIDER values: how the model's predictions for the prompts combine into one denoised estimate.

- ``CFGGuider``: positive and negative, ``uncond + cfg * (cond - uncond)``; at ``cfg == 1`` the
  negative is not evaluated at all (ComfyUI's cfg1 optimisation) unless a sampler needs it;
- ``BasicGuider``: the positive alone (no CFG; Flux-style models);
- ``DualCFGGuider``: two prompts and a negative; "regular" adds ``cfg_conds * (cond1 - cond2)``
  to the CFG of cond2 against the negative, "nested" applies CFG twice.

KSampler and SamplerCustom build a ``CFGGuider``; SamplerCustomAdvanced takes one from the
graph. A guider holds the MODEL handle and the CONDITIONING as given; ``bind`` prepares them
for one run (``conds.process``) and returns the denoiser the solvers call.

Every combination goes through ``cfg_function`` (ComfyUI's ``samplers.cfg_function``): a MODEL
patched with a ``sampler_cfg_function`` (RescaleCFG) replaces the plain CFG formula, for every
sampler and guider; BasicGuider then combines its prompt with a zero "uncond" at scale 1, as
ComfyUI's BasicGuider runs CFG at 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from . import conds as conds_mod
from .components import ModelHandle
from .model_sampling import ModelSampling

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cfg_function(options: dict[str, Any], cond: torch.Tensor, uncond: torch.Tensor, scale: float,
                 x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """CFG of two denoised estimates, or the MODEL's ``sampler_cfg_function`` given ComfyUI's
    arguments (noise predictions ``x - denoised`` as "cond"/"uncond"; it returns a noise
    prediction too)."""
    fn = options.get("sampler_cfg_function")
    if fn is None:
        return conds_mod.cfg(cond, uncond, scale)
    args = {"cond": x - cond, "uncond": x - uncond, "cond_scale": scale, "timestep": sigma, "input": x,
            "sigma": sigma, "cond_denoised": cond, "uncond_denoised": uncond}
    return x - fn(args)


def time_ids(config: Any, width: int) -> int:
    """How many size ids end an ``added`` row of ``width``: the UNet embeds each id in
    ``addition_time_embed_dim`` channels beside the pooled text (SDXL base 6, the refiner 5)."""
    dim = int(config.addition_time_embed_dim)
    return (int(config.projection_class_embeddings_input_dim) - width) // (dim - 1)


def unet_apply(unet: Any, ms: ModelSampling) -> conds_mod.ApplyModel:
    """``apply(x, sigma, context, added, control) -> denoised`` for a diffusers UNet2DConditionModel;
    ``added`` (SDXL: pooled text embedding + 6 size ids; the refiner: 5) goes in as ``added_cond_kwargs``, a
    ``control`` (``controlnet.RunControl``) adds its residuals to the skips and middle block, a
    ``concat`` (``inpaint.py``) is appended to the scaled input's channels."""
    dtype = unet.dtype  # once: diffusers' ``dtype`` walks every module (about 1 ms a call)

    def apply(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
              added: torch.Tensor | None = None, control: Any = None, concat: torch.Tensor | None = None
              ) -> torch.Tensor:
        xc = ms.calculate_input(sigma, x)
        if concat is not None:  # an inpainting UNet's mask + masked-image channels, after the latent
            xc = torch.cat([xc, concat.to(xc)], dim=1)
        xc = xc.to(dtype)
        t = ms.timestep(sigma).float()
        kwargs: dict[str, Any] = {}
        if added is not None:
            ids = time_ids(unet.config, added.shape[1])
            kwargs["added_cond_kwargs"] = {"text_embeds": added.to(dtype)[:, :-ids],
                                           "time_ids": added.to(dtype)[:, -ids:]}
        residuals = None if control is None else control.residuals(x, sigma, context, added)
        if residuals is not None:
            # xc.dtype is unet.dtype: diffusers' ``dtype`` property walks every module (~1 ms each)
            kwargs["down_block_additional_residuals"] = [r.to(xc.dtype) for r in residuals[0]]
            kwargs["mid_block_additional_residual"] = residuals[1].to(xc.dtype)
        out = unet(xc, t, encoder_hidden_states=context.to(dtype), return_dict=False, **kwargs)[0]
        return ms.calculate_denoised(sigma, out.float(), x)

    return apply


def model_apply(family: str, module: Any, ms: Any) -> conds_mod.ApplyModel:
    """The ``apply`` of a MODEL's denoiser: the UNet families (SD1, SDXL) or the flow-matching
    transformers (SD3, Flux: ``transformer_apply``)."""
    if family in ("sd3", "flux"):
        from .transformer_apply import flux_apply, sd3_apply

        return (sd3_apply if family == "sd3" else flux_apply)(module, ms)
    return unet_apply(module, ms)


class Guider:
    """Base: the model, the named CONDITIONING sides, and how predictions combine."""

    sides: tuple[str, ...] = ("positive",)

    def __init__(self, model: ModelHandle, **conditioning: Any) -> None:
        if not hasattr(model, "unet"):
            raise ValueError(f"input 'model' is a {type(model).__name__}, not a MODEL "
                             "(fix: connect a checkpoint or UNET loader's MODEL output)")
        self.model = model
        self.options: dict[str, Any] = getattr(model, "options", {})
        self.conditioning = {k: conditioning[k] for k in self.sides}
        self.family = str(getattr(model, "family", "sd1"))
        for name, value in self.conditioning.items():  # fail at the guider node, not deep in the sampler
            conds_mod.add_model_inputs({name: conds_mod.prepare(value, name)}, self.family)

    def bind(self, apply: conds_mod.ApplyModel, ms: ModelSampling, shape: tuple[int, ...], device: Any,
             extras: dict[str, Any]) -> Denoiser:
        prepared = {k: conds_mod.prepare(v, k) for k, v in self.conditioning.items()}
        conds_mod.add_model_inputs(prepared, self.family, extras.get("seed"))
        if "concat" in extras:  # an inpainting UNet: each entry's extra input channels (``inpaint.py``)
            extras["concat"].add_to(prepared)
        ready = conds_mod.process(ms, prepared, shape, device)
        return lambda x, sigma: self.predict(apply, ready, x, sigma, extras)

    def predict(self, apply: conds_mod.ApplyModel, c: dict[str, list[conds_mod.Cond]], x: torch.Tensor,
                sigma: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        if "sampler_cfg_function" not in self.options:
            return conds_mod.calc_cond_batch(apply, [c["positive"]], x, sigma)[0]
        cond, uncond = conds_mod.calc_cond_batch(apply, [c["positive"], None], x, sigma)
        return cfg_function(self.options, cond, uncond, 1.0, x, sigma)

    def __repr__(self) -> str:
        return f"<GUIDER {type(self).__name__} {self.model!r}>"


class BasicGuider(Guider):
    sides = ("positive",)


class CFGGuider(Guider):
    sides = ("positive", "negative")

    def __init__(self, model: ModelHandle, positive: Any, negative: Any, cfg: float) -> None:
        super().__init__(model, positive=positive, negative=negative)
        self.cfg = float(cfg)

    def predict(self, apply: conds_mod.ApplyModel, c: dict[str, list[conds_mod.Cond]], x: torch.Tensor,
                sigma: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        need_uncond = bool(extras.get("need_uncond"))
        negative = None if math.isclose(self.cfg, 1.0) and not need_uncond else c["negative"]
        cond, uncond = conds_mod.calc_cond_batch(apply, [c["positive"], negative], x, sigma)
        if need_uncond:
            extras["uncond_denoised"] = uncond
        return cfg_function(self.options, cond, uncond, self.cfg, x, sigma)


class DualCFGGuider(Guider):
    sides = ("positive", "middle", "negative")

    def __init__(self, model: ModelHandle, cond1: Any, cond2: Any, negative: Any, cfg_conds: float,
                 cfg_cond2_negative: float, nested: bool = False) -> None:
        super().__init__(model, positive=cond1, middle=cond2, negative=negative)
        self.cfg1, self.cfg2, self.nested = float(cfg_conds), float(cfg_cond2_negative), nested

    def predict(self, apply: conds_mod.ApplyModel, c: dict[str, list[conds_mod.Cond]], x: torch.Tensor,
                sigma: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        negative, middle, positive = c["negative"], c["middle"], c["positive"]
        if self.nested:
            out = conds_mod.calc_cond_batch(apply, [negative, middle, positive], x, sigma)
            text = cfg_function(self.options, out[2], out[1], self.cfg1, x, sigma)
            return out[0] + self.cfg2 * (text - out[0])
        neg: Any = negative
        mid: Any = middle
        if math.isclose(self.cfg2, 1.0):
            neg = None
            if math.isclose(self.cfg1, 1.0):
                mid = None
        out = conds_mod.calc_cond_batch(apply, [neg, mid, positive], x, sigma)
        return cfg_function(self.options, out[1], out[0], self.cfg2, x, sigma) + (out[2] - out[1]) * self.cfg1
