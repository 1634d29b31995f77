"""Latent edits: composites, blends, batches and noise masks, with ComfyUI's semantics.

Each function takes and returns LATENT dicts (see ``latent_nodes``). Like ComfyUI, an output
is a shallow copy of the first LATENT input with ``samples`` replaced, so ``noise_mask`` and
``batch_index`` travel on unless the node's ComfyUI counterpart changes them:

- ``from_batch`` slices ``samples``, ``noise_mask`` (unless it has one entry) and
  ``batch_index`` (created as ``range(start, start + length)`` when absent);
- ``repeat_batch`` tiles ``samples``, a multi-entry ``noise_mask`` and offsets ``batch_index``;
- ``batch`` concatenates ``samples`` and ``batch_index`` (each side defaulting to
  ``range(len)``) and keeps the first input's ``noise_mask``;
- ``set_noise_mask`` sets ``noise_mask`` to the MASK as ``[B, 1, H, W]``.

MASK and IMAGE inputs may be numpy arrays or torch tensors on any device (``as_mask``,
``as_image``). Imported only when such a node runs (in a worker): it imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .latent import common_upscale


def as_image(pixels: Any) -> Any:
    """IMAGE (numpy or torch, ``[B,H,W,C]`` or ``[H,W,C]``) as a float32 CPU tensor ``[B,H,W,C]``."""
    if isinstance(pixels, torch.Tensor):  # any device (np.asarray would fail on CUDA tensors)
        arr = pixels.detach().to("cpu", torch.float32)
    else:
        arr = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
    return arr[None] if arr.ndim == 3 else arr


def as_mask(mask: Any, node: str) -> Any:
    """MASK (numpy or torch, ``[H,W]``, ``[B,H,W]`` or ``[B,1,H,W]``) as float32 CPU ``[B,1,H,W]``."""
    if isinstance(mask, torch.Tensor):
        m = mask.detach().to("cpu", torch.float32)
    else:
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    if m.ndim < 2 or m.ndim > 4 or (m.ndim == 4 and m.shape[1] != 1):
        raise ValueError(f"{node}: mask has shape {tuple(m.shape)}, not [H, W] or [B, H, W] "
                         "(fix: connect a MASK output, e.g. LoadImage's second output)")
    return m.reshape(-1, 1, m.shape[-2], m.shape[-1])


def repeat_to_batch(t: Any, n: int) -> Any:
    """ComfyUI's ``repeat_to_batch_size``: cut or tile along dim 0 to ``n`` entries."""
    if t.shape[0] > n:
        return t[:n]
    if t.shape[0] < n:
        reps = [math.ceil(n / t.shape[0])] + [1] * (t.ndim - 1)
        return t.repeat(reps)[:n]
    return t


def _same_channels(node: str, a: Any, b: Any, names: tuple[str, str]) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{node}: {names[0]} has {a.shape[1]} channels but {names[1]} has {b.shape[1]} "
                         "(fix: connect latents of the same model family)")


def composite(samples_to: dict[str, Any], samples_from: dict[str, Any], x: int, y: int,
              feather: int) -> dict[str, Any]:
    """LatentComposite: paste ``samples_from`` at pixel (x, y), edges feathered over ``feather`` px.

    As ComfyUI: the source is cut at the destination's border; each of the first/last
    ``feather // 8`` rows and columns is weighted ``(t + 1) / feather`` on sides that do not
    touch the destination's border, and the weights of rows hit twice multiply.
    """
    x, y, f = x // 8, y // 8, feather // 8
    dst, src = samples_to["samples"], samples_from["samples"]
    _same_channels("LatentComposite", dst, src, ("samples_to", "samples_from"))
    if src.shape[0] not in (1, dst.shape[0]):
        raise ValueError(f"LatentComposite: samples_from has a batch of {src.shape[0]} but samples_to has "
                         f"{dst.shape[0]} (fix: use one source latent or batches of the same size)")
    s = dst.clone()
    src = src[:, :, :max(0, dst.shape[2] - y), :max(0, dst.shape[3] - x)]
    h, w = src.shape[2], src.shape[3]
    if f == 0:
        s[:, :, y:y + h, x:x + w] = src
    else:
        rows, cols = torch.ones(h), torch.ones(w)
        for t in range(f):
            a = (1.0 / f) * (t + 1)
            if y != 0:
                rows[t:t + 1] *= a
            if y + h < dst.shape[2]:
                rows[h - 1 - t:h - t] *= a
            if x != 0:
                cols[t:t + 1] *= a
            if x + w < dst.shape[3]:
                cols[w - 1 - t:w - t] *= a
        mask = rows[:, None] * cols[None, :]
        s[:, :, y:y + h, x:x + w] = src * mask + s[:, :, y:y + h, x:x + w] * (1.0 - mask)
    out = dict(samples_to)
    out["samples"] = s
    return out


def composite_masked(destination: dict[str, Any], source: dict[str, Any], x: int, y: int,
                     resize_source: bool, mask: Any = None) -> dict[str, Any]:
    """LatentCompositeMasked: ``source`` over ``destination`` at pixel (x, y) through ``mask``.

    As ComfyUI's ``composite(..., multiplier=8)``: the source optionally resized (bilinear) to
    the destination, repeated or cut to its batch; the mask resized (bilinear) to the source and
    repeated to its batch; ``out = mask * source + (1 - mask) * destination`` where they meet.
    """
    dst = destination["samples"].clone()
    src = source["samples"].to(dst.device)
    _same_channels("LatentCompositeMasked", dst, src, ("destination", "source"))
    if resize_source:
        src = torch.nn.functional.interpolate(src, size=tuple(dst.shape[2:]), mode="bilinear")
    src = repeat_to_batch(src, dst.shape[0])
    left, top = min(x, dst.shape[3] * 8) // 8, min(y, dst.shape[2] * 8) // 8
    h, w = min(src.shape[2], dst.shape[2] - top), min(src.shape[3], dst.shape[3] - left)
    if mask is None:
        m = torch.ones_like(src)
    else:
        m = torch.nn.functional.interpolate(as_mask(mask, "LatentCompositeMasked"),
                                            size=tuple(src.shape[2:]), mode="bilinear")
        m = repeat_to_batch(m, src.shape[0])
    m = m[:, :, :h, :w]
    region = dst[:, :, top:top + h, left:left + w]
    dst[:, :, top:top + h, left:left + w] = m * src[:, :, :h, :w] + (1.0 - m) * region
    out = dict(destination)
    out["samples"] = dst
    return out


def blend(samples1: dict[str, Any], samples2: dict[str, Any], blend_factor: float) -> dict[str, Any]:
    """LatentBlend: ``samples1 * f + samples2 * (1 - f)``; a differently shaped ``samples2`` is
    first resized (bicubic, centre crop) to ``samples1``'s size, as ComfyUI does."""
    a, b = samples1["samples"], samples2["samples"]
    _same_channels("LatentBlend", a, b, ("samples1", "samples2"))
    if a.shape != b.shape:
        b = common_upscale(b, a.shape[3], a.shape[2], "bicubic", "center")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"LatentBlend: samples1 has a batch of {a.shape[0]} but samples2 has {b.shape[0]} "
                         "(fix: blend batches of the same size, or a single latent into a batch)")
    out = dict(samples1)
    out["samples"] = a * blend_factor + b * (1 - blend_factor)
    return out


def from_batch(samples: dict[str, Any], batch_index: int, length: int) -> dict[str, Any]:
    """LatentFromBatch: ``length`` latents from ``batch_index`` (both clamped to the batch)."""
    x = samples["samples"]
    start = min(x.shape[0] - 1, batch_index)
    length = min(x.shape[0] - start, length)
    out = dict(samples)
    out["samples"] = x[start:start + length].clone()
    if "noise_mask" in samples:
        masks = samples["noise_mask"]
        if masks.shape[0] == 1:  # one mask for the whole batch stays one mask
            out["noise_mask"] = masks.clone()
        else:
            out["noise_mask"] = repeat_to_batch(masks, max(masks.shape[0], x.shape[0]))[start:start + length].clone()
    if "batch_index" in samples:
        out["batch_index"] = list(samples["batch_index"][start:start + length])
    else:
        out["batch_index"] = list(range(start, start + length))
    return out


def repeat_batch(samples: dict[str, Any], amount: int) -> dict[str, Any]:
    """RepeatLatentBatch: the batch ``amount`` times; ``batch_index`` continues past its span."""
    out = dict(samples)
    out["samples"] = samples["samples"].repeat((amount, 1, 1, 1))
    mask = samples.get("noise_mask")
    if mask is not None and mask.shape[0] > 1:
        # ComfyUI repeats the mask as it is (its padded copy to the batch size is unused), so a
        # mask shorter than the batch is repeated short; the sampler then tiles it to the batch.
        out["noise_mask"] = mask.repeat((amount,) + (1,) * (mask.ndim - 1))
    if "batch_index" in samples:
        idx = list(samples["batch_index"])
        span = max(idx) - min(idx) + 1
        out["batch_index"] = idx + [i + k * span for k in range(1, amount) for i in idx]
    return out


def batch(samples1: dict[str, Any], samples2: dict[str, Any]) -> dict[str, Any]:
    """LatentBatch: ``samples2`` after ``samples1`` (resized bilinear, centre crop, if it differs)."""
    a, b = samples1["samples"], samples2["samples"]
    _same_channels("LatentBatch", a, b, ("samples1", "samples2"))
    if a.shape[1:] != b.shape[1:]:
        b = common_upscale(b, a.shape[3], a.shape[2], "bilinear", "center")
    out = dict(samples1)
    out["samples"] = torch.cat((a, b), dim=0)
    out["batch_index"] = (list(samples1.get("batch_index", range(a.shape[0])))
                          + list(samples2.get("batch_index", range(b.shape[0]))))
    return out


def set_noise_mask(samples: dict[str, Any], mask: Any) -> dict[str, Any]:
    """SetLatentNoiseMask: ``noise_mask`` = the MASK as ``[B, 1, H, W]`` (any resolution)."""
    out = dict(samples)
    out["noise_mask"] = as_mask(mask, "SetLatentNoiseMask")
    return out
