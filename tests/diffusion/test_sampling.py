"""KSampler on the real tiny model: determinism, progress/previews, cancel, img2img, advanced."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.errors import RunCancelledError
from vortex_jupyter.nodes.diffusion.nodes import (
    EmptyLatentImage,
    KSampler,
    KSamplerAdvanced,
    LatentUpscale,
    VAEDecode,
    VAEEncode,
)


def txt2img(handles: Any, conds: Any, seed: int, steps: int = 4, sampler: str = "euler",
            scheduler: str = "normal") -> np.ndarray:
    model, _, vae = handles
    latent = EmptyLatentImage().generate(64, 64, 1)[0]
    out = KSampler().sample(model, seed, steps, 8.0, sampler, scheduler, conds[0], conds[1], latent, 1.0)[0]
    return VAEDecode().decode(vae, out)[0]


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_txt2img_gives_a_64px_float_image_in_unit_range(tiny_handles: Any, conds: Any) -> None:
    image = txt2img(tiny_handles, conds, seed=1)
    assert image.shape == (1, 64, 64, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0


def test_same_seed_is_bit_identical_and_other_seeds_differ(tiny_handles: Any, conds: Any) -> None:
    a, b = txt2img(tiny_handles, conds, seed=42), txt2img(tiny_handles, conds, seed=42)
    c = txt2img(tiny_handles, conds, seed=43)
    assert digest(a) == digest(b)
    assert not np.array_equal(a, c)


def test_the_initial_noise_is_comfyuis_for_any_64_bit_seed() -> None:
    from vortex_jupyter.nodes.diffusion.sampling import prepare_noise

    for seed in (0, 5, 2**32 + 5, 156680208700286, 2**64 - 1):
        want = torch.randn((1, 4, 8, 8), generator=torch.manual_seed(seed))  # ComfyUI's prepare_noise
        assert torch.equal(prepare_noise(torch.zeros(1, 4, 8, 8), seed), want)
    # torch keeps the low 32 bits of a seed, in ComfyUI as here: same seeds, same pictures
    assert torch.equal(prepare_noise(torch.zeros(1, 4, 8, 8), 2**32 + 5), prepare_noise(torch.zeros(1, 4, 8, 8), 5))


def test_batch_index_picks_each_images_own_draw_of_the_seeds_noise() -> None:
    from vortex_jupyter.nodes.diffusion.sampling import prepare_noise

    gen = torch.manual_seed(9)
    draws = [torch.randn((1, 4, 8, 8), generator=gen) for _ in range(4)]
    picked = prepare_noise(torch.zeros(2, 4, 8, 8), 9, [3, 1])
    assert torch.equal(picked, torch.cat([draws[3], draws[1]]))
    # so images 3 and 1 of a batch of 4 get the noise they had in that batch
    whole = prepare_noise(torch.zeros(4, 4, 8, 8), 9)
    assert torch.equal(picked, whole[[3, 1]])


_CHILD = """
import hashlib, sys, torch
torch.set_num_threads(1)
import numpy as np
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
from vortex_jupyter.nodes.diffusion.text import encode_text
from vortex_jupyter.nodes.diffusion.vae import vae_decode
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
m, c, v = load_checkpoint("vortex-tiny")
pos, neg = encode_text(c, "a photo of a cat"), encode_text(c, "blurry")
lat = {"samples": torch.zeros(1, 4, 8, 8)}
out = sample(m, pos, neg, lat, SampleSettings(42, 4, 8.0, "euler", "normal"))
print(hashlib.sha256(np.ascontiguousarray(vae_decode(v, out)).tobytes()).hexdigest())
"""


def test_same_seed_is_bit_identical_across_processes(tiny_handles: Any, conds: Any, models_dir: Path) -> None:
    env = dict(os.environ, VORTEX_MODELS_DIR=str(models_dir))
    run = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == digest(txt2img(tiny_handles, conds, seed=42))


@pytest.mark.parametrize(("sampler", "scheduler"),
                         [("euler_ancestral", "normal"), ("euler_ancestral", "karras"), ("euler", "linear_quadratic"), ("dpmpp_2m_sde", "karras"), ("dpmpp_2m", "karras"),
                          ("dpmpp_sde", "karras")])
def test_stochastic_and_multistep_samplers_are_deterministic_too(tiny_handles: Any, conds: Any, sampler: str,
                                                                  scheduler: str) -> None:
    a = txt2img(tiny_handles, conds, 7, sampler=sampler, scheduler=scheduler)
    b = txt2img(tiny_handles, conds, 7, sampler=sampler, scheduler=scheduler)
    c = txt2img(tiny_handles, conds, 8, sampler=sampler, scheduler=scheduler)
    assert digest(a) == digest(b)
    assert not np.array_equal(a, c)


def test_sampler_reports_progress_every_step_and_previews(tiny_handles: Any, conds: Any, recording: Any) -> None:
    txt2img(tiny_handles, conds, seed=3, steps=5)
    assert recording.progress_calls == [(i, 5) for i in range(1, 6)]
    assert recording.previews, "at least the first and last step send a preview"
    first = recording.previews[0]
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3 and min(first.shape[:2]) >= 64


@pytest.mark.parametrize(("sampler", "scheduler", "steps", "ran"),
                         [("euler", "ddim_uniform", 7, 8), ("ddim", "ddim_uniform", 7, 8),
                          ("dpmpp_2m", "simple", 7, 7), ("euler", "ddim_uniform", 10, 10)])
def test_ksampler_runs_comfyuis_step_count_for_timestep_picking_schedules(
        tiny_handles: Any, conds: Any, recording: Any, sampler: str, scheduler: str, steps: int, ran: int) -> None:
    # ComfyUI's ddim_uniform runs 8 steps when asked for 7 (1000 // 7 leaves room for one more)
    image = txt2img(tiny_handles, conds, seed=3, steps=steps, sampler=sampler, scheduler=scheduler)
    assert [i for i, _ in recording.progress_calls] == list(range(1, ran + 1))
    assert np.isfinite(image).all() and image.std() > 0


def test_cancel_stops_between_steps(tiny_handles: Any, conds: Any, recording: Any) -> None:
    recording.cancel_after = 2
    with pytest.raises(RunCancelledError):
        txt2img(tiny_handles, conds, seed=3, steps=10)
    assert len(recording.progress_calls) == 2


def test_img2img_with_denoise_runs_exactly_steps_and_keeps_the_image_closer(
        tiny_handles: Any, conds: Any, recording: Any) -> None:
    model, _, vae = tiny_handles
    source = np.zeros((1, 64, 64, 3), np.float32)
    source[:, 16:48, 16:48, 0] = 1.0
    latent = VAEEncode().encode(vae, source)[0]
    assert latent["samples"].shape == (1, 4, 8, 8)
    low = KSampler().sample(model, 5, 10, 8.0, "euler", "normal", conds[0], conds[1], latent, 0.3)[0]
    assert [t for _, t in recording.progress_calls] == [10] * 10
    high = KSampler().sample(model, 5, 10, 8.0, "euler", "normal", conds[0], conds[1], latent, 1.0)[0]
    src = latent["samples"]
    assert (low["samples"] - src).abs().mean() < (high["samples"] - src).abs().mean()


def test_denoise_zero_returns_the_latent_unchanged(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    latent = {"samples": torch.randn(1, 4, 8, 8)}
    out = KSampler().sample(model, 1, 10, 8.0, "euler", "normal", conds[0], conds[1], latent, 0.0)[0]
    assert torch.equal(out["samples"], latent["samples"])


def test_advanced_two_stage_equals_one_stage_for_euler(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    empty = EmptyLatentImage().generate(64, 64, 1)[0]
    pos, neg = conds
    adv = KSamplerAdvanced()
    whole = adv.sample(model, "enable", 9, 8, 7.0, "euler", "karras", pos, neg, empty, 0, 10000, "disable")[0]
    part1 = adv.sample(model, "enable", 9, 8, 7.0, "euler", "karras", pos, neg, empty, 0, 5, "enable")[0]
    part2 = adv.sample(model, "disable", 9, 8, 7.0, "euler", "karras", pos, neg, part1, 5, 10000, "disable")[0]
    torch.testing.assert_close(part2["samples"], whole["samples"], rtol=1e-4, atol=1e-4)
    # without leftover noise the early stop jumps to sigma 0 (ComfyUI's force_full_denoise)
    clean = adv.sample(model, "enable", 9, 8, 7.0, "euler", "karras", pos, neg, empty, 0, 5, "disable")[0]
    assert not torch.equal(clean["samples"], part1["samples"])


def test_ksampler_matches_advanced_with_full_window(tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    empty = EmptyLatentImage().generate(64, 64, 1)[0]
    pos, neg = conds
    a = KSampler().sample(model, 11, 4, 8.0, "euler", "normal", pos, neg, empty, 1.0)[0]
    b = KSamplerAdvanced().sample(model, "enable", 11, 4, 8.0, "euler", "normal", pos, neg, empty, 0, 10000,
                                  "disable")[0]
    assert torch.equal(a["samples"], b["samples"])


def test_latent_upscale_sizes_and_keeps_aspect_when_one_side_is_zero() -> None:
    latent = {"samples": torch.randn(2, 4, 8, 16)}
    up = LatentUpscale().upscale(latent, "bilinear", 256, 0, "disabled")[0]
    assert up["samples"].shape == (2, 4, 16, 32)
    sq = LatentUpscale().upscale(latent, "nearest-exact", 64, 64, "center")[0]
    assert sq["samples"].shape == (2, 4, 8, 8)


def _ref_bislerp(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """ComfyUI's bislerp per pixel: neighbours and ratios from bilinear interpolation of the
    index ramp (how ComfyUI derives them), then slerp of the channel vectors, width first."""
    def coords(old: int, new: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ramp = torch.arange(old, dtype=torch.float32).reshape(1, 1, 1, -1)
        pos = torch.nn.functional.interpolate(ramp, size=(1, new), mode="bilinear").flatten().numpy()
        nxt = ramp + 1
        nxt[..., -1] -= 1
        pos2 = torch.nn.functional.interpolate(nxt, size=(1, new), mode="bilinear").flatten().numpy()
        return pos.astype(np.int64), pos2.astype(np.int64), pos - np.floor(pos)

    def slerp(a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        ua = a / na if na else np.zeros_like(a)
        ub = b / nb if nb else np.zeros_like(b)
        dot = float(ua @ ub)
        if dot > 1 - 1e-5:
            return a
        if dot < 1e-5 - 1:
            return a * (1 - r) + b * r
        om = math.acos(dot)
        return (math.sin((1 - r) * om) * ua + math.sin(r * om) * ub) / math.sin(om) * (na * (1 - r) + nb * r)

    n, c, h, w = x.shape
    i1, i2, rr = coords(w, width)
    mid = np.zeros((n, c, h, width))
    for b, y, j in np.ndindex(n, h, width):
        mid[b, :, y, j] = slerp(x[b, :, y, i1[j]], x[b, :, y, i2[j]], rr[j])
    i1, i2, rr = coords(h, height)
    out = np.zeros((n, c, height, width))
    for b, y, j in np.ndindex(n, height, width):
        out[b, :, y, j] = slerp(mid[b, :, i1[y], j], mid[b, :, i2[y], j], rr[y])
    return out


@pytest.mark.parametrize(("h", "w", "th", "tw"), [(4, 6, 8, 12), (5, 3, 9, 7), (6, 6, 4, 3)])
def test_bislerp_upscale_matches_comfyuis_definition(h: int, w: int, th: int, tw: int) -> None:
    from vortex_jupyter.nodes.diffusion.latent import bislerp

    x = torch.randn(2, 4, h, w, generator=torch.Generator().manual_seed(h * w))
    x[0, :, 0, 0] = 0.0  # a zero vector (no direction)
    x[1, :, 1, :] = x[1, :, 0, :] * 2  # same direction, other length
    got = bislerp(x, th, tw)
    assert got.shape == (2, 4, th, tw) and got.dtype == x.dtype
    np.testing.assert_allclose(got.numpy(), _ref_bislerp(x.double().numpy(), th, tw), rtol=1e-4, atol=1e-5)


def test_bislerp_keeps_every_tensor_on_the_latents_device() -> None:
    # a CUDA latent failed on an index built on the CPU; the meta device shows it without a GPU
    from vortex_jupyter.nodes.diffusion.latent import bislerp

    out = bislerp(torch.empty(1, 4, 8, 8, device="meta"), 16, 12)
    assert out.device.type == "meta" and out.shape == (1, 4, 16, 12)


def test_latent_upscale_takes_bislerp_like_comfyui() -> None:
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    import vortex_jupyter as vx

    g = vx.Graph()
    empty = g.add("EmptyLatentImage", id="e", width=64, height=64)
    g.add("LatentUpscale", id="u", samples=empty.out(0), upscale_method="bislerp", width=128, height=96)
    assert g.problems() == []  # a ComfyUI hires-fix workflow using bislerp validates
    up = LatentUpscale().upscale(latent, "bislerp", 128, 96, "disabled")[0]["samples"]
    lin = LatentUpscale().upscale(latent, "bilinear", 128, 96, "disabled")[0]["samples"]
    assert up.shape == lin.shape == (1, 4, 12, 16)
    # slerp keeps vector lengths where a straight mix shrinks them
    assert up.norm(dim=1).mean() > lin.norm(dim=1).mean()


def test_empty_latent_has_comfyui_shape() -> None:
    out = EmptyLatentImage().generate(64, 96, 3)[0]
    assert out["samples"].shape == (3, 4, 12, 8) and not out["samples"].any()


def test_long_prompts_are_encoded_in_77_token_windows_and_sample_beside_short_ones(tiny_handles: Any) -> None:
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, clip, _ = tiny_handles
    text = " ".join(["a photo of a cat in the garden at sunset"] * 12)
    short = encode_text(clip, "a cat")
    long = encode_text(clip, text)
    assert short[0][0].shape[1] == 77 and long[0][0].shape[1] % 77 == 0 and long[0][0].shape[1] > 77
    # window 1 = what a truncating encoder would give for the same prompt
    truncated = clip.tokenizer([text], padding="max_length", max_length=77, truncation=True,
                               return_tensors="pt").input_ids
    with clip.encoder.use() as encoder, torch.inference_mode():
        want = encoder(truncated).last_hidden_state
    torch.testing.assert_close(long[0][0][:, :77], want, rtol=1e-5, atol=1e-5)
    latent = EmptyLatentImage().generate(64, 64, 1)[0]
    out = KSampler().sample(model, 1, 2, 7.0, "euler", "normal", long, short, latent, 1.0)[0]
    assert torch.isfinite(out["samples"]).all()


def test_short_prompt_tokens_match_the_tokenizers_own_padding(tiny_handles: Any) -> None:
    from vortex_jupyter.nodes.diffusion.text import token_chunks

    tok = tiny_handles[1].tokenizer
    ids = token_chunks(tok, "a photo of a cat")
    want = tok(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ids, want)


def test_vae_encode_takes_numpy_or_torch_and_crops_to_multiples_of_8(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    pixels = np.random.default_rng(0).random((1, 70, 67, 3), dtype=np.float32)
    from_np = VAEEncode().encode(vae, pixels)[0]["samples"]
    from_torch = VAEEncode().encode(vae, torch.from_numpy(pixels))[0]["samples"]
    assert from_np.shape == (1, 4, 8, 8) and torch.equal(from_np, from_torch)


@pytest.mark.parametrize(("sampler", "scheduler"), [("ddim", "ddim_uniform"), ("heun", "karras")])
def test_advanced_two_stage_split_matches_one_pass_in_both_latent_spaces(
        tiny_handles: Any, conds: Any, sampler: str, scheduler: str) -> None:
    model = tiny_handles[0]
    empty = EmptyLatentImage().generate(64, 64, 1)[0]
    pos, neg = conds
    adv = KSamplerAdvanced()
    whole = adv.sample(model, "enable", 9, 8, 7.0, sampler, scheduler, pos, neg, empty, 0, 10000, "disable")[0]
    part1 = adv.sample(model, "enable", 9, 8, 7.0, sampler, scheduler, pos, neg, empty, 0, 4, "enable")[0]
    part2 = adv.sample(model, "disable", 9, 8, 7.0, sampler, scheduler, pos, neg, part1, 4, 10000, "disable")[0]
    torch.testing.assert_close(part2["samples"], whole["samples"], rtol=1e-3, atol=1e-3)
    # ComfyUI-space leftover latent: roughly x0 + sigma * noise, so far larger than VP's unit scale
    assert part1["samples"].std() > 1.5


def test_early_stop_without_leftover_noise_returns_the_x0_prediction_for_multistep_samplers(
        tiny_handles: Any, conds: Any) -> None:
    model = tiny_handles[0]
    empty = EmptyLatentImage().generate(64, 64, 1)[0]
    pos, neg = conds
    adv = KSamplerAdvanced()
    clean = adv.sample(model, "enable", 9, 8, 7.0, "dpmpp_2m", "karras", pos, neg, empty, 0, 4, "disable")[0]
    noisy = adv.sample(model, "enable", 9, 8, 7.0, "dpmpp_2m", "karras", pos, neg, empty, 0, 4, "enable")[0]
    assert torch.isfinite(clean["samples"]).all() and not torch.equal(clean["samples"], noisy["samples"])
