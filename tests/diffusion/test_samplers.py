"""Sampler/scheduler mapping: sigma schedules against ComfyUI's documented formulas.

The reference schedules are written here from ComfyUI's definitions (comfy/samplers.py and
k-diffusion), independently of the package, over SD1's training sigmas computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vortex_jupyter.nodes.diffusion import models
from vortex_jupyter.nodes.diffusion.samplers import (
    COMFY_SAMPLERS,
    COMFY_SCHEDULERS,
    SAMPLERS,
    SCHEDULES,
    check_combination,
    denoise_steps,
    make_scheduler,
    supported_pairs,
)

SD1 = models.tiny_configs()["scheduler"]


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


REFERENCE = {"normal": ref_normal, "karras": ref_karras, "exponential": ref_exponential,
             "simple": ref_simple, "ddim_uniform": ref_ddim_uniform}


def euler_sigmas(scheduler: str, steps: int) -> np.ndarray:
    sched = make_scheduler(SD1, "euler", scheduler)
    sched.set_timesteps(steps)
    return sched.sigmas.double().numpy()


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("steps", [4, 10, 20, 25])
def test_sigma_schedule_matches_comfyui_formula(name: str, steps: int) -> None:
    got = euler_sigmas(name, steps)
    want = np.array(REFERENCE[name](steps))
    assert got.shape == want.shape
    # float32 betas in diffusers vs float64 here: agreement to ~1e-5 relative
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_normal_schedule_is_not_sd1_default_leading_spacing() -> None:
    # SD1's own config ("leading") starts at t=951 for 20 steps; ComfyUI's normal starts at 999
    import diffusers

    own = diffusers.EulerDiscreteScheduler.from_config(SD1)
    own.set_timesteps(20)
    assert float(own.timesteps[0]) < 960
    assert euler_sigmas("normal", 20)[0] == pytest.approx(SIGMA_MAX, rel=1e-4)


def exact_euler_sigmas(scheduler: str, steps: int) -> np.ndarray:
    from vortex_jupyter.nodes.diffusion.samplers import apply_exact_timesteps

    sched = make_scheduler(SD1, "euler", scheduler)
    assert apply_exact_timesteps(sched, scheduler, steps) is not None
    return sched.sigmas.double().numpy()


@pytest.mark.parametrize("name", ["simple", "ddim_uniform"])
@pytest.mark.parametrize("steps", [3, 7, 13, 30, 999])
def test_timestep_picking_schedules_are_comfyuis_exactly_for_any_step_count(name: str, steps: int) -> None:
    # 1000 / 7 is not whole: ComfyUI truncates (simple) and ddim_uniform runs 8 steps for 7
    want = np.array(REFERENCE[name](steps))
    got = exact_euler_sigmas(name, steps)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_ddim_uniform_adds_comfyuis_extra_step_where_the_stride_leaves_room() -> None:
    assert len(ref_ddim_uniform(7)) - 1 == 8 and len(exact_euler_sigmas("ddim_uniform", 7)) - 1 == 8
    assert len(exact_euler_sigmas("ddim_uniform", 10)) - 1 == 10


@pytest.mark.parametrize(("sampler", "name"), [
    *((s, n) for s in ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddpm") for n in ("simple", "ddim_uniform")),
    ("ddim", "ddim_uniform"),  # DDIM's fixed stride fits ddim_uniform, not simple's uneven one
])
def test_schedulers_that_take_timesteps_get_comfyuis_picks(sampler: str, name: str) -> None:
    from vortex_jupyter.nodes.diffusion.samplers import apply_exact_timesteps, comfy_timesteps

    assert name in supported_pairs()[sampler]
    sched = make_scheduler(SD1, sampler, name)
    n = apply_exact_timesteps(sched, name, 7)
    picks = comfy_timesteps(name, 7)
    assert picks is not None and n == len(picks)
    got = [int(t) for t in sched.timesteps]
    assert sorted(set(got), reverse=True) == picks  # heun repeats each inner timestep


def test_comfy_timesteps_refuses_more_steps_than_training_timesteps() -> None:
    from vortex_jupyter.nodes.diffusion.samplers import apply_exact_timesteps, comfy_timesteps

    assert comfy_timesteps("simple", 1001) is None and comfy_timesteps("normal", 10) is None
    sched = make_scheduler(SD1, "euler", "simple")
    assert apply_exact_timesteps(sched, "simple", 1001) is None  # left to set_timesteps(steps)


@pytest.mark.parametrize("sampler", ["lms", "uni_pc", "ddim"])
def test_simple_on_schedulers_without_custom_timesteps_is_within_one_timestep(sampler: str) -> None:
    # these take the config approximation ("trailing"): rounding where ComfyUI truncates
    from vortex_jupyter.nodes.diffusion.samplers import apply_exact_timesteps, comfy_timesteps

    sched = make_scheduler(SD1, sampler, "simple")
    assert apply_exact_timesteps(sched, "simple", 7) is None
    sched.set_timesteps(7)
    got = [float(t) for t in sched.timesteps]
    want = comfy_timesteps("simple", 7)
    assert want is not None and len(got) == len(want)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1.0


def test_every_comfyui_name_is_a_choice_and_every_mapped_pair_builds() -> None:
    assert set(SAMPLERS) <= set(COMFY_SAMPLERS)
    assert set(SCHEDULES) <= set(COMFY_SCHEDULERS)
    for sampler, schedules in supported_pairs().items():
        assert schedules, sampler
        for schedule in schedules:
            sched = make_scheduler(SD1, sampler, schedule)
            sched.set_timesteps(6)
            assert len(sched.timesteps) >= 6, (sampler, schedule)


def test_unsupported_combination_message_lists_what_is_supported() -> None:
    msg = check_combination("ddim", "karras")
    assert msg is not None and "normal" in msg and "ddim" in msg
    msg = check_combination("dpm_fast", "normal")
    assert msg is not None and "dpmpp_2m" in msg
    assert check_combination("dpmpp_2m", "linear_quadratic") is not None  # needs sigmas=: euler only
    assert check_combination("euler", "linear_quadratic") is None
    assert check_combination("dpmpp_2m", "karras") is None


@pytest.mark.parametrize(("steps", "denoise", "total", "first"),
                         [(20, 1.0, 20, 0), (20, 0.6, 33, 13), (10, 0.5, 20, 10), (4, 0.3, 13, 9)])
def test_denoise_runs_exactly_steps_of_a_longer_schedule(steps: int, denoise: float, total: int, first: int) -> None:
    assert denoise_steps(steps, denoise) == (total, first)


def test_img2img_timesteps_are_the_tail_of_the_longer_schedule() -> None:
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, plan_timesteps

    sched = make_scheduler(SD1, "euler", "normal")
    timesteps, begin = plan_timesteps(sched, SampleSettings(0, 20, 8.0, "euler", "normal", denoise=0.6))
    full = make_scheduler(SD1, "euler", "normal")
    full.set_timesteps(33)
    assert len(timesteps) == 20 and begin == 13
    assert np.array_equal(timesteps.numpy(), full.timesteps[13:].numpy())


def test_sampler_needing_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from vortex_jupyter.nodes.diffusion import samplers

    monkeypatch.setitem(samplers._NEEDS, "DPMSolverSDEScheduler", ("vortex_absent_module", "vortex-absent"))
    msg = check_combination("dpmpp_sde", "karras")
    assert msg is not None and "pip install vortex-absent" in msg
    assert "dpmpp_sde" not in supported_pairs()


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


CUSTOM_REFERENCE = {"sgm_uniform": ref_sgm_uniform, "beta": ref_beta, "kl_optimal": ref_kl_optimal,
                    "linear_quadratic": ref_linear_quadratic}


@pytest.mark.parametrize("name", sorted(CUSTOM_REFERENCE))
@pytest.mark.parametrize("steps", [4, 7, 10, 20])
def test_custom_schedules_match_comfyui_formulas_through_the_sampler(name: str, steps: int) -> None:
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, plan_timesteps

    sched = make_scheduler(SD1, "euler", name)
    timesteps, _ = plan_timesteps(sched, SampleSettings(0, steps, 7.0, "euler", name))
    want = np.array(CUSTOM_REFERENCE[name](steps))
    np.testing.assert_allclose(sched.sigmas.double().numpy(), want, rtol=2e-4, atol=1e-6)
    assert len(timesteps) == len(want) - 1


def test_custom_schedules_need_a_scheduler_that_takes_sigmas() -> None:
    msg = check_combination("dpmpp_2m", "beta")
    assert msg is not None and "euler" not in msg.split("use:")[0] and "karras" in msg
    assert check_combination("euler", "sgm_uniform") is None


@pytest.mark.parametrize("name", ["sgm_uniform", "kl_optimal", "karras", "linear_quadratic"])
def test_denoise_with_any_schedule_runs_exactly_steps(name: str) -> None:
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, plan_timesteps

    sched = make_scheduler(SD1, "euler", name)
    timesteps, begin = plan_timesteps(sched, SampleSettings(0, 10, 7.0, "euler", name, denoise=0.5))
    assert len(timesteps) == 10 and begin == 10


def ref_ancestral_step(x: np.ndarray, denoised: np.ndarray, noise: np.ndarray, s: float, s_next: float) -> np.ndarray:
    """k-diffusion's sample_euler_ancestral step (eta = 1), as ComfyUI runs it."""
    if s_next == 0:
        return denoised
    up = min(s_next, math.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2))
    down = math.sqrt(s_next ** 2 - up ** 2)
    return x + (x - denoised) / s * (down - s) + noise * up


@pytest.mark.parametrize("schedule", ["normal", "karras", "exponential", "simple"])
def test_euler_ancestral_takes_every_euler_schedule_and_steps_like_k_diffusion(schedule: str) -> None:
    import torch

    assert check_combination("euler_ancestral", schedule) is None
    sched = make_scheduler(SD1, "euler_ancestral", schedule)
    sched.set_timesteps(6)
    plain = make_scheduler(SD1, "euler", schedule)
    plain.set_timesteps(6)
    torch.testing.assert_close(sched.sigmas, plain.sigmas)  # the schedule is euler's
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1, 4, 8, 8)).astype(np.float32)) * float(sched.sigmas[0])
    for i, t in enumerate(sched.timesteps):
        eps = torch.from_numpy(rng.standard_normal((1, 4, 8, 8)).astype(np.float32))
        s, s_next = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
        gen = torch.Generator().manual_seed(i)
        noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(i)).numpy()
        out = sched.step(eps, t, x, generator=gen)
        denoised = (x - s * eps).numpy()  # epsilon prediction: x0 = x - sigma * eps
        np.testing.assert_allclose(out.pred_original_sample.numpy(), denoised, rtol=1e-5, atol=1e-5)
        want = ref_ancestral_step(x.numpy(), denoised, noise, s, s_next)
        np.testing.assert_allclose(out.prev_sample.numpy(), want, rtol=1e-4, atol=1e-4)
        x = out.prev_sample
    assert float(sched.sigmas[-1]) == 0.0  # the last step landed on the x0 prediction (no noise)
