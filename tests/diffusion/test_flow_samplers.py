"""The samplers on flow-matching models (SD3, Flux: ComfyUI's CONST), against references written
here from ComfyUI's CONST formulas, in float64, never through the package's solvers.

A flow model noises as ``x = (1 - s) x0 + s noise``: its signal level is ``alpha = 1 - s``, its
half log-SNR ``lambda = log((1 - s) / s)`` and ``sigma = 1 / (1 + e^lambda)``. A flow schedule
starts at ``s = 1``, where lambda is infinite, so the samplers that step in lambda start from
``percent_to_sigma(1e-4)`` instead (``FIRST``); the ancestral samplers take rectified-flow
steps. The toy model is ``D(x) = 0.25 + 0.1 x`` (and ``U(x) = 0.2 + 0.05 x`` as the
unconditional estimate for CFG++); noise is re-drawn here the way ComfyUI draws it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from vortex_jupyter.nodes.diffusion import models
from vortex_jupyter.nodes.diffusion.flow_sampling import FlowSampling
from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
from vortex_jupyter.nodes.diffusion.samplers import SOLVERS
from vortex_jupyter.nodes.diffusion.sampling import Sampler, SampleSettings, sample
from vortex_jupyter.nodes.diffusion.snr import half_log_snr, offset_first_sigma, sigma_at
from vortex_jupyter.nodes.diffusion.solvers import Run

MS = FlowSampling(shift=3.0)
SEED = 5
#: SD3's shift-3 sigma at 0.01 % of the run, as the float32 schedule holds it.
FIRST = float(torch.tensor(3 * 0.9999 / (1 + 2 * 0.9999)))
SHORT = [1.0, 0.8, 0.5, 0.0]
LONG = [1.0, 0.9, 0.7, 0.4, 0.0]  # long enough for third-order (3M SDE, ER-SDE stage 3) steps

Tensor = torch.Tensor


def D(x: Tensor) -> Tensor:
    return 0.25 + 0.1 * x


def U(x: Tensor) -> Tensor:
    return 0.2 + 0.05 * x


def lam(s: float) -> float:
    return math.log((1 - s) / s)


def sig(lam_: float) -> float:
    return 1 / (1 + math.exp(lam_))


def start() -> Tensor:
    return torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))


def toy_run(ms: Any = MS) -> Run:
    extras: dict[str, Any] = {}

    def model(x: Tensor, s: Tensor) -> Tensor:
        extras["uncond_denoised"] = U(x)  # what a CFG guider hands the CFG++ samplers
        return D(x)

    return Run(model, ms, SEED, extras=extras)


def run_ours(name: str, schedule: list[float], ms: Any = MS, **options: Any) -> Tensor:
    """Our solver for ``name`` on the toy model (through SOLVERS, as KSampler picks it)."""
    return Sampler(name, options).solver()(toy_run(ms), start(), torch.tensor(schedule))


def fresh_noise() -> Iterator[Tensor]:
    """The ancestral/SEEDS/ER-SDE noise: one CPU generator seeded ``seed + 1``, one draw per use."""
    generator = torch.Generator().manual_seed(SEED + 1)
    while True:
        yield torch.randn(1, 4, 4, 4, generator=generator).double()


def close(ours: Tensor, ref: Tensor, atol: float = 2e-5) -> bool:
    return torch.allclose(ours.double(), ref, atol=atol, rtol=1e-5)


def pairs(schedule: list[float], moved: bool) -> list[tuple[float, float]]:
    levels = [float(torch.tensor(s)) for s in schedule]
    if moved and levels[0] >= 1:
        levels[0] = FIRST
    return list(itertools.pairwise(levels))


# ------------------------------------------------------------------- the half log-SNR


def test_flow_half_log_snr_is_minus_logit_and_a_first_sigma_of_one_moves_just_below_it() -> None:
    for s in (0.2, 0.5, 0.9):
        t = torch.tensor(s, dtype=torch.float64)
        assert math.isclose(float(half_log_snr(MS, t)), lam(s), rel_tol=1e-12)
        assert math.isclose(float(sigma_at(MS, half_log_snr(MS, t))), s, rel_tol=1e-12)
    schedule = torch.tensor(SHORT)
    moved = offset_first_sigma(MS, schedule)
    assert float(moved[0]) == FIRST and torch.equal(moved[1:], schedule[1:]) and schedule[0] == 1.0
    below = torch.tensor([0.9, 0.5, 0.0])
    assert offset_first_sigma(MS, below) is below
    discrete = ModelSampling.from_config(models.tiny_configs()["scheduler"])
    assert offset_first_sigma(discrete, schedule) is schedule  # a discrete model's sigma 1 is ordinary
    assert math.isclose(float(half_log_snr(discrete, torch.tensor(0.5))), math.log(2), rel_tol=1e-6)


# ------------------------------------------------------------------- rectified-flow ancestral


def rf_split(s: float, n: float, eta: float) -> tuple[float, float, float]:
    """ComfyUI's RF ancestral step: (sigma_down, renoise, rescale)."""
    down = n * (1 + (n / s - 1) * eta)
    renoise = math.sqrt(max(n * n - down * down * (1 - n) ** 2 / (1 - down) ** 2, 0.0))
    return down, renoise, (1 - n) / (1 - down)


def ref_euler_ancestral(eta: float, s_noise: float = 1.0) -> Tensor:
    x, noise = start().double(), fresh_noise()
    for s, n in pairs(SHORT, moved=False):
        if n == 0:
            return D(x)
        down, renoise, rescale = rf_split(s, n, eta)
        x = (down / s) * x + (1 - down / s) * D(x)
        x = rescale * x + renoise * s_noise * next(noise)
    return x


def ref_dpm_2_ancestral(eta: float) -> Tensor:
    x, noise = start().double(), fresh_noise()
    for s, n in pairs(SHORT, moved=False):
        down, renoise, rescale = rf_split(s, n, eta)
        d = (x - D(x)) / s
        if down == 0:
            return x - d * s
        mid = math.sqrt(s * down)  # the midpoint in log-sigma
        x2 = x + d * (mid - s)
        x = x + (x2 - D(x2)) / mid * (down - s)
        x = rescale * x + renoise * next(noise)
    return x


def ref_dpmpp_2s_ancestral(eta: float) -> Tensor:
    x, noise = start().double(), fresh_noise()
    for s, n in pairs(SHORT, moved=False):
        down, renoise, rescale = rf_split(s, n, eta)
        if n == 0:
            return x - (x - D(x)) / s * s
        # the log-SNR midpoint: 1 / (1 + sqrt(((1 - s) / s) ((1 - down) / down))); from 1, 0.9999
        mid = 0.9999 if s == 1 else 1 / (1 + math.sqrt((1 - s) / s * (1 - down) / down))
        u = (mid / s) * x + (1 - mid / s) * D(x)
        x = (down / s) * x + (1 - down / s) * D(u)
        if eta > 0:
            x = rescale * x + renoise * next(noise)
    return x


@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_ancestral_samplers_take_comfyuis_rectified_flow_steps(eta: float) -> None:
    assert close(run_ours("euler_ancestral", SHORT, eta=eta), ref_euler_ancestral(eta))
    assert close(run_ours("dpm_2_ancestral", SHORT, eta=eta), ref_dpm_2_ancestral(eta))
    assert close(run_ours("dpmpp_2s_ancestral", SHORT, eta=eta), ref_dpmpp_2s_ancestral(eta))


def test_at_eta_0_the_rf_ancestral_samplers_are_their_deterministic_methods() -> None:
    assert torch.allclose(run_ours("euler_ancestral", SHORT, eta=0.0), run_ours("euler", SHORT), atol=1e-6)
    assert torch.allclose(run_ours("dpm_2_ancestral", SHORT, eta=0.0), run_ours("dpm_2", SHORT), atol=1e-6)


# ------------------------------------------------------------------- DPM++ SDE family


def ve_ancestral(sigma_from: float, sigma_to: float, eta: float) -> float:
    """k-diffusion's ancestral sigma_down (the noise-free target) between two VE levels."""
    if not eta:
        return sigma_to
    up = min(sigma_to, eta * math.sqrt(sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2))
    return math.sqrt(sigma_to ** 2 - up ** 2)


def ref_dpmpp_sde(eta: float, r: float = 0.5) -> Tensor:
    """Deterministic part (s_noise 0) of DPM-Solver++ SDE in the flow's lambda, alpha = 1 - s."""
    x = start().double()
    for s, n in pairs(SHORT, moved=True):
        if n == 0:
            return D(x)
        h = lam(n) - lam(s)
        lam_mid = lam(s) + r * h
        mid = sig(lam_mid)
        h1 = -math.log(ve_ancestral(math.exp(-lam(s)), math.exp(-lam_mid), eta)) - lam(s)
        x2 = (1 - mid) / (1 - s) * math.exp(-h1) * x - (1 - mid) * math.expm1(-h1) * D(x)
        h2 = -math.log(ve_ancestral(math.exp(-lam(s)), math.exp(-lam(n)), eta)) - lam(s)
        mixed = (1 - 1 / (2 * r)) * D(x) + 1 / (2 * r) * D(x2)
        x = (1 - n) / (1 - s) * math.exp(-h2) * x - (1 - n) * math.expm1(-h2) * mixed
    return x


Increment = Callable[[float, float], Tensor]


def ref_multistep_sde(schedule: list[float], eta: float, order: int, heun: bool = False,
                      increment: Increment | None = None) -> Tensor:
    """DPM-Solver++(2M/3M) SDE in the flow's lambda (alpha = 1 - s); ``increment(s, n)`` is the
    unit Brownian increment, None for s_noise 0."""
    x = start().double()
    olds: list[Tensor] = []
    hs: list[float] = []
    for s, n in pairs(schedule, moved=True):
        d0 = D(x)
        if n == 0:
            return d0
        h = lam(n) - lam(s)
        he = h * (eta + 1)
        a = 1 - n
        x = n / s * math.exp(-h * eta) * x + a * -math.expm1(-he) * d0
        phi2 = math.expm1(-he) / he + 1
        if order == 3 and len(olds) >= 2:
            r0, r1 = hs[-1] / h, hs[-2] / h
            d1_0, d1_1 = (d0 - olds[-1]) / r0, (olds[-1] - olds[-2]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            x = x + a * phi2 * d1 - a * (phi2 / he - 0.5) * d2
        elif olds and order == 3:
            x = x + a * phi2 * (d0 - olds[-1]) / (hs[-1] / h)
        elif olds:
            weight = phi2 if heun else 0.5 * -math.expm1(-he)
            x = x + a * weight * (d0 - olds[-1]) / (hs[-1] / h)
        if increment is not None:
            x = x + increment(s, n) * n * math.sqrt(-math.expm1(-2 * h * eta))
        olds, hs = [*olds, d0], [*hs, h]
    return x


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpmpp_sde_family_steps_in_the_flows_half_log_snr_from_the_moved_first_sigma(eta: float) -> None:
    assert close(run_ours("dpmpp_sde", SHORT, eta=eta, s_noise=0.0), ref_dpmpp_sde(eta))
    assert close(run_ours("dpmpp_sde", SHORT, eta=eta, s_noise=0.0, r=0.3), ref_dpmpp_sde(eta, r=0.3))
    assert close(run_ours("dpmpp_2m_sde", SHORT, eta=eta, s_noise=0.0), ref_multistep_sde(SHORT, eta, 2))
    assert close(run_ours("dpmpp_2m_sde", SHORT, eta=eta, s_noise=0.0, solver_type="heun"),
                 ref_multistep_sde(SHORT, eta, 2, heun=True))
    assert close(run_ours("dpmpp_3m_sde", LONG, eta=eta, s_noise=0.0), ref_multistep_sde(LONG, eta, 3))


def test_dpmpp_2m_sde_noise_is_the_brownian_increment_from_the_moved_first_sigma() -> None:
    import torchsde

    levels = [float(torch.tensor(s)) for s in SHORT]
    # the tree spans the schedule as given (up to 1.0); the first increment starts at FIRST
    tree = torchsde.BrownianTree(torch.tensor(levels[-2]), torch.zeros(1, 4, 4, 4), torch.tensor(1.0), entropy=SEED)

    def increment(s: float, n: float) -> Tensor:
        w = tree(torch.tensor(n, dtype=torch.float32), torch.tensor(s, dtype=torch.float32))
        return -w.double() / math.sqrt(float(torch.tensor(s)) - float(torch.tensor(n)))

    ours = run_ours("dpmpp_2m_sde", SHORT, eta=1.0, s_noise=1.0)
    assert close(ours, ref_multistep_sde(SHORT, 1.0, 2, increment=increment), atol=1e-4)


# ------------------------------------------------------------------- ER-SDE, SEEDS-2, Euler CFG++


def _er_scale(v: float) -> float:
    return v * (math.exp(v ** 0.3) + 10.0)


def _inv_scale(p: float) -> float:
    return 1 / _er_scale(p)


def _from_over_scale(ls: float, p: float) -> float:
    return (p - ls) / _er_scale(p)


def _riemann(f: Callable[[float], float], ls: float, lt: float) -> float:
    """ComfyUI's 200-point left sum from lt toward ls."""
    step = (ls - lt) / 200.0
    return sum(f(lt + k * step) for k in range(200)) * step


def ref_er_sde(s_noise: float) -> Tensor:
    """VP ER-SDE-Solver-3 with ER lambda = sigma / alpha = s / (1 - s)."""
    x, noise = start().double(), fresh_noise()
    levels = pairs(LONG, moved=True)
    ers = [s / (1 - s) for s, _ in levels]
    old: Tensor | None = None
    old_d: Tensor | None = None
    for i, (s, n) in enumerate(levels):
        d0 = D(x)
        if n == 0:
            return d0
        ls, lt = ers[i], n / (1 - n)
        r = _er_scale(lt) / _er_scale(ls)
        x = ((1 - n) / (1 - s)) * r * x + (1 - n) * (1 - r) * d0
        if old is not None:
            dt = lt - ls
            dd = (d0 - old) / (ls - ers[i - 1])
            x = x + (1 - n) * (dt + _riemann(_inv_scale, ls, lt) * _er_scale(lt)) * dd
            if old_d is not None:
                du = (dd - old_d) / ((ls - ers[i - 2]) / 2)
                s_u = _riemann(functools.partial(_from_over_scale, ls), ls, lt)
                x = x + (1 - n) * (dt ** 2 / 2 + s_u * _er_scale(lt)) * du
            old_d = dd
        if s_noise > 0:
            x = x + (1 - n) * next(noise) * s_noise * math.sqrt(max(lt ** 2 - ls ** 2 * r ** 2, 0.0))
        old = d0
    return x


def ref_seeds_2(eta: float, r: float = 0.5) -> Tensor:
    x, noise = start().double(), fresh_noise()
    for s, n in pairs(SHORT, moved=True):
        if n == 0:
            return D(x)
        h = lam(n) - lam(s)
        he = h * (eta + 1)
        mid = sig(lam(s) + r * h)
        x2 = mid / s * math.exp(-r * h * eta) * x - (1 - mid) * math.expm1(-r * he) * D(x)
        sde = None
        if eta > 0:
            sde = math.sqrt(-math.expm1(-2 * r * h * eta)) * next(noise)
            x2 = x2 + sde * mid
        mixed = torch.lerp(D(x), D(x2), 1 / (2 * r))
        x = n / s * math.exp(-h * eta) * x - (1 - n) * math.expm1(-he) * mixed
        if sde is not None:
            segment = (r - 1) * h * eta
            sde = sde * math.exp(segment) + math.sqrt(-math.expm1(2 * segment)) * next(noise)
            x = x + sde * n
    return x


def ref_euler_ancestral_cfg_pp(eta: float) -> Tensor:
    """CFG++ Euler ancestral with alpha = 1 - s: the ancestral split runs in sigma / alpha."""
    x, noise = start().double(), fresh_noise()
    for s, n in pairs(SHORT, moved=False):
        if n == 0:
            return D(x)
        a_s, a_t = 1 - s, 1 - n
        d = (x - a_s * U(x)) / s
        to = n / a_t
        if not eta:
            down, up = to, 0.0
        elif a_s == 0:
            # sigma / alpha is infinite at s = 1; ComfyUI's min() against the resulting NaN keeps
            # sigma_to, so the whole next level is fresh noise, whatever eta
            down, up = 0.0, to
        else:
            down = ve_ancestral(s / a_s, to, eta)
            up = math.sqrt(to ** 2 - down ** 2)
        x = a_t * D(x) + a_t * down * d
        if eta > 0:
            x = x + a_t * next(noise) * up
    return x


def test_er_sde_steps_in_sigma_over_alpha_of_the_flow() -> None:
    assert close(run_ours("er_sde", LONG, s_noise=0.0), ref_er_sde(0.0))
    assert close(run_ours("er_sde", LONG), ref_er_sde(1.0))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_seeds_2_steps_in_the_flows_half_log_snr(eta: float) -> None:
    assert close(run_ours("seeds_2", SHORT, eta=eta), ref_seeds_2(eta))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_euler_cfg_pp_scales_by_the_flows_alpha(eta: float) -> None:
    assert close(run_ours("euler_ancestral_cfg_pp", SHORT, eta=eta), ref_euler_ancestral_cfg_pp(eta))
    if eta == 0.0:
        assert torch.equal(run_ours("euler_cfg_pp", SHORT), run_ours("euler_ancestral_cfg_pp", SHORT, eta=0.0))


def test_lcm_renoises_to_the_next_level_the_flow_way() -> None:
    x, noise = start().double(), fresh_noise()
    for _, n in pairs(SHORT, moved=False):
        x = D(x)
        if n > 0:
            x = n * next(noise) + (1 - n) * x
    assert close(run_ours("lcm", SHORT), x)


#: What ComfyUI runs the same on every model: the sigma-space solvers and those in -log(sigma).
MODEL_BLIND = sorted(set(SOLVERS) - {
    "euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_sde_gpu",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "er_sde", "seeds_2",
    "euler_ancestral_cfg_pp", "euler_cfg_pp", "lcm"})


@pytest.mark.parametrize("name", MODEL_BLIND)
def test_samplers_comfyui_does_not_adapt_give_the_same_latent_on_a_flow_model(name: str) -> None:
    discrete = ModelSampling.from_config(models.tiny_configs()["scheduler"])
    flow = run_ours(name, LONG)
    assert flow.isfinite().all() and torch.equal(flow, run_ours(name, LONG, ms=discrete))


# ------------------------------------------------------------------- the tiny SD3 model


@pytest.fixture(scope="module")
def sd3(models_dir: Path) -> tuple[Any, Any, Any]:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, clip, _ = load_checkpoint("vortex-tiny-sd3")
    return model, encode_text(clip, "a cat"), encode_text(clip, "")


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_sampler_runs_on_the_tiny_sd3_model(name: str, sd3: tuple[Any, Any, Any]) -> None:
    model, positive, negative = sd3
    latent = {"samples": torch.zeros(1, 16, 8, 8)}  # 64 x 64 pixels
    out = sample(model, positive, negative, latent, SampleSettings(3, 3, 2.0, name, "simple"))["samples"]
    assert out.shape == (1, 16, 8, 8) and out.isfinite().all() and float(out.std()) > 0.1
