"""The latent nodes: ComfyUI's interface, and their values checked against per-element
definitions written out here (independently of the implementation) or against invariants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion.latent_nodes import (
    EmptyLatentImage,
    LatentBatch,
    LatentBlend,
    LatentComposite,
    LatentCompositeMasked,
    LatentFromBatch,
    LatentUpscale,
    LatentUpscaleBy,
    RepeatLatentBatch,
    SetLatentNoiseMask,
)
from vortex_jupyter.nodes.registry import REGISTRY

#: ComfyUI's (category, display name, [(input, default)] in widget order, outputs).
COMFY: dict[str, tuple[str, str, list[tuple[str, Any]], list[str]]] = {
    "LatentUpscaleBy": ("latent", "Upscale Latent By",
                        [("samples", None), ("upscale_method", "nearest-exact"), ("scale_by", 1.5)], ["LATENT"]),
    "LatentComposite": ("latent", "Latent Composite",
                        [("samples_to", None), ("samples_from", None), ("x", 0), ("y", 0), ("feather", 0)],
                        ["LATENT"]),
    "LatentCompositeMasked": ("latent", "", [("destination", None), ("source", None), ("x", 0), ("y", 0),
                                             ("resize_source", False), ("mask", None)], ["LATENT"]),
    "LatentBlend": ("_for_testing", "Latent Blend",
                    [("samples1", None), ("samples2", None), ("blend_factor", 0.5)], ["LATENT"]),
    "LatentFromBatch": ("latent/batch", "Latent From Batch",
                        [("samples", None), ("batch_index", 0), ("length", 1)], ["LATENT"]),
    "RepeatLatentBatch": ("latent/batch", "Repeat Latent Batch", [("samples", None), ("amount", 1)], ["LATENT"]),
    "LatentBatch": ("latent/batch", "", [("samples1", None), ("samples2", None)], ["LATENT"]),
    "SetLatentNoiseMask": ("latent/inpaint", "Set Latent Noise Mask", [("samples", None), ("mask", None)],
                           ["LATENT"]),
    "VAEEncodeForInpaint": ("latent/inpaint", "VAE Encode (for Inpainting)",
                            [("pixels", None), ("vae", None), ("mask", None), ("grow_mask_by", 6)], ["LATENT"]),
    "VAEDecodeTiled": ("_for_testing", "VAE Decode (Tiled)",
                       [("samples", None), ("vae", None), ("tile_size", 512), ("overlap", 64),
                        ("temporal_size", 64), ("temporal_overlap", 8)], ["IMAGE"]),
    "VAEEncodeTiled": ("_for_testing", "VAE Encode (Tiled)",
                       [("pixels", None), ("vae", None), ("tile_size", 512), ("overlap", 64),
                        ("temporal_size", 64), ("temporal_overlap", 8)], ["LATENT"]),
    "EmptyLatentImage": ("latent", "Empty Latent Image",
                         [("width", 512), ("height", 512), ("batch_size", 1)], ["LATENT"]),
}


@pytest.mark.parametrize("name", sorted(COMFY))
def test_latent_node_has_comfyuis_category_display_name_widgets_and_defaults(name: str) -> None:
    spec = REGISTRY.get(name)
    category, display, inputs, outputs = COMFY[name]
    assert (spec.category, spec.display_name) == (category, display)
    assert [(p.name, p.default if p.has_default else None) for p in spec.inputs] == inputs
    assert [o.type for o in spec.outputs] == outputs and spec.heavy


def test_ranges_match_comfyui_where_workflows_store_values() -> None:
    def rng(node: str, port: str) -> tuple[Any, Any, Any]:
        p = REGISTRY.get(node).input(port)
        assert p is not None
        return p.min, p.max, p.step

    assert rng("VAEDecodeTiled", "tile_size") == (64, 4096, 32)
    assert rng("VAEEncodeTiled", "tile_size") == (64, 4096, 64)
    assert rng("VAEDecodeTiled", "overlap") == rng("VAEEncodeTiled", "overlap") == (0, 4096, 32)
    assert rng("VAEDecodeTiled", "temporal_overlap") == (4, 4096, 4)
    assert rng("LatentUpscaleBy", "scale_by") == (0.01, 8.0, 0.01)
    assert rng("LatentFromBatch", "batch_index")[:2] == (0, 63) and rng("RepeatLatentBatch", "amount")[:2] == (1, 64)
    assert rng("VAEEncodeForInpaint", "grow_mask_by") == (0, 64, 1)
    mask = REGISTRY.get("LatentCompositeMasked").input("mask")
    assert mask is not None and not mask.required


def _latent(b: int, h: int, w: int, seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {"samples": torch.randn(b, 4, h, w, generator=torch.Generator().manual_seed(seed)), **extra}


# ---------------------------------------------------------------- empty latents and resizes


@pytest.mark.parametrize(("width", "height", "batch"), [(64, 96, 3), (100, 36, 2), (512, 512, 1)])
def test_empty_latent_is_a_float32_zero_batch_of_floor_eighth_size(width: int, height: int, batch: int) -> None:
    out = EmptyLatentImage().generate(width, height, batch)[0]
    x = out["samples"]
    assert x.shape == (batch, 4, height // 8, width // 8) and x.dtype == torch.float32
    assert x.device.type == "cpu" and not x.any()
    assert out["downscale_ratio_spacial"] == 8 and "noise_mask" not in out and "batch_index" not in out


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_upscale_by_rounds_each_side_and_interpolates_like_torch(method: str) -> None:
    latent = _latent(2, 8, 12, noise_mask=torch.ones(1, 1, 8, 8), batch_index=[3, 4])
    out = LatentUpscaleBy().upscale(latent, method, 1.3)[0]
    want = torch.nn.functional.interpolate(latent["samples"], size=(round(8 * 1.3), round(12 * 1.3)), mode=method)
    assert out["samples"].shape == (2, 4, 10, 16)
    torch.testing.assert_close(out["samples"], want, rtol=0, atol=0)
    assert out["noise_mask"] is latent["noise_mask"] and out["batch_index"] == [3, 4]  # untouched, as ComfyUI


def test_upscale_by_bislerp_is_the_bislerp_of_latent_upscale() -> None:
    from vortex_jupyter.nodes.diffusion.latent import bislerp

    latent = _latent(1, 6, 6)
    out = LatentUpscaleBy().upscale(latent, "bislerp", 2.0)[0]["samples"]
    assert torch.equal(out, bislerp(latent["samples"], 12, 12))
    assert torch.equal(out, LatentUpscale().upscale(latent, "bislerp", 96, 96, "disabled")[0]["samples"])


def test_upscale_by_a_factor_that_leaves_no_pixel_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"LatentUpscaleBy: scale_by 0.01 shrinks the 8x8 latent to 0x0 \(fix: use a larger scale_by\)"):
        LatentUpscaleBy().upscale(_latent(1, 8, 8), "bilinear", 0.01)


def test_latent_upscale_enforces_comfyuis_64_pixel_minimum_and_aspect_from_pixels() -> None:
    latent = _latent(1, 8, 20)  # 64 x 160 pixels
    assert LatentUpscale().upscale(latent, "bilinear", 16, 16, "disabled")[0]["samples"].shape[-2:] == (8, 8)
    # width 0: round(20 * 100 / 8) = 250 pixels -> 31 latent pixels (a rounding of latent sizes gives 32)
    assert LatentUpscale().upscale(latent, "bilinear", 0, 100, "disabled")[0]["samples"].shape[-2:] == (12, 31)
    assert LatentUpscale().upscale(latent, "bilinear", 0, 0, "disabled")[0] is latent


def test_latent_upscale_center_crop_cuts_comfyuis_rounded_margin_from_both_sides() -> None:
    x = torch.arange(7 * 10, dtype=torch.float32).reshape(1, 1, 7, 10).repeat(1, 4, 1, 1)
    out = LatentUpscale().upscale({"samples": x}, "nearest-exact", 64, 64, "center")[0]["samples"]
    # aspect 10/7 > 1: margin round((10 - 10 * 7/10) / 2) = round(1.5) = 2 off each side -> columns 2..7
    want = torch.nn.functional.interpolate(x[..., 2:8], size=(8, 8), mode="nearest-exact")
    assert torch.equal(out, want)


# ---------------------------------------------------------------- composites and blends


def _feather_weight(t: int, n: int, f: int, near_open: bool, far_open: bool) -> float:
    """Closed form of ComfyUI's feather for index t of n: ramps on sides away from the border."""
    w = 1.0
    if near_open and t < f:
        w *= (t + 1) / f
    if far_open and n - 1 - t < f:
        w *= (n - t) / f
    return w


@pytest.mark.parametrize(("x", "y", "feather", "src_hw"), [
    (0, 0, 0, (4, 4)), (16, 8, 0, (6, 9)), (8, 16, 16, (4, 5)), (0, 24, 24, (8, 4)), (40, 40, 8, (3, 3))])
def test_latent_composite_matches_a_per_element_definition(x: int, y: int, feather: int,
                                                           src_hw: tuple[int, int]) -> None:
    to, frm = _latent(2, 8, 10, seed=1, batch_index=[5, 6]), _latent(1, *src_hw, seed=2)
    out = LatentComposite().composite(to, frm, x, y, feather)[0]
    dst, src, got = to["samples"], frm["samples"], out["samples"]
    lx, ly, f = x // 8, y // 8, feather // 8
    h, w = max(0, min(src_hw[0], 8 - ly)), max(0, min(src_hw[1], 10 - lx))
    want = dst.clone()
    for i in range(h):
        for j in range(w):
            wr = _feather_weight(i, h, f, ly != 0, ly + h < 8) * _feather_weight(j, w, f, lx != 0, lx + w < 10)
            want[:, :, ly + i, lx + j] = src[0, :, i, j] * wr + dst[:, :, ly + i, lx + j] * (1 - wr)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert out["batch_index"] == [5, 6] and torch.equal(to["samples"], dst)  # input untouched


def test_latent_composite_of_mismatched_batches_names_both_inputs() -> None:
    with pytest.raises(ValueError, match=r"LatentComposite: samples_from has a batch of 2 but samples_to has 3"):
        LatentComposite().composite(_latent(3, 8, 8), _latent(2, 4, 4), 0, 0, 0)


def test_latent_composite_masked_blends_through_the_mask_with_comfyuis_batch_rules() -> None:
    dst = _latent(3, 8, 8, seed=3, noise_mask=torch.ones(1, 1, 8, 8))
    src = _latent(1, 4, 6, seed=4)
    mask = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(5))  # at the source's size
    out = LatentCompositeMasked().composite(dst, src, 24, 16, False, mask.numpy())[0]
    want = dst["samples"].clone()
    for b in range(3):  # source repeated to 3, mask [m0, m1] repeated to [m0, m1, m0]
        m = mask[b % 2]
        for i in range(min(4, 8 - 2)):
            for j in range(min(6, 8 - 3)):
                want[b, :, 2 + i, 3 + j] = m[i, j] * src["samples"][0, :, i, j] + (1 - m[i, j]) * want[b, :, 2 + i, 3 + j]
    torch.testing.assert_close(out["samples"], want, rtol=1e-6, atol=1e-6)
    assert out["noise_mask"] is dst["noise_mask"]


def test_latent_composite_masked_without_mask_pastes_and_resize_source_fills_the_destination() -> None:
    dst, src = _latent(1, 8, 8, seed=6), _latent(1, 4, 4, seed=7)
    pasted = LatentCompositeMasked().composite(dst, src, 8, 8, False)[0]["samples"]
    assert torch.equal(pasted[:, :, 1:5, 1:5], src["samples"]) and torch.equal(pasted[:, :, 5:], dst["samples"][:, :, 5:])
    resized = LatentCompositeMasked().composite(dst, src, 0, 0, True)[0]["samples"]
    want = torch.nn.functional.interpolate(src["samples"], size=(8, 8), mode="bilinear")
    torch.testing.assert_close(resized, want, rtol=0, atol=1e-6)


def test_latent_blend_mixes_and_resizes_the_second_latent_bicubically() -> None:
    a, b = _latent(2, 8, 8, seed=8, batch_index=[0, 1]), _latent(2, 8, 8, seed=9)
    out = LatentBlend().blend(a, b, 0.3)[0]
    torch.testing.assert_close(out["samples"], a["samples"] * 0.3 + b["samples"] * 0.7)
    assert out["batch_index"] == [0, 1]
    small = _latent(2, 4, 8, seed=10)  # other aspect: centre-cropped to 4x4, then bicubic to 8x8
    want = torch.nn.functional.interpolate(small["samples"][..., 2:6], size=(8, 8), mode="bicubic")
    torch.testing.assert_close(LatentBlend().blend(a, small, 0.5)[0]["samples"], a["samples"] * 0.5 + want * 0.5)


# ---------------------------------------------------------------- batches and masks


def test_latent_from_batch_slices_samples_masks_and_sets_batch_index() -> None:
    masks = torch.arange(2, dtype=torch.float32).reshape(2, 1, 1, 1).expand(2, 1, 4, 4).clone()
    latent = _latent(5, 4, 4, noise_mask=masks)
    out = LatentFromBatch().frombatch(latent, 2, 2)[0]
    assert torch.equal(out["samples"], latent["samples"][2:4]) and out["batch_index"] == [2, 3]
    # masks [m0, m1] are tiled to the batch [m0, m1, m0, m1, m0] before slicing: entries 2, 3
    assert out["noise_mask"][:, 0, 0, 0].tolist() == [0.0, 1.0]
    clamped = LatentFromBatch().frombatch(latent, 40, 64)[0]  # start clamps to the last entry
    assert clamped["samples"].shape[0] == 1 and clamped["batch_index"] == [4]


def test_latent_from_batch_keeps_a_single_mask_and_an_existing_batch_index() -> None:
    latent = _latent(3, 4, 4, noise_mask=torch.ones(1, 1, 4, 4), batch_index=[7, 8, 9])
    out = LatentFromBatch().frombatch(latent, 1, 5)[0]
    assert out["batch_index"] == [8, 9] and out["noise_mask"].shape[0] == 1
    assert out["noise_mask"] is not latent["noise_mask"]  # a copy, as ComfyUI clones it


def test_repeat_latent_batch_tiles_samples_and_offsets_batch_index_by_its_span() -> None:
    latent = _latent(2, 4, 4, batch_index=[3, 5])
    out = RepeatLatentBatch().repeat(latent, 3)[0]
    assert torch.equal(out["samples"], latent["samples"].repeat(3, 1, 1, 1))
    assert out["batch_index"] == [3, 5, 6, 8, 9, 11]  # span max - min + 1 = 3
    assert "batch_index" not in RepeatLatentBatch().repeat(_latent(2, 4, 4), 2)[0]


def test_repeat_latent_batch_repeats_multi_masks_unpadded_and_keeps_a_single_mask() -> None:
    masks = torch.arange(2, dtype=torch.float32).reshape(2, 1, 1, 1).expand(2, 1, 4, 4).clone()
    out = RepeatLatentBatch().repeat(_latent(3, 4, 4, noise_mask=masks), 2)[0]
    assert out["noise_mask"][:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]  # ComfyUI's behaviour, not padded to 3
    single = _latent(3, 4, 4, noise_mask=torch.ones(1, 1, 4, 4))
    assert RepeatLatentBatch().repeat(single, 2)[0]["noise_mask"] is single["noise_mask"]


def test_latent_batch_concatenates_samples_and_batch_indexes_resizing_the_second() -> None:
    a = _latent(2, 8, 8, batch_index=[4, 5], noise_mask=torch.zeros(1, 1, 8, 8))
    b = _latent(1, 4, 4, seed=11)
    out = LatentBatch().batch(a, b)[0]
    want_b = torch.nn.functional.interpolate(b["samples"], size=(8, 8), mode="bilinear")
    assert torch.equal(out["samples"][:2], a["samples"])
    torch.testing.assert_close(out["samples"][2:], want_b, rtol=0, atol=0)
    assert out["batch_index"] == [4, 5, 0] and out["noise_mask"] is a["noise_mask"]
    with pytest.raises(ValueError, match=r"LatentBatch: samples1 has 4 channels but samples2 has 16"):
        LatentBatch().batch(a, {"samples": torch.zeros(1, 16, 8, 8)})


@pytest.mark.parametrize("shape", [(6, 5), (2, 6, 5), (2, 1, 6, 5)])
def test_set_latent_noise_mask_stores_any_mask_as_b1hw_float32(shape: tuple[int, ...]) -> None:
    mask = np.random.default_rng(0).random(shape).astype(np.float32)
    latent = _latent(2, 4, 4, batch_index=[0, 1])
    out = SetLatentNoiseMask().set_mask(latent, mask)[0]
    nm = out["noise_mask"]
    assert nm.dtype == torch.float32 and nm.shape == (int(np.prod(shape[:-2])), 1, 6, 5)
    assert np.array_equal(nm.numpy().reshape(shape), mask) and out["batch_index"] == [0, 1]
    assert "noise_mask" not in latent  # the input LATENT is not modified
    assert torch.equal(SetLatentNoiseMask().set_mask(latent, torch.from_numpy(mask))[0]["noise_mask"], nm)


def test_set_latent_noise_mask_rejects_a_non_mask_with_the_node_and_shape() -> None:
    with pytest.raises(ValueError, match=r"SetLatentNoiseMask: mask has shape \(1, 3, 4, 4\)"):
        SetLatentNoiseMask().set_mask(_latent(1, 4, 4), np.zeros((1, 3, 4, 4), np.float32))
