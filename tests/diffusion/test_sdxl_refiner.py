"""The SDXL refiner (issue 11): the tiny refiner (OpenCLIP-G alone, five size/score ids),
CLIPTextEncodeSDXLRefiner, and base -> refiner sampling with ComfyUI's aesthetic-score defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vortex_jupyter.nodes.diffusion import conds
from vortex_jupyter.nodes.diffusion.conditioning_nodes import CLIPTextEncodeSDXLRefiner
from vortex_jupyter.nodes.diffusion.guiders import unet_apply
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.text import encode_text


@pytest.fixture(scope="module")
def refiner(models_dir: Path) -> tuple[Any, Any, Any]:
    return load_checkpoint("vortex-tiny-sdxl-refiner")


def test_the_refiner_loads_as_its_own_family_with_g_alone(refiner: tuple[Any, Any, Any]) -> None:
    model, clip, vae = refiner
    assert (model.family, clip.kind, clip.encoder_2, vae.scaling_factor) == ("sdxl_refiner", "sdxl_refiner", None,
                                                                             0.13025)
    [[hidden, options]] = encode_text(clip, "a lighthouse")
    with clip.encoder.use() as g:
        assert hidden.shape == (1, 77, g.config.hidden_size)  # G alone, no CLIP-L half
        assert options["pooled_output"].shape == (1, g.config.projection_dim)


def test_refiner_ids_follow_comfyuis_order_and_aesthetic_defaults(refiner: tuple[Any, Any, Any]) -> None:
    _, clip, _ = refiner
    [[_, pos]] = CLIPTextEncodeSDXLRefiner().encode(clip, 7.5, 512, 256, "a lighthouse")[0]
    row = conds.refiner_added(pos, "positive")[0, -5:].tolist()
    assert row == [256.0, 512.0, 0.0, 0.0, 7.5]  # height, width, crop_h, crop_w, ascore
    [[_, plain]] = encode_text(clip, "blurry")
    assert conds.refiner_added(plain, "negative")[0, -5:].tolist() == [768.0, 768.0, 0.0, 0.0, 2.5]
    assert conds.refiner_added(plain, "positive")[0, -1].item() == 6.0


def test_one_refiner_call_equals_diffusers_unet_with_text_embeds_and_time_ids(refiner: tuple[Any, Any, Any]
                                                                              ) -> None:
    model, clip, _ = refiner
    [[hidden, options]] = CLIPTextEncodeSDXLRefiner().encode(clip, 6.0, 1024, 1024, "a lighthouse")[0]
    added = conds.refiner_added(options, "positive")
    ms = ModelSampling.from_config(model.scheduler_config)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([ms.sigmas[500].item()])
    with model.unet.use() as unet, torch.inference_mode():
        ours = unet_apply(unet, ms)(x, sigma, hidden, added)
        eps = unet(x / (sigma ** 2 + 1) ** 0.5, ms.timestep(sigma).float(), encoder_hidden_states=hidden,
                   added_cond_kwargs={"text_embeds": options["pooled_output"],
                                      "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 6.0]])}).sample
    torch.testing.assert_close(ours, x - eps * sigma)


def test_base_then_refiner_with_ksampler_advanced_windows(refiner: tuple[Any, Any, Any], models_dir: Path) -> None:
    base_model, base_clip, _ = load_checkpoint("vortex-tiny-sdxl")
    model, clip, _ = refiner
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    base = sample(base_model, encode_text(base_clip, "a lighthouse"), encode_text(base_clip, "blurry"), latent,
                  SampleSettings(3, 6, 7.0, "euler", "normal", end_at_step=4))
    pos = CLIPTextEncodeSDXLRefiner().encode(clip, 6.0, 1024, 1024, "a lighthouse")[0]
    neg = CLIPTextEncodeSDXLRefiner().encode(clip, 2.5, 1024, 1024, "blurry")[0]
    refined = sample(model, pos, neg, base, SampleSettings(3, 6, 7.0, "euler", "normal", add_noise=False,
                                                             start_at_step=4))
    assert torch.isfinite(refined["samples"]).all() and not torch.equal(refined["samples"], base["samples"])
    other = sample(model, CLIPTextEncodeSDXLRefiner().encode(clip, 9.0, 1024, 1024, "a lighthouse")[0], neg, base,
                   SampleSettings(3, 6, 7.0, "euler", "normal", add_noise=False, start_at_step=4))
    assert not torch.equal(other["samples"], refined["samples"])  # the aesthetic score reaches the UNet


def test_a_base_prompt_on_the_refiner_is_a_clear_error(refiner: tuple[Any, Any, Any]) -> None:
    model = refiner[0]
    sd1 = [[torch.zeros(1, 77, 64), {}]]
    with pytest.raises(ValueError, match="refiner"):
        sample(model, sd1, sd1, {"samples": torch.zeros(1, 4, 8, 8)}, SampleSettings(1, 2, 1.0, "euler", "normal"))


def test_the_refiner_single_file_holds_the_folders_weights_in_the_original_layout(refiner: tuple[Any, Any, Any]
                                                                                  ) -> None:
    """``vortex-tiny-sdxl-refiner`` loads its single file (G under ``conditioner.embedders.0.model.``
    in open_clip names, as sd_xl_refiner_1.0.safetensors); every part equals the folder's."""
    from vortex_jupyter.nodes.diffusion import families, tiny_sdxl
    from vortex_jupyter.nodes.diffusion.loaders import _folder_handles

    path = tiny_sdxl.tiny_refiner_single_file()
    shapes, _ = families.read_header(path)
    assert "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight" in shapes
    assert not any(k.startswith("conditioner.embedders.1.") for k in shapes)
    from_folder = _folder_handles("folder", tiny_sdxl.tiny_sdxl_refiner(), arbiter=None)
    for a, b in ((refiner[0].unet, from_folder[0].unet), (refiner[1].encoder, from_folder[1].encoder),
                 (refiner[2].vae, from_folder[2].vae)):
        with a.use() as ma, b.use() as mb:
            sa, sb = ma.state_dict(), mb.state_dict()
            assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert refiner[0].family == from_folder[0].family == "sdxl_refiner"
