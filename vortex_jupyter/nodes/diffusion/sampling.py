"""Running a sampler: KSampler's semantics and the custom-sampling pieces, on one core loop.

ComfyUI splits sampling into NOISE (the starting noise), a GUIDER (model + prompts -> one
denoised estimate), a SAMPLER (the solver) and SIGMAS (the schedule); KSampler is these four
with fixed choices. Here too: ``ksample`` (KSampler / KSamplerAdvanced) builds a
``CFGGuider``, a ``Sampler`` and ``ksampler_sigmas`` and calls ``run``, the same function
SamplerCustom and SamplerCustomAdvanced call, so equal settings give bit-identical latents.

``run`` does, in order (ComfyUI's ``CFGGuider.sample`` / ``KSAMPLER.sample``):

1. empty sigmas return the latent unchanged;
2. the start: ``latent + noise * sigma_0`` (``sqrt(1 + sigma_0^2)`` from the model's top sigma);
3. with a ``noise_mask`` (inpainting), every model call sees the kept region re-noised to the
   current sigma and its output has the kept region restored (the mask is resized to the
   latent, bilinear);
4. the solver walks the sigmas; each step reports progress, a preview of the denoised
   estimate, and stops on cancel.

Noise: ``torch.randn(latent.shape, generator=torch.manual_seed(seed))`` on the CPU, per
``batch_index`` when the latent carries one (LatentFromBatch), exactly ComfyUI's
``prepare_noise``: a seed gives ComfyUI's noise (torch keeps the low 32 bits of the seed, in
ComfyUI as here). With a pinned ``torch.set_num_threads`` a seed gives bit-identical latents
across runs and processes.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..context import current
from . import latent_format
from .components import ModelHandle, oom_guard
from .guiders import CFGGuider, Guider, model_apply
from .model_sampling import ModelSampling
from .previews import AsyncPreviews, PreviewThrottle
from .samplers import RANDOM_INPAINT_NOISE, SOLVERS, check_sampler
from .schedules import ksampler_sigmas
from .solvers import Run


@dataclass(frozen=True)
class Sampler:
    """A SAMPLER value: a solver name and its options (KSamplerSelect, SamplerEulerAncestral...)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = check_sampler(self.name)
        if problem:
            raise ValueError(problem)

    def solver(self) -> Callable[..., torch.Tensor]:
        module, function, fixed = SOLVERS[self.name]
        fn = getattr(importlib.import_module(f"{__package__}.{module}"), function)
        return lambda run, x, sigmas: fn(run, x, sigmas, **{**fixed, **self.options})

    def __repr__(self) -> str:
        return f"<SAMPLER {self.name}>"


def prepare_noise(samples: torch.Tensor, seed: int, batch_index: Any = None) -> torch.Tensor:
    """ComfyUI's initial noise: one generator seeded with ``seed``; with ``batch_index`` the
    noise of image ``i`` is the ``i``-th draw, so a batch slice keeps its images' noise."""
    generator = torch.Generator("cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    if batch_index is None:
        return torch.randn(samples.size(), dtype=torch.float32, generator=generator)
    indices = [int(i) for i in np.asarray(batch_index).reshape(-1)]
    unique = sorted(set(indices))
    draws = {}
    for i in range(unique[-1] + 1):
        noise = torch.randn([1, *samples.shape[1:]], dtype=torch.float32, generator=generator)
        if i in unique:
            draws[i] = noise
    return torch.cat([draws[i] for i in indices], dim=0)


class RandomNoise:
    """A NOISE value: ComfyUI's RandomNoise(noise_seed)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def generate(self, latent: dict[str, Any]) -> torch.Tensor:
        return prepare_noise(latent["samples"], self.seed, latent.get("batch_index"))

    def __repr__(self) -> str:
        return f"<NOISE seed={self.seed}>"


class DisableNoise(RandomNoise):
    """A NOISE value of zeros (the latent is sampled as it is)."""

    def __init__(self) -> None:
        super().__init__(0)

    def generate(self, latent: dict[str, Any]) -> torch.Tensor:
        return torch.zeros(latent["samples"].shape, dtype=torch.float32)


def fix_empty_latent_channels(model: Any, latent: Any) -> Any:
    """An all-zero LATENT with another channel count than the model's (EmptyLatentImage's 4 for
    an SD3/Flux model, EmptySD3LatentImage's 16 for SD1) becomes zeros of the model's channels,
    BEFORE the noise is drawn for it, as ComfyUI's ``fix_empty_latent_channels``."""
    if not isinstance(latent, dict) or "samples" not in latent or not hasattr(model, "unet"):
        return latent
    samples = torch.as_tensor(latent["samples"])
    if samples.ndim != 4 or bool(samples.any()):
        return latent
    from .transformer_apply import latent_channels

    with model.unet.use() as unet:
        channels = latent_channels(str(getattr(model, "family", "sd1")), unet)
    if samples.shape[1] == channels:
        return latent
    return {**latent, "samples": torch.zeros([samples.shape[0], channels, *samples.shape[2:]])}


def _latent_samples(latent: Any, model: ModelHandle, unet: Any) -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError("input 'latent_image' is not a LATENT (fix: connect an EmptyLatentImage, VAEEncode "
                         "or sampler output)")
    from . import latent_format
    from .transformer_apply import latent_channels

    samples = torch.as_tensor(latent_format.samples_in(latent, latent_format.of_model(model))).to(torch.float32)

    channels = latent_channels(model.family, unet)
    if samples.shape[1] != channels and not bool(samples.any()):  # ComfyUI: an empty latent adapts
        samples = torch.zeros([samples.shape[0], channels, *samples.shape[2:]])
    return samples


def _mask_for(mask: Any, shape: tuple[int, ...], device: Any) -> torch.Tensor:
    """A noise mask resized (bilinear) to the latent and repeated over channels and batch."""
    m = torch.as_tensor(mask, dtype=torch.float32)
    m = m.reshape(-1, 1, m.shape[-2], m.shape[-1])
    m = torch.nn.functional.interpolate(m, size=shape[2:], mode="bilinear")
    if m.shape[1] < shape[1]:
        m = m.repeat(1, shape[1], 1, 1)[:, :shape[1]]
    if m.shape[0] != shape[0]:
        m = m.repeat(math.ceil(shape[0] / m.shape[0]), 1, 1, 1)[:shape[0]]
    return m.to(device)


def _steps_of(sampler: Sampler, sigmas: torch.Tensor) -> int | None:
    """How many progress steps the solver reports (None: decided as it goes)."""
    if sampler.name == "dpm_adaptive":
        return None
    if sampler.name == "dpm_fast":
        return math.floor((len(sigmas) - 1) / 3) + 1
    return len(sigmas) - 1


def run(guider: Guider, sampler: Sampler, sigmas: Any, noise: torch.Tensor, latent: dict[str, Any],
        seed: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(samples, the last step's denoised estimate) on the CPU; see the module docstring."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
    model = guider.model
    with model.unet.use() as unet:
        samples = _latent_samples(latent, model, unet)
        if sigmas.shape[-1] == 0:
            return samples, None
        device = unet.device
        ms = ModelSampling.from_config(model.scheduler_config)

        def attempt() -> tuple[torch.Tensor, torch.Tensor | None]:
            return _sample(guider, unet, ms, sampler, sigmas.to(device), noise, samples, latent, seed)

        x, denoised = oom_guard(attempt, device)
    return x.to("cpu", torch.float32), None if denoised is None else denoised.to("cpu", torch.float32)


def _sample(guider: Guider, unet: Any, ms: ModelSampling, sampler: Sampler, sigmas: torch.Tensor,
            noise: torch.Tensor, samples: torch.Tensor, latent: dict[str, Any], seed: int | None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    device = sigmas.device
    noise, start = noise.to(device, torch.float32), samples.to(device)
    if noise.shape != start.shape:
        raise ValueError(f"the noise has shape {tuple(noise.shape)} but the latent {tuple(start.shape)} "
                         "(fix: generate the noise for this latent)")
    extras: dict[str, Any] = {} if seed is None else {"seed": int(seed)}
    mask = latent.get("noise_mask") if isinstance(latent, dict) else None
    denoise_mask = None if mask is None else _mask_for(mask, tuple(start.shape), device)
    from .inpaint import concat_source  # an inpainting UNet's extra input channels (``inpaint.py``)

    concat = concat_source(guider.family, unet, start, denoise_mask)
    if concat is not None:
        extras["concat"] = concat
    denoise = guider.bind(model_apply(guider.family, unet, ms), ms, tuple(start.shape), device, extras)
    if denoise_mask is not None:
        denoise = _inpainting(denoise, denoise_mask, start, _inpaint_noise(sampler, noise, seed), ms)
    ctx = current()
    total = _steps_of(sampler, sigmas)
    previews = AsyncPreviews(ctx, PreviewThrottle())
    last: list[torch.Tensor] = []

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        ctx.raise_if_cancelled()
        return denoise(x, sigma)

    def step(i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        last[:] = [denoised]
        ctx.progress(i + 1, total)
        previews.step(i, total or i + 2, denoised)
        ctx.raise_if_cancelled()

    x = ms.noise_scaling(sigmas[0], noise, start, ms.is_max_denoise(sigmas[0]))
    with torch.inference_mode():
        x = sampler.solver()(Run(model, ms, seed, step, extras), x, sigmas)
        x = ms.inverse_noise_scaling(sigmas[-1], x)
    previews.flush()
    return x, (last[0] if last else None)


def _inpaint_noise(sampler: Sampler, noise: torch.Tensor, seed: int | None) -> torch.Tensor:
    if sampler.name not in RANDOM_INPAINT_NOISE:
        return noise
    generator = torch.Generator("cpu").manual_seed(((seed if seed is not None else 41) + 1) & (2 ** 64 - 1))
    return torch.randn(noise.shape, generator=generator).to(noise.device, noise.dtype)


def _inpainting(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mask: torch.Tensor,
                latent: torch.Tensor, noise: torch.Tensor, ms: ModelSampling
                ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Keep ``1 - mask`` of the latent: re-noised to sigma going in, restored coming out."""
    keep = 1.0 - mask

    def wrapped(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = x * mask + ms.noise_scaling(sigma, noise, latent) * keep
        return denoise(x, sigma) * mask + latent * keep

    return wrapped


# ---------------------------------------------------------------------------------- KSampler


@dataclass(frozen=True)
class SampleSettings:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    add_noise: bool = True
    start_at_step: int | None = None
    end_at_step: int | None = None
    #: ComfyUI's ``force_full_denoise``: an early end goes all the way to sigma 0.
    force_full_denoise: bool = False


def window(sigmas: torch.Tensor, start: int | None, last: int | None, force_full_denoise: bool
           ) -> torch.Tensor | None:
    """KSamplerAdvanced's step window over the sigmas; None when it starts past the end."""
    if last is not None and last < len(sigmas) - 1:
        sigmas = sigmas[:last + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start is not None:
        if start >= len(sigmas) - 1:
            return None
        sigmas = sigmas[start:]
    return sigmas


def sample(model: ModelHandle, positive: Any, negative: Any, latent: dict[str, Any], s: SampleSettings
           ) -> dict[str, Any]:
    """KSampler / KSamplerAdvanced (ComfyUI's ``common_ksampler``): a new LATENT dict."""
    ms = ModelSampling.from_config(model.scheduler_config)
    sigmas = window(ksampler_sigmas(ms, s.sampler_name, s.scheduler, s.steps, s.denoise),
                    s.start_at_step, s.end_at_step, s.force_full_denoise)
    out = dict(latent)
    if sigmas is None:  # the window starts after the last step: nothing to do
        return out
    out[latent_format.KEY] = latent_format.of_model(model)
    latent = fix_empty_latent_channels(model, latent)
    source: RandomNoise = RandomNoise(s.seed) if s.add_noise else DisableNoise()
    noise = source.generate(latent)
    out["samples"], _ = run(CFGGuider(model, positive, negative, s.cfg), Sampler(s.sampler_name), sigmas,
                            noise, latent, s.seed)
    return out
