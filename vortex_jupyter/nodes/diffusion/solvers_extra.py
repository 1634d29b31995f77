"""The newer samplers of ComfyUI's list: RES multistep, gradient estimation, ER-SDE, SEEDS-2 and
the CFG++ variants of DPM++ 2M / 2S ancestral (same signature as ``solvers``).

CFG++ samplers step along the unconditional prediction and add the guidance once per step;
they ask the guider for it by setting ``run.extras["need_uncond"]`` (the guider then always
evaluates the negative, even at cfg 1, as ComfyUI does for them).

ER-SDE and SEEDS-2 step in the model's half log-SNR (``snr``: ``-log(sigma)`` on a discrete
model, ``-logit(sigma)`` on a flow model, whose first sigma of 1 moves just below it); RES
multistep, gradient estimation and the DPM++ CFG++ pair work in ``-log(sigma)`` on every model,
as ComfyUI's do.
"""

from __future__ import annotations

from typing import Any

import torch

from .snr import half_log_snr, offset_first_sigma, sigma_at
from .solvers import Run, to_d
from .solvers_sde import ancestral_step, default_noise


def _uncond(run: Run) -> torch.Tensor:
    return run.extras["uncond_denoised"]


def dpmpp_2m_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    run.extras["need_uncond"] = True
    old_uncond: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        uncond = _uncond(run)
        run.step(i, x, denoised)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond
        else:
            r = (t + sigmas[i - 1].log()) / h
            mix = -torch.exp(-h) * uncond - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


def dpmpp_2s_ancestral_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                              s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2S) ancestral, CFG++ (ComfyUI's current form): both stages start from ``x``
    moved by the step's guidance ``denoised - uncond`` and land on the guided estimates; the last
    step (to sigma 0) lands on the guided estimate."""
    noise = default_noise(x, run.seed)
    run.extras["need_uncond"] = True
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = run.denoise(x, sigma)
        uncond = _uncond(run)
        down, up = ancestral_step(sigma, sigmas[i + 1], eta)
        run.step(i, x, denoised)
        if down == 0:
            x = denoised
        else:
            t, t_next = sigma.log().neg(), down.log().neg()
            h = t_next - t
            s = t + h / 2
            guided_x = x + (denoised - uncond)
            x2 = (s.neg().exp() / t.neg().exp()) * guided_x - (-h / 2).expm1() * denoised
            denoised_2 = run.denoise(x2, s.neg().exp())
            x = (t_next.neg().exp() / t.neg().exp()) * guided_x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigma, sigmas[i + 1]) * s_noise * up
    return x


def _phi1(t: torch.Tensor) -> torch.Tensor:
    return torch.expm1(t) / t


def _phi2(t: torch.Tensor) -> torch.Tensor:
    return (_phi1(t) - 1.0) / t


def res_multistep(run: Run, x: torch.Tensor, sigmas: torch.Tensor, s_noise: float = 1.0, eta: float = 0.0,
                  cfg_pp: bool = False) -> torch.Tensor:
    """RES second-order multistep (arXiv 2308.02157) in t = -log(sigma), optionally ancestral."""
    noise = default_noise(x, run.seed)
    if cfg_pp:
        run.extras["need_uncond"] = True
    old_down: Any = None
    old: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        uncond = _uncond(run) if cfg_pp else denoised
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, x, denoised)
        if down == 0 or old is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = (-sigmas[i].log(), -torch.as_tensor(old_down).log(),
                                        -torch.as_tensor(down).log(), -sigmas[i - 1].log())
            h = t_next - t
            c2 = (t_prev - t_old) / h
            b1 = torch.nan_to_num(_phi1(-h) - _phi2(-h) / c2, nan=0.0)
            b2 = torch.nan_to_num(_phi2(-h) / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
            x = h.neg().exp() * x + h * (b1 * uncond + b2 * old)
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * up
        old, old_down = uncond, down
    return x


def res_multistep_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor, s_noise: float = 1.0) -> torch.Tensor:
    return res_multistep(run, x, sigmas, s_noise, eta=0.0, cfg_pp=True)


def res_multistep_ancestral(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                            s_noise: float = 1.0) -> torch.Tensor:
    return res_multistep(run, x, sigmas, s_noise, eta=eta)


def res_multistep_ancestral_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0,
                                   s_noise: float = 1.0) -> torch.Tensor:
    return res_multistep(run, x, sigmas, s_noise, eta=eta, cfg_pp=True)


def gradient_estimation(run: Run, x: torch.Tensor, sigmas: torch.Tensor, ge_gamma: float = 2.0,
                        cfg_pp: bool = False) -> torch.Tensor:
    """Euler plus a correction from the change of the derivative (gamma = 2)."""
    if cfg_pp:
        run.extras["need_uncond"] = True
    old_d: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        d = to_d(x, sigmas[i], _uncond(run) if cfg_pp else denoised)
        run.step(i, x, denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1 and old_d is not None:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def gradient_estimation_cfg_pp(run: Run, x: torch.Tensor, sigmas: torch.Tensor, ge_gamma: float = 2.0
                               ) -> torch.Tensor:
    return gradient_estimation(run, x, sigmas, ge_gamma, cfg_pp=True)


def _er_noise_scaler(v: torch.Tensor) -> torch.Tensor:
    return v * ((v ** 0.3).exp() + 10.0)


def er_sde(run: Run, x: torch.Tensor, sigmas: torch.Tensor, s_noise: float = 1.0, noise_scaler: Any = None,
           max_stage: int = 3) -> torch.Tensor:
    """Extended reverse-time SDE solver (VP ER-SDE-Solver-3, arXiv 2309.06169), in lambda = sigma / alpha."""
    noise = default_noise(x, run.seed)
    scale = noise_scaler or _er_noise_scaler
    points = torch.arange(0, 200.0, dtype=torch.float32, device=x.device)
    sigmas = offset_first_sigma(run.ms, sigmas)
    lambdas = half_log_snr(run.ms, sigmas).neg().exp()  # ER-SDE's lambda: sigma / alpha
    old: torch.Tensor | None = None
    old_d: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.step(i, x, denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            ls, lt = lambdas[i], lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / ls, sigmas[i + 1] / lt
            r = scale(lt) / scale(ls)
            x = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2 and old is not None:
                dt = lt - ls
                step = -dt / 200.0
                pos = lt + points * step
                scaled = scale(pos)
                d = (denoised - old) / (ls - lambdas[i - 1])
                x = x + alpha_t * (dt + torch.sum(1 / scaled) * step * scale(lt)) * d
                if stage >= 3 and old_d is not None:
                    s_u = torch.sum((pos - ls) / scaled) * step
                    u = (d - old_d) / ((ls - lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * scale(lt)) * u
                old_d = d
            if s_noise > 0:
                spread = (lt ** 2 - ls ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * spread
        old = denoised
    return x


def seeds_2(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0,
            r: float = 0.5, solver_type: str = "phi_1") -> torch.Tensor:
    """SEEDS-2 (arXiv 2305.14267): a stage at ``r`` of the log-SNR step, both stages noised."""
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"solver_type must be 'phi_1' or 'phi_2', not {solver_type!r}")
    noise = default_noise(x, run.seed)
    inject = eta > 0 and s_noise > 0
    fac = 1 / (2 * r)
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
        h_eta = h * (eta + 1)
        lam_s1 = torch.lerp(lam_s, lam_t, r)
        sigma_s1 = sigma_at(run.ms, lam_s1)
        alpha_s1, alpha_t = sigma_s1 * lam_s1.exp(), nxt * lam_t.exp()
        x2 = sigma_s1 / sigma * (-r * h * eta).exp() * x - alpha_s1 * torch.expm1(-r * h_eta) * denoised
        sde = None
        if inject:
            sde = (-2 * r * h * eta).expm1().neg().sqrt() * noise(sigma, sigma_s1)
            x2 = x2 + sde * sigma_s1 * s_noise
        denoised2 = run.denoise(x2, sigma_s1)
        if solver_type == "phi_1":
            x = nxt / sigma * (-h * eta).exp() * x - alpha_t * torch.expm1(-h_eta) * torch.lerp(denoised, denoised2, fac)
        else:
            b2 = ((torch.expm1(-h_eta) - -h_eta) / -h_eta) / r
            b1 = torch.expm1(-h_eta) - b2
            x = nxt / sigma * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b2 * denoised2)
        if sde is not None:
            segment = (r - 1) * h * eta
            sde = sde * segment.exp() + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s1, nxt)
            x = x + sde * nxt * s_noise
    return x
