"""Sampling an SDXL model (issue 11): the UNet gets the pooled text embedding and the six size
ids as ComfyUI's ``SDXL.encode_adm`` builds them, through KSampler and the custom samplers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vortex_jupyter.nodes.diffusion.latent_nodes import EmptyLatentImage
from vortex_jupyter.nodes.diffusion.sampling_nodes import KSampler
from vortex_jupyter.nodes.diffusion.tiny_sdxl import tiny_sdxl


@pytest.fixture(scope="module")
def sdxl(models_dir: Path) -> Any:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    folder = tiny_sdxl()
    model, clip, _ = load_checkpoint(folder.name + ".safetensors")
    return model, encode_text(clip, "a red fox in the snow"), encode_text(clip, "blurry")


def _sample(model: Any, positive: Any, negative: Any, seed: int, cfg: float = 5.0) -> torch.Tensor:
    latent = EmptyLatentImage().generate(64, 64, 1)[0]
    return KSampler().sample(model, seed, 3, cfg, "euler", "normal", positive, negative, latent, 1.0)[0]["samples"]


def _sized(cond: Any, **size: int) -> Any:
    return [[c, {**opts, **size}] for c, opts in cond]


def test_ksampler_samples_an_sdxl_model_deterministically_per_seed(sdxl: Any) -> None:
    model, pos, neg = sdxl
    assert model.family == "sdxl"
    first, again, other = _sample(model, pos, neg, 1), _sample(model, pos, neg, 1), _sample(model, pos, neg, 2)
    assert first.shape == (1, 4, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_the_size_conditioning_reaches_the_unet(sdxl: Any) -> None:
    model, pos, neg = sdxl
    plain = _sample(model, pos, neg, 1)
    # the defaults are 768 x 768, no crop, target = size: saying so changes nothing ...
    same = _sample(model, _sized(pos, width=768, height=768), _sized(neg, width=768, height=768), 1)
    assert torch.equal(plain, same)
    # ... another size does
    wide = _sample(model, _sized(pos, width=1024, height=512), neg, 1)
    assert not torch.allclose(plain, wide, atol=1e-4)


def test_one_denoising_call_equals_diffusers_unet_with_text_embeds_and_time_ids(sdxl: Any) -> None:
    from vortex_jupyter.nodes.diffusion import conds as cmod
    from vortex_jupyter.nodes.diffusion.guiders import unet_apply
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling

    model, pos, _ = sdxl
    ms = ModelSampling.from_config(model.scheduler_config)
    [entry] = cmod.prepare(_sized(pos, width=640, height=576, crop_w=8, crop_h=16), "positive")
    cmod.add_model_inputs({"positive": [entry]}, "sdxl")
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([3.0])
    with model.unet.use() as unet:
        ours = unet_apply(unet, ms)(x, sigma, entry["cross_attn"], entry["added"])
        ids = torch.tensor([[576, 640, 16, 8, 576, 640]], dtype=torch.float32)
        eps = unet(x / (sigma ** 2 + 1) ** 0.5, ms.timestep(sigma).float(), encoder_hidden_states=entry["cross_attn"],
                   added_cond_kwargs={"text_embeds": pos[0][1]["pooled_output"], "time_ids": ids},
                   return_dict=False)[0]
    torch.testing.assert_close(ours, x - eps * sigma)


def test_an_sdxl_model_with_an_sd1_prompt_says_what_to_connect(sdxl: Any, tiny_handles: Any) -> None:
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, _, neg = sdxl
    sd1 = encode_text(tiny_handles[1], "a red fox")
    sd1 = [[c, {k: v for k, v in o.items() if k != "pooled_output"}] for c, o in sd1]
    with pytest.raises(ValueError, match="input 'positive': an SDXL model needs the pooled text embedding"):
        _sample(model, sd1, neg, 1)


def test_clip_text_encode_sdxl_sends_each_text_to_its_encoder_with_the_size_options(models_dir: Path) -> None:
    from vortex_jupyter.nodes.diffusion.conditioning_nodes import CLIPTextEncodeSDXL
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    # ComfyUI's widgets, in its order, with its defaults
    spec = CLIPTextEncodeSDXL.INPUT_TYPES()["required"]
    assert list(spec) == ["clip", "width", "height", "crop_w", "crop_h", "target_width", "target_height",
                          "text_g", "text_l"]
    assert [spec[k][1]["default"] for k in ("width", "height", "crop_w", "crop_h", "target_width",
                                            "target_height")] == [1024, 1024, 0, 0, 1024, 1024]
    _, clip, _ = load_checkpoint("vortex-tiny-sdxl")
    [[cond, opts]] = CLIPTextEncodeSDXL().encode(clip, 640, 512, 4, 2, 768, 704, "a fox", "a red fox in the snow")[0]
    [[only_g, g_opts]] = encode_text(clip, "a fox")
    [[only_l, _]] = encode_text(clip, "a red fox in the snow")
    width_l = clip.encoder.config.hidden_size if hasattr(clip.encoder, "config") else 32
    torch.testing.assert_close(cond[..., :32], only_l[..., :32])  # CLIP-L read text_l
    torch.testing.assert_close(cond[..., 32:], only_g[..., 32:])  # OpenCLIP-G read text_g
    torch.testing.assert_close(opts["pooled_output"], g_opts["pooled_output"])
    assert width_l == 32 and {k: opts[k] for k in ("width", "height", "crop_w", "crop_h", "target_width",
                                                   "target_height")} == dict(
        width=640, height=512, crop_w=4, crop_h=2, target_width=768, target_height=704)


def test_clip_text_encode_sdxl_pads_the_shorter_text_with_empty_chunks(models_dir: Path) -> None:
    from vortex_jupyter.nodes.diffusion.conditioning_nodes import CLIPTextEncodeSDXL
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    _, clip, _ = load_checkpoint("vortex-tiny-sdxl")
    long = " ".join(["fox"] * 40)  # more than one 77-token chunk
    length = encode_text(clip, long)[0][0].shape[1]
    [[empty, _]] = encode_text(clip, "")
    assert length > 77
    [[cond, _]] = CLIPTextEncodeSDXL().encode(clip, 1024, 1024, 0, 0, 1024, 1024, "fox", long)[0]
    assert cond.shape == (1, length, 96)
    # G read "fox" (one chunk), padded with the empty prompt's chunk up to L's length
    torch.testing.assert_close(cond[:, 77:154, 32:], empty[:, :, 32:])


def test_clip_text_encode_sdxl_refuses_an_sd1_clip_saying_what_to_connect(tiny_handles: Any) -> None:
    from vortex_jupyter.nodes.diffusion.conditioning_nodes import CLIPTextEncodeSDXL

    with pytest.raises(ValueError, match="needs an SDXL CLIP"):
        CLIPTextEncodeSDXL().encode(tiny_handles[1], 1024, 1024, 0, 0, 1024, 1024, "a", "b")


def test_an_sdxl_diffusers_folder_samples_exactly_like_its_single_file(sdxl: Any) -> None:
    """Single file and folder hold the same weights: the same prompt and seed give the same latent."""
    from vortex_jupyter.nodes.diffusion.loaders import _folder_handles
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, pos, neg = sdxl
    f_model, f_clip, f_vae = _folder_handles("vortex-tiny-sdxl (folder)", tiny_sdxl(), arbiter=None)
    assert f_model.family == "sdxl" and f_clip.encoder_2 is not None and f_vae.scaling_factor == 0.13025
    f_pos, f_neg = encode_text(f_clip, "a red fox in the snow"), encode_text(f_clip, "blurry")
    torch.testing.assert_close(f_pos[0][0], pos[0][0])
    torch.testing.assert_close(f_pos[0][1]["pooled_output"], pos[0][1]["pooled_output"])
    torch.testing.assert_close(_sample(f_model, f_pos, f_neg, 5), _sample(model, pos, neg, 5))


def test_an_sdxl_folder_without_its_second_encoder_is_a_clear_model_error(tmp_path: Path) -> None:
    import shutil

    from vortex_jupyter.errors import ModelError
    from vortex_jupyter.nodes.diffusion.loaders import _folder_handles

    refiner_like = tmp_path / "xl-refiner"
    shutil.copytree(tiny_sdxl(), refiner_like)
    shutil.rmtree(refiner_like / "text_encoder_2")
    with pytest.raises(ModelError, match="SDXL UNet but no text_encoder_2"):
        _folder_handles("xl-refiner", refiner_like, arbiter=None)


def _lora_for(clip: Any, path: Path, encoder: str) -> None:
    """A rank-1 peft-layout LoRA on the first q projection of ``encoder`` (text_encoder/_2)."""
    from safetensors.torch import save_file

    with getattr(clip, "encoder_2" if encoder == "text_encoder_2" else "encoder").use() as module:
        name = next(n for n, _ in module.named_modules() if n.endswith("self_attn.q_proj"))
        weight = dict(module.named_modules())[name].weight
    gen = torch.Generator().manual_seed(1)
    down, up = torch.randn(1, weight.shape[1], generator=gen), torch.randn(weight.shape[0], 1, generator=gen)
    name = name if name.startswith("text_model.") else f"text_model.{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{encoder}.{name}.lora_A.weight": down, f"{encoder}.{name}.lora_B.weight": up}, str(path))


def test_a_lora_for_sdxls_second_encoder_patches_it(models_dir: Path, tiny_handles: Any) -> None:
    from vortex_jupyter.errors import ModelError
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.lora import load_lora
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, clip, _ = load_checkpoint("vortex-tiny-sdxl")
    _lora_for(clip, models_dir / "loras" / "g-only.safetensors", "text_encoder_2")
    _, patched_clip = load_lora(model, clip, "g-only.safetensors", 0.0, 1.0)
    [[before, b_opts]] = encode_text(clip, "a fox")
    [[after, a_opts]] = encode_text(patched_clip, "a fox")
    torch.testing.assert_close(after[..., :32], before[..., :32])  # CLIP-L untouched
    assert not torch.allclose(after[..., 32:], before[..., 32:])  # OpenCLIP-G patched
    assert not torch.allclose(a_opts["pooled_output"], b_opts["pooled_output"])
    [[again, _]] = encode_text(clip, "a fox")
    torch.testing.assert_close(again, before)  # the input CLIP is unchanged
    with pytest.raises(ModelError, match="second text encoder"):
        load_lora(tiny_handles[0], tiny_handles[1], "g-only.safetensors", 0.0, 1.0)


def test_unclip_conditioning_on_sdxl_is_revision_the_image_embedding_becomes_the_pooled(models_dir: Any) -> None:
    """ComfyUI's SDXL ``sdxl_pooled``: with unCLIPConditioning the pooled text embedding is
    replaced by the image embedding, noised on a squaredcos schedule with the sampler's seed - 10,
    followed by the noise level's sinusoidal embedding, times strength, cut to the pooled width
    (written out here independently)."""
    import math

    from vortex_jupyter.nodes.diffusion import conds
    from vortex_jupyter.nodes.diffusion.clip_vision import ClipVisionOutput
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
    from vortex_jupyter.nodes.diffusion.text import encode_text
    from vortex_jupyter.nodes.diffusion.vision_nodes import unCLIPConditioning

    model, clip, _ = load_checkpoint("vortex-tiny-sdxl")
    cond = encode_text(clip, "a cat")
    width = cond[0][1]["pooled_output"].shape[1]
    embeds = torch.randn(1, 40, generator=torch.Generator().manual_seed(4))
    output = ClipVisionOutput(last_hidden_state=None, penultimate_hidden_states=None, image_embeds=embeds)
    revised = unCLIPConditioning().apply_adm(cond, output, 0.8, 0.25)[0]
    entry = {**revised[0][1], "seed": 110}
    got = conds.sdxl_added(entry, "positive")[:, :-6]

    level = round(999 * 0.25)
    bars = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(1001)]
    ac = 1.0
    for i in range(level + 1):
        ac *= 1 - min(1 - bars[i + 1] / bars[i], 0.999)
    noise = torch.randn(embeds.size(), generator=torch.manual_seed(100))
    z = math.sqrt(ac) * embeds + math.sqrt(1 - ac) * noise
    half = width // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    emb = torch.cat([torch.cos(level * freqs), torch.sin(level * freqs)])[None, :]
    want = (torch.cat([z, emb], dim=1) * 0.8)[:, :width]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    plain = sample(model, cond, cond, latent, SampleSettings(3, 2, 1.0, "euler", "normal"))
    with_image = sample(model, revised, cond, latent, SampleSettings(3, 2, 1.0, "euler", "normal"))
    assert not torch.equal(plain["samples"], with_image["samples"])
