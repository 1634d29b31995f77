"""How a flow-matching model (SD3, AuraFlow, Flux) maps noise levels to its inputs and outputs.

ComfyUI's ``ModelSamplingDiscreteFlow`` / ``ModelSamplingFlux`` with the ``CONST`` prediction,
the counterpart of ``model_sampling.ModelSampling`` for rectified-flow models:

- a noise level ``sigma`` is in [0, 1]: ``x = (1 - sigma) * x0 + sigma * noise`` (so a run starts
  from ``sigma_0 * noise + (1 - sigma_0) * latent``), the model sees ``x`` unscaled, predicts the
  velocity ``v`` and the denoised estimate is ``x - v * sigma``;
- SD3 / AuraFlow (``FlowSampling``): timestep ``t = sigma * multiplier`` (1000 for SD3, 1 for
  AuraFlow) and ``sigma(t) = time_snr_shift(shift, t / multiplier)``, with
  ``time_snr_shift(a, t) = a * t / (1 + (a - 1) * t)``; its table is ``sigma(k / 1000 *
  multiplier)`` for ``k = 1 .. 1000``;
- Flux (``FluxSampling``): timestep ``t = sigma`` and ``sigma(t) = flux_time_shift(mu, 1, t)``,
  with ``flux_time_shift(mu, s, t) = e^mu / (e^mu + (1 / t - 1) ^ s)``; its table has 10,000
  entries ``sigma(k / 10000)``; ModelSamplingFlux sets ``mu`` from the image size
  (``flux_mu``: linear in the token count ``width * height / 256``, ``base_shift`` at 256
  tokens, ``max_shift`` at 4096);
- ``percent_to_sigma`` is 1 at 0 % and 0 at 100 %, the shifted ``1 - percent`` between.

The schedulers read only ``sigmas``, ``sigma_min/max``, ``sigma(t)`` and ``timestep(sigma)``,
so every ComfyUI scheduler works on these tables as it does on a discrete model's.

>>> round(time_snr_shift(3.0, 0.5), 4), round(flux_mu(1024, 1024), 4)
(0.75, 1.15)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

#: ModelSamplingFlux's token counts where mu is ``base_shift`` and ``max_shift``.
FLUX_BASE_TOKENS, FLUX_MAX_TOKENS = 256, 4096


def time_snr_shift(alpha: float, t: Any) -> Any:
    """SD3's timestep shift (an identity at ``alpha == 1``, as ComfyUI short-cuts it)."""
    if alpha == 1.0:
        return t
    return alpha * t / (1 + (alpha - 1) * t)


def flux_time_shift(mu: float, sigma: float, t: Any) -> Any:
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def flux_mu(width: int, height: int, max_shift: float = 1.15, base_shift: float = 0.5) -> float:
    """ModelSamplingFlux's shift for an image size: a 16x16-pixel patch is one token (8x VAE,
    2x2 patches); mu is the line through (256, base_shift) and (4096, max_shift)."""
    slope = (max_shift - base_shift) / (FLUX_MAX_TOKENS - FLUX_BASE_TOKENS)
    return (width * height / (8 * 8 * 2 * 2)) * slope + (base_shift - slope * FLUX_BASE_TOKENS)


def _dims(value: Any, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value if value.ndim == 0 else value.reshape(value.shape[0], *([1] * (like.ndim - 1)))


@dataclass(eq=False)
class _Const:
    """ComfyUI's ``CONST`` prediction (velocity, the model sees ``x`` as it is)."""

    sigmas: torch.Tensor = field(init=False)
    prediction = "flow"

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x

    def calculate_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x - output * _dims(sigma, x)

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        s = _dims(sigma, noise)
        return s * noise + (1.0 - s) * latent

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent / (1.0 - _dims(sigma, latent))

    def is_max_denoise(self, sigma: Any) -> bool:
        top, first = float(self.sigma_max), float(sigma)
        return math.isclose(top, first, rel_tol=1e-05) or first > top

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _shift(self, t: float) -> float:
        raise NotImplementedError

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self._shift(1.0 - percent))


@dataclass(eq=False)
class FlowSampling(_Const):
    """SD3 (``multiplier`` 1000, ModelSamplingSD3's default shift 3.0) and AuraFlow
    (``multiplier`` 1.0, default shift 1.73)."""

    shift: float = 1.0
    multiplier: float = 1000.0
    timesteps: int = 1000

    def __post_init__(self) -> None:
        steps = torch.arange(1, self.timesteps + 1, 1) / self.timesteps
        self.sigmas = self.sigma(steps * self.multiplier)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.multiplier

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(time_snr_shift(self.shift, timestep / self.multiplier))

    def _shift(self, t: float) -> float:
        return float(time_snr_shift(self.shift, t))


@dataclass(eq=False)
class FluxSampling(_Const):
    """Flux: ``shift`` is mu (ModelSamplingFlux's default 1.15; ``flux_mu`` for an image size)."""

    shift: float = 1.15
    timesteps: int = 10000

    def __post_init__(self) -> None:
        self.sigmas = self.sigma(torch.arange(1, self.timesteps + 1, 1) / self.timesteps)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(flux_time_shift(self.shift, 1.0, timestep))

    def _shift(self, t: float) -> float:
        return float(flux_time_shift(self.shift, 1.0, t))


#: The scheduler-config keys a flow-matching MODEL carries (``model_sampling.FLOW_KEY`` names
#: the kind): its shift and, for SD3/AuraFlow, the timestep multiplier.
SHIFT_KEY, MULTIPLIER_KEY = "vortex_shift", "vortex_multiplier"
#: Each kind's defaults, as ComfyUI's model configs set them (Flux dev: ModelSamplingFlux's
#: mu 1.15; Flux schnell is a plain flow model with shift 1 and multiplier 1).
DEFAULTS = {"sd3": (3.0, 1000.0), "auraflow": (1.73, 1.0), "flux": (1.15, 1.0), "flow": (1.0, 1.0)}


def flow_config(kind: str, shift: float | None = None, multiplier: float | None = None) -> dict[str, Any]:
    """The scheduler config of a flow-matching MODEL (``kind``: sd3, auraflow, flux, flow)."""
    from .model_sampling import FLOW_KEY

    base_shift, base_mult = DEFAULTS[kind]
    return {FLOW_KEY: kind, SHIFT_KEY: float(base_shift if shift is None else shift),
            MULTIPLIER_KEY: float(base_mult if multiplier is None else multiplier)}


def from_config(config: dict[str, Any]) -> FlowSampling | FluxSampling:
    from .model_sampling import FLOW_KEY

    kind = str(config[FLOW_KEY])
    base_shift, base_mult = DEFAULTS.get(kind, DEFAULTS["flow"])
    shift = float(config.get(SHIFT_KEY, base_shift))
    if kind == "flux":
        return FluxSampling(shift=shift)
    return FlowSampling(shift=shift, multiplier=float(config.get(MULTIPLIER_KEY, base_mult)))
