"""The built-in tiny SDXL model (issue 11): a seeded, offline build whose diffusers folder and
single file (SDXL's original key layout) hold the same weights, and whose family is read from
tensor names and shapes, as for real SDXL files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion import families, models
from vortex_jupyter.nodes.diffusion.sdxl_keys import (
    CLIP_G_PREFIX,
    CLIP_L_PREFIX,
    clip_g_to_open_clip,
    open_clip_to_clip_g,
    sdxl_from_single_file,
)
from vortex_jupyter.nodes.diffusion.tiny_sdxl import tiny_sdxl, tiny_sdxl_configs

_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def sdxl_path(models_dir: Path) -> Path:
    return tiny_sdxl()


def _single(folder: Path) -> Path:
    return folder.with_name(folder.name + ".safetensors")


def _digests(folder: Path) -> dict[str, str]:
    files = [_single(folder), *sorted(folder.rglob("*.safetensors")), *sorted(folder.rglob("*.json"))]
    return {str(p.relative_to(folder.parent)).replace(folder.name, "X", 1): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def _plain_names(state: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}


def test_tiny_sdxl_is_an_sdxl_shaped_diffusers_folder(sdxl_path: Path) -> None:
    cfg = json.loads((sdxl_path / "unet" / "config.json").read_text())
    l_width = json.loads((sdxl_path / "text_encoder" / "config.json").read_text())["hidden_size"]
    g_cfg = json.loads((sdxl_path / "text_encoder_2" / "config.json").read_text())
    assert cfg["addition_embed_type"] == "text_time"
    assert cfg["cross_attention_dim"] == l_width + g_cfg["hidden_size"]
    assert cfg["projection_class_embeddings_input_dim"] == 6 * cfg["addition_time_embed_dim"] + g_cfg["projection_dim"]
    assert json.loads((sdxl_path / "vae" / "config.json").read_text())["scaling_factor"] == 0.13025
    assert json.loads((sdxl_path / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"


def test_tiny_sdxl_build_is_deterministic_byte_for_byte(sdxl_path: Path, tmp_path: Path) -> None:
    other = tiny_sdxl(tmp_path)
    assert other != sdxl_path
    assert _digests(other) == _digests(sdxl_path)
    assert tiny_sdxl(tmp_path) == other  # the second call reuses the build


def test_single_file_holds_the_folder_weights_in_sdxl_key_layout(sdxl_path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(_single(sdxl_path)), framework="pt") as f:
        configs = json.loads((f.metadata() or {})["vortex_configs"])
    state = load_file(str(_single(sdxl_path)))
    assert {k.split(".")[0] for k in state} == {"model", "conditioner", "first_stage_model"}
    assert "model.diffusion_model.label_emb.0.0.weight" in state
    assert f"{CLIP_L_PREFIX}text_model.embeddings.token_embedding.weight" in state
    for key in ("transformer.resblocks.1.attn.in_proj_weight", "text_projection", "positional_embedding",
                "token_embedding.weight", "ln_final.weight"):
        assert CLIP_G_PREFIX + key in state
    mapped = sdxl_from_single_file(state, configs)
    for part in _PARTS:
        folder = _plain_names(load_file(str(sdxl_path / part / "diffusion_pytorch_model.safetensors"))
                              if part in ("unet", "vae") else load_file(str(sdxl_path / part / "model.safetensors")))
        got = _plain_names(mapped[part])
        assert sorted(got) == sorted(folder), part
        for key, value in folder.items():
            assert torch.equal(got[key].reshape(value.shape), value), (part, key)
    assert all(k.startswith((_UNET, _L, _G, _VAE)) for k in state)  # nothing left unmapped


def test_open_clip_layout_round_trips_and_fuses_q_k_v_in_order() -> None:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPTextConfig(**dict(tiny_sdxl_configs()["text_encoder_2"], vocab_size=50, bos_token_id=48,
                                eos_token_id=49, pad_token_id=49))
    state = CLIPTextModelWithProjection(cfg).state_dict()
    open_clip = clip_g_to_open_clip(state)
    w = cfg.hidden_size
    fused = open_clip["transformer.resblocks.0.attn.in_proj_weight"]
    assert fused.shape == (3 * w, w)
    assert torch.equal(fused[w:2 * w], state["text_model.encoder.layers.0.self_attn.k_proj.weight"])
    assert open_clip["text_projection"].shape == (w, cfg.projection_dim)
    back = open_clip_to_clip_g(open_clip)
    assert sorted(back) == sorted(k for k in state if not k.endswith("position_ids"))
    assert all(torch.equal(back[k], state[k]) for k in back)


def test_family_of_the_tiny_files_is_read_from_their_shapes(sdxl_path: Path, tiny_path: Path) -> None:
    shapes, meta = families.read_header(_single(sdxl_path))
    sdxl = families.Family("sdxl", ("unet", "clip_l", "clip_g", "vae"))
    assert families.inspect_checkpoint("vortex-tiny-sdxl", shapes, meta) == sdxl
    assert families.inspect_checkpoint("no metadata", shapes, {}) == sdxl  # widths 32 + 64 = context 96
    sd1 = families.inspect_checkpoint("vortex-tiny", *families.read_header(models.tiny_single_file()))
    assert sd1 == families.Family("sd1", ("unet", "clip_l", "vae"))


_UNET, _L, _G, _VAE = "model.diffusion_model.", CLIP_L_PREFIX + "text_model.", CLIP_G_PREFIX, "first_stage_model."


def _real_header(context: int, adm: tuple[int, int]) -> families.Shapes:
    """The keys that tell families apart, with the shapes of the real SDXL base/refiner files."""
    return {f"{_UNET}input_blocks.0.0.weight": (320, 4, 3, 3), f"{_UNET}label_emb.0.0.weight": adm,
            f"{_UNET}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, context),
            f"{_L}embeddings.token_embedding.weight": (49408, 768),
            f"{_G}token_embedding.weight": (49408, 1280),
            f"{_G}transformer.resblocks.0.attn.in_proj_weight": (3840, 1280),
            f"{_VAE}decoder.conv_in.weight": (512, 4, 3, 3), f"{_VAE}decoder.up.0.block.0.norm1.weight": (128,)}


def test_real_sdxl_files_are_recognised_by_shape_base_and_refiner() -> None:
    base = families.inspect_checkpoint("sd_xl_base_1.0", _real_header(2048, (1280, 2816)), {})
    assert base == families.Family("sdxl", ("unet", "clip_l", "clip_g", "vae"))
    unet_only = {k.removeprefix(_UNET): v for k, v in _real_header(2048, (1280, 2816)).items() if k.startswith(_UNET)}
    assert families.inspect_checkpoint("sdxl unet", unet_only, {}).family == "sdxl"
    refiner = {k.replace(_G, "conditioner.embedders.0.model."): v
               for k, v in _real_header(1280, (1536, 2560)).items() if not k.startswith(_L)}
    assert families.inspect_checkpoint("sd_xl_refiner_1.0", refiner, {}).family == "sdxl_refiner"
    odd = {**_real_header(1024, (1280, 2048))}  # class embeddings at SD2's width: not a family we load
    with pytest.raises(ModelError, match="class embeddings"):
        families.inspect_checkpoint("sd21-unclip", {k: v for k, v in odd.items() if k.startswith(_UNET)}, {})


def test_the_folder_runs_a_64px_two_step_denoise_in_diffusers(sdxl_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = pipe("a cat in the garden", num_inference_steps=2, height=64, width=64, latents=latents,
               output_type="np")
    image = out.images[0]
    assert image.shape == (64, 64, 3)
    assert (image >= 0).all() and (image <= 1).all()


def test_checkpoint_loader_gives_sdxl_handles_holding_the_folder_weights(sdxl_path: Path) -> None:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint

    model, clip, vae = load_checkpoint(_single(sdxl_path).name)
    assert model.family == "sdxl" and clip.encoder_2 is not None and vae.scaling_factor == 0.13025
    pairs = [(model.unet, "unet/diffusion_pytorch_model"), (vae.vae, "vae/diffusion_pytorch_model"),
             (clip.encoder, "text_encoder/model"), (clip.encoder_2, "text_encoder_2/model")]
    for component, file in pairs:
        want = _plain_names(load_file(str(sdxl_path / f"{file}.safetensors")))
        with component.use() as module:
            got = _plain_names(module.state_dict())
        assert sorted(got) == sorted(want), file
        assert all(torch.equal(got[k], v) for k, v in want.items()), file


def test_clip_text_encode_on_sdxl_gives_both_encoders_and_the_pooled_g_output(sdxl_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    _, clip, _ = load_checkpoint(_single(sdxl_path).name)
    [[cond, extra]] = encode_text(clip, "a cat in the garden")
    assert cond.shape == (1, 77, 32 + 64) and extra["pooled_output"].shape == (1, 64)
    # diffusers' SDXL pipeline encodes the same way (penultimate layers, no final norm, G's text_embeds)
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_path, local_files_only=True)
    embeds, _, pooled, _ = pipe.encode_prompt("a cat in the garden", device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(cond, embeds)
    torch.testing.assert_close(extra["pooled_output"], pooled)
    # CLIPSetLastLayer -1: the last layer's output, still without the final norm
    [[last, _]] = encode_text(dataclasses.replace(clip, layer=-1), "a cat in the garden")
    assert not torch.equal(last, cond)


def test_sdxl_base_configs_write_the_real_sdxl_key_names_and_shapes() -> None:
    from diffusers import UNet2DConditionModel

    from vortex_jupyter.nodes.diffusion import ldm
    from vortex_jupyter.nodes.diffusion.sdxl_loader import sdxl_base_configs

    cfg = sdxl_base_configs()["unet"]
    with torch.device("meta"):
        unet: Any = UNet2DConditionModel(**cfg)
    shapes = {k: tuple(v.shape) for k, v in ldm.unet_to_ldm(unet.state_dict(), cfg).items()}
    assert shapes[f"{_UNET}label_emb.0.0.weight"] == (1280, 2816)
    assert shapes[f"{_UNET}input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"] == (1280, 2048)
    assert f"{_UNET}middle_block.1.transformer_blocks.9.ff.net.2.weight" in shapes
    assert f"{_UNET}output_blocks.2.2.conv.weight" in shapes and f"{_UNET}output_blocks.5.2.conv.weight" in shapes
    assert families.is_sdxl_unet(shapes, {})
