"""DPM-Solver-fast and DPM-Solver-adaptive (ComfyUI's ``dpm_fast`` / ``dpm_adaptive``).

Both run in ``t = -log(sigma)`` from the schedule's first sigma down to its smallest non-zero
one (they do not take the schedule's steps, only its ends and, for fast, its length):

- fast: ``nfe = len(sigmas) - 1`` model evaluations spread over ``floor(nfe / 3) + 1`` equal
  steps in t, third-order steps with a lower-order tail so the count is exact;
- adaptive: embedded 2/3 (or 1/2) order pairs with a PID step-size controller (rtol, atol,
  h_init, pcoeff/icoeff/dcoeff, accept_safety), so the number of steps is not known ahead.

The result is left at the smallest sigma, as ComfyUI leaves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .solvers import Run
from .solvers_sde import ancestral_step, default_noise


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return -sigma.log()


class _Eps:
    """The model's noise prediction at (x, t), cached per step under a key."""

    def __init__(self, run: Run, on_eval: Callable[[], None] = lambda: None) -> None:
        self.run, self.on_eval = run, on_eval

    def __call__(self, cache: dict[str, Any], key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            sigma = _sigma(t)
            cache[key] = (x - self.run.denoise(x, sigma)) / sigma
            self.on_eval()
        return cache[key]


def _step1(eps: _Eps, x: Any, t: Any, t_next: Any, cache: dict[str, Any]) -> Any:
    h = t_next - t
    return x - _sigma(t_next) * h.expm1() * eps(cache, "eps", x, t)


def _step2(eps: _Eps, x: Any, t: Any, t_next: Any, cache: dict[str, Any], r1: float = 1 / 2) -> Any:
    h = t_next - t
    e = eps(cache, "eps", x, t)
    s1 = t + r1 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * e
    e1 = eps(cache, "eps_r1", u1, s1)
    return x - _sigma(t_next) * h.expm1() * e - _sigma(t_next) / (2 * r1) * h.expm1() * (e1 - e)


def _step3(eps: _Eps, x: Any, t: Any, t_next: Any, cache: dict[str, Any]) -> Any:
    r1, r2 = 1 / 3, 2 / 3
    h = t_next - t
    e = eps(cache, "eps", x, t)
    s1, s2 = t + r1 * h, t + r2 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * e
    e1 = eps(cache, "eps_r1", u1, s1)
    u2 = (x - _sigma(s2) * (r2 * h).expm1() * e
          - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (e1 - e))
    e2 = eps(cache, "eps_r2", u2, s2)
    return x - _sigma(t_next) * h.expm1() * e - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (e2 - e)


def _ends(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    return sigmas[0], low


def dpm_fast(run: Run, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 0.0, s_noise: float = 1.0
             ) -> torch.Tensor:
    if len(sigmas) <= 1:
        return x
    high, low = _ends(sigmas)
    nfe = len(sigmas) - 1
    t_start, t_end = _t(high.float()), _t(low.float())
    if not t_end > t_start and eta:
        raise ValueError("eta must be 0 for reverse sampling")
    noise = default_noise(x, run.seed)
    eps = _Eps(run)
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(float(t_start), float(t_end), m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        cache: dict[str, Any] = {}
        t, t_next = ts[i], ts[i + 1]
        up: Any = 0.0
        target = t_next
        if eta:
            down, up = ancestral_step(_sigma(t), _sigma(t_next), eta)
            target = torch.minimum(t_end, _t(down))
            up = (_sigma(t_next) ** 2 - _sigma(target) ** 2) ** 0.5
        denoised = x - _sigma(t) * eps(cache, "eps", x, t)
        run.step(i, x, denoised)
        step = _step1 if order == 1 else _step2 if order == 2 else _step3
        x = step(eps, x, t, target, cache)
        x = x + up * s_noise * noise(_sigma(t), _sigma(t_next))
    return x


class _PID:
    """Step-size control: accept a step when the scaled error is small enough, grow/shrink h."""

    def __init__(self, h: float, p: float, i: float, d: float, order: float, safety: float) -> None:
        self.h, self.safety, self.errs = h, safety, [0.0, 0.0, 0.0]
        self.b1, self.b2, self.b3 = (p + i + d) / order, -(p + 2 * d) / order, d / order
        self.started = False

    def propose(self, error: Any) -> bool:
        inv = 1 / (float(error) + 1e-8)
        if not self.started:
            self.errs, self.started = [inv, inv, inv], True
        self.errs[0] = inv
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


def dpm_adaptive(run: Run, x: torch.Tensor, sigmas: torch.Tensor, order: int = 3, rtol: float = 0.05,
                 atol: float = 0.0078, h_init: float = 0.05, pcoeff: float = 0.0, icoeff: float = 1.0,
                 dcoeff: float = 0.0, accept_safety: float = 0.81, eta: float = 0.0, s_noise: float = 1.0
                 ) -> torch.Tensor:
    if len(sigmas) <= 1:
        return x
    if order not in (2, 3):
        raise ValueError(f"dpm_adaptive order must be 2 or 3, not {order}")
    high, low = _ends(sigmas)
    s, t_end = _t(high.float()), _t(low.float())
    forward = bool(t_end > s)
    if not forward and eta:
        raise ValueError("eta must be 0 for reverse sampling")
    noise = default_noise(x, run.seed)
    eps = _Eps(run)
    pid = _PID(abs(h_init) * (1 if forward else -1), pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    x_prev, steps = x, 0
    while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
        cache: dict[str, Any] = {}
        t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
        target, up = t, torch.tensor(0.0)
        if eta:
            down, up = ancestral_step(_sigma(s), _sigma(t), eta)
            target = torch.minimum(t_end, _t(down))
            up = (_sigma(t) ** 2 - _sigma(target) ** 2) ** 0.5
        denoised = x - _sigma(s) * eps(cache, "eps", x, s)
        if order == 2:
            low_x, high_x = _step1(eps, x, s, target, cache), _step2(eps, x, s, target, cache)
        else:
            low_x, high_x = _step2(eps, x, s, target, cache, r1=1 / 3), _step3(eps, x, s, target, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(low_x.abs(), x_prev.abs()))
        error = torch.linalg.norm((low_x - high_x) / delta) / x.numel() ** 0.5
        if pid.propose(error):
            x_prev = low_x
            x = high_x + up * s_noise * noise(_sigma(s), _sigma(t))
            s = t
        run.step(steps, x, denoised)
        steps += 1
    return x
