"""UniPC (``uni_pc`` = B(h) = h, ``uni_pc_bh2`` = B(h) = e^h - 1), multistep, data prediction,
as ComfyUI runs it on a list of sigmas.

The solver works in the variance-preserving space: ``x_vp = x / sqrt(1 + sigma^2)``, with
``alpha = 1 / sqrt(1 + sigma^2)``, ``std = sigma * alpha`` and ``lambda = log(alpha / std)``.
Order ``min(3, steps - 1)``, lower orders for the first and last steps, a corrector after
every step but the last; a final sigma of 0 is replaced by 0.001 (log-SNR must stay finite).
"""

from __future__ import annotations

from typing import Any

import torch

from .solvers import Run


def _log_mean(sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log(1 / (sigma * sigma + 1))


def _alpha(sigma: torch.Tensor) -> torch.Tensor:
    return torch.exp(_log_mean(sigma))


def _std(sigma: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_mean(sigma)))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    lm = _log_mean(sigma)
    return lm - 0.5 * torch.log(1.0 - torch.exp(2.0 * lm))


def _b(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None, None]


class _UniPC:
    def __init__(self, run: Run, variant: str) -> None:
        self.run, self.variant = run, variant

    def data(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 predicted at ``x`` (VP space) through the denoiser (k-diffusion space)."""
        scale = _b((sigma ** 2 + 1.0) ** 0.5)
        x_k = x * scale
        eps = (x_k - self.run.model(x_k, sigma)) / _b(sigma)
        return (x - _b(_std(sigma)) * eps) / _b(_alpha(sigma))

    def update(self, x: torch.Tensor, models: list[torch.Tensor], ts: list[torch.Tensor], t: torch.Tensor,
               order: int, use_corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        t0, m0 = ts[-1], models[-1]
        h = _lambda(t) - _lambda(t0)
        rks: list[Any] = []
        diffs = []
        for i in range(1, order):
            rk = ((_lambda(ts[-(i + 1)]) - _lambda(t0)) / h)[0]
            rks.append(rk)
            diffs.append((models[-(i + 1)] - m0) / rk)
        rks.append(1.0)
        r = torch.tensor(rks, device=x.device)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        rows, rhs, factorial = [], [], 1
        for i in range(1, order + 1):
            rows.append(torch.pow(r, i - 1))
            rhs.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        big_r, b = torch.stack(rows), torch.tensor(rhs, device=x.device)
        stacked = torch.stack(diffs, dim=1) if diffs else None
        x_t_ = _b(_std(t) / _std(t0)) * x - _b(_alpha(t) * h_phi_1) * m0
        pred: Any = 0
        if stacked is not None:
            rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else torch.linalg.solve(big_r[:-1, :-1], b[:-1])
            pred = torch.einsum("k,bkchw->bchw", rhos_p, stacked)
        x_t = x_t_ - _b(_alpha(t) * b_h) * pred
        if not use_corrector:
            return x_t, None
        rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(big_r, b)
        model_t = self.data(x_t, t)
        corr: Any = torch.einsum("k,bkchw->bchw", rhos_c[:-1], stacked) if stacked is not None else 0
        return x_t_ - _b(_alpha(t) * b_h) * (corr + rhos_c[-1] * (model_t - m0)), model_t


def uni_pc(run: Run, x: torch.Tensor, sigmas: torch.Tensor, variant: str = "bh1") -> torch.Tensor:
    ts_all = sigmas.clone()
    if ts_all[-1] == 0:
        ts_all[-1] = 0.001
    solver = _UniPC(run, variant)
    x = x / torch.sqrt(1.0 + ts_all[0] ** 2.0)
    steps = len(ts_all) - 1
    order = min(3, len(ts_all) - 2)
    batch = x.shape[0]
    models: list[torch.Tensor] = []
    ts: list[torch.Tensor] = []
    for index in range(steps):
        if index == 0:
            ts = [ts_all[0].expand(batch)]
            models = [solver.data(x, ts[0])]
        elif index < order:
            t = ts_all[index].expand(batch)
            x, model_x = solver.update(x, models, ts, t, index, use_corrector=True)
            models.append(model_x if model_x is not None else solver.data(x, t))
            ts.append(t)
        else:
            last = index + (2 if index == steps - 1 else 1)
            for step in range(index, last):
                t = ts_all[step].expand(batch)
                x, model_x = solver.update(x, models, ts, t, min(order, steps + 1 - step), step != steps)
                models, ts = [*models[1:order], models[-1]], [*ts[1:order], t]
                if step < steps:
                    models[-1] = model_x if model_x is not None else solver.data(x, t)
        run.step(index, x * (ts_all[index] ** 2 + 1) ** 0.5, models[-1])
    return x / _alpha(ts_all[-1])


def uni_pc_bh2(run: Run, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    return uni_pc(run, x, sigmas, variant="bh2")
