"""VAE decode / encode between LATENT and IMAGE (VAEDecode, VAEEncode).

Imported only when such a node runs (in a worker): it imports torch at module level.
Latents and images that leave these functions are on the CPU; the VAE runs where its loader
put it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .components import VaeHandle, oom_guard


def vae_decode(vae: VaeHandle, samples: dict[str, Any]) -> np.ndarray:
    latent = samples["samples"]
    with vae.vae.use() as module, torch.inference_mode():
        z = latent.to(module.device, module.dtype) / vae.scaling_factor
        images = oom_guard(lambda: module.decode(z, return_dict=False)[0], module.device)
    images = (images.to("cpu", torch.float32) / 2 + 0.5).clamp(0, 1)
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def vae_encode(vae: VaeHandle, pixels: Any) -> dict[str, Any]:
    """LATENT of an IMAGE (numpy or torch ``[B,H,W,C]``); H and W are cropped to multiples of 8."""
    if isinstance(pixels, torch.Tensor):  # any device (np.asarray would fail on CUDA tensors)
        arr = pixels.detach().to("cpu", torch.float32)
    else:
        arr = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
    if arr.ndim == 3:
        arr = arr[None]
    h, w = (arr.shape[1] // 8) * 8, (arr.shape[2] // 8) * 8
    if h == 0 or w == 0:
        raise ValueError(f"pixels are {tuple(arr.shape[1:3])}; VAEEncode needs at least 8x8")
    x = arr[:, :h, :w, :3].permute(0, 3, 1, 2) * 2 - 1
    with vae.vae.use() as module, torch.inference_mode():
        dist = oom_guard(lambda: module.encode(x.to(module.device, module.dtype)).latent_dist, module.device)
        latent = dist.mode() * vae.scaling_factor  # the mean: deterministic, as ComfyUI's encode
    return {"samples": latent.to("cpu", torch.float32)}
