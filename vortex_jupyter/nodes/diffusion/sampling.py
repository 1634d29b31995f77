"""The sampling loop behind KSampler / KSamplerAdvanced: a diffusers scheduler + the UNet + CFG.

We run our own loop instead of a diffusers pipeline so that between two steps we can report
progress, send a preview, and stop on cancel (``nodes.context``), and so that ComfyUI's
``denoise`` / ``start_at_step`` / ``end_at_step`` semantics hold exactly.

Determinism: the initial noise comes from ``torch.Generator("cpu").manual_seed(seed)`` with
``torch.randn(latent.shape)`` (ComfyUI's recipe, so the same seed gives the same noise), and
ancestral/SDE schedulers draw from a second CPU generator seeded from the same seed. With a
pinned ``torch.set_num_threads`` a seed gives a bit-identical latent across runs and processes.

Latent spaces: sigma-based schedulers (Euler, Heun, LMS, DPM2) work in ComfyUI's space
``x = x0 + sigma * noise``. DDIM/DPM-Solver/UniPC work in diffusers' variance-preserving space
``x = alpha * x0 + sqrt(1 - alpha^2) * noise``; KSamplerAdvanced converts at its window's
edges (leftover-noise latents out, noisy latents in) so every latent between nodes is in
ComfyUI's space and a two-stage split matches one pass. Stopping early without leftover noise
returns the last step's x0 prediction (what a final step to sigma 0 gives).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

from ..context import current
from .components import ModelHandle, oom_guard
from .previews import AsyncPreviews, PreviewThrottle
from .samplers import (
    CUSTOM,
    EXACT_TIMESTEPS,
    apply_exact_timesteps,
    custom_sigmas,
    denoise_steps,
    make_scheduler,
    training_sigmas,
)


@dataclass(frozen=True)
class SampleSettings:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    add_noise: bool = True
    start_at_step: int = 0
    end_at_step: int = 10000
    #: ComfyUI's ``force_full_denoise``: the last step goes all the way to sigma 0.
    force_full_denoise: bool = True


def cond_tensor(conditioning: Any) -> Any:
    """The embedding of a ComfyUI CONDITIONING (``[[tensor, {...}], ...]``); first entry wins."""
    if isinstance(conditioning, list | tuple) and conditioning and isinstance(conditioning[0], list | tuple):
        return conditioning[0][0]
    return conditioning


def generator_seed(seed: int) -> int:
    """The seed torch's CPU generator really uses for a 64-bit ``seed``.

    torch's CPU Mersenne Twister keeps only the low 32 bits (5 and 2**32 + 5 give the same
    noise, in ComfyUI too). Seeds below 2**32 are passed through unchanged, so the noise equals
    ComfyUI's; larger seeds fold their high half in, so they differ from their low half alone.
    """
    seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
    return (seed ^ (seed >> 32)) & 0xFFFF_FFFF if seed >> 32 else seed


def make_noise(seed: int, shape: tuple[int, ...]) -> Any:
    import torch

    gen = torch.Generator("cpu").manual_seed(generator_seed(seed))
    return torch.randn(shape, generator=gen, dtype=torch.float32, device="cpu")


def plan_timesteps(scheduler: Any, s: SampleSettings, device: Any = None) -> tuple[Any, int]:
    """(timesteps to run, index of the first one in the scheduler's list)."""
    total, first = denoise_steps(s.steps, s.denoise)
    if s.scheduler in CUSTOM:  # our own sigmas; beta may merge duplicate steps, so recount
        sigmas = custom_sigmas(s.scheduler, total, training_sigmas(scheduler))
        scheduler.set_timesteps(sigmas=sigmas, device=device)
        total, first = len(sigmas) - 1, max(0, len(sigmas) - 1 - s.steps) if s.denoise < 1.0 else 0
    elif s.scheduler in EXACT_TIMESTEPS and (n := apply_exact_timesteps(scheduler, s.scheduler, total, device)):
        total, first = n, max(0, n - s.steps) if s.denoise < 1.0 else 0  # ddim_uniform may add one
    else:
        scheduler.set_timesteps(total, device=device)  # on the UNet's device: no per-step copies
    order = int(getattr(scheduler, "order", 1))
    if s.denoise >= 1.0:  # KSamplerAdvanced's window (KSampler leaves it at 0..steps)
        first = max(0, min(s.start_at_step, total))
        last = max(first, min(s.end_at_step, total))
    else:
        last = total
    begin, end = first * order, last * order
    if s.force_full_denoise and last < total and type(scheduler).__name__.startswith("Euler"):
        scheduler.sigmas[last] = 0.0  # ComfyUI's force_full_denoise: the last step lands on sigma 0
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return scheduler.timesteps[begin:end], begin


def sample(model: ModelHandle, positive: Any, negative: Any, latent: dict[str, Any],
           s: SampleSettings) -> dict[str, Any]:
    """Denoise ``latent["samples"]`` and return a new LATENT dict (on the CPU)."""
    import torch

    if s.denoise <= 0.0:
        return dict(latent)
    x0 = latent["samples"].to(torch.float32)
    noise = make_noise(s.seed, tuple(x0.shape))
    with model.unet.use() as unet:
        device, dtype = unet.device, unet.dtype

        def run() -> Any:  # from scratch, so an OOM retry starts with a fresh scheduler state
            scheduler = make_scheduler(model.scheduler_config, s.sampler_name, s.scheduler)
            if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE's Brownian tree: seeded too
                scheduler.noise_sampler_seed = generator_seed(s.seed) + 1
            timesteps, begin = plan_timesteps(scheduler, s, device)
            x = _initial(scheduler, x0.to(device), noise.to(device), timesteps, s)
            if not s.add_noise and begin > 0 and _vp(scheduler):  # a ComfyUI-space leftover latent
                x = x * _alpha(scheduler, scheduler.timesteps[begin])
            cond = _cfg_batch(positive, negative, x.shape[0], s.cfg).to(device, dtype)
            step_gen = torch.Generator("cpu").manual_seed(generator_seed(s.seed) + 1)
            x, denoised = _loop(unet, scheduler, timesteps, x, cond, s.cfg, step_gen)
            end = begin + len(timesteps)
            if len(timesteps) and end < len(scheduler.timesteps):  # KSamplerAdvanced stopped early
                if s.force_full_denoise and not type(scheduler).__name__.startswith("Euler"):
                    return denoised  # = a final step to sigma 0 (Euler got sigma 0 in its table)
                if _vp(scheduler):  # hand on ComfyUI's x0 + sigma * noise, not diffusers' VP x
                    return x / _alpha(scheduler, scheduler.timesteps[end])
            return x

        x = oom_guard(run, device)
    out = dict(latent)
    out["samples"] = x.to("cpu", torch.float32)
    return out


def _initial(scheduler: Any, x0: Any, noise: Any, timesteps: Any, s: SampleSettings) -> Any:
    if not s.add_noise or len(timesteps) == 0:
        return x0.clone()
    if s.denoise >= 1.0 and s.start_at_step <= 0 and not bool(x0.any()):
        return noise * scheduler.init_noise_sigma  # txt2img from an empty latent
    return scheduler.add_noise(x0, noise, timesteps[:1])


def _cfg_batch(positive: Any, negative: Any, batch: int, cfg: float) -> Any:
    import torch

    pos = cond_tensor(positive).to(torch.float32)
    pos = pos.expand(batch, *pos.shape[1:]) if pos.shape[0] == 1 else pos
    if cfg == 1.0:  # ComfyUI skips the negative pass at cfg 1; so do we
        return pos
    neg = cond_tensor(negative).to(torch.float32)
    neg = neg.expand(batch, *neg.shape[1:]) if neg.shape[0] == 1 else neg
    if neg.shape[2] != pos.shape[2]:
        raise ValueError(f"positive has width {pos.shape[2]} but negative has {neg.shape[2]}; "
                         "encode both with the same CLIP")
    if neg.shape[1] != pos.shape[1]:  # long prompts: repeat both to a common length, as ComfyUI
        length = math.lcm(pos.shape[1], neg.shape[1])
        pos = pos.repeat(1, length // pos.shape[1], 1)
        neg = neg.repeat(1, length // neg.shape[1], 1)
    return torch.cat([neg, pos])


def _vp(scheduler: Any) -> bool:
    """diffusers' variance-preserving schedulers (DDIM, DPM-Solver, UniPC...) start at sigma 1."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) == 1.0


def _alpha(scheduler: Any, t: Any) -> float:
    return float(scheduler.alphas_cumprod[int(t)]) ** 0.5


def _denoised(scheduler: Any, out: Any, x: Any, t: Any, eps: Any) -> Any:
    """The step's x0 prediction (computed from the model output for schedulers not giving it)."""
    pred = getattr(out, "pred_original_sample", None)
    if pred is not None or not _vp(scheduler):
        return pred if pred is not None else out.prev_sample
    a = _alpha(scheduler, t)
    s = (1.0 - a * a) ** 0.5
    if scheduler.config.get("prediction_type") == "v_prediction":
        return a * x - s * eps
    return (x - s * eps) / a


def _loop(unet: Any, scheduler: Any, timesteps: Any, x: Any, cond: Any, cfg: float, gen: Any
          ) -> tuple[Any, Any]:
    """(final latent, x0 prediction of the last step)."""
    import torch

    ctx = current()
    total = len(timesteps)
    previews = AsyncPreviews(ctx, PreviewThrottle())
    takes_gen = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": gen} if takes_gen else {}
    denoised = x
    with torch.inference_mode():
        for i, t in enumerate(timesteps):
            ctx.raise_if_cancelled()
            eps = _predict(unet, scheduler, x, t, cond, cfg)
            out = scheduler.step(eps, t, x, **extra)
            denoised = _denoised(scheduler, out, x, t, eps) if i == total - 1 else None
            x = out.prev_sample
            ctx.progress(i + 1, total)
            pred = getattr(out, "pred_original_sample", None)
            previews.step(i, total, pred if pred is not None else x)
        previews.flush()
    return x, denoised


def _predict(unet: Any, scheduler: Any, x: Any, t: Any, cond: Any, cfg: float) -> Any:
    import torch

    doubled = cfg != 1.0
    x_in = torch.cat([x, x]) if doubled else x
    x_in = scheduler.scale_model_input(x_in, t).to(unet.dtype)
    eps = unet(x_in, t, encoder_hidden_states=cond, return_dict=False)[0].to(x.dtype)
    if not doubled:
        return eps
    uncond, text = eps.chunk(2)
    return uncond + cfg * (text - uncond)
