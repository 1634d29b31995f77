"""The stochastic samplers (ancestral, SDE, DDPM, LCM) and the noise they add, as in ComfyUI.

Same signature as ``solvers``: ``solver(run, x, sigmas, **options) -> x``. The fresh noise each
step adds is reproducible from the run's seed, the way ComfyUI draws it:

- ancestral/DDPM/LCM: one CPU generator seeded with ``seed + 1`` (on a GPU: a generator on
  that device seeded with ``seed``), one ``randn`` of the latent's shape per step;
- the DPM++ SDE family: a Brownian tree (``torchsde.BrownianTree``, entropy = seed) between
  the smallest and largest sigma, so the noise of an interval does not depend on how the
  schedule was cut (the ``_gpu`` variants build it on the latent's device).

Options (``eta``, ``s_noise``, ``r``, ``solver_type``) keep ComfyUI's defaults; the sampler
nodes (SamplerEulerAncestral, SamplerDPMPP_2M_SDE, ...) pass other values.

On a flow-matching model (``snr.is_flow(run.ms)``, ComfyUI's CONST) the ancestral samplers take
ComfyUI's rectified-flow steps (``*_rf``: step down, then rescale the signal and re-noise to
the next level); the DPM++ SDE family steps in the flow's half log-SNR and Euler CFG++ scales
by its signal level ``alpha = 1 - sigma`` (``snr``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from .snr import half_log_snr, is_flow, offset_first_sigma, sigma_at
from .solvers import Run, to_d

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def default_noise(x: torch.Tensor, seed: int | None) -> NoiseSampler:
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed((seed + 1 if x.device.type == "cpu" else seed) & 0xFFFF_FFFF_FFFF_FFFF)
    return lambda sigma, sigma_next: torch.randn(x.size(), dtype=x.dtype, device=x.device, generator=generator)


class BrownianNoise:
    """Brownian increments between two sigmas, normalised to unit variance."""

    def __init__(self, x: torch.Tensor, sigmas: torch.Tensor, seed: int | None, cpu: bool = True) -> None:
        import torchsde

        lo, hi = sigmas[sigmas > 0].min(), sigmas.max()
        self.cpu = cpu
        w0 = torch.zeros_like(x)
        if cpu:
            lo, hi, w0 = lo.detach().cpu(), hi.detach().cpu(), w0.detach().cpu()
        entropy = seed if seed is not None else int(torch.randint(0, 2 ** 63 - 1, ()).item())
        self.tree = torchsde.BrownianTree(lo, w0, hi, entropy=entropy)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        sign = 1.0
        if t0 > t1:
            t0, t1, sign = t1, t0, -1.0
        device, dtype = t0.device, t0.dtype
        a, b = (t0.detach().cpu().float(), t1.detach().cpu().float()) if self.cpu else (t0, t1)
        with warnings.catch_warnings():  # "Should have tb<=t1": float32 rounding at the ends, harmless
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            w = self.tree(a, b).to(device=device, dtype=dtype) * sign
        return w / (t1 - t0).abs().sqrt()


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0) -> tuple[Any, Any]:
    """(sigma_down, sigma_up): the deterministic target and the noise to add back."""
    if not eta:
        return sigma_next, 0.0
    up = min(sigma_next, eta * (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
    return (sigma_next ** 2 - up ** 2) ** 0.5, up


def euler_ancestral(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0
                    ) -> torch.Tensor:
    if is_flow(run.ms):
        return euler_ancestral_rf(run, x, sigmas, eta, s_noise)
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, x, denoised)
        if down == 0:
            x = denoised
        else:
            x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i]) + noise(sigmas[i], sigmas[i + 1]) * s_noise * up
    return x


def rf_ancestral_step(sigma: Any, sigma_next: Any, eta: float) -> tuple[Any, Any, Any]:
    """(sigma_down, renoise, rescale) of a rectified-flow ancestral step: the deterministic
    target ``sigma_down = s' (1 + (s'/s - 1) eta)``, then ``x * rescale + noise * renoise``
    with ``rescale = (1 - s') / (1 - sigma_down)`` lands exactly at level ``s'``."""
    down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - down
    renoise = (sigma_next ** 2 - down ** 2 * alpha_next ** 2 / alpha_down ** 2) ** 0.5
    return down, renoise, alpha_next / alpha_down


def _flow_toward(x: torch.Tensor, sigma: Any, target: Any, denoised: torch.Tensor) -> torch.Tensor:
    """The flow ODE step (Euler, exact for a fixed denoised estimate) from ``sigma`` to ``target``."""
    ratio = target / sigma
    return ratio * x + (1 - ratio) * denoised


def euler_ancestral_rf(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                       s_noise: float = 1.0) -> torch.Tensor:
    """Euler ancestral on a flow-matching model (``x = (1 - s) x0 + s noise``), as ComfyUI runs
    ``euler_ancestral`` there: step down to ``sigma_down``, rescale to the next level's signal
    and add back exactly the noise that brings it to ``s'`` (``rf_ancestral_step``)."""
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.step(i, x, denoised)
        if nxt == 0:
            x = denoised
            continue
        down, renoise, rescale = rf_ancestral_step(sigma, nxt, eta)
        x = _flow_toward(x, sigma, down, denoised)
        if eta > 0:
            x = rescale * x + noise(sigma, nxt) * s_noise * renoise
    return x


def dpm_2_ancestral(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0
                    ) -> torch.Tensor:
    """DPM-2 ancestral: the DPM-2 step in sigma to ``sigma_down``, then noise back up to the next
    level; on a flow model the RF ``sigma_down`` with its rescale (ComfyUI's
    ``sample_dpm_2_ancestral_RF``, which re-noises at any eta: at eta 0 the weight is 0)."""
    flow = is_flow(run.ms)
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        if flow:
            down, up, rescale = rf_ancestral_step(sigma, nxt, eta)
        else:
            (down, up), rescale = ancestral_step(sigma, nxt, eta), 1.0
        run.step(i, x, denoised)
        d = to_d(x, sigma, denoised)
        if down == 0:
            x = x + d * (down - sigma)
            continue
        mid = sigma.log().lerp(down.log(), 0.5).exp()
        x2 = x + d * (mid - sigma)
        x = x + to_d(x2, mid, run.denoise(x2, mid)) * (down - sigma)
        x = rescale * x + noise(sigma, nxt) * s_noise * up
    return x


def dpmpp_2s_ancestral(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                       s_noise: float = 1.0) -> torch.Tensor:
    if is_flow(run.ms):
        return dpmpp_2s_ancestral_rf(run, x, sigmas, eta, s_noise)
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = run.denoise(x, sigma)
        down, up = ancestral_step(sigma, sigmas[i + 1], eta)
        run.step(i, x, denoised)
        if down == 0:
            x = x + to_d(x, sigma, denoised) * (down - sigma)
        else:  # DPM-Solver++(2S): a half step in log-sigma, then the full one from its estimate
            t, t_next = sigma.log().neg(), down.log().neg()
            h = t_next - t
            s = t + h / 2
            x2 = (s.neg().exp() / t.neg().exp()) * x - (-h / 2).expm1() * denoised
            denoised2 = run.denoise(x2, s.neg().exp())
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * denoised2
        if sigmas[i + 1] > 0:
            x = x + noise(sigma, sigmas[i + 1]) * s_noise * up
    return x


def _flow_midpoint(sigma: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """The level halfway between ``sigma`` and ``down`` in the flow's log-SNR, in the exact form
    of ComfyUI's RF 2S (``log((1 - s) / s)`` and ``1 / (e^lambda + 1)``); from sigma 1, whose
    log-SNR is infinite, ComfyUI's 0.9999."""
    if sigma == 1.0:
        return sigma.new_tensor(0.9999)
    lam, lam_down = ((1 - sigma) / sigma).log(), ((1 - down) / down).log()
    return ((lam + (lam_down - lam) / 2).exp() + 1) ** -1


def dpmpp_2s_ancestral_rf(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                          s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2S) ancestral on a flow model (ComfyUI's ``sample_dpmpp_2s_ancestral_RF``):
    a flow step to the log-SNR midpoint, the full step to ``sigma_down`` from its estimate, then
    the RF rescale and re-noise; the last step, to sigma 0, is Euler."""
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        down, renoise, rescale = rf_ancestral_step(sigma, nxt, eta)
        run.step(i, x, denoised)
        if nxt == 0:
            x = x + to_d(x, sigma, denoised) * (down - sigma)
        else:
            mid = _flow_midpoint(sigma, down)
            denoised2 = run.denoise(_flow_toward(x, sigma, mid, denoised), mid)
            x = _flow_toward(x, sigma, down, denoised2)
        if nxt > 0 and eta > 0:
            x = rescale * x + noise(sigma, nxt) * s_noise * renoise
    return x


def dpmpp_sde(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0,
              r: float = 0.5, gpu: bool = False) -> torch.Tensor:
    """DPM-Solver++ (stochastic): a stage at ``r`` of the step in log-SNR, both stages noised."""
    if len(sigmas) <= 1:
        return x
    noise = BrownianNoise(x, sigmas, run.seed, cpu=not gpu)  # over the schedule as given
    sigmas = offset_first_sigma(run.ms, sigmas)
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.step(i, x, denoised)
        if nxt == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(run.ms, sigma), half_log_snr(run.ms, nxt)
        h = lam_t - lam_s
        lam_s1 = lam_s + r * h
        fac = 1 / (2 * r)
        sigma_s1 = sigma_at(run.ms, lam_s1)
        alpha_s, alpha_s1, alpha_t = sigma * lam_s.exp(), sigma_s1 * lam_s1.exp(), nxt * lam_t.exp()
        down, up = ancestral_step(lam_s.neg().exp(), lam_s1.neg().exp(), eta)
        h_ = down.log().neg() - lam_s
        x2 = (alpha_s1 / alpha_s) * (-h_).exp() * x - alpha_s1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x2 = x2 + alpha_s1 * noise(sigma, sigma_s1) * s_noise * up
        denoised2 = run.denoise(x2, sigma_s1)
        down, up = ancestral_step(lam_s.neg().exp(), lam_t.neg().exp(), eta)
        h_ = down.log().neg() - lam_s
        mixed = (1 - fac) * denoised + fac * denoised2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * mixed
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigma, nxt) * s_noise * up
    return x


#: The multistep correction of a DPM++ SDE step: ``(x, denoised, past denoised estimates
#: [newest first], past step sizes [newest first], h, h_eta, alpha_t) -> x``.
Correction = Callable[[torch.Tensor, torch.Tensor, list[Any], list[Any], Any, Any, Any], torch.Tensor]


def _multistep_sde(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float, s_noise: float, gpu: bool,
                   correct: Correction) -> torch.Tensor:
    """DPM-Solver++ SDE in log-SNR: a first-order exponential step, ``correct``'s higher-order
    term from the last estimates, then Brownian noise; the step to sigma 0 lands on denoised."""
    if len(sigmas) <= 1:
        return x
    noise = BrownianNoise(x, sigmas, run.seed, cpu=not gpu)  # over the schedule as given
    sigmas = offset_first_sigma(run.ms, sigmas)
    olds: list[Any] = [None, None]
    hs: list[Any] = [None, None]
    h: Any = None
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.step(i, x, denoised)
        if nxt == 0:
            x = denoised
        else:
            lam_s, lam_t = half_log_snr(run.ms, sigma), half_log_snr(run.ms, nxt)
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            alpha_t = nxt * lam_t.exp()
            x = nxt / sigma * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            x = correct(x, denoised, olds, hs, h, h_eta, alpha_t)
            if eta > 0 and s_noise > 0:
                x = x + noise(sigma, nxt) * nxt * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        olds, hs = [denoised, olds[0]], [h, hs[0]]  # h keeps its last value across a final step
    return x


def dpmpp_2m_sde(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0,
                 solver_type: str = "midpoint", gpu: bool = False) -> torch.Tensor:
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"solver_type must be 'heun' or 'midpoint', not {solver_type!r}")

    def correct(x: Any, denoised: Any, olds: list[Any], hs: list[Any], h: Any, h_eta: Any, alpha_t: Any) -> Any:
        if olds[0] is None:
            return x
        r = hs[0] / h
        if solver_type == "heun":
            return x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - olds[0])
        return x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - olds[0])

    return _multistep_sde(run, x, sigmas, eta, s_noise, gpu, correct)


def dpmpp_3m_sde(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0,
                 gpu: bool = False) -> torch.Tensor:
    def correct(x: Any, denoised: Any, olds: list[Any], hs: list[Any], h: Any, h_eta: Any, alpha_t: Any) -> Any:
        phi_2 = h_eta.neg().expm1() / h_eta + 1
        if hs[1] is not None:
            r0, r1 = hs[0] / h, hs[1] / h
            d1_0 = (denoised - olds[0]) / r0
            d1_1 = (olds[0] - olds[1]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_3 = phi_2 / h_eta - 0.5
            return x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
        if hs[0] is not None:
            return x + (alpha_t * phi_2) * ((denoised - olds[0]) / (hs[0] / h))
        return x

    return _multistep_sde(run, x, sigmas, eta, s_noise, gpu, correct)


def _ddpm_step(x: torch.Tensor, sigma: torch.Tensor, sigma_prev: torch.Tensor, eps: torch.Tensor,
               noise: NoiseSampler) -> torch.Tensor:
    """One DDPM posterior step, in the variance-preserving space of ``x``."""
    a = 1 / (sigma * sigma + 1)
    a_prev = 1 / (sigma_prev * sigma_prev + 1)
    alpha = a / a_prev
    mu = (1.0 / alpha).sqrt() * (x - (1 - alpha) * eps / (1 - a).sqrt())
    if sigma_prev > 0:
        mu = mu + ((1 - alpha) * (1.0 - a_prev) / (1.0 - a)).sqrt() * noise(sigma, sigma_prev)
    return mu


def ddpm(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.step(i, x, denoised)
        x = _ddpm_step(x / torch.sqrt(1.0 + sigmas[i] ** 2.0), sigmas[i], sigmas[i + 1],
                       (x - denoised) / sigmas[i], noise)
        if sigmas[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


def lcm(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Latent consistency: jump to the denoised estimate, re-noise to the next sigma."""
    noise = default_noise(x, run.seed)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.step(i, x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = run.ms.noise_scaling(sigmas[i + 1], noise(sigmas[i], sigmas[i + 1]), x)
    return x


def euler_ancestral_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                           s_noise: float = 1.0) -> torch.Tensor:
    """CFG++: step along the unconditional prediction, land on the guided one."""
    noise = default_noise(x, run.seed)
    run.extras["need_uncond"] = True
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        uncond = run.extras["uncond_denoised"]
        run.step(i, x, denoised)
        if nxt == 0:
            x = denoised
            continue
        alpha_s, alpha_t = sigma * half_log_snr(run.ms, sigma).exp(), nxt * half_log_snr(run.ms, nxt).exp()
        # From a flow's sigma 1 alpha_s is 0: sigma / alpha_s is infinite, and ancestral_step's
        # min() against the NaN it makes keeps sigma_next (all fresh noise), as ComfyUI's does.
        d = to_d(x, sigma, alpha_s * uncond)
        down, up = ancestral_step(sigma / alpha_s, nxt / alpha_t, eta)
        x = alpha_t * denoised + (alpha_t * down) * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigma, nxt) * s_noise * up
    return x


def euler_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    return euler_ancestral_cfg_pp(run, x, sigmas, eta=0.0, s_noise=0.0)
