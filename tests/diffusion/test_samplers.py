"""Schedules and solvers, against references written here from the published definitions.

Schedules: the reference sigmas are computed in float64 from ComfyUI's formulas over SD1's
training sigmas, independently of the package. Solvers: on Gaussian data (std ``SD``) the
ideal denoiser is ``D(x, s) = x * SD^2 / (SD^2 + s^2)`` and the sampling ODE has the exact
solution ``x(s) = x_T * sqrt(SD^2 + s^2) / sqrt(SD^2 + s_T^2)``: a correct ODE solver converges
to it at its order, and a correct stochastic sampler lands on data of std ``SD``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion import models, schedules
from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
from vortex_jupyter.nodes.diffusion.samplers import (
    COMFY_SAMPLERS,
    COMFY_SCHEDULERS,
    SOLVERS,
    check_combination,
    supported_pairs,
)
from vortex_jupyter.nodes.diffusion.sampling import Sampler, window
from vortex_jupyter.nodes.diffusion.solvers import Run

SD1 = models.tiny_configs()["scheduler"]
MS = ModelSampling.from_config(SD1)


def training_sigmas() -> np.ndarray:
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    return np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)


SIGMAS = training_sigmas()
SIGMA_MIN, SIGMA_MAX = SIGMAS[0], SIGMAS[-1]


def sigma_at(t: float) -> float:
    """ComfyUI's ModelSamplingDiscrete.sigma: log-sigma interpolated at a fractional timestep."""
    t = min(max(t, 0.0), 999.0)
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    return math.exp((1 - w) * math.log(SIGMAS[lo]) + w * math.log(SIGMAS[hi]))


def ref_normal(n: int) -> list[float]:
    return [sigma_at(t) for t in np.linspace(999, 0, n)] + [0.0]


def ref_karras(n: int, rho: float = 7.0) -> list[float]:
    ramp = np.linspace(0, 1, n)
    lo, hi = SIGMA_MIN ** (1 / rho), SIGMA_MAX ** (1 / rho)
    return [*((hi + ramp * (lo - hi)) ** rho), 0.0]


def ref_exponential(n: int) -> list[float]:
    return [*np.exp(np.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), n)), 0.0]


def ref_simple(n: int) -> list[float]:
    ss = 1000 / n
    return [float(SIGMAS[-(1 + int(x * ss))]) for x in range(n)] + [0.0]


def ref_ddim_uniform(n: int) -> list[float]:
    ss = max(1000 // n, 1)
    picked = [float(SIGMAS[x]) for x in range(1, 1000, ss)]
    return [*picked[::-1], 0.0]


def ref_sgm_uniform(n: int) -> list[float]:
    return [*(sigma_at(t) for t in np.linspace(999, 0, n + 1)[:-1]), 0.0]


def ref_beta(n: int, a: float = 0.6, b: float = 0.6) -> list[float]:
    from scipy import stats

    ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, n, endpoint=False), a, b) * 999)
    out: list[float] = []
    prev = None
    for t in ts:
        if t != prev:
            out.append(float(SIGMAS[int(t)]))
        prev = t
    return [*out, 0.0]


def ref_kl_optimal(n: int) -> list[float]:
    idx = np.arange(n) / (n - 1)
    return [*np.tan(idx * math.atan(SIGMA_MIN) + (1 - idx) * math.atan(SIGMA_MAX)), 0.0]


def ref_linear_quadratic(n: int, thr: float = 0.025) -> list[float]:
    """Mochi's schedule as ComfyUI documents it: the noise level rises linearly by thr/k a step
    for the first k = n // 2 steps, then along the quadratic through (k, thr) with the same
    slope that reaches 1 at step n; sigma = (1 - noise) * sigma_max."""
    if n == 1:
        return [SIGMA_MAX, 0.0]
    k, q = n // 2, n - n // 2
    curve = (1 - thr - thr * q / k) / q ** 2
    noise = [thr * i / k if i < k else thr + thr / k * (i - k) + curve * (i - k) ** 2 for i in range(n + 1)]
    return [(1 - x) * SIGMA_MAX for x in noise]


REFERENCE = {"normal": ref_normal, "karras": ref_karras, "exponential": ref_exponential,
             "simple": ref_simple, "ddim_uniform": ref_ddim_uniform, "sgm_uniform": ref_sgm_uniform,
             "beta": ref_beta, "kl_optimal": ref_kl_optimal, "linear_quadratic": ref_linear_quadratic}


def test_every_comfyui_scheduler_has_a_reference_here() -> None:
    assert set(REFERENCE) == set(COMFY_SCHEDULERS) == set(schedules.SCHEDULER_NAMES)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("steps", [3, 4, 7, 10, 20, 25])
def test_each_schedule_matches_comfyuis_formula(name: str, steps: int) -> None:
    got = schedules.calculate_sigmas(MS, name, steps).double().numpy()
    want = np.array(REFERENCE[name](steps))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)  # float32 here, float64 there


def test_model_sampling_is_sd1s_table_and_maps_sigmas_to_nearest_timesteps() -> None:
    np.testing.assert_allclose(MS.sigmas.double().numpy(), SIGMAS, rtol=1e-6)
    assert int(MS.timestep(MS.sigma_max)) == 999 and int(MS.timestep(MS.sigma_min)) == 0
    t = MS.timestep(torch.tensor([float(SIGMAS[500]) * 1.0001, float(SIGMAS[10])]))
    assert t.tolist() == [500, 10]
    assert MS.percent_to_sigma(0.0) > 1e8 and MS.percent_to_sigma(1.0) == 0.0
    assert MS.percent_to_sigma(0.5) == pytest.approx(sigma_at(499.5), rel=1e-5)


def test_ddim_uniform_runs_comfyuis_extra_step_where_the_stride_leaves_room() -> None:
    assert len(schedules.calculate_sigmas(MS, "ddim_uniform", 7)) - 1 == 8
    assert len(schedules.calculate_sigmas(MS, "ddim_uniform", 10)) - 1 == 10


@pytest.mark.parametrize(("steps", "denoise"), [(20, 0.6), (10, 0.5), (4, 0.3)])
def test_denoise_runs_exactly_steps_of_a_longer_schedule(steps: int, denoise: float) -> None:
    got = schedules.ksampler_sigmas(MS, "euler", "normal", steps, denoise)
    full = schedules.calculate_sigmas(MS, "normal", int(steps / denoise))
    assert len(got) == steps + 1 and torch.equal(got, full[-(steps + 1):])
    assert len(schedules.ksampler_sigmas(MS, "euler", "normal", steps, 0.0)) == 0


@pytest.mark.parametrize("sampler", ["dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"])
def test_ksampler_drops_the_penultimate_sigma_for_comfyuis_listed_samplers(sampler: str) -> None:
    got = schedules.ksampler_sigmas(MS, sampler, "karras", 8)
    longer = schedules.calculate_sigmas(MS, "karras", 9)
    assert len(got) == 9 and torch.equal(got, torch.cat([longer[:-2], longer[-1:]]))
    assert torch.equal(schedules.basic_scheduler(MS, "karras", 8, 1.0), schedules.calculate_sigmas(MS, "karras", 8))


def test_advanced_window_cuts_the_schedule_and_forces_sigma_zero_only_when_asked() -> None:
    sigmas = schedules.calculate_sigmas(MS, "karras", 8)
    cut = window(sigmas, 2, 5, force_full_denoise=True)
    assert cut is not None and len(cut) == 4 and float(cut[-1]) == 0.0 and torch.equal(cut[:-1], sigmas[2:5])
    leftover = window(sigmas, 2, 5, force_full_denoise=False)
    assert leftover is not None and torch.equal(leftover, sigmas[2:6])
    assert window(sigmas, 8, None, False) is None and float(sigmas[5]) != 0.0  # input untouched


def test_align_your_steps_interpolates_the_published_levels_log_linearly() -> None:
    ten = schedules.align_your_steps("SD1", 10, 1.0)
    np.testing.assert_allclose(ten[:-1].numpy(), schedules.AYS_NOISE_LEVELS["SD1"][:-1], rtol=1e-6)
    five = schedules.align_your_steps("SD1", 5, 1.0).double().numpy()
    levels = np.log(np.array(schedules.AYS_NOISE_LEVELS["SD1"])[::-1])
    want = np.exp(np.interp(np.linspace(0, 1, 6), np.linspace(0, 1, 11), levels))[::-1]
    np.testing.assert_allclose(five[:-1], want[:-1], rtol=1e-6)
    assert five[-1] == 0.0 and len(schedules.align_your_steps("SD1", 10, 0.5)) == 6


def test_sd_turbo_takes_every_hundredth_timestep_from_the_top() -> None:
    got = schedules.sd_turbo(MS, 3, 1.0).double().numpy()
    np.testing.assert_allclose(got, [SIGMAS[999], SIGMAS[899], SIGMAS[799], 0.0], rtol=1e-5)
    later = schedules.sd_turbo(MS, 1, 0.5).double().numpy()
    np.testing.assert_allclose(later, [SIGMAS[499], 0.0], rtol=1e-5)


def test_every_comfyui_sampler_name_is_a_choice_and_unimplemented_ones_say_what_runs() -> None:
    assert set(SOLVERS) <= set(COMFY_SAMPLERS)
    missing = [s for s in COMFY_SAMPLERS if s not in SOLVERS]
    for name in missing:
        msg = check_combination(name, "karras")
        assert msg is not None and "not implemented" in msg and "dpmpp_2m" in msg
    assert check_combination("dpmpp_2m", "no_such_schedule") is not None
    assert all(pairs == list(COMFY_SCHEDULERS) for pairs in supported_pairs().values())
    assert check_combination("lms", "beta") is None  # every solver takes every schedule now


def test_sampler_needing_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchsde" else real(name, *a))
    msg = check_combination("dpmpp_sde", "karras")
    assert msg is not None and "pip install torchsde" in msg
    assert "dpmpp_2m_sde" not in supported_pairs() and "euler" in supported_pairs()


# ---------------------------------------------------------------------------------- solvers

SD = 0.8


def gaussian_run(seed: int | None = 0) -> Run:
    return Run(lambda x, s: x * SD ** 2 / (SD ** 2 + s.reshape(-1, 1, 1, 1) ** 2), MS, seed)


def exact_end(x_t: torch.Tensor, sigma_t: float, sigma: float) -> torch.Tensor:
    return x_t * math.sqrt(SD ** 2 + sigma ** 2) / math.sqrt(SD ** 2 + sigma_t ** 2)


def solve(name: str, steps: int, x: torch.Tensor, scheduler: str = "karras") -> tuple[torch.Tensor, torch.Tensor]:
    sigmas = schedules.calculate_sigmas(MS, scheduler, steps).double()
    with torch.inference_mode():
        return Sampler(name).solver()(gaussian_run(), x.double() * sigmas[0], sigmas), sigmas


ODE_ORDER = {"euler": 1, "heun": 2, "dpm_2": 2, "dpmpp_2m": 2, "lms": 2, "ipndm": 2, "ipndm_v": 2, "deis": 2,
             "uni_pc": 2, "uni_pc_bh2": 2, "heunpp2": 2, "ddim": 1, "res_multistep": 2, "gradient_estimation": 1}


@pytest.mark.parametrize("name", sorted(ODE_ORDER))
def test_deterministic_solvers_converge_to_the_exact_ode_solution_at_their_order(name: str) -> None:
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    errors = []
    for steps in (10, 40):
        # end the schedule at sigma_min (no final jump to 0) so the comparison is smooth
        sigmas = schedules.karras(steps, float(MS.sigma_min), float(MS.sigma_max))[:-1].double()
        with torch.inference_mode():
            out = Sampler(name).solver()(gaussian_run(), x * sigmas[0], sigmas)
        errors.append(float((out - exact_end(x * sigmas[0], float(sigmas[0]), float(sigmas[-1]))).abs().max()))
    assert errors[1] < errors[0] / (1.8 ** ODE_ORDER[name]), errors


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m", "lms", "ipndm", "deis", "uni_pc", "dpm_2"])
def test_deterministic_solvers_land_near_the_exact_clean_sample(name: str) -> None:
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out, sigmas = solve(name, 30, x)
    want = exact_end(x * sigmas[0], float(sigmas[0]), 0.0)
    tolerance = 0.1 if ODE_ORDER[name] == 1 else 0.03  # relative, after 30 karras steps
    assert float((out - want).abs().max()) < tolerance * float(want.abs().max())


STOCHASTIC = ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
              "dpmpp_3m_sde", "ddpm", "er_sde", "seeds_2", "res_multistep_ancestral"]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_produce_data_of_the_right_spread(name: str) -> None:
    # first-order ancestral steps (euler_ancestral = ddpm) need many steps to lose their bias
    x = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out, _ = solve(name, 200, x)
    assert abs(float(out.std()) - SD) < 0.03 * SD, float(out.std())


def test_lcm_jumps_to_the_denoised_estimate_and_renoises_with_seed_plus_one() -> None:
    sigmas = schedules.calculate_sigmas(MS, "normal", 3)
    start = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    with torch.inference_mode():
        got = Sampler("lcm").solver()(Run(lambda x, s: x * 0.5, MS, 7), start, sigmas)
    gen = torch.Generator().manual_seed(8)
    x = start
    for i in range(3):
        x = x * 0.5
        if float(sigmas[i + 1]) > 0:
            x = x + torch.randn(1, 4, 8, 8, generator=gen) * sigmas[i + 1]
    torch.testing.assert_close(got, x)


def test_euler_ancestral_adds_noise_from_a_generator_seeded_with_seed_plus_one() -> None:
    # with a denoiser that predicts 0, each step is x * down / s + noise * up: checkable by hand
    sigmas = schedules.calculate_sigmas(MS, "normal", 4)
    start = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    with torch.inference_mode():
        got = Sampler("euler_ancestral").solver()(Run(lambda x, s: torch.zeros_like(x), MS, 41), start, sigmas)
    gen = torch.Generator().manual_seed(42)
    x = start.double().numpy()
    for i in range(4):
        s, nxt = float(sigmas[i]), float(sigmas[i + 1])
        up = min(nxt, math.sqrt(nxt ** 2 * (s ** 2 - nxt ** 2) / s ** 2))
        down = math.sqrt(nxt ** 2 - up ** 2)
        if down == 0:
            x = np.zeros_like(x)
            continue
        x = x * down / s + torch.randn(1, 4, 8, 8, generator=gen).double().numpy() * up
    np.testing.assert_allclose(got.double().numpy(), x, rtol=1e-4, atol=1e-5)


def test_dpm_fast_and_adaptive_end_at_the_smallest_sigma_on_the_exact_solution() -> None:
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigmas = schedules.calculate_sigmas(MS, "karras", 12).double()
    for name in ("dpm_fast", "dpm_adaptive"):
        with torch.inference_mode():
            out = Sampler(name).solver()(gaussian_run(), x * sigmas[0], sigmas)
        want = exact_end(x * sigmas[0], float(sigmas[0]), float(sigmas[-2]))
        tolerance = 0.05 if name == "dpm_adaptive" else 0.02  # adaptive: its default rtol is 0.05
        assert float((out - want).abs().max()) < tolerance * float(want.abs().max()), name


def test_option_samplers_pass_their_options_and_refuse_unknown_solver_names() -> None:
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sigmas = schedules.calculate_sigmas(MS, "karras", 8).double()

    def run(sampler: Sampler) -> Any:
        with torch.inference_mode():
            return sampler.solver()(gaussian_run(), x * sigmas[0], sigmas)

    # eta = 0 makes euler_ancestral a plain Euler step (no noise at all)
    torch.testing.assert_close(run(Sampler("euler_ancestral", {"eta": 0.0})), run(Sampler("euler")))
    assert not torch.equal(run(Sampler("dpmpp_2m_sde", {"solver_type": "heun"})), run(Sampler("dpmpp_2m_sde")))
    with pytest.raises(ValueError, match="not implemented"):
        Sampler("sa_solver")
