"""Noise schedules: a number of steps -> the sigmas a sampler walks down (ComfyUI's formulas).

Every schedule returns a float32 CPU tensor of ``steps + 1`` sigmas ending in 0 (ComfyUI's
``SIGMAS`` value). The named ones (KSampler's ``scheduler`` widget, BasicScheduler) are
computed over the model's training sigmas (``ModelSampling``):

==================  ===========================================================================
normal              timesteps ``linspace(999, 0, steps)``, sigma interpolated at each
simple              every ``1000 / steps``-th training sigma from the top (index truncated)
sgm_uniform         like normal over ``steps + 1`` timesteps, the last dropped
ddim_uniform        training sigmas 1, 1 + k, 1 + 2k, ... (``k = 1000 // steps``) reversed: may
                    give one step more than asked (8 for 7), as in ComfyUI
karras              Karras et al.'s rho = 7 ramp between the model's sigma_min and sigma_max
exponential         log-linear between sigma_max and sigma_min
beta                training sigmas at Beta(0.6, 0.6) quantiles, repeats dropped (may be shorter)
linear_quadratic    Mochi's schedule in units of sigma_max
kl_optimal          uniform in ``arctan(sigma)``
==================  ===========================================================================

``ksampler_sigmas`` adds what KSampler does on top: ``denoise < 1`` computes ``int(steps /
denoise)`` steps and keeps the last ``steps``; dpm_2, dpm_2_ancestral and uni_pc(_bh2) get
one step more with the penultimate sigma dropped (ComfyUI's DISCARD_PENULTIMATE_SIGMA_SAMPLERS).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .model_sampling import ModelSampling

SCHEDULER_NAMES = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal")
DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})
#: Align Your Steps' published noise levels (NVIDIA), 10 steps; other counts interpolate them.
AYS_NOISE_LEVELS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}


def _tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    frac = torch.arange(n, dtype=torch.float32).div_(max(n - 1, 1))
    out = frac.new_zeros(n + 1)
    out[:-1] = (frac * math.atan(sigma_min) + (1 - frac) * math.atan(sigma_max)).tan_()
    return out


def normal(ms: ModelSampling, steps: int, sgm: bool = False) -> torch.Tensor:
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    zero_end = not sgm and math.isclose(float(ms.sigma(end)), 0.0, abs_tol=1e-5)
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:  # a zero-terminal-SNR model already ends at sigma 0: one more step instead of a 0
        timesteps = torch.linspace(start, end, steps + 1 if zero_end else steps)
    sigmas = [float(ms.sigma(t)) for t in timesteps]
    return _tensor(sigmas if zero_end else [*sigmas, 0.0])


def simple(ms: ModelSampling, steps: int) -> torch.Tensor:
    stride = len(ms.sigmas) / steps
    return _tensor([float(ms.sigmas[-(1 + int(x * stride))]) for x in range(steps)] + [0.0])


def ddim_uniform(ms: ModelSampling, steps: int) -> torch.Tensor:
    picked: list[float] = []
    if math.isclose(float(ms.sigmas[1]), 0.0, abs_tol=1e-5):
        steps += 1
    else:
        picked = [0.0]
    stride = max(len(ms.sigmas) // steps, 1)
    picked += [float(ms.sigmas[x]) for x in range(1, len(ms.sigmas), stride)]
    return _tensor(picked[::-1])


def beta(ms: ModelSampling, steps: int, alpha: float = 0.6, beta_: float = 0.6) -> torch.Tensor:
    from scipy import stats

    last = len(ms.sigmas) - 1
    ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), alpha, beta_) * last)
    picked = [float(ms.sigmas[int(t)]) for i, t in enumerate(ts) if i == 0 or t != ts[i - 1]]
    return _tensor([*picked, 0.0])


def linear_quadratic(ms: ModelSampling, steps: int, threshold: float = 0.025) -> torch.Tensor:
    """Linear for the first ``steps // 2`` steps, then quadratic to 0, times sigma_max."""
    if steps == 1:
        values = [1.0, 0.0]
    else:
        k = steps // 2
        q = steps - k
        rise = k - threshold * steps
        a = rise / (k * q * q)
        b = threshold / k - 2 * rise / (q * q)
        c = a * k * k
        noise = [i * threshold / k for i in range(k)] + [a * i * i + b * i + c for i in range(k, steps)] + [1.0]
        values = [1.0 - x for x in noise]
    return _tensor(values) * ms.sigma_max.cpu()


def calculate_sigmas(ms: ModelSampling, scheduler: str, steps: int) -> torch.Tensor:
    """The named schedule over ``steps`` (ComfyUI's ``calculate_sigmas``)."""
    lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    if scheduler == "normal":
        return normal(ms, steps)
    if scheduler == "sgm_uniform":
        return normal(ms, steps, sgm=True)
    if scheduler == "simple":
        return simple(ms, steps)
    if scheduler == "ddim_uniform":
        return ddim_uniform(ms, steps)
    if scheduler == "beta":
        return beta(ms, steps)
    if scheduler == "linear_quadratic":
        return linear_quadratic(ms, steps)
    if scheduler == "karras":
        return karras(steps, lo, hi)
    if scheduler == "exponential":
        return exponential(steps, lo, hi)
    if scheduler == "kl_optimal":
        return kl_optimal(steps, lo, hi)
    raise ValueError(f"scheduler {scheduler!r} is not one of {', '.join(SCHEDULER_NAMES)}")


def ksampler_sigmas(ms: ModelSampling, sampler: str, scheduler: str, steps: int, denoise: float = 1.0
                    ) -> torch.Tensor:
    """The sigmas KSampler walks for these widgets (empty for ``denoise <= 0``)."""

    def compute(n: int) -> torch.Tensor:
        if sampler in DISCARD_PENULTIMATE:
            sigmas = calculate_sigmas(ms, scheduler, n + 1)
            return torch.cat([sigmas[:-2], sigmas[-1:]])
        return calculate_sigmas(ms, scheduler, n)

    if denoise > 0.9999:
        return compute(steps)
    if denoise <= 0.0:
        return torch.zeros(0)
    return compute(int(steps / denoise))[-(steps + 1):]


def basic_scheduler(ms: ModelSampling, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """BasicScheduler: like KSampler's, without the penultimate-sigma rule."""
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0)
        total = int(steps / denoise)
    return calculate_sigmas(ms, scheduler, total)[-(steps + 1):]


def align_your_steps(model_type: str, steps: int, denoise: float) -> torch.Tensor:
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0)
        total = round(steps * denoise)
    levels = np.array(AYS_NOISE_LEVELS[model_type], dtype=np.float64)
    if steps + 1 != len(levels):  # log-linear interpolation of the published levels
        xs = np.linspace(0, 1, len(levels))
        ys = np.log(levels[::-1])
        levels = np.exp(np.interp(np.linspace(0, 1, steps + 1), xs, ys))[::-1].copy()
    levels = levels[-(total + 1):]
    levels[-1] = 0
    return torch.tensor(levels, dtype=torch.float32)


def sd_turbo(ms: ModelSampling, steps: int, denoise: float) -> torch.Tensor:
    """SDTurboScheduler: timesteps 999, 899, ... 99, starting later for denoise < 1."""
    start = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
    return append_zero(ms.sigma(timesteps))


def laplace(n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta_: float = 0.5) -> torch.Tensor:
    """LaplaceScheduler (Tiankai et al. 2024); like ComfyUI's, it does not end in 0."""
    x = torch.linspace(0, 1, n)
    lmb = mu - beta_ * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(lmb), min=sigma_min, max=sigma_max)


def vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """VPScheduler: the continuous variance-preserving schedule."""
    t = torch.linspace(1, eps_s, n)
    return append_zero(torch.sqrt(torch.special.expm1(beta_d * t ** 2 / 2 + beta_min * t)))
