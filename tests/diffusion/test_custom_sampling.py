"""The custom-sampling family on the tiny model: equal settings give KSampler's latents exactly."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from vortex_jupyter.nodes.diffusion import sampling_nodes as sn
from vortex_jupyter.nodes.diffusion import sigma_nodes as sig
from vortex_jupyter.nodes.diffusion.latent_nodes import EmptyLatentImage, VAEEncode


def empty(batch: int = 1) -> dict[str, Any]:
    return EmptyLatentImage().generate(64, 64, batch)[0]


def ksampler(handles: Any, conds: Any, sampler: str, scheduler: str, latent: dict[str, Any], steps: int = 5,
             denoise: float = 1.0, seed: int = 11, cfg: float = 7.0) -> torch.Tensor:
    out = sn.KSampler().sample(handles[0], seed, steps, cfg, sampler, scheduler, conds[0], conds[1], latent, denoise)
    return out[0]["samples"]


def advanced(handles: Any, conds: Any, sampler: str, scheduler: str, latent: dict[str, Any], steps: int = 5,
             denoise: float = 1.0, seed: int = 11, cfg: float = 7.0) -> tuple[Any, Any]:
    model = handles[0]
    sigmas = sig.BasicScheduler().get_sigmas(model, scheduler, steps, denoise)[0]
    return sn.SamplerCustomAdvanced().sample(
        sn.RandomNoise().get_noise(seed)[0], sn.CFGGuider().get_guider(model, conds[0], conds[1], cfg)[0],
        sn.KSamplerSelect().get_sampler(sampler)[0], sigmas, latent)


@pytest.mark.parametrize(("sampler", "scheduler"), [
    ("euler", "normal"), ("euler_ancestral", "karras"), ("dpmpp_2m", "karras"), ("dpmpp_2m_sde", "exponential"),
    ("heun", "simple"), ("lms", "beta"), ("ddim", "ddim_uniform"), ("deis", "sgm_uniform"), ("lcm", "normal"),
])
def test_sampler_custom_advanced_gives_ksamplers_latents_bit_for_bit(tiny_handles: Any, conds: Any, sampler: str,
                                                                    scheduler: str) -> None:
    want = ksampler(tiny_handles, conds, sampler, scheduler, empty(2))
    got, _ = advanced(tiny_handles, conds, sampler, scheduler, empty(2))
    assert torch.equal(got["samples"], want)


def test_img2img_with_denoise_is_the_same_through_both_paths(tiny_handles: Any, conds: Any) -> None:
    import numpy as np

    pixels = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    latent = VAEEncode().encode(tiny_handles[2], pixels)[0]
    want = ksampler(tiny_handles, conds, "dpmpp_2m", "karras", latent, steps=6, denoise=0.55)
    got, _ = advanced(tiny_handles, conds, "dpmpp_2m", "karras", latent, steps=6, denoise=0.55)
    assert torch.equal(got["samples"], want)


def test_sampler_custom_with_its_own_noise_widgets_equals_ksampler(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    sigmas = sig.BasicScheduler().get_sigmas(model, "karras", 5, 1.0)[0]
    sampler = sn.KSamplerSelect().get_sampler("dpmpp_2s_ancestral")[0]
    out, denoised = sn.SamplerCustom().sample(model, True, 11, 7.0, conds[0], conds[1], sampler, sigmas, empty())
    assert torch.equal(out["samples"], ksampler(tiny_handles, conds, "dpmpp_2s_ancestral", "karras", empty()))
    # the last step lands on sigma 0, so the last denoised estimate is the output
    assert torch.equal(denoised["samples"], out["samples"])


def test_split_sigmas_two_stages_equal_one_pass(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    sigmas = sig.BasicScheduler().get_sigmas(model, "karras", 8, 1.0)[0]
    high, low = sig.SplitSigmas().get_sigmas(sigmas, 3)
    assert torch.equal(torch.cat([high, low[1:]]), sigmas)
    guider = sn.CFGGuider().get_guider(model, conds[0], conds[1], 6.0)[0]
    euler = sn.KSamplerSelect().get_sampler("euler")[0]
    noise = sn.RandomNoise().get_noise(3)[0]
    whole, _ = sn.SamplerCustomAdvanced().sample(noise, guider, euler, sigmas, empty())
    first, _ = sn.SamplerCustomAdvanced().sample(noise, guider, euler, high, empty())
    second, _ = sn.SamplerCustomAdvanced().sample(sn.DisableNoise().get_noise()[0], guider, euler, low, first)
    torch.testing.assert_close(second["samples"], whole["samples"], rtol=1e-5, atol=1e-5)


def test_basic_guider_is_cfg_1_and_never_evaluates_the_negative(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    sigmas = sig.KarrasScheduler().get_sigmas(4, 14.614642, 0.0291675, 7.0)[0]
    euler = sn.KSamplerSelect().get_sampler("euler")[0]
    noise = sn.RandomNoise().get_noise(5)[0]
    basic, _ = sn.SamplerCustomAdvanced().sample(noise, sn.BasicGuider().get_guider(model, conds[0])[0], euler,
                                                 sigmas, empty())
    cfg1, _ = sn.SamplerCustomAdvanced().sample(
        noise, sn.CFGGuider().get_guider(model, conds[0], [[torch.full((1, 3, 7), float("nan")), {}]], 1.0)[0],
        euler, sigmas, empty())
    assert torch.equal(basic["samples"], cfg1["samples"])  # a NaN negative never reached the model


def test_dual_cfg_regular_with_equal_prompts_is_plain_cfg(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    sigmas = sig.BasicScheduler().get_sigmas(model, "normal", 4, 1.0)[0]
    euler = sn.KSamplerSelect().get_sampler("euler")[0]
    noise = sn.RandomNoise().get_noise(2)[0]
    dual = sn.DualCFGGuider().get_guider(model, conds[0], conds[0], conds[1], 3.0, 7.0, "regular")[0]
    plain = sn.CFGGuider().get_guider(model, conds[0], conds[1], 7.0)[0]
    a, _ = sn.SamplerCustomAdvanced().sample(noise, dual, euler, sigmas, empty())
    b, _ = sn.SamplerCustomAdvanced().sample(noise, plain, euler, sigmas, empty())
    torch.testing.assert_close(a["samples"], b["samples"], rtol=1e-4, atol=1e-4)
    nested = sn.DualCFGGuider().get_guider(model, conds[0], conds[0], conds[1], 3.0, 7.0, "nested")[0]
    c, _ = sn.SamplerCustomAdvanced().sample(noise, nested, euler, sigmas, empty())
    torch.testing.assert_close(c["samples"], b["samples"], rtol=1e-4, atol=1e-4)


def test_disable_noise_samples_the_latent_as_it_is(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    sigmas = torch.tensor([1.0, 0.0])
    guider = sn.BasicGuider().get_guider(model, conds[0])[0]
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    euler = sn.KSamplerSelect().get_sampler("euler")[0]
    out, denoised = sn.SamplerCustomAdvanced().sample(sn.DisableNoise().get_noise()[0], guider, euler, sigmas, latent)
    # one Euler step from sigma 1 to 0 lands on the model's denoised estimate of the unnoised latent
    assert torch.equal(out["samples"], denoised["samples"])
    again, _ = sn.SamplerCustomAdvanced().sample(sn.DisableNoise().get_noise()[0], guider, euler, sigmas, latent)
    assert torch.equal(again["samples"], out["samples"])


def test_wrong_values_on_custom_sampling_inputs_say_what_to_connect(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    sigmas = sig.BasicScheduler().get_sigmas(model, "normal", 2, 1.0)[0]
    with pytest.raises(ValueError, match="not a SAMPLER"):
        sn.SamplerCustom().sample(model, True, 1, 7.0, conds[0], conds[1], "euler", sigmas, empty())
    with pytest.raises(ValueError, match="not a CONDITIONING"):
        sn.CFGGuider().get_guider(model, "a cat", conds[1], 7.0)
    with pytest.raises(ValueError, match="not a SIGMAS"):
        sig.SplitSigmas().get_sigmas([1.0, 0.0], 1)


def test_sigma_edits_follow_comfyui(tiny_handles: Any) -> None:
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    assert sig.FlipSigmas().get_sigmas(sigmas)[0].tolist() == pytest.approx([0.0001, 1.0, 2.0, 5.0, 10.0])
    high, low = sig.SplitSigmasDenoise().get_sigmas(sigmas, 0.5)
    assert high.tolist() == [10.0, 5.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]  # the last round(4 * 0.5) steps
    assert sig.SetFirstSigma().get_sigmas(sigmas, 7.5)[0].tolist() == [7.5, 5.0, 2.0, 1.0, 0.0]
    assert sigmas[0] == 10.0  # edits copy
    assert sig.ManualSigmas().get_sigmas("14.6, 7.1;3 .5,0")[0].tolist() == pytest.approx([14.6, 7.1, 3, 0.5, 0])
    value = sig.SamplingPercentToSigma().get_sigma(tiny_handles[0], 0.0, True)[0]
    assert value == pytest.approx(14.6146, rel=1e-4)


@pytest.mark.parametrize(("plain", "cfg_pp"), [
    ("euler", "euler_cfg_pp"), ("dpmpp_2m", "dpmpp_2m_cfg_pp"), ("res_multistep", "res_multistep_cfg_pp"),
    ("gradient_estimation", "gradient_estimation_cfg_pp"), ("euler_ancestral", "euler_ancestral_cfg_pp"),
    ("dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp"), ("res_multistep_ancestral", "res_multistep_ancestral_cfg_pp"),
])
def test_cfg_pp_samplers_reduce_to_their_plain_version_when_both_prompts_agree(tiny_handles: Any, conds: Any,
                                                                           plain: str, cfg_pp: str) -> None:
    # CFG++ steps along the unconditional prediction: with positive == negative that is the guided one
    same = (conds[0], conds[0])
    a = ksampler(tiny_handles, same, plain, "karras", empty(), steps=6, cfg=5.0)
    b = ksampler(tiny_handles, same, cfg_pp, "karras", empty(), steps=6, cfg=5.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    c = ksampler(tiny_handles, conds, cfg_pp, "karras", empty(), steps=6, cfg=5.0)
    assert not torch.allclose(b, c, atol=1e-2)  # with different prompts the guidance matters


def test_dpmpp_2s_ancestral_cfg_pp_follows_comfyuis_current_steps() -> None:
    """Both stages start from x moved by the guidance (denoised - uncond) and use the guided
    estimates; written out here for eta 0 (no noise) on a toy guided/unguided pair."""
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
    from vortex_jupyter.nodes.diffusion.solvers import Run
    from vortex_jupyter.nodes.diffusion.solvers_extra import dpmpp_2s_ancestral_cfg_pp

    ms = ModelSampling.from_config({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})
    extras: dict[str, Any] = {}

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        extras["uncond_denoised"] = 0.5 * x
        return 0.3 + 0.2 * x

    x0 = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    sigmas = torch.tensor([8.0, 3.0, 0.0])
    got = dpmpp_2s_ancestral_cfg_pp(Run(guided, ms, 1, extras=extras), x0.clone(), sigmas, eta=0.0)

    x = x0.double()
    s_t, s_next = 8.0, 3.0
    d, u = 0.3 + 0.2 * x, 0.5 * x
    t, t_next = -math.log(s_t), -math.log(s_next)
    h = t_next - t
    s_mid = math.exp(-(t + h / 2))
    x2 = (s_mid / s_t) * (x + d - u) - math.expm1(-h / 2) * d
    x = (s_next / s_t) * (x + d - u) - math.expm1(-h) * (0.3 + 0.2 * x2)
    x = 0.3 + 0.2 * x  # the last step lands on the guided estimate
    torch.testing.assert_close(got.double(), x, rtol=1e-5, atol=1e-5)
