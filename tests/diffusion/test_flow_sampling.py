"""Flow-matching sigma tables (SD3, AuraFlow, Flux) against ComfyUI's formulas, written out
here independently in float64 (comfy/model_sampling.py, comfy_extras/nodes_model_advanced.py)."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion import schedules
from vortex_jupyter.nodes.diffusion.flow_sampling import FlowSampling, FluxSampling, flux_mu, time_snr_shift


def _sd3_sigma(shift: float, t: Any) -> Any:
    return t if shift == 1.0 else shift * t / (1.0 + (shift - 1.0) * t)


def _flux_sigma(mu: float, t: Any) -> Any:
    return np.exp(mu) / (np.exp(mu) + (1.0 / t - 1.0))


def _mu(width: int, height: int, max_shift: float, base_shift: float) -> float:
    # ModelSamplingFlux: a line through (256 tokens, base_shift) and (4096 tokens, max_shift)
    tokens = width * height / 256.0
    return base_shift + (tokens - 256.0) * (max_shift - base_shift) / (4096.0 - 256.0)


@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
def test_sd3_table_is_the_shifted_uniform_timesteps(shift: float) -> None:
    ms = FlowSampling(shift=shift)
    t = np.arange(1, 1001, dtype=np.float64) / 1000.0
    np.testing.assert_allclose(ms.sigmas.numpy(), _sd3_sigma(shift, t), rtol=2e-6, atol=1e-7)
    assert float(ms.sigma_max) == pytest.approx(1.0) and ms.sigmas.shape == (1000,)
    assert float(ms.timestep(torch.tensor(0.25))) == pytest.approx(250.0)  # t = sigma * 1000
    assert float(ms.sigma(torch.tensor(500.0))) == pytest.approx(_sd3_sigma(shift, np.float64(0.5)))


def test_auraflow_uses_multiplier_one() -> None:
    ms = FlowSampling(shift=1.73, multiplier=1.0)
    t = np.arange(1, 1001, dtype=np.float64) / 1000.0
    np.testing.assert_allclose(ms.sigmas.numpy(), _sd3_sigma(1.73, t), rtol=2e-6, atol=1e-7)
    assert float(ms.timestep(torch.tensor(0.25))) == pytest.approx(0.25)
    assert float(ms.sigma(torch.tensor(0.5))) == pytest.approx(1.73 * 0.5 / (1 + 0.73 * 0.5))


@pytest.mark.parametrize(("width", "height", "max_shift", "base_shift"),
                         [(1024, 1024, 1.15, 0.5), (512, 512, 1.15, 0.5), (768, 1344, 2.0, 0.25), (16, 16, 1.15, 0.5)])
def test_flux_mu_and_table_follow_the_image_size(width: int, height: int, max_shift: float, base_shift: float) -> None:
    mu = _mu(width, height, max_shift, base_shift)
    assert flux_mu(width, height, max_shift, base_shift) == pytest.approx(mu, rel=1e-12, abs=1e-12)
    ms = FluxSampling(shift=flux_mu(width, height, max_shift, base_shift))
    t = np.arange(1, 10001, dtype=np.float64) / 10000.0
    np.testing.assert_allclose(ms.sigmas.numpy(), _flux_sigma(mu, t), rtol=2e-6, atol=1e-7)
    assert ms.sigmas.shape == (10000,) and float(ms.timestep(torch.tensor(0.3))) == pytest.approx(0.3)


def test_flux_default_sizes_give_comfyuis_known_shifts() -> None:
    assert flux_mu(1024, 1024) == pytest.approx(1.15)  # 4096 tokens: max_shift
    assert flux_mu(256, 256) == pytest.approx(0.5)  # 256 tokens: base_shift


def test_percent_to_sigma_is_one_at_the_start_zero_at_the_end_and_shifted_between() -> None:
    sd3, flux = FlowSampling(shift=3.0), FluxSampling(shift=0.8)
    for ms in (sd3, flux):
        assert ms.percent_to_sigma(0.0) == 1.0 and ms.percent_to_sigma(1.0) == 0.0
    assert sd3.percent_to_sigma(0.25) == pytest.approx(3 * 0.75 / (1 + 2 * 0.75))
    assert flux.percent_to_sigma(0.25) == pytest.approx(math.exp(0.8) / (math.exp(0.8) + (1 / 0.75 - 1)))
    assert time_snr_shift(1.0, 0.3) == 0.3


def test_const_prediction_scales_noise_and_denoises_by_the_flow_formulas() -> None:
    ms = FlowSampling(shift=3.0)
    gen = torch.Generator().manual_seed(1)
    x, v, latent = (torch.randn(2, 4, 3, 3, generator=gen) for _ in range(3))
    sigma = torch.tensor([0.9, 0.2])
    s = sigma.view(2, 1, 1, 1)
    assert ms.calculate_input(sigma, x) is x
    torch.testing.assert_close(ms.calculate_denoised(sigma, v, x), x - v * s)
    torch.testing.assert_close(ms.noise_scaling(sigma, v, latent), s * v + (1 - s) * latent)
    torch.testing.assert_close(ms.inverse_noise_scaling(sigma, latent), latent / (1 - s))


def test_schedulers_read_the_flow_tables() -> None:
    ms = FlowSampling(shift=3.0)
    any_ms = cast(Any, ms)
    # simple: every 1000/steps-th table entry from the top
    expected = [_sd3_sigma(3.0, np.float64(k / 1000)) for k in (1000, 750, 500, 250)] + [0.0]
    np.testing.assert_allclose(schedules.calculate_sigmas(any_ms, "simple", 4).numpy(), expected, rtol=1e-6)
    # normal: timesteps linspace(t(sigma_max), t(sigma_min), steps), shifted, then a 0
    lo = _sd3_sigma(3.0, np.float64(0.001)) * 1000
    ts = np.linspace(1000.0, lo, 4) / 1000
    np.testing.assert_allclose(schedules.calculate_sigmas(any_ms, "normal", 4).numpy(),
                               [*_sd3_sigma(3.0, ts), 0.0], rtol=1e-5)
    flux = cast(Any, FluxSampling(shift=1.15))
    expected = [_flux_sigma(1.15, np.float64(k / 10000)) for k in (10000, 7500, 5000, 2500)] + [0.0]
    np.testing.assert_allclose(schedules.calculate_sigmas(flux, "simple", 4).numpy(), expected, rtol=1e-6)
