"""SDXL "revision": unCLIPConditioning on an SDXL model replaces the pooled text embedding with
the CLIP vision image embedding, as ComfyUI's ``sdxl_pooled`` / ``unclip_adm`` do.

For each ``unclip_conditioning`` entry (unCLIPConditioning: a CLIP_VISION_OUTPUT, ``strength``,
``noise_augmentation``) and each image of its output:

- the image embedding is noised to ``level = round(999 * noise_augmentation)`` on SDXL's
  augmentation schedule (``squaredcos_cap_v2`` betas over 1000 steps, the noise drawn from
  ``torch.manual_seed(seed - 10)`` with the sampler's seed): ``sqrt(a_l) e + sqrt(1 - a_l) n``;
- the noise level's sinusoidal embedding (cos half first, period 10000) of the pooled width
  follows it, and the row is multiplied by ``strength``;
- several rows are summed and augmented once more at level 0 (ComfyUI's merge);
- the first ``pooled width`` values (1280 for SDXL) are the pooled embedding.
"""

from __future__ import annotations

import math
from typing import Any

import torch

LEVELS = 1000


def _alphas_cumprod() -> torch.Tensor:
    def bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - bar((i + 1) / LEVELS) / bar(i / LEVELS), 0.999) for i in range(LEVELS)]
    return torch.cumprod(1.0 - torch.tensor(betas, dtype=torch.float64), dim=0).float()


def level_embedding(level: int, dim: int) -> torch.Tensor:
    """The sinusoidal embedding of a noise level: ``[cos(l f), sin(l f)]``, ``f = 10000^(-i/half)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = float(level) * freqs
    out = torch.cat([torch.cos(args), torch.sin(args)])
    return torch.cat([out, torch.zeros(dim % 2)])[None, :]


def _augment(embeds: torch.Tensor, level: int, seed: int | None, dim: int) -> torch.Tensor:
    ac = _alphas_cumprod()[level]
    if seed is None:
        noise = torch.randn_like(embeds)
    else:
        noise = torch.randn(embeds.size(), dtype=embeds.dtype, generator=torch.manual_seed(seed))
    z = ac.sqrt() * embeds + (1 - ac).sqrt() * noise
    return torch.cat([z, level_embedding(level, dim).repeat(z.shape[0], 1)], dim=1)


def revision_pooled(entries: list[dict[str, Any]], width: int, seed: int | None) -> torch.Tensor:
    """The pooled vector ``[1, width]`` that unCLIP entries give an SDXL model."""
    rows = []
    for entry in entries:
        embeds = torch.as_tensor(entry["clip_vision_output"].image_embeds, dtype=torch.float32)
        level = round((LEVELS - 1) * float(entry["noise_augmentation"]))
        for image in embeds.reshape(-1, embeds.shape[-1]):
            rows.append(_augment(image[None, :], level, seed, width) * float(entry["strength"]))
    out = rows[0]
    if len(rows) > 1:
        summed = torch.stack(rows).sum(0)
        embed_width = summed.shape[1] - width
        out = _augment(summed[:, :embed_width], 0, None, width)
    if out.shape[1] < width:
        raise ValueError(f"unCLIPConditioning: the image embedding and noise level give {out.shape[1]} values, "
                         f"fewer than the model's pooled width {width} (fix: a CLIP vision model matching the model)")
    return out[:, :width]
