"""ComfyUI's sampler and scheduler names, and which solver runs each (torch-free).

KSampler's ``sampler_name`` picks a solver (``solvers``, ``solvers_sde``, ``solvers_extra``,
``dpm_solver``, ``unipc``: our own implementations of the published methods, run the way ComfyUI runs them,
on sigma lists) and ``scheduler`` picks the sigmas (``schedules``). Every solver takes every
schedule, and any SIGMAS a graph computes (SamplerCustom). Names map as in ComfyUI:
``ddim`` is Euler (with fresh inpainting noise), ``*_gpu`` variants draw their Brownian noise
on the latent's device, ``uni_pc_bh2`` is UniPC with B(h) = e^h - 1.

Every name ComfyUI offers stays a valid choice, so any ComfyUI workflow loads; the few we do
not implement yet are reported by ``check_combination`` (VE-116 at validation, with the list
of what runs) rather than by a choice error.
"""

from __future__ import annotations

import importlib.util
from typing import Any

#: ComfyUI's KSampler.SAMPLERS, in its order (the first is the widget default).
COMFY_SAMPLERS: tuple[str, ...] = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
    "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp",
    "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "gradient_estimation",
    "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece",
    "ddim", "uni_pc", "uni_pc_bh2",
)
#: ComfyUI's KSampler.SCHEDULERS, in its order.
COMFY_SCHEDULERS: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)

_GPU = {"gpu": True}
#: sampler_name -> (module under nodes.diffusion, function, fixed options)
SOLVERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "euler": ("solvers", "euler", {}),
    "euler_cfg_pp": ("solvers_sde", "euler_cfg_pp", {}),
    "euler_ancestral": ("solvers_sde", "euler_ancestral", {}),
    "euler_ancestral_cfg_pp": ("solvers_sde", "euler_ancestral_cfg_pp", {}),
    "heun": ("solvers", "heun", {}),
    "heunpp2": ("solvers", "heunpp2", {}),
    "dpm_2": ("solvers", "dpm_2", {}),
    "dpm_2_ancestral": ("solvers_sde", "dpm_2_ancestral", {}),
    "lms": ("solvers", "lms", {}),
    "dpm_fast": ("dpm_solver", "dpm_fast", {}),
    "dpm_adaptive": ("dpm_solver", "dpm_adaptive", {}),
    "dpmpp_2s_ancestral": ("solvers_sde", "dpmpp_2s_ancestral", {}),
    "dpmpp_sde": ("solvers_sde", "dpmpp_sde", {}),
    "dpmpp_sde_gpu": ("solvers_sde", "dpmpp_sde", _GPU),
    "dpmpp_2m": ("solvers", "dpmpp_2m", {}),
    "dpmpp_2m_sde": ("solvers_sde", "dpmpp_2m_sde", {}),
    "dpmpp_2m_sde_gpu": ("solvers_sde", "dpmpp_2m_sde", _GPU),
    "dpmpp_3m_sde": ("solvers_sde", "dpmpp_3m_sde", {}),
    "dpmpp_3m_sde_gpu": ("solvers_sde", "dpmpp_3m_sde", _GPU),
    "ddpm": ("solvers_sde", "ddpm", {}),
    "lcm": ("solvers_sde", "lcm", {}),
    "dpmpp_2s_ancestral_cfg_pp": ("solvers_extra", "dpmpp_2s_ancestral_cfg_pp", {}),
    "dpmpp_2m_cfg_pp": ("solvers_extra", "dpmpp_2m_cfg_pp", {}),
    "res_multistep": ("solvers_extra", "res_multistep", {}),
    "res_multistep_cfg_pp": ("solvers_extra", "res_multistep_cfg_pp", {}),
    "res_multistep_ancestral": ("solvers_extra", "res_multistep_ancestral", {}),
    "res_multistep_ancestral_cfg_pp": ("solvers_extra", "res_multistep_ancestral_cfg_pp", {}),
    "gradient_estimation": ("solvers_extra", "gradient_estimation", {}),
    "gradient_estimation_cfg_pp": ("solvers_extra", "gradient_estimation_cfg_pp", {}),
    "er_sde": ("solvers_extra", "er_sde", {}),
    "seeds_2": ("solvers_extra", "seeds_2", {}),
    "ipndm": ("solvers", "ipndm", {}),
    "ipndm_v": ("solvers", "ipndm_v", {}),
    "deis": ("solvers", "deis", {}),
    "ddim": ("solvers", "euler", {}),
    "uni_pc": ("unipc", "uni_pc", {}),
    "uni_pc_bh2": ("unipc", "uni_pc_bh2", {}),
}
#: Samplers whose inpainting noise is fresh (seed + 1) rather than the run's (ComfyUI's ddim).
RANDOM_INPAINT_NOISE = frozenset({"ddim"})
#: Solvers that draw Brownian noise: they need the optional torchsde package.
_NEEDS_TORCHSDE = frozenset({"dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"})


def _missing_package(sampler_name: str) -> str | None:
    entry = SOLVERS.get(sampler_name)
    if entry and entry[1] in _NEEDS_TORCHSDE and importlib.util.find_spec("torchsde") is None:
        return "torchsde"
    return None


def supported(sampler_name: str, scheduler: str | None = None) -> bool:
    ok_schedule = scheduler is None or scheduler in COMFY_SCHEDULERS
    return sampler_name in SOLVERS and ok_schedule and _missing_package(sampler_name) is None


def supported_pairs() -> dict[str, list[str]]:
    """sampler -> the schedules it runs with (every schedule, for every sampler we run)."""
    return {s: list(COMFY_SCHEDULERS) for s in SOLVERS if supported(s)}


def check_sampler(sampler_name: str) -> str | None:
    """None if we can run this sampler, else a message saying why and what runs instead."""
    if sampler_name not in SOLVERS:
        return (f"sampler_name {sampler_name!r} is not implemented here yet; supported: "
                f"{', '.join(SOLVERS)}")
    package = _missing_package(sampler_name)
    if package:
        return f"sampler {sampler_name!r} needs the {package!r} package; install it with: pip install {package}"
    return None


def check_combination(sampler_name: str, scheduler: str) -> str | None:
    """None if we can run this sampler/scheduler pair, else a message listing what runs."""
    if scheduler not in COMFY_SCHEDULERS:
        return f"scheduler {scheduler!r} is not supported; supported: {', '.join(COMFY_SCHEDULERS)}"
    return check_sampler(sampler_name)
