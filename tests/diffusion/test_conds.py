"""Conditioning in the sampler: areas, masks, strengths, timestep ranges, several prompts.

The unit tests use a stand-in model whose prediction for an entry is the mean of its
embedding everywhere, so the per-pixel weighted average ComfyUI defines can be written out
by hand here; the node tests run the real tiny model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion import conditioning_nodes as cn
from vortex_jupyter.nodes.diffusion import conds as cmod
from vortex_jupyter.nodes.diffusion import sampling_nodes as sn
from vortex_jupyter.nodes.diffusion.latent_nodes import EmptyLatentImage
from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
from vortex_jupyter.nodes.diffusion.models import tiny_configs

MS = ModelSampling.from_config(tiny_configs()["scheduler"])


def const(value: float, length: int = 77) -> list[list[Any]]:
    return [[torch.full((1, length, 8), value), {}]]


def apply(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, added: Any = None) -> torch.Tensor:
    return torch.zeros_like(x) + context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)


def predict(sides: dict[str, Any], shape: tuple[int, ...] = (1, 4, 32, 32), sigma: float = 1.0) -> list[torch.Tensor]:
    ready = cmod.process(MS, {k: cmod.prepare(v, k) for k, v in sides.items()}, shape, "cpu")
    x = torch.zeros(shape)
    return cmod.calc_cond_batch(apply, list(ready.values()), x, torch.full((shape[0],), sigma))


def ramp_weights(size: int, h: int, w: int, y: int, x: int) -> np.ndarray:
    """ComfyUI's area weight: 1 inside, the last rr = min(8, side // 4) rows/columns at each
    border that lies inside the latent fading as (t + 1) / rr."""
    wts = np.zeros((size, size))
    wts[y:y + h, x:x + w] = 1.0
    for axis, (start, length) in enumerate(((y, h), (x, w))):
        rr = min(8, length // 4)
        for t in range(rr):
            f = (t + 1) / rr
            for idx in ([start + t] if start != 0 else []) + ([start + length - 1 - t] if start + length < size else []):
                if axis == 0:
                    wts[idx, x:x + w] *= f
                else:
                    wts[y:y + h, idx] *= f
    return wts


def test_one_prompt_per_side_is_exactly_the_cfg_formula() -> None:
    cond, uncond = predict({"positive": const(2.0), "negative": const(0.5)})
    assert torch.equal(cond, torch.full_like(cond, 2.0)) and torch.equal(uncond, torch.full_like(uncond, 0.5))
    assert torch.equal(cmod.cfg(cond, uncond, 7.0), 0.5 + (cond - 0.5) * 7.0)


def test_an_area_prompt_is_averaged_in_with_comfyuis_border_ramp() -> None:
    area = cn.ConditioningSetArea().apply(const(3.0), 128, 128, 64, 64, 1.0)[0]  # pixels -> latent /8
    assert area[0][1]["area"] == (16, 16, 8, 8)
    out = predict({"positive": const(1.0) + area})[0][0, 0].numpy()
    wts = ramp_weights(32, 16, 16, 8, 8)
    np.testing.assert_allclose(out, (1.0 + 3.0 * wts) / (1.0 + wts), rtol=1e-6)


def test_strength_and_percentage_areas_resolve_on_this_latent() -> None:
    pct = cn.ConditioningSetAreaPercentage().apply(const(5.0), 0.5, 0.25, 0.5, 0.0, 2.0)[0]
    ready = cmod.process(MS, {"positive": cmod.prepare(pct, "p")}, (1, 4, 32, 32), "cpu")
    assert ready["positive"][0]["area"] == (8, 16, 0, 16)  # (h, w, y, x) = (0.25, 0.5, 0, 0.5) of 32
    out = predict({"positive": const(1.0) + pct})[0][0, 0].numpy()
    wts = 2.0 * ramp_weights(32, 8, 16, 0, 16)
    np.testing.assert_allclose(out, (1.0 + 5.0 * wts) / (1.0 + wts), rtol=1e-6)


def test_mask_prompts_weigh_by_mask_times_strength_resized_to_the_latent() -> None:
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1.0  # right half, at twice the latent size
    masked = cn.ConditioningSetMask().apply(const(4.0), mask, 0.5, "default")[0]
    out = predict({"positive": const(1.0) + masked})[0][0, 0]
    assert torch.allclose(out[:, :15], torch.ones(32, 15))
    want = (1.0 + 4.0 * 0.5) / 1.5
    assert torch.allclose(out[:, 17:], torch.full((32, 15), want))


def test_mask_bounds_become_the_area() -> None:
    mask = torch.zeros(32, 32)
    mask[4:10, 20:30] = 1.0
    bounded = cn.ConditioningSetMask().apply(const(4.0), mask, 1.0, "mask bounds")[0]
    ready = cmod.process(MS, {"positive": cmod.prepare(bounded, "p")}, (1, 4, 32, 32), "cpu")
    assert ready["positive"][0]["area"] == (8, 10, 4, 20)  # height grown to the 8-pixel minimum


def test_timestep_ranges_switch_prompts_on_and_off_by_sigma() -> None:
    late = cn.ConditioningSetTimestepRange().set_range(const(9.0), 0.5, 1.0)[0]
    sides = {"positive": const(1.0) + late}
    early_out = predict(sides, sigma=float(MS.sigma_max))[0]
    late_out = predict(sides, sigma=0.1)[0]
    assert torch.equal(early_out, torch.ones_like(early_out))  # the late prompt is not active yet
    assert torch.allclose(late_out, torch.full_like(late_out, 5.0))  # both, averaged
    boundary = MS.percent_to_sigma(0.5)
    assert float(MS.sigma_max) > boundary > 0.1


def test_every_area_prompt_gets_a_negative_twin_with_the_same_area() -> None:
    area = cn.ConditioningSetArea().apply(const(3.0), 64, 64, 0, 0, 1.0)[0]
    ready = cmod.process(MS, {k: cmod.prepare(v, k) for k, v in
                               {"positive": const(1.0) + area, "negative": const(0.5)}.items()}, (1, 4, 32, 32), "cpu")
    twin = ready["negative"][-1]
    assert len(ready["negative"]) == 2 and twin["area"] == (8, 8, 0, 0)
    assert float(twin["cross_attn"].mean()) == 0.5  # the negative's embedding on the positive's area


def test_different_prompt_lengths_share_one_call_up_to_a_4x_repeat() -> None:
    calls: list[int] = []

    def counting(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, added: Any = None) -> torch.Tensor:
        calls.append(context.shape[1])
        return apply(x, sigma, context)

    sides = [cmod.prepare(const(1.0, 77), "p"), cmod.prepare(const(2.0, 154), "n")]
    out = cmod.calc_cond_batch(counting, sides, torch.zeros(1, 4, 8, 8), torch.ones(1))
    assert calls == [154] and float(out[1].mean()) == 2.0
    calls.clear()
    cmod.calc_cond_batch(counting, [sides[0], cmod.prepare(const(2.0, 77 * 5), "n")], torch.zeros(1, 4, 8, 8),
                          torch.ones(1))
    assert sorted(calls) == [77, 385]  # lcm / 77 = 5 > 4: two calls, as in ComfyUI


def test_conditioning_edit_nodes_follow_comfyui_and_leave_their_inputs_alone() -> None:
    a = [[torch.ones(1, 77, 8), {"pooled_output": torch.ones(1, 8)}]]
    b = [[torch.full((1, 77, 8), 3.0), {"pooled_output": torch.full((1, 8), 3.0)}]]
    assert len(cn.ConditioningCombine().combine(a, b)[0]) == 2
    avg = cn.ConditioningAverage().addWeighted(a, b, 0.25)[0][0]
    assert torch.allclose(avg[0], torch.full((1, 77, 8), 0.25 * 1 + 0.75 * 3))
    assert torch.allclose(avg[1]["pooled_output"], torch.full((1, 8), 2.5))
    short = [[torch.ones(1, 10, 8), {}]]
    padded = cn.ConditioningAverage().addWeighted(a, short, 0.5)[0][0][0]
    assert torch.allclose(padded[:, 10:], torch.full((1, 67, 8), 0.5))  # zero-padded source
    assert cn.ConditioningConcat().concat(a, b)[0][0][0].shape == (1, 154, 8)
    zero = cn.ConditioningZeroOut().zero_out(a)[0][0]
    assert not zero[0].any() and not zero[1]["pooled_output"].any() and a[0][0].all()
    ranged = cn.ConditioningSetTimestepRange().set_range(a, 0.2, 0.7)[0][0][1]
    assert (ranged["start_percent"], ranged["end_percent"]) == (0.2, 0.7) and "start_percent" not in a[0][1]
    assert cn.ConditioningSetAreaStrength().apply(a, 0.3)[0][0][1]["strength"] == 0.3


# ---------------------------------------------------------------------------------- tiny model


def sample(handles: Any, positive: Any, negative: Any, latent: Any = None, seed: int = 3) -> torch.Tensor:
    latent = latent or EmptyLatentImage().generate(64, 64, 1)[0]
    return sn.KSampler().sample(handles[0], seed, 4, 7.0, "euler", "normal", positive, negative, latent, 1.0)[0][
        "samples"]


def test_full_range_and_full_area_prompts_sample_like_the_plain_prompt(tiny_handles: Any) -> None:
    from vortex_jupyter.nodes.diffusion.text import encode_text

    clip = tiny_handles[1]
    pos, neg = encode_text(clip, "a photo of a cat"), encode_text(clip, "blurry")
    plain = sample(tiny_handles, pos, neg)
    always = cn.ConditioningSetTimestepRange().set_range(pos, 0.0, 1.0)[0]
    assert torch.equal(sample(tiny_handles, always, neg), plain)
    full = cn.ConditioningSetArea().apply(pos, 64, 64, 0, 0, 1.0)[0]
    torch.testing.assert_close(sample(tiny_handles, full, neg), plain, rtol=1e-4, atol=1e-4)
    twice = cn.ConditioningCombine().combine(pos, pos)[0]
    torch.testing.assert_close(sample(tiny_handles, twice, neg), plain, rtol=1e-4, atol=1e-4)
    other = encode_text(clip, "a red bus on a street")
    regional = cn.ConditioningCombine().combine(pos, cn.ConditioningSetArea().apply(other, 64, 32, 0, 0, 1.0)[0])[0]
    assert not torch.allclose(sample(tiny_handles, regional, neg), plain, atol=1e-3)


def test_inpainting_noise_mask_keeps_the_unmasked_latent(tiny_handles: Any, conds: Any) -> None:
    source = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    latent = {"samples": source, "noise_mask": mask}
    for sampler in ("euler", "ddim", "dpmpp_2m"):
        out = sn.KSampler().sample(tiny_handles[0], 5, 6, 7.0, sampler, "karras", conds[0], conds[1], latent, 1.0)[0]
        kept = mask.expand_as(source) == 0
        torch.testing.assert_close(out["samples"][kept], source[kept], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out["samples"][~kept], source[~kept])
        assert "noise_mask" in out  # the LATENT keeps its keys, as in ComfyUI


@pytest.mark.parametrize("bad", ["a cat", [[torch.ones(1, 77, 64)]], [["x", {}]]])
def test_malformed_conditioning_names_the_input_and_the_fix(tiny_handles: Any, conds: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match=r"input 'negative'.*fix"):
        sample(tiny_handles, conds[0], bad)


def test_sdxl_entries_carry_the_pooled_embedding_and_size_ids_in_comfyuis_order() -> None:
    pooled = torch.arange(4.0).reshape(1, 4)
    plain = cmod.prepare([[torch.zeros(1, 77, 8), {"pooled_output": pooled}]], "p")
    sized = cmod.prepare([[torch.zeros(1, 77, 8), {"pooled_output": pooled, "width": 1024, "height": 512,
                                                   "crop_w": 3, "crop_h": 5, "target_width": 640}]], "p")
    cmod.add_model_inputs({"p": plain, "q": sized}, "sdxl")
    # height, width, crop_h, crop_w, target_height, target_width (defaults: 768, 768, 0, 0, height, width)
    assert plain[0]["added"].tolist() == [[0, 1, 2, 3, 768, 768, 0, 0, 768, 768]]
    assert sized[0]["added"].tolist() == [[0, 1, 2, 3, 512, 1024, 5, 3, 512, 640]]
    sd1 = cmod.prepare([[torch.zeros(1, 77, 8), {}]], "p")
    cmod.add_model_inputs({"p": sd1}, "sd1")
    assert "added" not in sd1[0]
    with pytest.raises(ValueError, match="pooled text embedding"):
        cmod.add_model_inputs({"negative": cmod.prepare([[torch.zeros(1, 77, 8), {}]], "negative")}, "sdxl")


def test_entries_with_and_without_a_model_vector_never_share_a_call() -> None:
    seen: list[Any] = []

    def recording(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, added: Any = None) -> torch.Tensor:
        seen.append(None if added is None else tuple(added.shape))
        return apply(x, sigma, context)

    a = cmod.prepare([[torch.zeros(1, 77, 8), {"pooled_output": torch.ones(1, 4)}]], "p")
    b = cmod.prepare([[torch.ones(1, 77, 8), {"pooled_output": torch.zeros(1, 4)}]], "n")
    cmod.add_model_inputs({"p": a, "n": b}, "sdxl")
    cmod.calc_cond_batch(recording, [a, b], torch.zeros(2, 4, 8, 8), torch.ones(2))
    assert seen == [(4, 10)]  # both sides in one call, each repeated to the batch of 2
    seen.clear()
    c = cmod.prepare([[torch.ones(1, 77, 8), {}]], "n")
    cmod.calc_cond_batch(recording, [a, c], torch.zeros(1, 4, 8, 8), torch.ones(1))
    assert sorted(seen, key=str) == [(1, 10), None]
