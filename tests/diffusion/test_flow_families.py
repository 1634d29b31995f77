"""SD3 and Flux (issue 11): the tiny models, their sampling against diffusers' own pipelines,
the nodes (ModelSamplingSD3/AuraFlow/Flux, EmptySD3LatentImage, CLIPTextEncodeSD3/Flux,
FluxGuidance), T5 prompts, and the examples through the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

import vortex_jupyter as vx
from vortex_jupyter.nodes.diffusion import flow_nodes, t5, tiny_flow
from vortex_jupyter.nodes.diffusion.flow_loader import folder_handles
from vortex_jupyter.nodes.diffusion.flow_sampling import FlowSampling, FluxSampling
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.text import encode_flux, encode_sd3, encode_text

from .conftest import digest, example_image, rerun_with_new_seed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sd3(models_dir: Path) -> tuple[Any, Any, Any]:
    return load_checkpoint("vortex-tiny-sd3")


@pytest.fixture(scope="module")
def flux(models_dir: Path) -> tuple[Any, Any, Any]:
    return load_checkpoint("vortex-tiny-flux")


def _noise(channels: int = 16, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- the tiny models


def test_the_tiny_models_build_byte_identical_and_have_their_families_shapes(tmp_path: Path, models_dir: Path
                                                                             ) -> None:
    for family in ("sd3", "flux"):
        a, b = tiny_flow.tiny_flow(family, tmp_path / "a"), tiny_flow.tiny_flow(family, tmp_path / "b")
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        for rel in files:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    model, clip, vae = load_checkpoint("vortex-tiny-sd3")
    assert (model.family, clip.kind, vae.scaling_factor, vae.shift_factor) == ("sd3", "sd3", 1.5305, 0.0609)
    assert clip.encoder is not None and clip.encoder_2 is not None and clip.t5 is not None
    model, clip, vae = load_checkpoint("vortex-tiny-flux")
    assert (model.family, clip.kind, vae.scaling_factor, vae.shift_factor) == ("flux", "flux", 0.3611, 0.1159)
    assert clip.encoder_2 is None and clip.t5 is not None


# ------------------------------------------------------------------------- text encoding


def test_sd3_conditioning_joins_clip_l_g_padded_to_t5_width_then_t5(sd3: tuple[Any, Any, Any]) -> None:
    _, clip, _ = sd3
    [[context, options]] = encode_text(clip, "a photo of a cat")
    with clip.t5.use() as enc:
        width = enc.config.d_model
    # 77 CLIP tokens (L 32 + G 64 wide, zero-padded to T5's width), then 77 T5 tokens
    assert context.shape == (1, 77 + t5.SD3_MIN_LENGTH, width)
    assert torch.count_nonzero(context[0, :77, 96:]) == 0 and torch.count_nonzero(context[0, :77, :96]) > 0
    assert options["pooled_output"].shape == (1, 32 + 64)
    # empty_padding "none" leaves out an empty T5 text; "empty_prompt" encodes it
    [[none, _]] = encode_sd3(clip, "cat", "cat", "", drop_empty=True)
    [[empty, _]] = encode_sd3(clip, "cat", "cat", "", drop_empty=False)
    assert none.shape[1] == 77 and empty.shape[1] == 77 + t5.SD3_MIN_LENGTH
    # CLIP texts of different lengths: the shorter is padded with empty-prompt windows
    long = " ".join(["cat"] * 100)
    [[mixed, _]] = encode_sd3(clip, long, "cat", "cat")
    assert mixed.shape[1] == 154 + t5.SD3_MIN_LENGTH


def test_flux_conditioning_is_t5_with_clip_l_pooled_and_a_guidance(flux: tuple[Any, Any, Any]) -> None:
    _, clip, _ = flux
    [[context, options]] = encode_text(clip, "a photo of a cat")
    assert context.shape[:2] == (1, t5.FLUX_MIN_LENGTH) and options["pooled_output"].shape == (1, 32)
    [[_, with_guidance]] = encode_flux(clip, "a photo of a cat", "a photo of a cat", 2.5)
    assert with_guidance["guidance"] == 2.5
    # T5 prompt weights: empty + (z - empty) * w at the weighted tokens only
    [[plain, _]] = encode_flux(clip, "cat", "a cat")
    [[weighted, _]] = encode_flux(clip, "cat", "a (cat:1.5)")
    [[empty, _]] = encode_flux(clip, "cat", "")
    assert torch.equal(plain[0, 0], weighted[0, 0])
    torch.testing.assert_close(weighted[0, 1], empty[0, 1] + (plain[0, 1] - empty[0, 1]) * 1.5)


def test_t5_tokens_end_with_eos_and_pad_to_the_minimum_length(flux: tuple[Any, Any, Any]) -> None:
    tok = flux[1].t5_tokenizer
    items, weighted = t5.token_rows(tok, "a photo of a cat", 256)
    ids = [i for i, _ in items]
    assert len(ids) == 256 and not weighted
    assert ids[:6] == list(tok("a photo of a cat").input_ids)  # words then </s>
    assert ids[5] == tok.eos_token_id == 1 and set(ids[6:]) == {tok.pad_token_id} == {0}


# ------------------------------------------------------------------------- sampling vs diffusers


def _ours(model: Any, pos: Any, neg: Any, cfg: float, sampler: str = "euler", steps: int = 4,
          scheduler: str = "simple") -> tuple[torch.Tensor, torch.Tensor]:
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
    from vortex_jupyter.nodes.diffusion.schedules import ksampler_sigmas

    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    out = sample(model, pos, neg, latent, SampleSettings(5, steps, cfg, sampler, scheduler))
    sigmas = ksampler_sigmas(ModelSampling.from_config(model.scheduler_config), sampler, scheduler, steps, 1.0)
    return out["samples"], sigmas


def test_sd3_ksampler_equals_diffusers_sd3_pipeline_on_the_same_sigmas(sd3: tuple[Any, Any, Any]) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    model, clip, _ = sd3
    pos, neg = encode_text(clip, "a lighthouse"), encode_text(clip, "blurry")
    ours, sigmas = _ours(model, pos, neg, 4.5)
    assert isinstance(model.scheduler_config and __import__(
        "vortex_jupyter.nodes.diffusion.model_sampling", fromlist=["x"]).ModelSampling.from_config(
        model.scheduler_config), FlowSampling)
    folder = tiny_flow.tiny_flow("sd3")
    pipe = StableDiffusion3Pipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)  # our sigmas are shifted already
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    theirs = pipe(prompt_embeds=pos[0][0], pooled_prompt_embeds=pos[0][1]["pooled_output"],
                  negative_prompt_embeds=neg[0][0], negative_pooled_prompt_embeds=neg[0][1]["pooled_output"],
                  guidance_scale=4.5, sigmas=sigmas[:-1].tolist(), num_inference_steps=4, latents=noise,
                  height=64, width=64, output_type="latent").images
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_flux_ksampler_equals_diffusers_flux_pipeline_on_the_same_sigmas(flux: tuple[Any, Any, Any]) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from vortex_jupyter.nodes.diffusion.transformer_apply import pack, unpack

    model, clip, _ = flux
    pos = flow_nodes.FluxGuidance().append(encode_text(clip, "a lighthouse"), 2.0)[0]
    ours, sigmas = _ours(model, pos, encode_text(clip, ""), 1.0)
    folder = tiny_flow.tiny_flow("flux")
    pipe = FluxPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    theirs = pipe(prompt_embeds=pos[0][0], pooled_prompt_embeds=pos[0][1]["pooled_output"], guidance_scale=2.0,
                  sigmas=sigmas[:-1].tolist(), num_inference_steps=4, latents=pack(noise), height=64, width=64,
                  output_type="latent").images
    torch.testing.assert_close(ours, unpack(theirs, 8, 8), rtol=1e-4, atol=1e-4)
    assert torch.equal(pack(noise), FluxPipeline._pack_latents(noise, 1, 16, 8, 8))


def test_flux_guidance_is_read_and_defaults_to_3_5(flux: tuple[Any, Any, Any]) -> None:
    model, clip, _ = flux
    pos, neg = encode_text(clip, "a lighthouse"), encode_text(clip, "")
    default, _ = _ours(model, pos, neg, 1.0, steps=2)
    explicit, _ = _ours(model, flow_nodes.FluxGuidance().append(pos, 3.5)[0], neg, 1.0, steps=2)
    other, _ = _ours(model, flow_nodes.FluxGuidance().append(pos, 8.0)[0], neg, 1.0, steps=2)
    assert torch.equal(default, explicit) and not torch.allclose(default, other)
    encoded = flow_nodes.CLIPTextEncodeFlux().encode(clip, "a lighthouse", "a lighthouse", 8.0)[0]
    assert torch.equal(_ours(model, encoded, neg, 1.0, steps=2)[0], other)


def test_odd_latent_sizes_are_padded_to_the_patch_and_cropped_back(flux: tuple[Any, Any, Any],
                                                                   sd3: tuple[Any, Any, Any]) -> None:
    for model, clip in ((flux[0], flux[1]), (sd3[0], sd3[1])):
        pos = encode_text(clip, "a cat")
        out = sample(model, pos, pos, {"samples": torch.zeros(1, 16, 7, 9)}, SampleSettings(1, 2, 1.0, "euler", "simple"))
        assert out["samples"].shape == (1, 16, 7, 9) and torch.isfinite(out["samples"]).all()


# ------------------------------------------------------------------------- nodes


def test_model_sampling_nodes_set_comfyuis_flow_schedules(sd3: tuple[Any, Any, Any]) -> None:
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling

    model = sd3[0]
    ms = ModelSampling.from_config(flow_nodes.ModelSamplingSD3().patch(model, 6.0)[0].scheduler_config)
    assert isinstance(ms, FlowSampling) and ms.multiplier == 1000.0
    t = 0.3  # an independent SD3 shift: s(t) = a t / (1 + (a - 1) t)
    assert float(ms.sigma(torch.tensor(t * 1000))) == pytest.approx(6 * t / (1 + 5 * t), rel=1e-6)
    aura = ModelSampling.from_config(flow_nodes.ModelSamplingAuraFlow().patch_aura(model, 1.73)[0].scheduler_config)
    assert isinstance(aura, FlowSampling) and aura.multiplier == 1.0
    assert float(aura.timestep(torch.tensor(0.5))) == 0.5
    flux_ms = ModelSampling.from_config(
        flow_nodes.ModelSamplingFlux().patch(model, 1.15, 0.5, 1024, 1024)[0].scheduler_config)
    assert isinstance(flux_ms, FluxSampling) and flux_ms.shift == pytest.approx(1.15)
    small = ModelSampling.from_config(flow_nodes.ModelSamplingFlux().patch(model, 1.15, 0.5, 256, 256)[0].scheduler_config)
    # mu on the line through (256 tokens, 0.5) and (4096 tokens, 1.15): 256x256 px is 256 tokens
    assert small.shift == pytest.approx(0.5)
    assert model.scheduler_config != flow_nodes.ModelSamplingSD3().patch(model, 6.0)[0].scheduler_config


def test_empty_sd3_latent_is_16_channels_and_widget_order_matches_comfyui() -> None:
    latent = flow_nodes.EmptySD3LatentImage().generate(64, 48, 2)[0]["samples"]
    assert latent.shape == (2, 16, 6, 8) and not latent.any()
    assert list(flow_nodes.CLIPTextEncodeSD3.INPUT_TYPES()["required"]) == [
        "clip", "clip_l", "clip_g", "t5xxl", "empty_padding"]
    assert list(flow_nodes.ModelSamplingFlux.INPUT_TYPES()["required"]) == [
        "model", "max_shift", "base_shift", "width", "height"]
    assert list(flow_nodes.CLIPTextEncodeFlux.INPUT_TYPES()["required"]) == ["clip", "clip_l", "t5xxl", "guidance"]


def test_family_specific_encoders_refuse_another_familys_clip(sd3: tuple[Any, Any, Any],
                                                              flux: tuple[Any, Any, Any]) -> None:
    with pytest.raises(ValueError, match="TripleCLIPLoader"):
        flow_nodes.CLIPTextEncodeSD3().encode(flux[1], "a", "a", "a", "none")
    with pytest.raises(ValueError, match="DualCLIPLoader"):
        flow_nodes.CLIPTextEncodeFlux().encode(sd3[1], "a", "a", 3.5)


def test_an_sd1_prompt_on_a_flux_model_names_the_fix(flux: tuple[Any, Any, Any], tiny_handles: Any) -> None:
    sd1_cond = encode_text(tiny_handles[1], "a cat")
    sd1_cond = [[sd1_cond[0][0], {}]]  # no pooled output at all
    with pytest.raises(ValueError, match=r"pooled CLIP-L text embedding .*type 'flux'"):
        sample(flux[0], sd1_cond, sd1_cond, {"samples": torch.zeros(1, 16, 8, 8)},
               SampleSettings(1, 2, 1.0, "euler", "simple"))


def test_euler_ancestral_on_a_flow_model_uses_the_rectified_flow_step(sd3: tuple[Any, Any, Any]) -> None:
    from vortex_jupyter.nodes.diffusion.solvers import Run, euler
    from vortex_jupyter.nodes.diffusion.solvers_sde import euler_ancestral

    ms = FlowSampling(shift=3.0)
    target = torch.full((1, 16, 4, 4), 0.25)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return target + 0.1 * x

    sigmas = torch.tensor([1.0, 0.7, 0.3, 0.0])
    x0 = _noise(size=4)
    # eta 0: exactly Euler
    assert torch.allclose(euler_ancestral(Run(denoise, ms, 3), x0, sigmas, eta=0.0), euler(Run(denoise, ms), x0, sigmas))
    # eta 1: one hand-written RF step from 1.0 to 0.7 (no noise draw needed to check the mean path)
    s, n = 1.0, 0.7
    down = n * (1 + (n / s - 1))
    mean = (down / s) * x0 + (1 - down / s) * denoise(x0, torch.tensor([s]))
    mean = (1 - n) / (1 - down) * mean
    one = euler_ancestral(Run(denoise, ms, 3), x0, sigmas[:2], eta=1.0)
    renoise = (n ** 2 - down ** 2 * (1 - n) ** 2 / (1 - down) ** 2) ** 0.5
    residual = (one - mean) / renoise  # what is left is unit noise
    assert abs(float(residual.std()) - 1.0) < 0.35 and abs(float(residual.mean())) < 0.35


# ------------------------------------------------------------------------- the examples


def _cli(example: Path, out: Path, models: Path, *extra: str) -> str:
    image = example_image(example, out, models, *extra)
    assert image.shape == (64, 64, 3) and image.std() > 0
    return digest(image)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_the_example_runs_through_the_cli_the_same_in_two_processes(family: str, tmp_path: Path,
                                                                    models_dir: Path) -> None:
    example = ROOT / "examples" / f"txt2img_{family}.json"
    first = _cli(example, tmp_path / "a", models_dir)
    assert first == _cli(example, tmp_path / "b", models_dir)
    assert first != _cli(example, tmp_path / "c", models_dir, "--set", "3.seed=7")


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_seed_change_reruns_only_sampler_decoder_and_saver(family: str, tmp_path: Path, models_dir: Path,
                                                             monkeypatch: Any) -> None:
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path))
    started, _, _ = rerun_with_new_seed(vx.load(ROOT / "examples" / f"txt2img_{family}.json"))
    assert started == {"3", "8", "9"}


def test_folder_handles_reject_nothing_silently(tmp_path: Path, models_dir: Path) -> None:
    """A Flux folder without its T5 tokenizer is a clear error naming the setting that fixes it."""
    import shutil

    from vortex_jupyter.errors import ModelError

    broken = tmp_path / "flux"
    shutil.copytree(tiny_flow.tiny_flow("flux"), broken)
    shutil.rmtree(broken / "tokenizer_2")
    os.environ.pop(t5.TOKENIZER_ENV, None)
    with pytest.raises(ModelError, match=t5.TOKENIZER_ENV):
        folder_handles("broken", broken, "flux", None)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_single_file_and_folder_hold_identical_weights(family: str, models_dir: Path) -> None:
    """``vortex-tiny-<family>`` loads its single file (ComfyUI's checkpoint layout: the transformer
    in its original names, text encoders under ``text_encoders.*``, the VAE in ldm names); every
    part equals the diffusers folder's, tensor for tensor."""
    from vortex_jupyter.nodes.diffusion import families

    path = tiny_flow.tiny_flow_single_file(family)
    shapes, meta = families.read_header(path)
    found = families.inspect_checkpoint(path.name, shapes, meta)
    assert found.family == family and "t5" in found.parts and "vae" in found.parts
    key = "model.diffusion_model." + ("joint_blocks.0.x_block.attn.qkv.weight" if family == "sd3"
                                      else "double_blocks.0.img_attn.qkv.weight")
    assert key in shapes
    from_file = load_checkpoint(f"vortex-tiny-{family}")
    from_folder = folder_handles("folder", tiny_flow.tiny_flow(family), family, None)
    pairs = [(from_file[0].unet, from_folder[0].unet), (from_file[1].encoder, from_folder[1].encoder),
             (from_file[1].t5, from_folder[1].t5), (from_file[2].vae, from_folder[2].vae)]
    if family == "sd3":
        pairs.append((from_file[1].encoder_2, from_folder[1].encoder_2))
    for a, b in pairs:
        with a.use() as ma, b.use() as mb:
            sa, sb = ma.state_dict(), mb.state_dict()
            assert set(sa) == set(sb)
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert from_file[0].scheduler_config == from_folder[0].scheduler_config
    assert (from_file[2].scaling_factor, from_file[2].shift_factor) == (from_folder[2].scaling_factor,
                                                                        from_folder[2].shift_factor)


def test_the_compute_dtype_per_family_and_its_override(monkeypatch: Any) -> None:
    from vortex_jupyter.errors import ModelError
    from vortex_jupyter.nodes.diffusion.components import device_and_dtype

    monkeypatch.delenv("VORTEX_DTYPE", raising=False)
    monkeypatch.setenv("VORTEX_DEVICE", "cpu")
    assert device_and_dtype("flux") == ("cpu", torch.float32)  # the CPU computes in fp32, any family
    monkeypatch.setenv("VORTEX_DEVICE", "cuda")
    bf16 = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert device_and_dtype("flux") == ("cuda", bf16) and device_and_dtype("sd3") == ("cuda", torch.float16)
    monkeypatch.setenv("VORTEX_DTYPE", "bf16")
    assert device_and_dtype("sdxl") == ("cuda", torch.bfloat16)
    monkeypatch.setenv("VORTEX_DTYPE", "fp8")
    with pytest.raises(ModelError, match="VORTEX_DTYPE"):
        device_and_dtype()
