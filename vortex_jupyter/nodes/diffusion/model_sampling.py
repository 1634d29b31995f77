"""How a discrete-time diffusion model maps noise levels (sigma) to its inputs and outputs.

This is ComfyUI's ``ModelSamplingDiscrete`` semantics, which every sampler here relies on:

- the training schedule gives one sigma per timestep, ``sigma_t = sqrt((1 - a_t) / a_t)`` with
  ``a_t`` the cumulative product of ``1 - beta``; SD1's "scaled_linear" betas are
  ``linspace(sqrt(beta_start), sqrt(beta_end), 1000) ** 2`` (what ComfyUI calls "linear");
  the table is computed in float64 and kept in float32, as ComfyUI keeps it;
- ``timestep(sigma)`` is the index of the training sigma nearest in log space (an integer, as
  ComfyUI feeds the UNet), ``sigma(t)`` interpolates log-sigma at a fractional timestep;
- the model sees ``x / sqrt(sigma^2 + 1)`` and predicts noise (epsilon) or velocity (v); the
  denoised estimate is ``x - eps * sigma`` or ``x / (sigma^2 + 1) - v * sigma / sqrt(sigma^2 + 1)``;
- ModelSamplingDiscrete (``patch_config``) can re-declare the prediction: ``x0`` (the output is
  the denoised estimate), ``img_to_img`` (x0, and the model sees ``x`` unscaled), ``lcm`` (eps
  with LCM's boundary condition, on every 20th training sigma: 50 sigmas, timestep
  ``20 * index + 19``), and ``zsnr`` (the table rescaled to zero terminal SNR, its top sigma
  ~4518.76);
- a sampling run starts from ``latent + noise * sigma_0`` (``sqrt(1 + sigma_0^2)`` when
  ``sigma_0`` is the model's largest sigma: "max denoise", ComfyUI's choice for txt2img).

Latents between nodes are in this space (``x = x0 + sigma * noise``), already multiplied by
the VAE's scaling factor, so ComfyUI's ``process_latent_in/out`` are identities here.

>>> ms = ModelSampling.from_config({"beta_start": 0.00085, "beta_end": 0.012,
...                                 "beta_schedule": "scaled_linear"})  # doctest: +SKIP
>>> round(float(ms.sigma_max), 3), int(ms.timestep(ms.sigma_max))     # doctest: +SKIP
(14.615, 999)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import ModelError

#: ``percent_to_sigma`` of 0 %: above any sigma, so a range starting at 0 % is always active.
SIGMA_INFINITY = 999999999.9


def _betas(config: dict[str, Any], steps: int) -> torch.Tensor:
    start = float(config.get("beta_start", 0.00085))
    end = float(config.get("beta_end", 0.012))
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        return torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float64)
    if schedule == "squaredcos_cap_v2":
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise ModelError(f"the model's scheduler config has beta_schedule {schedule!r}, which we cannot sample",
                     hint="use a model with a scaled_linear, linear or squaredcos_cap_v2 schedule")


#: What ModelSamplingDiscrete's ``sampling`` choices set as the config's ``prediction_type``.
PREDICTIONS = {"eps": "epsilon", "v_prediction": "v_prediction", "lcm": "lcm", "x0": "x0",
               "img_to_img": "img_to_img"}
#: The scheduler-config key ModelSamplingDiscrete's ``zsnr`` sets (ours, not diffusers').
ZSNR_KEY = "vortex_zsnr"
#: The scheduler-config key that marks a flow-matching model ("sd3", "auraflow", "flux").
FLOW_KEY = "vortex_flow"
#: LCM's distilled schedule keeps 50 of the 1000 training sigmas (ComfyUI's original_timesteps).
LCM_TIMESTEPS = 50


def patch_config(config: dict[str, Any], sampling: str, zsnr: bool) -> dict[str, Any]:
    """A copy of a scheduler config with ModelSamplingDiscrete's choices (the input is kept)."""
    if sampling not in PREDICTIONS:
        raise ValueError(f"widget 'sampling' is {sampling!r}; choose one of {', '.join(PREDICTIONS)}")
    return {**config, "prediction_type": PREDICTIONS[sampling], ZSNR_KEY: bool(zsnr)}


def rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Zero terminal SNR (Lin et al. 2023, as ComfyUI): shift and scale sqrt(alpha_bar) so the
    last timestep is pure noise, keeping the first; the last alpha_bar is pinned to 4.897e-08
    (ComfyUI's constant) so the top sigma stays finite."""
    root = (1.0 / (sigmas * sigmas + 1.0)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alphas_bar = root ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


@dataclass(eq=False)
class ModelSampling:
    """The sigma table of a model and the conversions around it (see the module docstring)."""

    sigmas: torch.Tensor  # float32, ascending (timestep 0 first)
    prediction: str = "epsilon"  # or "v_prediction", "lcm", "x0", "img_to_img"
    #: Training timesteps per table entry (20 for LCM's distilled table, else 1).
    skip_steps: int = 1

    def __post_init__(self) -> None:
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelSampling:
        """From a diffusers scheduler config (``ModelHandle.scheduler_config``); a flow-matching
        model's config (``flow_sampling.FLOW_KEY``: SD3, AuraFlow, Flux) gives its flow sampling,
        which has the same interface."""
        if config.get(FLOW_KEY):
            from .flow_sampling import from_config as flow

            return flow(config)  # type: ignore[return-value]  # same interface (duck-typed)
        steps = int(config.get("num_train_timesteps", 1000))
        alphas_cumprod = torch.cumprod(1.0 - _betas(config, steps), dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        if config.get(ZSNR_KEY):
            sigmas = rescale_zero_terminal_snr(sigmas)
        sigmas = sigmas.float()
        prediction = str(config.get("prediction_type", "epsilon"))
        if prediction not in PREDICTIONS.values():
            raise ModelError(f"the model predicts {prediction!r}; KSampler supports epsilon and v_prediction models",
                             hint="use ModelSamplingDiscrete to declare what the model predicts")
        if prediction != "lcm":
            return cls(sigmas, prediction)
        skip = steps // LCM_TIMESTEPS
        kept = [sigmas[steps - 1 - i * skip] for i in reversed(range(LCM_TIMESTEPS))]
        return cls(torch.stack(kept), prediction, skip)

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The training timestep nearest to ``sigma`` in log space (integer-valued)."""
        log_sigma = sigma.to(self.log_sigmas.device).log()
        dists = log_sigma - self.log_sigmas[:, None]
        index = dists.abs().argmin(dim=0).view(sigma.shape)
        if self.skip_steps > 1:
            index = index * self.skip_steps + (self.skip_steps - 1)
        return index.to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (fractional) timestep: log-sigma interpolated between its neighbours."""
        t = timestep.float().to(self.log_sigmas.device)
        if self.skip_steps > 1:
            t = (t - (self.skip_steps - 1)) / self.skip_steps
        t = torch.clamp(t, min=0, max=len(self.sigmas) - 1)
        low, high = t.floor().long(), t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at ``percent`` of the way through sampling (0 = start, 1 = end), ComfyUI's
        convention for timestep ranges: 0 % is "always", 100 % is sigma 0."""
        if percent <= 0.0:
            return SIGMA_INFINITY
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)).item())

    # ---- the model's input and output --------------------------------------------------

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.prediction == "img_to_img":
            return x
        return x / _dims(sigma ** 2 + 1.0, x) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s = _dims(sigma, x)
        if self.prediction == "v_prediction":
            return x / (s ** 2 + 1.0) - output * s / (s ** 2 + 1.0) ** 0.5
        if self.prediction in ("x0", "img_to_img"):
            return output
        if self.prediction == "lcm":
            return self._lcm_boundary(sigma, x - output * s, x)
        return x - output * s

    def _lcm_boundary(self, sigma: torch.Tensor, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LCM's consistency boundary condition (sigma_data 0.5, timestep scaling 10)."""
        t = _dims(self.timestep(torch.as_tensor(sigma, device=x.device)).to(x.dtype) * 10.0, x)
        c_skip = 0.25 / (t ** 2 + 0.25)
        c_out = t / (t ** 2 + 0.25) ** 0.5
        return c_out * x0 + c_skip * x

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """The starting point of a run (and how ancestral/LCM steps re-noise)."""
        scale = torch.sqrt(1.0 + sigma ** 2) if max_denoise else sigma
        return latent + noise * _dims(scale, noise)

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The end of a run: the latent as it is (flow models divide by ``1 - sigma``)."""
        return latent

    def is_max_denoise(self, sigma: Any) -> bool:
        """Whether a run starting at ``sigma`` starts from pure noise (ComfyUI's max_denoise)."""
        top, first = float(self.sigma_max), float(sigma)
        return math.isclose(top, first, rel_tol=1e-05) or first > top


def _dims(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-batch sigma shaped to broadcast over ``like`` ([B, C, H, W])."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        return value
    return value.reshape(value.shape[0], *([1] * (like.ndim - 1)))
