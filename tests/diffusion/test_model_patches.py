"""ModelSamplingDiscrete and RescaleCFG: ComfyUI's widgets, its sigma tables and CFG formula
(recomputed here independently in numpy float64), and KSampler runs on patched tiny models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion.guiders import cfg_function
from vortex_jupyter.nodes.diffusion.latent_nodes import EmptyLatentImage
from vortex_jupyter.nodes.diffusion.model_nodes import ModelSamplingDiscrete, RescaleCFG
from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
from vortex_jupyter.nodes.diffusion.sampling_nodes import KSampler
from vortex_jupyter.nodes.registry import REGISTRY

SD1 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


def _sd1_sigmas() -> np.ndarray:
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1.0 - betas)
    return np.sqrt((1.0 - abar) / abar)


def _zsnr(sigmas: np.ndarray) -> np.ndarray:
    """Lin et al.'s rescale as ComfyUI writes it: shift sqrt(alpha_bar) to end at 0, scale back to
    its first value, pin the last alpha_bar to 4.8973451890853435e-08."""
    root = np.sqrt(1.0 / (sigmas ** 2 + 1.0))
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    abar = root ** 2
    abar[-1] = 4.8973451890853435e-08
    return np.sqrt((1.0 - abar) / abar)


def _patched(sampling: str, zsnr: bool = False, config: dict[str, Any] = SD1) -> ModelSampling:
    from vortex_jupyter.nodes.diffusion.model_sampling import patch_config

    return ModelSampling.from_config(patch_config(config, sampling, zsnr))


# ------------------------------------------------------------------------------- the widgets


def test_widgets_are_comfyuis_in_order_with_its_defaults() -> None:
    # comfy_extras/nodes_model_advanced.py
    spec = REGISTRY.get("ModelSamplingDiscrete")
    assert [p.name for p in spec.inputs] == ["model", "sampling", "zsnr"]
    assert ModelSamplingDiscrete.INPUT_TYPES()["required"]["sampling"][0] == [
        "eps", "v_prediction", "lcm", "x0", "img_to_img"]
    assert ModelSamplingDiscrete.INPUT_TYPES()["required"]["zsnr"] == ("BOOLEAN", {"default": False})
    assert [o.type for o in spec.outputs] == ["MODEL"] and spec.heavy
    rescale = REGISTRY.get("RescaleCFG")
    assert [p.name for p in rescale.inputs] == ["model", "multiplier"]
    assert RescaleCFG.INPUT_TYPES()["required"]["multiplier"] == (
        "FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01})
    assert [o.type for o in rescale.outputs] == ["MODEL"] and rescale.heavy


# ------------------------------------------------------------------------------ sigma tables


def test_eps_and_v_prediction_keep_the_training_table() -> None:
    expected = _sd1_sigmas().astype(np.float32)
    for sampling in ("eps", "v_prediction", "x0", "img_to_img"):
        ms = _patched(sampling)
        np.testing.assert_array_equal(ms.sigmas.numpy(), expected)
    assert _patched("v_prediction").prediction == "v_prediction"


def test_zsnr_rescales_the_table_to_zero_terminal_snr() -> None:
    ms = _patched("v_prediction", zsnr=True)
    expected = _zsnr(_sd1_sigmas())
    np.testing.assert_allclose(ms.sigmas.numpy(), expected.astype(np.float32), rtol=1e-6)
    pinned = 4.8973451890853435e-08  # the terminal alpha_bar ComfyUI pins
    assert float(ms.sigma_max) == pytest.approx(((1 - pinned) / pinned) ** 0.5, rel=1e-6)  # ~4518.76
    assert float(ms.sigma_min) == pytest.approx(float(_sd1_sigmas()[0]), rel=1e-5)  # first kept


def test_lcm_keeps_every_20th_sigma_and_maps_them_to_timesteps_19_to_999() -> None:
    ms = _patched("lcm")
    full = _sd1_sigmas().astype(np.float32)
    assert ms.sigmas.shape == (50,)
    np.testing.assert_array_equal(ms.sigmas.numpy(), full[19::20])
    assert ms.timestep(ms.sigmas).tolist() == list(range(19, 1000, 20))
    # sigma(t) inverts timestep(): t = 20 * i + 19 -> table entry i
    np.testing.assert_allclose(ms.sigma(torch.tensor([19.0, 519.0, 999.0])).numpy(), full[[19, 519, 999]],
                               rtol=1e-6)
    zs = _patched("lcm", zsnr=True)
    np.testing.assert_allclose(zs.sigmas.numpy(), _zsnr(_sd1_sigmas())[19::20].astype(np.float32), rtol=1e-6)


def test_each_prediction_type_denoises_by_comfyuis_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    x, out = torch.randn(2, 4, 3, 3, generator=gen), torch.randn(2, 4, 3, 3, generator=gen)
    sigma = torch.tensor([2.0, 0.5])
    s = sigma.view(2, 1, 1, 1)
    torch.testing.assert_close(_patched("eps").calculate_denoised(sigma, out, x), x - out * s)
    torch.testing.assert_close(_patched("v_prediction").calculate_denoised(sigma, out, x),
                               x / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5)
    assert _patched("x0").calculate_denoised(sigma, out, x) is out
    torch.testing.assert_close(_patched("x0").calculate_input(sigma, x), x / (s ** 2 + 1) ** 0.5)
    assert _patched("img_to_img").calculate_input(sigma, x) is x  # the model sees x unscaled
    lcm = _patched("lcm")
    t = lcm.timestep(sigma).float().view(2, 1, 1, 1) * 10.0
    expected = t / (t ** 2 + 0.25) ** 0.5 * (x - out * s) + 0.25 / (t ** 2 + 0.25) * x
    torch.testing.assert_close(lcm.calculate_denoised(sigma, out, x), expected)


def test_an_unknown_sampling_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="widget 'sampling'"):
        _patched("edm")


# --------------------------------------------------------------------------------- RescaleCFG


def _rescale_reference(x: np.ndarray, cond: np.ndarray, uncond: np.ndarray, sigma: np.ndarray, scale: float,
                       multiplier: float) -> np.ndarray:
    """ComfyUI's RescaleCFG on denoised estimates, written out: v-predictions from the denoised
    estimates, CFG, std rescale (unbiased, over C,H,W), blend, back to a denoised estimate."""
    s = sigma.reshape(-1, 1, 1, 1)
    c = np.sqrt(s ** 2 + 1)
    v_cond = (x / c - cond * c) / s
    v_uncond = (x / c - uncond * c) / s
    v_cfg = v_uncond + scale * (v_cond - v_uncond)
    ratio = v_cond.std(axis=(1, 2, 3), ddof=1, keepdims=True) / v_cfg.std(axis=(1, 2, 3), ddof=1, keepdims=True)
    v = multiplier * v_cfg * ratio + (1 - multiplier) * v_cfg
    return x / c ** 2 - v * s / c


def test_rescale_cfg_matches_the_formula_on_known_tensors(tiny_handles: Any) -> None:
    model = RescaleCFG().patch(tiny_handles[0], 0.7)[0]
    gen = torch.Generator().manual_seed(3)
    x, cond, uncond = (torch.randn(2, 4, 5, 5, generator=gen, dtype=torch.float64) for _ in range(3))
    sigma = torch.tensor([3.0, 0.7], dtype=torch.float64)
    got = cfg_function(model.options, cond, uncond, 7.5, x, sigma)
    expected = _rescale_reference(x.numpy(), cond.numpy(), uncond.numpy(), sigma.numpy(), 7.5, 0.7)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)
    plain = cfg_function({}, cond, uncond, 7.5, x, sigma)
    assert not torch.allclose(got, plain)
    # multiplier 0 is plain CFG (up to the round trip through v)
    zero = RescaleCFG().patch(tiny_handles[0], 0.0)[0]
    torch.testing.assert_close(cfg_function(zero.options, cond, uncond, 7.5, x, sigma), plain)


# ------------------------------------------------------------------------- patched KSampler runs


def _sample(model: Any, conds: Any, seed: int) -> torch.Tensor:
    latent = EmptyLatentImage().generate(64, 64, 1)[0]
    return KSampler().sample(model, seed, 4, 6.0, "euler", "normal", conds[0], conds[1], latent, 1.0)[0]["samples"]


def test_patches_leave_the_input_model_unchanged(tiny_handles: Any) -> None:
    model = tiny_handles[0]
    config, options = dict(model.scheduler_config), dict(model.options)
    v = ModelSamplingDiscrete().patch(model, "v_prediction", True)[0]
    r = RescaleCFG().patch(v, 0.5)[0]
    assert model.scheduler_config == config and model.options == options
    assert v.scheduler_config["prediction_type"] == "v_prediction" and v.options == {}
    assert r.scheduler_config == v.scheduler_config and "sampler_cfg_function" in r.options
    assert r.unet is model.unet  # a patch shares the weights


def test_ksampler_follows_model_sampling_discrete(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    base = _sample(model, conds, 7)
    eps = _sample(ModelSamplingDiscrete().patch(model, "eps", False)[0], conds, 7)
    assert torch.equal(base, eps)  # the tiny model is eps already
    vpred = ModelSamplingDiscrete().patch(model, "v_prediction", False)[0]
    first, again = _sample(vpred, conds, 7), _sample(vpred, conds, 7)
    assert torch.equal(first, again) and not torch.allclose(first, base, atol=1e-3)
    assert not torch.equal(first, _sample(vpred, conds, 8))
    for sampling, zsnr in (("v_prediction", True), ("lcm", False), ("x0", False), ("img_to_img", False)):
        out = _sample(ModelSamplingDiscrete().patch(model, sampling, zsnr)[0], conds, 7)
        assert torch.isfinite(out).all() and not torch.allclose(out, first, atol=1e-3), sampling


def test_ksampler_applies_rescale_cfg(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    rescaled = RescaleCFG().patch(model, 0.7)[0]
    first, again = _sample(rescaled, conds, 5), _sample(rescaled, conds, 5)
    assert torch.equal(first, again)
    assert not torch.allclose(first, _sample(model, conds, 5), atol=1e-4)


def test_patch_nodes_refuse_a_value_that_is_not_a_model() -> None:
    with pytest.raises(ValueError, match="not a MODEL"):
        ModelSamplingDiscrete().patch("model.safetensors", "eps", False)
    with pytest.raises(ValueError, match="not a MODEL"):
        RescaleCFG().patch(None, 0.7)


def test_every_guider_calls_the_models_cfg_function_with_comfyuis_arguments(tiny_handles: Any, conds: Any) -> None:
    from dataclasses import replace

    from vortex_jupyter.nodes.diffusion import sampling_nodes as sn
    from vortex_jupyter.nodes.diffusion import sigma_nodes as sig

    calls: list[dict[str, Any]] = []

    def record(args: dict[str, Any]) -> torch.Tensor:
        calls.append(args)
        return args["cond"]  # a noise prediction: the result is the positive's denoised estimate

    model = replace(tiny_handles[0], options={"sampler_cfg_function": record})
    sigmas = sig.BasicScheduler().get_sigmas(model, "normal", 2, 1.0)[0]
    euler = sn.KSamplerSelect().get_sampler("euler")[0]
    noise = sn.RandomNoise().get_noise(4)[0]
    empty = EmptyLatentImage().generate(64, 64, 1)[0]
    guiders = {
        "basic": (sn.BasicGuider().get_guider(model, conds[0])[0], 1.0),
        "cfg": (sn.CFGGuider().get_guider(model, conds[0], conds[1], 6.5)[0], 6.5),
        "dual": (sn.DualCFGGuider().get_guider(model, conds[0], conds[0], conds[1], 3.0, 5.0, "regular")[0], 5.0),
        "nested": (sn.DualCFGGuider().get_guider(model, conds[0], conds[0], conds[1], 3.0, 5.0, "nested")[0], 3.0),
    }
    for name, (guider, scale) in guiders.items():
        calls.clear()
        sn.SamplerCustomAdvanced().sample(noise, guider, euler, sigmas, empty)
        assert [a["cond_scale"] for a in calls] == [scale, scale], name
        args = calls[0]
        torch.testing.assert_close(args["cond"], args["input"] - args["cond_denoised"])
        torch.testing.assert_close(args["uncond"], args["input"] - args["uncond_denoised"])
        assert float(args["sigma"].flatten()[0]) == pytest.approx(float(sigmas[0]))
    calls.clear()
    sn.SamplerCustomAdvanced().sample(noise, guiders["basic"][0], euler, sigmas, empty)
    assert not calls[0]["uncond_denoised"].any()  # BasicGuider: CFG at 1 against a zero uncond


def test_sampler_custom_advanced_on_a_rescaled_model_is_ksamplers_latent(tiny_handles: Any, conds: Any) -> None:
    from vortex_jupyter.nodes.diffusion import sampling_nodes as sn
    from vortex_jupyter.nodes.diffusion import sigma_nodes as sig

    model = RescaleCFG().patch(ModelSamplingDiscrete().patch(tiny_handles[0], "v_prediction", True)[0], 0.7)[0]
    empty = EmptyLatentImage().generate(64, 64, 1)[0]
    a = KSampler().sample(model, 9, 3, 6.0, "euler", "karras", conds[0], conds[1], empty, 1.0)[0]["samples"]
    sigmas = sig.BasicScheduler().get_sigmas(model, "karras", 3, 1.0)[0]
    assert float(sigmas[0]) == pytest.approx(float(_zsnr(_sd1_sigmas())[-1]), rel=1e-5)  # the zsnr top sigma
    b, _ = sn.SamplerCustomAdvanced().sample(
        sn.RandomNoise().get_noise(9)[0], sn.CFGGuider().get_guider(model, conds[0], conds[1], 6.0)[0],
        sn.KSamplerSelect().get_sampler("euler")[0], sigmas, empty)
    assert torch.equal(a, b["samples"])
