"""VAE nodes on the real tiny model: tiled decode/encode (ComfyUI's tiling, bounded memory),
the centre crop before encoding, and VAEEncodeForInpaint's masking and noise mask."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion.latent_nodes import (
    VAEDecode,
    VAEDecodeTiled,
    VAEEncode,
    VAEEncodeForInpaint,
    VAEEncodeTiled,
)
from vortex_jupyter.nodes.diffusion.tiled import three_pass, tiled_map


def _ref_tiled(x: torch.Tensor, fn: Callable[[torch.Tensor, int], torch.Tensor], tile: tuple[int, int],
               overlap: int, scale: int) -> torch.Tensor:
    """ComfyUI's tiled_scale per output pixel: the feather-weighted mean of the tiles covering it.

    Tiles start every tile - overlap pixels while start < size - overlap; a tile's weight at
    output offset t along an axis of length n is min(1, (t+1)/f) * min(1, (n-t)/f), f = overlap*scale.
    """
    _, _, h, w = x.shape
    f = overlap * scale

    def starts(size: int, t: int) -> list[int]:
        return [0] if size <= t else [s for s in range(0, size) if s % (t - overlap) == 0 and s < size - overlap]

    def weight(t: int, n: int) -> float:
        return 1.0 if f == 0 or f >= n else min(1.0, (t + 1) / f) * min(1.0, (n - t) / f)

    num = torch.zeros(x.shape[0], 1, h * scale, w * scale, dtype=torch.float64)
    den = torch.zeros_like(num)
    k = 0
    for top in starts(h, tile[0]):
        for left in starts(w, tile[1]):
            th, tw = min(tile[0], h - top) * scale, min(tile[1], w - left) * scale
            out = fn(x[:, :, top:top + th // scale, left:left + tw // scale], k).double()
            k += 1
            for i in range(th):
                for j in range(tw):
                    wt = weight(i, th) * weight(j, tw)
                    num[:, :, top * scale + i, left * scale + j] += wt * out[:, :, i, j]
                    den[:, :, top * scale + i, left * scale + j] += wt
    return num / den


@pytest.mark.parametrize(("hw", "tile", "overlap"), [((10, 13), (4, 6), 2), ((9, 9), (8, 3), 1), ((7, 12), (7, 5), 0)])
def test_tile_blending_matches_comfyuis_per_pixel_weighting(hw: tuple[int, int], tile: tuple[int, int],
                                                             overlap: int) -> None:
    x = torch.rand(1, 1, *hw, generator=torch.Generator().manual_seed(0))

    def fn(t: torch.Tensor, k: int) -> torch.Tensor:  # a different value per tile shows its weight
        return (k + 1) * 10 + t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    calls = iter(range(1000))
    got = tiled_map(x, lambda t: fn(t, next(calls)), tile, overlap, 2, 1)
    torch.testing.assert_close(got.double(), _ref_tiled(x, fn, tile, overlap, 2), rtol=1e-6, atol=1e-5)


def test_tiling_a_pointwise_function_gives_the_untiled_result() -> None:
    # weights of the tiles covering a pixel sum to one, so a tile-independent map comes out unchanged
    x = torch.randn(2, 3, 21, 17, generator=torch.Generator().manual_seed(1))

    def fn(t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(t.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3))

    got = three_pass(x, fn, tx=6, ty=6, overlap=2, scale=8, channels=3, node="test")
    torch.testing.assert_close(got, fn(x), rtol=0, atol=2e-6)


def _latent(seed: int, h: int, w: int, b: int = 1) -> dict[str, Any]:
    return {"samples": torch.randn(b, 4, h, w, generator=torch.Generator().manual_seed(seed))}


def test_tiled_decode_equals_plain_decode_when_the_tiles_cover_the_image(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    latent = _latent(2, 8, 8, b=2)  # 64x64 px; tile 128 px -> even the half tiles (64 px) cover it
    tiled = VAEDecodeTiled().decode(vae, latent, 128, 64, 64, 8)[0]
    # tiling goes one batch item at a time (as ComfyUI), so compare with items decoded alone:
    # conv kernels round differently for another batch size (~3e-6 here), not for another call
    plain = np.concatenate([VAEDecode().decode(vae, {"samples": z[None]})[0] for z in latent["samples"]])
    assert tiled.shape == plain.shape == (2, 64, 64, 3) and tiled.dtype == np.float32
    # the three passes each decode the whole item identically, so the mean (a + a + a) / 3
    # only differs from a by float32 rounding of pixel values <= 1: a few ulp of 1.0
    assert np.abs(tiled - plain).max() <= 4 * np.finfo(np.float32).eps
    batched = VAEDecode().decode(vae, latent)[0]
    assert np.abs(tiled - batched).max() < 1e-5


def test_tiled_decode_of_a_larger_image_is_deterministic_and_close_in_the_mean(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    latent = _latent(3, 16, 24)
    a = VAEDecodeTiled().decode(vae, latent, 64, 32, 64, 8)[0]
    b = VAEDecodeTiled().decode(vae, latent, 64, 32, 64, 8)[0]
    plain = VAEDecode().decode(vae, latent)[0]
    assert a.shape == plain.shape == (1, 128, 192, 3) and np.array_equal(a, b)
    # tiles see their own group-norm statistics and attention context, so pixels differ; the
    # random tiny VAE differs most (measured mean |diff| ~0.04 vs pixel std ~0.17 at this size)
    assert np.abs(a - plain).mean() < 0.5 * plain.std()


@contextmanager
def _largest_activation(module: Any) -> Iterator[list[int]]:
    """Records the largest tensor any submodule of ``module`` outputs while the block runs."""
    seen = [0]

    def hook(_mod: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            seen[0] = max(seen[0], out.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def test_tiled_decode_peak_activation_does_not_grow_with_the_image(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    module = vae.vae.get()
    peaks = {}
    for px in (64, 256):
        with _largest_activation(module) as tiled:
            VAEDecodeTiled().decode(vae, _latent(4, px // 8, px // 8), 64, 32, 64, 8)
        with _largest_activation(module) as plain:
            VAEDecode().decode(vae, _latent(4, px // 8, px // 8))
        peaks[px] = (tiled[0], plain[0])
    assert peaks[256][0] == peaks[64][0]  # tiled: bounded by the 64 px tile, whatever the image
    assert peaks[256][1] == 16 * peaks[64][1]  # plain: grows with the pixel count
    assert peaks[256][0] * 16 <= peaks[256][1]


def test_tiled_encode_equals_plain_encode_when_tiles_cover_and_is_bounded_otherwise(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    pixels = np.random.default_rng(5).random((1, 64, 64, 3), dtype=np.float32)
    plain = VAEEncode().encode(vae, pixels)[0]["samples"]
    covered = VAEEncodeTiled().encode(vae, pixels, 128, 0)[0]["samples"]
    torch.testing.assert_close(covered, plain, rtol=0, atol=4 * plain.abs().max().item() * 2.0 ** -23)
    module = vae.vae.get()
    with _largest_activation(module) as small:
        VAEEncode().encode(vae, pixels)
    big = np.random.default_rng(6).random((1, 256, 256, 3), dtype=np.float32)
    with _largest_activation(module) as seen:
        tiled = VAEEncodeTiled().encode(vae, big, 64, 0)[0]["samples"]
    assert tiled.shape == (1, 4, 32, 32) and torch.isfinite(tiled).all()
    # the largest tiles (128x32, 32x128, 64x64 px) hold as many pixels as the whole 64x64 image
    assert seen[0] == small[0]


def test_tiled_nodes_accept_comfyuis_widget_values_and_cap_the_decode_overlap(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    latent = _latent(7, 8, 16)
    # tile_size 64 with overlap 64: ComfyUI lowers the overlap to tile_size // 4 = 16
    capped = VAEDecodeTiled().decode(vae, latent, 64, 64, 64, 8)[0]
    assert np.array_equal(capped, VAEDecodeTiled().decode(vae, latent, 64, 16, 64, 8)[0])
    with pytest.raises(ValueError, match=r"VAEEncodeTiled: a 32x128 tile with an overlap of 32 would not advance"):
        VAEEncodeTiled().encode(vae, np.zeros((1, 64, 64, 3), np.float32), 64, 32)


def test_vae_encode_crops_around_the_centre_like_comfyui(tiny_handles: Any) -> None:
    vae = tiny_handles[2]
    pixels = np.random.default_rng(8).random((1, 70, 67, 3), dtype=np.float32)
    got = VAEEncode().encode(vae, pixels)[0]["samples"]
    # 70 % 8 = 6 -> 3 rows off the top; 67 % 8 = 3 -> 1 column off the left
    want = VAEEncode().encode(vae, np.ascontiguousarray(pixels[:, 3:67, 1:65]))[0]["samples"]
    assert torch.equal(got, want)
    assert not torch.equal(got, VAEEncode().encode(vae, np.ascontiguousarray(pixels[:, :64, :64]))[0]["samples"])


def _grown(mask: np.ndarray, g: int) -> np.ndarray:
    """Dilation of the rounded mask by a g x g box whose top-left sits ceil((g-1)/2) above/left."""
    r = np.round(mask)
    p = math.ceil((g - 1) / 2)
    out = np.zeros_like(r)
    for i, j in np.ndindex(*r.shape):
        win = r[max(0, i - p):max(0, i - p + g), max(0, j - p):max(0, j - p + g)]
        out[i, j] = 1.0 if win.size and win.max() >= 1 else 0.0
    return out


@pytest.mark.parametrize("grow", [0, 3, 6])
def test_vae_encode_for_inpaint_greys_the_masked_pixels_and_grows_the_noise_mask(tiny_handles: Any, grow: int) -> None:
    vae = tiny_handles[2]
    rng = np.random.default_rng(9)
    pixels = rng.random((1, 70, 67, 3), dtype=np.float32)
    mask = np.zeros((70, 67), np.float32)
    mask[20:40, 10:30] = 0.6  # rounds to 1
    mask[50:60, 40:50] = 0.4  # rounds to 0: neither greyed nor grown
    out = VAEEncodeForInpaint().encode(vae, pixels, mask, grow)[0]
    crop, mcrop = pixels[:, 3:67, 1:65], mask[3:67, 1:65]
    hole = np.round(mcrop) == 1
    grey = np.where(hole[None, :, :, None], np.float32(0.5), crop)
    want = VAEEncode().encode(vae, grey)[0]["samples"]
    torch.testing.assert_close(out["samples"], want, rtol=0, atol=1e-5)
    nm = out["noise_mask"]
    assert nm.shape == (1, 1, 64, 64) and nm.dtype == torch.float32
    expected = np.round(mcrop) if grow == 0 else _grown(mcrop, grow)
    assert np.array_equal(nm[0, 0].numpy(), expected)


def test_vae_encode_for_inpaint_rejects_a_mask_batch_that_does_not_fit_the_images(tiny_handles: Any) -> None:
    with pytest.raises(ValueError, match=r"VAEEncodeForInpaint: mask has a batch of 2 but pixels have 3"):
        VAEEncodeForInpaint().encode(tiny_handles[2], np.zeros((3, 16, 16, 3), np.float32),
                                     np.zeros((2, 16, 16), np.float32), 6)
