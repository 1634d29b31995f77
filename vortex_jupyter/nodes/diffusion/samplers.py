"""ComfyUI ``sampler_name`` / ``scheduler`` -> a configured diffusers scheduler.

ComfyUI separates the solver (``sampler_name``: euler, dpmpp_2m, ...) from the noise schedule
(``scheduler``: normal, karras, ...). diffusers folds both into one scheduler class plus
config flags. The mapping (DESIGN.md §8):

=================  ==========================================================================
scheduler          diffusers config
=================  ==========================================================================
normal             ``timestep_spacing="linspace"`` (timesteps 999..0 evenly; sigma interpolated)
simple             ``timestep_spacing="trailing"`` (every ``1000/steps``-th training sigma from the top)
ddim_uniform       ``timestep_spacing="leading"``, ``steps_offset=1`` (DDIM's 1, 1+k, 1+2k, ...)
karras             ``use_karras_sigmas`` (rho = 7 between the model's sigma_min and sigma_max)
exponential        ``use_exponential_sigmas`` (log-linear between sigma_max and sigma_min)
sgm_uniform        our sigmas: timesteps ``linspace(999, 0, steps + 1)[:-1]``   (``set_timesteps(sigmas=)``,
beta               our sigmas: timesteps at Beta(0.6, 0.6) quantiles            Euler only: the one
kl_optimal         our sigmas: uniform in ``arctan(sigma)``                     diffusers class taking them)
=================  ==========================================================================

SD1's own scheduler config says ``timestep_spacing="leading"``, ``steps_offset=1``; that is NOT
ComfyUI's "normal", so the spacing is always overridden. Sigma-based schedules need a
scheduler with those flags (DDIM/DDPM/LCM have none; euler_ancestral is our ancestral step on
Euler's tables, so it takes them all): such combinations are
rejected at validation (VE-116) with the list of what is supported. ``linear_quadratic``
(Mochi's schedule, in units of the model's sigma_max) is computed here like sgm_uniform. ``dpmpp_sde`` needs the optional ``torchsde`` package (the message says so).
"simple" and "ddim_uniform" pick training timesteps; ``comfy_timesteps`` computes ComfyUI's
exact picks (ComfyUI truncates where diffusers' "trailing" rounds, and ddim_uniform runs one
step more than asked when ``1000 // steps`` does not divide 999, e.g. 8 steps for 7) and
``apply_exact_timesteps`` hands them to the scheduler: through ``set_timesteps(timesteps=)``
(Euler, Heun, DPM++ 2M/SDE, DDPM) or, for DDIM with ddim_uniform, as its timesteps with
DDIM's own stride (which is ComfyUI's step ``1000 // steps``). The others (Euler ancestral,
LMS, DPM2, DEIS, UniPC, DPM++ SDE, LCM, and DDIM with simple) keep the config approximation
above: "simple" within one training timestep of ComfyUI's picks (tested), "ddim_uniform"
with exactly ``steps`` steps where ComfyUI may run one more.

Every name ComfyUI offers stays a valid choice (so any ComfyUI workflow loads); the ones we
cannot run are reported by ``check_combination`` rather than by a choice error.
"""

from __future__ import annotations

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

_SDE = {"algorithm_type": "sde-dpmsolver++"}
#: sampler_name -> (diffusers class, config overrides)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    # ancestral Euler on EulerDiscreteScheduler's sigma tables (``_ancestral_euler``), so it
    # takes every schedule euler does: diffusers' EulerAncestral has no karras/exponential
    "euler_ancestral": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 2}),
    "dpmpp_2m_sde_gpu": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 2}),
    "dpmpp_3m_sde": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 3}),
    "dpmpp_3m_sde_gpu": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 3}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),  # needs the optional torchsde package
    "dpmpp_sde_gpu": ("DPMSolverSDEScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
    "lcm": ("LCMScheduler", {}),
    "ddim": ("DDIMScheduler", {"set_alpha_to_one": False, "clip_sample": False}),
    "uni_pc": ("UniPCMultistepScheduler", {}),
    "uni_pc_bh2": ("UniPCMultistepScheduler", {"solver_type": "bh2"}),
}

#: scheduler name -> config overrides
SCHEDULES: dict[str, dict[str, Any]] = {
    "normal": {"timestep_spacing": "linspace", "steps_offset": 0},
    "simple": {"timestep_spacing": "trailing", "steps_offset": 0},
    "ddim_uniform": {"timestep_spacing": "leading", "steps_offset": 1},
    # karras/exponential take sigma_min/max from the interpolated schedule's ends: linspace
    # spacing makes those the model's real extremes (t=999 and t=0), as ComfyUI uses.
    "karras": {"timestep_spacing": "linspace", "steps_offset": 0, "use_karras_sigmas": True},
    "exponential": {"timestep_spacing": "linspace", "steps_offset": 0, "use_exponential_sigmas": True},
    # ComfyUI schedules diffusers has no flag for: computed here, handed over as ``sigmas=``
    "sgm_uniform": {"timestep_spacing": "linspace", "steps_offset": 0},
    "beta": {"timestep_spacing": "linspace", "steps_offset": 0},
    "kl_optimal": {"timestep_spacing": "linspace", "steps_offset": 0},
    "linear_quadratic": {"timestep_spacing": "linspace", "steps_offset": 0},
}
#: Schedules computed by ``custom_sigmas``; only schedulers whose set_timesteps takes ``sigmas``.
CUSTOM = frozenset({"sgm_uniform", "beta", "kl_optimal", "linear_quadratic"})
_TAKES_SIGMAS = frozenset({"EulerDiscreteScheduler"})
_SIGMA_FLAGS = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas"}
#: diffusers classes without use_karras_sigmas/use_exponential_sigmas: those schedules are refused.
_NO_SIGMA_FLAGS = {"DDIMScheduler", "DDPMScheduler", "LCMScheduler"}
_SCHED_NEEDS_SPACING = {"LCMScheduler"}  # LCM ignores spacing: only its own schedule


#: diffusers classes that need an optional package -> (module, pip name)
_NEEDS = {"DPMSolverSDEScheduler": ("torchsde", "torchsde")}


def _missing_package(cls: str) -> str | None:
    import importlib.util

    need = _NEEDS.get(cls)
    return need[1] if need and importlib.util.find_spec(need[0]) is None else None


def supported(sampler_name: str, scheduler: str) -> bool:
    if sampler_name not in SAMPLERS or scheduler not in SCHEDULES:
        return False
    if _missing_package(SAMPLERS[sampler_name][0]):
        return False
    cls = SAMPLERS[sampler_name][0]
    if scheduler in _SIGMA_FLAGS and cls in _NO_SIGMA_FLAGS:
        return False
    if scheduler in CUSTOM and cls not in _TAKES_SIGMAS:
        return False
    return not (cls in _SCHED_NEEDS_SPACING and scheduler != "simple")


def supported_pairs() -> dict[str, list[str]]:
    """sampler -> the schedules it runs with (samplers whose package is missing are left out)."""
    pairs = {s: [n for n in SCHEDULES if supported(s, n)] for s in SAMPLERS}
    return {s: names for s, names in pairs.items() if names}


def check_combination(sampler_name: str, scheduler: str) -> str | None:
    """None if we can run this pair, else a message that lists what is supported."""
    if sampler_name not in SAMPLERS:
        return (f"sampler_name {sampler_name!r} has no diffusers equivalent here; supported: "
                f"{', '.join(SAMPLERS)}")
    if scheduler not in SCHEDULES:
        return f"scheduler {scheduler!r} is not supported; supported: {', '.join(SCHEDULES)}"
    package = _missing_package(SAMPLERS[sampler_name][0])
    if package:
        return f"sampler {sampler_name!r} needs the {package!r} package; install it with: pip install {package}"
    if not supported(sampler_name, scheduler):
        ok = ", ".join(supported_pairs()[sampler_name])
        return (f"sampler {sampler_name!r} cannot use the {scheduler!r} schedule "
                f"(diffusers' {SAMPLERS[sampler_name][0]} has no such option); with {sampler_name!r} use: {ok}")
    return None


def make_scheduler(base_config: dict[str, Any], sampler_name: str, scheduler: str) -> Any:
    """A fresh diffusers scheduler for this pair, from the model's scheduler config."""
    import diffusers

    problem = check_combination(sampler_name, scheduler)
    if problem:
        raise ValueError(problem)
    cls_name, extra = SAMPLERS[sampler_name]
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    for flag in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        config.pop(flag, None)  # a model's own config must not leak into "normal"
    config.update(extra)
    config.update(SCHEDULES[scheduler])
    cls = _ancestral_euler() if sampler_name in _ANCESTRAL else getattr(diffusers, cls_name)
    return cls.from_config(config)


#: Samplers run by ``_ancestral_euler`` (ComfyUI's ``sample_euler_ancestral``, eta = 1).
_ANCESTRAL = frozenset({"euler_ancestral"})
_ANCESTRAL_CLASS: Any = None


def _ancestral_euler() -> Any:
    """EulerDiscreteScheduler with k-diffusion's ancestral step (eta = s_noise = 1), made on
    first use so importing this module never imports diffusers.

    Each step goes from sigma to sigma_down deterministically, then adds fresh noise of
    sigma_up (from the ``generator`` the loop passes: seeded from the seed), where
    ``sigma_up = min(s', sqrt(s'^2 (s^2 - s'^2) / s^2))`` and ``sigma_down = sqrt(s'^2 - sigma_up^2)``
    for a step from s to s'. The last step (s' = 0) lands on the x0 prediction, no noise.
    """
    global _ANCESTRAL_CLASS
    if _ANCESTRAL_CLASS is not None:
        return _ANCESTRAL_CLASS
    import diffusers
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    euler: Any = diffusers.EulerDiscreteScheduler

    class EulerAncestralAnySchedule(euler):  # type: ignore[misc, valid-type]
        def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any,
                 generator: Any = None, return_dict: bool = True, **kwargs: Any) -> Any:
            if self.step_index is None:
                self._init_step_index(timestep)
            sigma = float(self.sigmas[self.step_index])
            sigma_next = float(self.sigmas[self.step_index + 1])
            # the plain Euler step gives the x0 prediction (and advances the step index)
            out = super().step(model_output, timestep, sample, return_dict=True)
            denoised = out.pred_original_sample
            x = sample.to(torch.float32)
            if sigma_next > 0.0:
                up = min(sigma_next, (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
                down = (sigma_next ** 2 - up ** 2) ** 0.5
                noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device,
                                     dtype=torch.float32)
                prev = x + (x - denoised) / sigma * (down - sigma) + noise * up
            else:
                prev = denoised
            prev = prev.to(model_output.dtype)
            if not return_dict:
                return prev, denoised
            return type(out)(prev_sample=prev, pred_original_sample=denoised)

    _ANCESTRAL_CLASS = EulerAncestralAnySchedule
    return _ANCESTRAL_CLASS


def denoise_steps(steps: int, denoise: float) -> tuple[int, int]:
    """(schedule length, first step index) for ComfyUI's ``denoise``.

    ComfyUI computes the schedule for ``int(steps / denoise)`` steps and runs its last
    ``steps``: the same as diffusers' img2img ``strength=denoise`` over ``steps/denoise``
    inference steps, but with exactly ``steps`` model steps.
    """
    if denoise >= 1.0:
        return steps, 0
    total = int(steps / denoise)
    return total, total - steps


def training_sigmas(scheduler: Any) -> Any:
    """The model's sigma for each training timestep (0..999), from the scheduler's betas."""
    import numpy as np

    ac = np.asarray(scheduler.alphas_cumprod, dtype=np.float64)
    return np.sqrt((1.0 - ac) / ac)


def custom_sigmas(name: str, steps: int, sigmas: Any) -> list[float]:
    """ComfyUI's sgm_uniform / beta / kl_optimal schedules over ``sigmas`` (ending in 0)."""
    import numpy as np

    last = len(sigmas) - 1
    if name == "sgm_uniform":  # evenly spaced timesteps, the last (t=0) dropped
        log = np.log(sigmas)
        ts = np.linspace(last, 0, steps + 1)[:-1]
        return [*np.exp(np.interp(ts, np.arange(len(sigmas)), log)).tolist(), 0.0]
    if name == "beta":  # timesteps at the Beta(0.6, 0.6) quantiles, duplicates removed
        from scipy import stats

        ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), 0.6, 0.6) * last)
        picked = [int(t) for i, t in enumerate(ts) if i == 0 or t != ts[i - 1]]
        return [*(float(sigmas[t]) for t in picked), 0.0]
    if name == "kl_optimal":  # "Align Your Steps": uniform in arctan(sigma)
        frac = np.arange(steps, dtype=np.float64) / max(steps - 1, 1)
        lo, hi = np.arctan(sigmas[0]), np.arctan(sigmas[-1])
        return [*np.tan(frac * lo + (1 - frac) * hi).tolist(), 0.0]
    if name == "linear_quadratic":  # Mochi's: linear in the first half, then quadratic, x sigma_max
        return [x * float(sigmas[-1]) for x in _linear_quadratic(steps)]
    raise ValueError(f"{name!r} is not a custom schedule ({', '.join(sorted(CUSTOM))})")


def _linear_quadratic(steps: int, threshold: float = 0.025) -> list[float]:
    """ComfyUI's linear_quadratic schedule in units of sigma_max (``steps + 1`` values, last 0).

    With ``k = steps // 2`` linear steps: ``1 - i * threshold / k`` for i < k, then a quadratic
    in i through (k, 1 - threshold) that reaches 0 at i = steps.
    """
    if steps == 1:
        return [1.0, 0.0]
    k = steps // 2
    q = steps - k
    rise = k - threshold * steps
    a = rise / (k * q * q)
    b = threshold / k - 2 * rise / (q * q)
    c = a * k * k
    noise = [i * threshold / k for i in range(k)] + [a * i * i + b * i + c for i in range(k, steps)] + [1.0]
    return [1.0 - x for x in noise]


#: Schedules that pick training timesteps; ``comfy_timesteps`` gives ComfyUI's exact picks.
EXACT_TIMESTEPS = frozenset({"simple", "ddim_uniform"})
#: Take ``set_timesteps(timesteps=)`` but use it differently (LCM: its own skipping grid).
_NO_CUSTOM_TIMESTEPS = {"LCMScheduler"}


def comfy_timesteps(name: str, steps: int, n_train: int = 1000) -> list[int] | None:
    """ComfyUI's timesteps (descending) for "simple" / "ddim_uniform"; None where they would
    repeat a timestep (more steps than training timesteps) or the name picks none.

    simple: ``sigmas[-(1 + int(x * n_train / steps))]`` for x in 0..steps-1;
    ddim_uniform: timesteps 1, 1 + k, 1 + 2k, ... below ``n_train`` with ``k = n_train // steps``,
    reversed (so 7 steps give 8 timesteps, as in ComfyUI).
    """
    if steps < 1 or steps > n_train:
        return None
    if name == "simple":
        stride = n_train / steps
        return [n_train - 1 - int(x * stride) for x in range(steps)]
    if name == "ddim_uniform":
        return list(range(1, n_train, max(n_train // steps, 1)))[::-1]
    return None


def apply_exact_timesteps(scheduler: Any, name: str, steps: int, device: Any = None) -> int | None:
    """Set ``scheduler`` to ComfyUI's timesteps for ``name`` over ``steps``; returns how many
    steps the schedule has (ddim_uniform may have one more), or None when this scheduler cannot
    take them (it was left alone: use ``set_timesteps(steps)``)."""
    import inspect

    n_train = int(getattr(scheduler.config, "num_train_timesteps", 1000))
    picks = comfy_timesteps(name, steps, n_train)
    cls = type(scheduler).__name__
    if picks is None or cls in _NO_CUSTOM_TIMESTEPS:
        return None
    if "timesteps" in inspect.signature(scheduler.set_timesteps).parameters:
        scheduler.set_timesteps(timesteps=picks, device=device)
        return len(picks)
    if cls == "DDIMScheduler" and name == "ddim_uniform":
        import torch

        # DDIM steps from t to t - n_train // num_inference_steps: with ``steps`` that stride
        # is ComfyUI's k, so the extra timestep ddim_uniform may add is stepped correctly too.
        scheduler.set_timesteps(steps, device=device)
        scheduler.timesteps = torch.tensor(picks, dtype=torch.long, device=device)
        return len(picks)
    return None
