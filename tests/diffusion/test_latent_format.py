"""LATENTs record the factors they are in (``latent_format``), so any VAE meets any model as in
ComfyUI: a VAELoader'd SDXL VAE (SD1's shapes, so SD1's factors) decodes and encodes for an
SDXL model exactly like the checkpoint's own VAE; a Flux latent decodes right through a VAE
handle that carries SD3's factors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vortex_jupyter.nodes.diffusion import latent_format
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.text import encode_text
from vortex_jupyter.nodes.diffusion.vae import vae_decode, vae_encode


def _txt2img(handles: Any, seed: int = 5) -> dict[str, Any]:
    model, clip, _ = handles
    pos, neg = encode_text(clip, "a cat"), encode_text(clip, "")
    channels = 16 if model.family in ("sd3", "flux") else 4
    return sample(model, pos, neg, {"samples": torch.zeros(1, channels, 8, 8)},
                  SampleSettings(seed, 3, 4.0, "euler", "normal"))


def test_a_sampler_tags_its_output_with_the_models_factors(models_dir: Path) -> None:
    sdxl = load_checkpoint("vortex-tiny-sdxl")
    out = _txt2img(sdxl)
    assert out[latent_format.KEY] == (0.13025, 0.0)
    assert latent_format.samples_in({"samples": torch.ones(1)}, (2.0, 0.5)).item() == 1.0  # untagged: as it is


def test_an_sd1_scaled_vae_handle_decodes_an_sdxl_latent_like_the_checkpoints_vae(models_dir: Path) -> None:
    sdxl = load_checkpoint("vortex-tiny-sdxl")
    loaded_alone = replace(sdxl[2], scaling_factor=0.18215)  # VAELoader: SD1 shapes -> SD1's factor
    latent = _txt2img(sdxl)
    np.testing.assert_allclose(vae_decode(loaded_alone, latent), vae_decode(sdxl[2], latent), atol=2e-6)
    untagged = {"samples": latent["samples"]}  # without the record the factor would be wrong
    assert not np.allclose(vae_decode(loaded_alone, untagged), vae_decode(sdxl[2], latent), atol=1e-3)


def test_img2img_through_another_vae_handle_samples_the_same(models_dir: Path) -> None:
    sdxl = load_checkpoint("vortex-tiny-sdxl")
    model, clip, vae = sdxl
    pixels = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    pos, neg = encode_text(clip, "a cat"), encode_text(clip, "")
    settings = SampleSettings(9, 4, 4.0, "euler", "normal", denoise=0.5)
    own = sample(model, pos, neg, vae_encode(vae, pixels), settings)
    other = sample(model, pos, neg, vae_encode(replace(vae, scaling_factor=0.18215), pixels), settings)
    torch.testing.assert_close(other["samples"], own["samples"], rtol=1e-4, atol=1e-4)


def test_a_flux_latent_decodes_right_through_a_vae_handle_with_sd3_factors(models_dir: Path) -> None:
    flux = load_checkpoint("vortex-tiny-flux")
    latent = _txt2img(flux)
    assert latent[latent_format.KEY] == (0.3611, 0.1159)
    as_sd3 = replace(flux[2], scaling_factor=1.5305, shift_factor=0.0609)
    np.testing.assert_allclose(vae_decode(as_sd3, latent), vae_decode(flux[2], latent), atol=2e-6)
