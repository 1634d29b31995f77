"""InpaintModelConditioning (inpainting UNets' concat channels), CLIP vision and unCLIP nodes,
against ComfyUI's semantics, on tiny seeded models."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion.vision_nodes import (
    CLIPVisionEncode,
    CLIPVisionLoader,
    InpaintModelConditioning,
    unCLIPCheckpointLoader,
    unCLIPConditioning,
)

TINY_CV = "vortex-tiny-clip-vision.safetensors"


def _image(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, h, w, 3), dtype=np.float32)


def _mask(b: int, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(b, h, w)
    m[:, h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 1.0
    return m


@pytest.fixture(scope="module")
def inpaint_model(tiny_handles: Any) -> Any:
    """vortex-tiny's UNet shape with 9 input channels (4 latent + mask + masked latent), seeded."""
    from diffusers import UNet2DConditionModel

    from vortex_jupyter.nodes.diffusion.components import Component, ModelHandle
    from vortex_jupyter.nodes.diffusion.models import tiny_configs

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        unet: Any = UNet2DConditionModel(**{**tiny_configs()["unet"], "in_channels": 9})
    unet.eval().requires_grad_(False)
    return ModelHandle("tiny-inpaint", Component("tiny-inpaint|test", lambda: unet, 1 << 20),
                       dict(tiny_handles[0].scheduler_config)), unet


# ------------------------------------------------------------------------------ InpaintModelConditioning


def test_inpaint_model_conditioning_crops_greys_and_encodes_as_comfyui(tiny_handles: Any, conds: Any) -> None:
    from vortex_jupyter.nodes.diffusion.vae import vae_encode

    vae = tiny_handles[2]
    pixels, mask = _image(1, 21, 30), _mask(1, 21, 30)
    pos, neg, latent = InpaintModelConditioning().encode(conds[0], conds[1], pixels, vae, mask, True)
    # 21x30 -> 16x24 around the centre: rows 2..18, columns 3..27
    m = mask[:, None, 2:18, 3:27]
    assert torch.equal(pos[0][1]["concat_mask"], m) and neg[0][1]["concat_mask"] is pos[0][1]["concat_mask"]
    grey = torch.as_tensor(pixels)[:, 2:18, 3:27].clone()
    grey[m[:, 0].bool()] = 0.5
    assert torch.equal(pos[0][1]["concat_latent_image"], vae_encode(vae, grey)["samples"])
    assert torch.equal(latent["samples"], vae_encode(vae, pixels)["samples"])
    assert torch.equal(latent["noise_mask"], m)
    assert conds[0][0][1].get("concat_mask") is None  # the input CONDITIONING is not edited
    _, _, plain = InpaintModelConditioning().encode(conds[0], conds[1], pixels, vae, mask, False)
    assert "noise_mask" not in plain


def test_on_a_regular_model_it_samples_like_vae_encode_and_set_latent_noise_mask(tiny_handles: Any,
                                                                                  conds: Any) -> None:
    from vortex_jupyter.nodes.diffusion.latent_nodes import SetLatentNoiseMask, VAEEncode
    from vortex_jupyter.nodes.diffusion.sampling_nodes import KSampler

    model, _, vae = tiny_handles
    pixels, mask = _image(1, 64, 64, 1), _mask(1, 64, 64)
    pos, neg, latent = InpaintModelConditioning().encode(conds[0], conds[1], pixels, vae, mask)
    ours = KSampler().sample(model, 7, 4, 6.0, "euler", "normal", pos, neg, latent, 1.0)[0]
    plain = SetLatentNoiseMask().set_mask(VAEEncode().encode(vae, pixels)[0], mask)[0]
    ref = KSampler().sample(model, 7, 4, 6.0, "euler", "normal", conds[0], conds[1], plain, 1.0)[0]
    assert torch.equal(ours["samples"], ref["samples"])


def _one_call(handle: Any, unet: Any, positive: Any, latent: torch.Tensor, denoise_mask: Any) -> torch.Tensor:
    from vortex_jupyter.nodes.diffusion.guiders import CFGGuider, unet_apply
    from vortex_jupyter.nodes.diffusion.inpaint import concat_source
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling

    ms = ModelSampling.from_config(handle.scheduler_config)
    extras: dict[str, Any] = {"concat": concat_source("sd1", unet, latent, denoise_mask)}
    denoise = CFGGuider(handle, positive, positive, 1.0).bind(unet_apply(unet, ms), ms, tuple(latent.shape),
                                                              "cpu", extras)
    x, sigma = torch.randn(latent.shape, generator=torch.Generator().manual_seed(3)), torch.tensor([2.5])
    with torch.inference_mode():
        return denoise(x, sigma), _direct(unet, ms, positive[0][0], x, sigma)  # type: ignore[return-value]


def _direct(unet: Any, ms: Any, context: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> Any:
    def call(extra: torch.Tensor) -> torch.Tensor:
        xc = torch.cat([ms.calculate_input(sigma, x), extra], dim=1)
        eps = unet(xc, ms.timestep(sigma).float(), encoder_hidden_states=context).sample
        return ms.calculate_denoised(sigma, eps, x)
    return call


def test_an_inpainting_unet_gets_mask_and_masked_latent_after_the_latent(tiny_handles: Any, conds: Any,
                                                                         inpaint_model: Any) -> None:
    handle, unet = inpaint_model
    pixels, mask = _image(1, 64, 64, 2), _mask(1, 64, 64)
    pos, _, latent = InpaintModelConditioning().encode(conds[0], conds[1], pixels, tiny_handles[2], mask)
    got, direct = _one_call(handle, unet, pos, latent["samples"], None)
    small = torch.nn.functional.interpolate(mask[:, None], size=(8, 8), mode="bilinear").round()
    expected = direct(torch.cat([small, pos[0][1]["concat_latent_image"]], dim=1))
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, direct(torch.zeros(1, 5, 8, 8)), atol=1e-3)  # the concat matters


def test_without_concat_options_comfyuis_defaults_fill_the_extra_channels(conds: Any, inpaint_model: Any) -> None:
    handle, unet = inpaint_model
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    got, direct = _one_call(handle, unet, conds[0], latent, None)  # no mask anywhere: ones + blank latent
    blank = torch.tensor([0.8223, -0.6876, 0.6364, 0.1380]).view(1, 4, 1, 1).expand(1, 4, 8, 8)
    assert torch.allclose(got, direct(torch.cat([torch.ones(1, 1, 8, 8), blank], dim=1)), atol=1e-6)
    noise_mask = _mask(1, 8, 8)[:, None].repeat(1, 4, 1, 1)  # the run's noise mask and the latent itself
    got, direct = _one_call(handle, unet, conds[0], latent, noise_mask)
    assert torch.allclose(got, direct(torch.cat([noise_mask[:, :1], latent], dim=1)), atol=1e-6)


def test_ksampler_runs_an_inpainting_unet_and_keeps_the_unmasked_latent(tiny_handles: Any, conds: Any,
                                                                       inpaint_model: Any) -> None:
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample

    handle, _ = inpaint_model
    pixels, mask = _image(2, 64, 64, 3), _mask(1, 64, 64)
    pos, neg, latent = InpaintModelConditioning().encode(conds[0], conds[1], pixels, tiny_handles[2], mask)
    out = sample(handle, pos, neg, latent, SampleSettings(1, 3, 5.0, "euler", "normal"))["samples"]
    keep = torch.nn.functional.interpolate(mask[:, None], size=(8, 8), mode="bilinear") == 0
    assert torch.isfinite(out).all() and out.shape == (2, 4, 8, 8)
    assert torch.allclose(out[keep.expand_as(out)], latent["samples"][keep.expand_as(out)], atol=1e-5)


def test_wrong_inputs_name_the_node_input_and_fix(tiny_handles: Any, conds: Any) -> None:
    node, vae = InpaintModelConditioning(), tiny_handles[2]
    with pytest.raises(ValueError, match=r"InpaintModelConditioning: input 'mask' has a batch of 3 .*fix"):
        node.encode(conds[0], conds[1], _image(2, 16, 16), vae, _mask(3, 16, 16))
    with pytest.raises(ValueError, match=r"input 'pixels' .* not an IMAGE .*fix"):
        node.encode(conds[0], conds[1], np.zeros((2, 16, 16, 7), np.float32), vae, _mask(1, 16, 16))


# ------------------------------------------------------------------------------ CLIP vision


@pytest.fixture(scope="module")
def clip_vision(models_dir: Path) -> Any:
    return CLIPVisionLoader().load_clip(TINY_CV)[0]


def test_the_tiny_clip_vision_file_has_comfyuis_layout_and_is_byte_stable(clip_vision: Any, tmp_path: Path) -> None:
    from safetensors import safe_open

    from vortex_jupyter.nodes.diffusion.clip_vision import clip_vision_path
    from vortex_jupyter.nodes.diffusion.tiny_clip_vision import tiny_clip_vision

    path = clip_vision_path(TINY_CV)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert "visual_projection.weight" in keys and "vision_model.embeddings.patch_embedding.weight" in keys
    assert all(k.startswith(("vision_model.", "visual_projection.")) for k in keys)
    assert tiny_clip_vision(tmp_path).read_bytes() == path.read_bytes()
    assert CLIPVisionLoader.INPUT_TYPES()["required"]["clip_name"][0][0] == TINY_CV


def _reference(image: torch.Tensor, size: tuple[int, int], top: int, left: int) -> Any:
    """ComfyUI's clip_preprocess written out for one case, then transformers' model on the file."""
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from vortex_jupyter.nodes.diffusion.clip_vision import clip_vision_path
    from vortex_jupyter.nodes.diffusion.tiny_clip_vision import tiny_clip_vision_config

    x = torch.nn.functional.interpolate(image.permute(0, 3, 1, 2), size=size, mode="bicubic", antialias=True)
    x = (x[:, :, top:top + 32, left:left + 32] * 255).clamp(0, 255).round() / 255
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny_clip_vision_config())).eval()
    model.load_state_dict(load_file(str(clip_vision_path(TINY_CV))), strict=False)
    with torch.inference_mode():
        return model(pixel_values=(x - mean) / std, output_hidden_states=True)


def test_clip_vision_encode_preprocesses_and_returns_comfyuis_fields(clip_vision: Any) -> None:
    image = torch.as_tensor(_image(2, 40, 50, 4))
    out = CLIPVisionEncode().encode(clip_vision, image, "center")[0]
    ref = _reference(image, (32, 40), 0, 4)  # short side to 32, centre crop
    assert out.image_embeds.shape == (2, 32) and out["last_hidden_state"].shape == (2, 17, 32)
    assert torch.allclose(out.image_embeds, ref.image_embeds, atol=1e-6)
    assert torch.allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-6)
    assert torch.allclose(out.penultimate_hidden_states, ref.hidden_states[-2], atol=1e-6)
    squashed = CLIPVisionEncode().encode(clip_vision, image, "none")[0]
    assert torch.allclose(squashed.image_embeds, _reference(image, (32, 32), 0, 0).image_embeds, atol=1e-6)


def test_clip_vision_errors_say_what_the_file_or_input_is(clip_vision: Any, models_dir: Path) -> None:
    from vortex_jupyter.nodes.diffusion.models import tiny_split_files

    folder = models_dir / "clip_vision"
    folder.mkdir(exist_ok=True)
    shutil.copy(tiny_split_files()["clip"], folder / "text-encoder.safetensors")
    verdict = CLIPVisionLoader.VALIDATE_INPUTS("text-encoder.safetensors")
    assert isinstance(verdict, str) and "CLIP text encoder, not a CLIP vision model" in verdict
    with pytest.raises(ModelError, match="not a CLIP vision model"):
        CLIPVisionLoader().load_clip("text-encoder.safetensors")
    assert "not found" in str(CLIPVisionLoader.VALIDATE_INPUTS("nope.safetensors"))
    assert CLIPVisionLoader.VALIDATE_INPUTS(TINY_CV) is True
    with pytest.raises(ValueError, match=r"CLIPVisionEncode: input 'image' .*fix"):
        CLIPVisionEncode().encode(clip_vision, np.zeros((4, 4), np.float32), "center")
    with pytest.raises(ValueError, match=r"input 'clip_vision' is NoneType"):
        CLIPVisionEncode().encode(None, _image(1, 8, 8), "center")


# ------------------------------------------------------------------------------ unCLIP


def test_unclip_conditioning_appends_entries_and_non_unclip_models_ignore_them(tiny_handles: Any, conds: Any,
                                                                              clip_vision: Any) -> None:
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample

    output = CLIPVisionEncode().encode(clip_vision, _image(1, 32, 32), "center")[0]
    node = unCLIPConditioning()
    assert node.apply_adm(conds[0], output, 0.0, 0.3)[0] is conds[0]
    once = node.apply_adm(conds[0], output, 0.8, 0.1)[0]
    twice = node.apply_adm(once, output, 1.0, 0.0)[0]
    entries = twice[0][1]["unclip_conditioning"]
    assert [(e["strength"], e["noise_augmentation"]) for e in entries] == [(0.8, 0.1), (1.0, 0.0)]
    assert entries[0]["clip_vision_output"] is output and len(once[0][1]["unclip_conditioning"]) == 1
    settings = SampleSettings(2, 3, 6.0, "euler", "normal")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with_unclip = sample(tiny_handles[0], twice, conds[1], latent, settings)["samples"]
    assert torch.equal(with_unclip, sample(tiny_handles[0], conds[0], conds[1], latent, settings)["samples"])


def test_unclip_checkpoint_loader_loads_regular_checkpoints_and_refuses_unclip_ones(models_dir: Path) -> None:
    from safetensors.torch import save_file

    model, _clip, _vae, vision = unCLIPCheckpointLoader().load_checkpoint("vortex-tiny")
    assert vision is None and repr(model).startswith("<MODEL vortex-tiny")
    folder = models_dir / "checkpoints"
    folder.mkdir(exist_ok=True)
    save_file({"embedder.model.visual.proj": torch.zeros(2, 2), "noise_augmentor.betas": torch.zeros(3),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)},
              str(folder / "fake-unclip.safetensors"))
    with pytest.raises(ModelError, match=r"unCLIP checkpoint .*embedder, noise_augmentor.* cannot run unCLIP"):
        unCLIPCheckpointLoader().load_checkpoint("fake-unclip.safetensors")


def test_widgets_follow_comfyuis_order_and_defaults() -> None:
    spec = InpaintModelConditioning.INPUT_TYPES()["required"]
    assert list(spec) == ["positive", "negative", "vae", "pixels", "mask", "noise_mask"]
    assert spec["noise_mask"][1]["default"] is True
    assert list(unCLIPConditioning.INPUT_TYPES()["required"]) == ["conditioning", "clip_vision_output", "strength",
                                                                  "noise_augmentation"]
    assert CLIPVisionEncode.INPUT_TYPES()["required"]["crop"] == (["center", "none"],)
    assert unCLIPCheckpointLoader.RETURN_TYPES == ("MODEL", "CLIP", "VAE", "CLIP_VISION")
