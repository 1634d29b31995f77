"""The deterministic samplers: ODE solvers over a list of sigmas (ComfyUI's k-diffusion set).

Every solver has the signature ``solver(run, x, sigmas, **options) -> x`` where ``run`` is a
``Run`` (the denoiser ``run.model(x, sigma) -> denoised`` plus the step callback and seed)
and ``x`` starts at ``sigmas[0]`` in the ``x = x0 + sigma * noise`` space (``model_sampling``).
Each step calls ``run.step(i, x, denoised)`` once (progress, preview, cancel), before moving
on, as ComfyUI's callback does. The stochastic samplers live in ``solvers_sde``.

The maths follow the published methods exactly as ComfyUI runs them, e.g. Euler
``x += (x - denoised) / sigma * (sigma_next - sigma)``; the final step to sigma 0 is plain
Euler (Heun, DPM2) or lands on the denoised estimate (LMS, iPNDM, DEIS), as in ComfyUI.
On a flow-matching model (``x = (1 - sigma) x0 + sigma noise``) they run unchanged in its sigma,
as ComfyUI's do; the samplers that step in log-SNR or add noise adapt (``snr``, ``solvers_sde``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .model_sampling import ModelSampling

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Run:
    """What a solver may use: the denoiser, the step callback, the seed for its noise."""

    model: Denoiser
    ms: ModelSampling
    seed: int | None = None
    step: Callable[[int, torch.Tensor, torch.Tensor], None] = lambda i, x, d: None
    #: Filled by guiders that expose the unconditional prediction (the CFG++ samplers need it).
    extras: dict[str, Any] = field(default_factory=dict)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.model(x, sigma * x.new_ones([x.shape[0]]))


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The ODE derivative dx/dsigma from a denoised estimate."""
    return (x - denoised) / sigma


def euler(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.step(i, x, denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def heun(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.step(i, x, denoised)
        d = to_d(x, sigma, denoised)
        dt = nxt - sigma
        if nxt == 0:
            x = x + d * dt
            continue
        x2 = x + d * dt
        d2 = to_d(x2, nxt, run.denoise(x2, nxt))
        x = x + (d + d2) / 2 * dt
    return x


def heunpp2(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Heun++: a third evaluation two sigmas ahead, weighted by sigma / (k * sigma_0)."""
    last = sigmas[-1]
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.step(i, x, denoised)
        d = to_d(x, sigma, denoised)
        dt = nxt - sigma
        if nxt == last:
            x = x + d * dt
            continue
        x2 = x + d * dt
        d2 = to_d(x2, nxt, run.denoise(x2, nxt))
        if sigmas[i + 2] == last:
            w2 = nxt / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d2 * w2) * dt
            continue
        x3 = x2 + d2 * (sigmas[i + 2] - nxt)
        d3 = to_d(x3, sigmas[i + 2], run.denoise(x3, sigmas[i + 2]))
        w2, w3 = nxt / (3 * sigmas[0]), sigmas[i + 2] / (3 * sigmas[0])
        x = x + ((1 - w2 - w3) * d + w2 * d2 + w3 * d3) * dt
    return x


def dpm_2(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-2: an Euler half step to the log-midpoint, its derivative for the full step."""
    for i in range(len(sigmas) - 1):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.step(i, x, denoised)
        d = to_d(x, sigma, denoised)
        if nxt == 0:
            x = x + d * (nxt - sigma)
            continue
        mid = sigma.log().lerp(nxt.log(), 0.5).exp()
        x2 = x + d * (mid - sigma)
        x = x + to_d(x2, mid, run.denoise(x2, mid)) * (nxt - sigma)
    return x


def _lms_coefficient(order: int, t: Any, i: int, j: int) -> float:
    """Integral over [t_i, t_i+1] of the Lagrange basis polynomial j through t_i, t_i-1, ..."""
    from scipy import integrate

    def basis(tau: float) -> float:
        prod = 1.0
        for k in range(order):
            if k != j:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return float(integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0])


def lms(run: Run, x: torch.Tensor, sigmas: torch.Tensor, order: int = 4) -> torch.Tensor:
    on_cpu = sigmas.detach().cpu().numpy()
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        ds = [*ds, to_d(x, sigmas[i], denoised)][-order:]
        run.step(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        cur = min(i + 1, order)
        coeffs = [_lms_coefficient(cur, on_cpu, i, j) for j in range(cur)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


def dpmpp_2m(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++(2M) in t = -log(sigma): second order from the previous denoised estimate."""
    old: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.step(i, x, denoised)
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        used = denoised
        if old is not None and sigmas[i + 1] != 0:
            r = (t + sigmas[i - 1].log()) / h  # h_last / h
            used = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
        # exp(-t_next) / exp(-t), not sigma_next / sigma: ComfyUI's rounding, bit for bit
        x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * used
        old = denoised
    return x


_AB = {2: (3, -1, 0, 0, 2), 3: (23, -16, 5, 0, 12), 4: (55, -59, 37, -9, 24)}  # Adams-Bashforth


Mix = Callable[[int, int, torch.Tensor, list[torch.Tensor], torch.Tensor], torch.Tensor]


def _adams(run: Run, x: torch.Tensor, sigmas: torch.Tensor, max_order: int, mix: Mix) -> torch.Tensor:
    """The iPNDM loop: Euler first, then ``x += mix(i, order, d, history, sigma' - sigma)``, a
    step along a mix of the last derivatives; the final step to sigma 0 lands on the denoised
    estimate. (``mix`` multiplies by the step itself, in ComfyUI's order of operations.)"""
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        cur, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, cur)
        run.step(i, x, denoised)
        d = (x - denoised) / cur
        order = min(max_order, i + 1)
        if nxt == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + (nxt - cur) * d
        else:
            x_next = x + mix(i, order, d, history, nxt - cur)
        history = [*history, d][-(max_order - 1):]
        x = x_next
    return x


def ipndm(run: Run, x: torch.Tensor, sigmas: torch.Tensor, max_order: int = 4) -> torch.Tensor:
    """Improved PNDM: Adams-Bashforth with fixed coefficients on the last derivatives."""

    def mix(i: int, order: int, d: torch.Tensor, history: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        c0, c1, c2, c3, div = _AB[order]
        past = [history[-1], history[-2] if order > 2 else d, history[-3] if order > 3 else d]
        return h * (c0 * d + c1 * past[0] + c2 * past[1] + c3 * past[2]) / div

    return _adams(run, x, sigmas, max_order, mix)


def _ipndm_v_coefficients(order: int, h: list[Any]) -> list[Any]:
    """Variable-step Adams-Bashforth weights; ``h = [h_n, h_n-1, h_n-2, h_n-3]`` (step widths)."""
    if order == 2:
        return [(2 + h[0] / h[1]) / 2, -(h[0] / h[1]) / 2]
    t1 = (1 - h[0] / (3 * (h[0] + h[1])) * (h[0] * (h[0] + h[1])) / (h[1] * (h[1] + h[2]))) / 2
    if order == 3:
        return [(2 + h[0] / h[1]) / 2 + t1, -(h[0] / h[1]) / 2 - (1 + h[1] / h[2]) * t1, t1 * h[1] / h[2]]
    s01, s012 = h[0] + h[1], h[0] + h[1] + h[2]
    q = h[1] * (h[1] + h[2]) / (h[2] * (h[2] + h[3]))
    t2 = (((1 - h[0] / (3 * s01)) / 2 + (1 - h[0] / (2 * s01)) * h[0] / (6 * s012))
          * (h[0] * s01 * s012) / (h[1] * (h[1] + h[2]) * (h[1] + h[2] + h[3])))
    return [(2 + h[0] / h[1]) / 2 + t1 + t2,
            -(h[0] / h[1]) / 2 - (1 + h[1] / h[2]) * t1 - (1 + h[1] / h[2] + q) * t2,
            t1 * h[1] / h[2] + (h[1] / h[2] + q * (1 + h[2] / h[3])) * t2,
            -t2 * q * h[1] / h[2]]


def ipndm_v(run: Run, x: torch.Tensor, sigmas: torch.Tensor, max_order: int = 4) -> torch.Tensor:
    """iPNDM with variable step sizes (coefficients from the actual sigma spacing)."""

    def mix(i: int, order: int, d: torch.Tensor, history: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        widths = [h] + [sigmas[i - k] - sigmas[i - k - 1] for k in range(order - 1)]
        coeffs = _ipndm_v_coefficients(order, widths + [None] * (4 - len(widths)))
        return h * (coeffs[0] * d + sum(c * history[-1 - k] for k, c in enumerate(coeffs[1:])))

    return _adams(run, x, sigmas, max_order, mix)


def _deis_coefficients(sigmas: torch.Tensor, max_order: int, n: int = 10000) -> list[list[torch.Tensor]]:
    """DEIS "tab" coefficients: the exponential integrator's weights, integrated numerically
    (left Riemann sum over ``n`` points) in the VP time of an EDM-style schedule with
    sigma_min 0.002, sigma_max 80 and eps 1e-3, the constants ComfyUI's DEIS uses."""
    eps, s_min, s_max = 1e-3, torch.tensor(0.002), torch.tensor(80.0)
    beta_d = 2 * (torch.log(s_min ** 2 + 1) / eps - torch.log(s_max ** 2 + 1)) / (eps - 1)
    beta_min = torch.log(s_max ** 2 + 1) - 0.5 * beta_d
    t_steps = ((beta_min ** 2 + 2 * beta_d * (sigmas.cpu() ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    beta_0, beta_1 = beta_min, beta_d + beta_min
    out: list[list[torch.Tensor]] = []
    for i in range(len(t_steps) - 1):
        order = min(i + 1, max_order)
        if order == 1 or t_steps[i + 1] <= 0:  # the last step to sigma 0 is Euler
            out.append([])
            continue
        taus = torch.linspace(float(t_steps[i]), float(t_steps[i + 1]), n)
        dtau = (t_steps[i + 1] - t_steps[i]) / n
        alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)
        integrand = 0.5 * (taus * (beta_1 - beta_0) + beta_0) / torch.sqrt(alpha * (1 - alpha))
        prev = t_steps[[i - k for k in range(order)]]
        row = []
        for j in range(order):
            poly = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    poly = poly * (taus - prev[k]) / (prev[j] - prev[k])
            row.append(torch.sum(integrand * poly) * dtau)
        out.append(row)
    return out


def deis(run: Run, x: torch.Tensor, sigmas: torch.Tensor, max_order: int = 3) -> torch.Tensor:
    coefficients = _deis_coefficients(sigmas, max_order)
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        cur, nxt = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, cur)
        run.step(i, x, denoised)
        d = (x - denoised) / cur
        order = 1 if nxt <= 0 else min(max_order, i + 1)
        if order == 1:
            x_next = x + (nxt - cur) * d
        else:
            c = coefficients[i]
            x_next = x + c[0] * d + sum(c[k] * history[-k] for k in range(1, order))
        history = [*history, d][-(max_order - 1):]
        x = x_next
    return x
